"""The job folder: the one contract between the front ends and the engine (see docs/JOB_FORMAT.md).

:func:`load_job` reads and checks ``JOB_DIR/job.json``; :func:`run_job` trains and predicts as it
describes. Every input is read and checked before anything is written, so bad input leaves no
partial run folder; a crash or cancel leaves the last good checkpoint and a ``status.json`` that
says what happened.
"""

from __future__ import annotations

import dataclasses
import json
import os
import traceback
from pathlib import Path
from typing import Any

from .config import TrainConfig, from_dict, to_dict
from .data import Volume, build_slice_sets, choose_axis, labeled_slice_indices, load_volume
from .errors import EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_INTERNAL, EXIT_OK, Cancelled, InputError
from .imageio import OUTPUT_FORMATS
from .inference import Predictor, write_prediction
from .methods import METHODS
from .recipes import RECIPES, apply_recipe
from .training import TrainData, Trainer
from .training.progress import ProgressLog
from .training.trainer import CancelToken, resolve_device

__all__ = ["JOB_FORMAT_VERSION", "Job", "load_job", "run_job", "prepare", "write_status"]

JOB_FORMAT_VERSION = 1


@dataclasses.dataclass
class Job:
    """What ``job.json`` holds (paths resolved against the job folder)."""

    image: str
    labels: str
    format_version: int = JOB_FORMAT_VERSION
    unlabeled: list[str] = dataclasses.field(default_factory=list)
    labeled_slices: list[int] = dataclasses.field(default_factory=list)
    axis: str | int = "auto"
    classes: list[str] | None = None
    method: str = "supervised"
    recipe: str = "auto"
    train: dict[str, Any] = dataclasses.field(default_factory=dict)
    method_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    init_checkpoint: str | None = None
    run_dir: str = "run"
    predict: bool = True
    output_format: str = "nii.gz"

    def check(self, where: str) -> None:
        """Raise :class:`InputError` for settings that cannot work, naming ``where``."""
        if self.format_version > JOB_FORMAT_VERSION:
            raise InputError(f"written by a newer SemiSegSlicer (job format {self.format_version} > {JOB_FORMAT_VERSION}); update the engine", where)
        if self.axis not in ("auto", 0, 1, 2):
            raise InputError(f"axis must be 'auto', 0, 1 or 2, got {self.axis!r}", where)
        if self.method not in METHODS:
            raise InputError(f"unknown method {self.method!r}; valid methods: {', '.join(sorted(METHODS))}", where)
        if self.classes is not None and len(self.classes) < 2:
            raise InputError(f"fewer than 2 classes declared ({self.classes}); background and at least one class are needed", where)
        if self.output_format not in OUTPUT_FORMATS:
            raise InputError(f"output_format must be one of {OUTPUT_FORMATS}, got {self.output_format!r}", where)
        if self.recipe not in RECIPES:
            raise InputError(f"recipe must be one of {', '.join(RECIPES)}, got {self.recipe!r}", where)
        _, train, options = apply_recipe(self.recipe, self.method, self.train, self.method_options)
        try:  # the settings as the run will use them: the recipe's, overridden by the job's own
            from_dict(TrainConfig, train, where="train").validate()
            from_dict(METHODS[self.method].Config, options, where=f"{self.method} option")
        except InputError as err:
            if err.path:
                raise
            raise InputError(str(err), where) from None


def load_job(job_dir: str | os.PathLike) -> Job:
    """Read ``JOB_DIR/job.json``; relative paths are taken relative to ``JOB_DIR``."""
    job_dir = Path(job_dir)
    path = job_dir / "job.json"
    if not path.is_file():
        raise InputError("job.json not found", path)
    try:
        raw = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise InputError(f"is not valid JSON ({err})", path) from None
    if not isinstance(raw, dict) or "format_version" not in raw:
        raise InputError("needs a 'format_version' field", path)
    if isinstance(raw["format_version"], int) and raw["format_version"] > JOB_FORMAT_VERSION:
        raise InputError(f"written by a newer SemiSegSlicer (job format {raw['format_version']} > {JOB_FORMAT_VERSION}); update the engine", path)
    names = {f.name for f in dataclasses.fields(Job)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise InputError(f"unknown key(s) {unknown}; valid keys: {sorted(names)}", path)
    for key in ("image", "labels"):
        if key not in raw:
            raise InputError(f"needs an {key!r} field", path)
    job = Job(**raw)

    def resolve(p: str) -> str:
        return str(p if os.path.isabs(p) else job_dir / p)

    job.image, job.labels = resolve(job.image), resolve(job.labels)
    job.unlabeled = [resolve(p) for p in job.unlabeled]
    job.run_dir = resolve(job.run_dir)
    if job.init_checkpoint:
        job.init_checkpoint = resolve(job.init_checkpoint)
    job.check(str(path))
    return job


def write_status(run_dir: str | os.PathLike, state: str, message: str = "", exit_code: int | None = None) -> None:
    """Write ``status.json`` atomically."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    tmp = run_dir / ".status.json.tmp"
    tmp.write_text(json.dumps({"state": state, "message": message, "exit_code": exit_code}))
    os.replace(tmp, run_dir / "status.json")


@dataclasses.dataclass
class Prepared:
    """A job's data read, checked and sliced, ready to train."""

    volume: Volume
    unlabeled: list[Volume]
    axis: int
    num_classes: int
    class_names: list[str]
    data: TrainData
    config: TrainConfig
    recipe: str
    method_options: dict[str, Any]


def prepare(job: Job) -> Prepared:
    """Read and check every input of ``job`` and build its slice sets (writes nothing).

    The job's recipe (:mod:`semiseg.recipes`) fills in the training settings and method options
    the job leaves out.
    """
    recipe, train, options = apply_recipe(job.recipe, job.method, job.train, job.method_options)
    config = from_dict(TrainConfig, train, where="train")
    config.validate()
    declared = len(job.classes) if job.classes else None
    volume = load_volume(job.image, job.labels, declared)
    assert volume.labels is not None
    if declared is None:
        num_classes = int(volume.labels.max()) + 1
        if num_classes < 2 and job.labeled_slices:
            raise InputError("fewer than 2 classes: the label map holds only background; paint at least one class", job.labels)
    else:
        num_classes = declared
    if not volume.labels.any() and not job.labeled_slices:
        raise InputError("no labelled slice: the label map is empty and no slice is listed as checked", job.labels)
    if job.axis == "auto":
        axis = choose_axis(volume.labels, volume.spacing_kji) if volume.labels.any() else 2
    else:
        axis = int(job.axis)
    volume.extra_labeled = {axis: list(job.labeled_slices)}
    labeled_slice_indices(volume.labels, axis, job.labeled_slices)  # range check of the listed slices
    unlabeled = [load_volume(p) for p in job.unlabeled]
    for u in unlabeled:
        if min(u.image.shape[2 - a] for a in range(3) if a != axis) < 8:
            raise InputError(f"too small to slice along axis {axis} (size {u.reference.GetSize()})", u.path)
    labeled, val, unl = build_slice_sets([volume], unlabeled, axis, config.size, config.min_val_slices, config.val_stride)
    names = list(job.classes) if job.classes else ["background"] + [f"class {c}" for c in range(1, num_classes)]
    return Prepared(volume, unlabeled, axis, num_classes, names, TrainData(labeled, val, unl, num_classes), config, recipe, options)


def setup_report(prepared: Prepared) -> dict[str, Any]:
    """Device, recipe and budget of a prepared job, with a ``warning`` when ``auto`` found no GPU.

    Front ends show the warning to the user (a CPU run takes minutes where a GPU takes seconds).
    """
    c = prepared.config
    device = resolve_device(c.device).type
    report: dict[str, Any] = {"device": device, "recipe": prepared.recipe, "iterations": c.iterations, "size": c.size,
                              "batch_labeled": c.batch_labeled, "batch_unlabeled": c.batch_unlabeled}
    if c.device == "auto" and device == "cpu":
        report["warning"] = (f"No GPU found: training runs on the CPU with the '{prepared.recipe}' recipe "
                             f"({c.iterations} iterations at {c.size}x{c.size}, batch {c.batch_labeled} + {c.batch_unlabeled}); "
                             "this takes minutes. Choose fewer iterations for a quicker first look.")
    return report


def run_job(job: Job, resume: bool = False, log: ProgressLog | None = None, cancel: CancelToken | None = None) -> dict[str, Any]:
    """Train and (optionally) predict as ``job`` says; returns a summary.

    Raises:
        InputError: bad input (nothing is written).
        Cancelled: cancellation; ``status.json`` says so and the last good checkpoint is kept.
    """
    prepared = prepare(job)
    run_dir = Path(job.run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / "cancel").unlink(missing_ok=True)
    write_status(run_dir, "running")
    log = log or ProgressLog(run_dir / "progress.jsonl")
    meta = {"axis": prepared.axis, "class_names": prepared.class_names, "image": job.image,
            "labeled_slices": labeled_slice_indices(prepared.volume.labels, prepared.axis, job.labeled_slices)}
    (run_dir / "config.json").write_text(json.dumps({**dataclasses.asdict(job), "axis_resolved": prepared.axis,
                                                     "recipe_resolved": prepared.recipe,
                                                     "train_resolved": to_dict(prepared.config), "method_options_resolved": prepared.method_options,
                                                     "num_classes": prepared.num_classes}, indent=1))
    log.emit("setup", **setup_report(prepared))
    try:
        trainer = Trainer(prepared.config, job.method, prepared.method_options, prepared.num_classes, run_dir, meta=meta, log=log, cancel=cancel)
        if resume and trainer.checkpoint_path.exists():
            trainer.resume(trainer.checkpoint_path)
        elif job.init_checkpoint:
            trainer.warm_start(job.init_checkpoint)
        summary = trainer.fit(prepared.data)
        predictions = {}
        if job.predict:
            predictor = Predictor(trainer.checkpoint_path, prepared.config.device)
            labeled = set(meta["labeled_slices"])
            used: set[str] = set()
            for vol, marks in [(prepared.volume, labeled)] + [(u, set()) for u in prepared.unlabeled]:
                name, n = vol.name, 2
                while name in used:
                    name, n = f"{vol.name}_{n}", n + 1
                used.add(name)
                out = write_prediction(predictor, vol.path, run_dir / "predictions" / name, prepared.axis, job.output_format, marks)
                predictions[name] = str(out)
                log.emit("predicted", name=name, dir=str(out.relative_to(run_dir)))
        log.emit("done", iteration=summary["iteration"], seconds=summary["seconds"])
        write_status(run_dir, "done", exit_code=EXIT_OK)
        return {**summary, "run_dir": str(run_dir), "axis": prepared.axis, "predictions": predictions, "num_classes": prepared.num_classes}
    except Cancelled as err:
        write_status(run_dir, "cancelled", str(err), EXIT_CANCELLED)
        raise
    except InputError as err:
        log.emit("error", message=str(err))
        write_status(run_dir, "failed", str(err), EXIT_BAD_INPUT)
        raise
    except Exception as err:
        log.emit("error", message=f"{type(err).__name__}: {err}")
        write_status(run_dir, "failed", f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=5)}", EXIT_INTERNAL)
        raise
    finally:
        log.close()


