"""The job folder: the one contract between the front ends and the engine (see docs/JOB_FORMAT.md).

:func:`load_job` reads and checks ``JOB_DIR/job.json``; :func:`run_job` trains and predicts as it
describes. Every input is read and checked before anything is written, so bad input leaves no
partial run folder; a crash or cancel leaves the last good checkpoint and a ``status.json`` that
says what happened.
"""

from __future__ import annotations

import dataclasses
import errno
import functools
import json
import os
import traceback
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .contract import JOB_FORMAT_VERSION, METHOD_LABELS, REQUIRED_JOB_FIELDS, JobFields
from .errors import EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_INTERNAL, EXIT_OK, Cancelled, CancelToken, InputError
from .io.images import OUTPUT_FORMATS
from .settings import from_dict, to_dict
from .training.config import TrainConfig
from .training.recipes import RECIPES, apply_recipe

if TYPE_CHECKING:  # torch is imported when a job runs, not when it is read and checked
    from .completion import CompletionConfig, ShapePrior
    from .io.slices import Volume
    from .training import TrainData
    from .training.progress import ProgressLog

__all__ = ["JOB_FORMAT_VERSION", "Job", "RunLock", "load_job", "run_job", "prepare", "write_status"]


def _integer(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _path(v: Any) -> bool:
    return isinstance(v, str) and bool(v.strip())


FIELD_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "format_version": (lambda v: _integer(v) and v >= 1, "an integer >= 1"),
    "image": (_path, "a file path (a non-empty string)"),
    "labels": (_path, "a file path (a non-empty string)"),
    "unlabeled": (lambda v: isinstance(v, list) and all(_path(p) for p in v), "a list of file paths"),
    "labeled_slices": (lambda v: isinstance(v, list) and all(_integer(i) and i >= 0 for i in v),
                       "a list of slice indices (integers >= 0)"),
    "axis": (lambda v: v == "auto" or (_integer(v) and v in (0, 1, 2)), "'auto', 0, 1 or 2"),
    "classes": (lambda v: v is None or (isinstance(v, list) and all(isinstance(c, str) for c in v)),
                "null or a list of class names (strings), background first"),
    "method": (lambda v: isinstance(v, str), "a method name"),
    "recipe": (lambda v: isinstance(v, str), "a recipe name"),
    "train": (lambda v: isinstance(v, dict), "an object of training settings"),
    "method_options": (lambda v: isinstance(v, dict), "an object of method options"),
    "init_checkpoint": (lambda v: v is None or _path(v), "null or a checkpoint path"),
    "run_dir": (_path, "a folder path (a non-empty string)"),
    "predict": (lambda v: isinstance(v, bool), "true or false"),
    "output_format": (lambda v: isinstance(v, str), "a string"),
    "completion": (lambda v: isinstance(v, dict), "an object of completion settings"),
}
"""The type (and simple range) of every ``job.json`` key: what it must be, as the error message says it."""


class Job(JobFields):
    """What ``job.json`` holds (the contract's :class:`~semiseg.contract.JobFields`; paths resolved against the
    job folder), and its checks."""

    def check_fields(self, where: str) -> None:
        """Raise :class:`InputError` naming ``where`` and the first key whose value breaks :data:`FIELD_RULES`."""
        for key, (ok, want) in FIELD_RULES.items():
            value = getattr(self, key)
            if not ok(value):
                raise InputError(f"{key!r} must be {want}, got {value!r}", where)

    def check(self, where: str) -> None:
        """Raise :class:`InputError` for settings that cannot work, naming ``where``.

        The type of every field and the job's own training settings are checked first, then that
        the input files can be opened, all without torch; then the settings as the run will use them
        (the recipe's, overridden by the job's), which needs the method registry.
        """
        self.check_fields(where)
        if self.format_version > JOB_FORMAT_VERSION:
            raise InputError(
                f"written by a newer SemiSegSlicer (job format {self.format_version} > {JOB_FORMAT_VERSION}); "
                f"update the engine",
                where,
            )
        if self.method not in METHOD_LABELS:
            raise InputError(
                f"unknown method {self.method!r}; valid methods: {', '.join(sorted(METHOD_LABELS))}", where
            )
        if self.classes is not None and len(self.classes) < 2:
            raise InputError(
                f"fewer than 2 classes declared ({self.classes}); background and at least one class are needed", where
            )
        if self.output_format not in OUTPUT_FORMATS:
            raise InputError(f"output_format must be one of {OUTPUT_FORMATS}, got {self.output_format!r}", where)
        if self.recipe not in RECIPES:
            raise InputError(f"recipe must be one of {', '.join(RECIPES)}, got {self.recipe!r}", where)
        _named(where, lambda: from_dict(TrainConfig, self.train, where="train").validate())
        for path in [self.image, self.labels, *self.unlabeled] + (
            [self.init_checkpoint] if self.init_checkpoint else []
        ):
            if not Path(path).exists():
                raise InputError("file not found", path)
        from .methods import METHODS  # torch

        _named(where, lambda: self.settings[1].validate())
        _named(where, lambda: from_dict(METHODS[self.method].Config, self.settings[2], where=f"{self.method} option"))
        from .completion import CompletionConfig

        _named(where, lambda: from_dict(CompletionConfig, self.completion, where="completion").validate())

    @functools.cached_property
    def settings(self) -> tuple[str, TrainConfig, dict[str, Any]]:
        """The recipe this job resolves to, its training config and its method options: the recipe
        (:mod:`semiseg.training.recipes`) applied once, under the settings the job gives explicitly."""
        recipe, train, options = apply_recipe(self.recipe, self.method, self.train, self.method_options)
        return recipe, from_dict(TrainConfig, train, where="train"), options


def _named(where: str, check: Callable[[], Any]) -> None:
    """Run ``check``; an :class:`InputError` that names no file is made to name ``where``."""
    try:
        check()
    except InputError as err:
        if err.path:
            raise
        raise InputError(str(err), where) from None


def load_job(job_dir: str | os.PathLike, allow_outside_run_dir: bool = False) -> Job:
    """Read and check ``JOB_DIR/job.json``; relative paths are taken relative to ``JOB_DIR``.

    Args:
        allow_outside_run_dir: accept a ``run_dir`` outside ``JOB_DIR`` (absolute, or with ``..``).
            Refused by default: a job folder from elsewhere must not make the engine write, or
            overwrite a run, anywhere on the disk.

    Raises:
        InputError: naming ``job.json`` and the key, before anything is written.
    """
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
    if _integer(raw["format_version"]) and raw["format_version"] > JOB_FORMAT_VERSION:
        raise InputError(
            f"written by a newer SemiSegSlicer (job format {raw['format_version']} > {JOB_FORMAT_VERSION}); "
            f"update the engine",
            path,
        )
    names = {f.name for f in dataclasses.fields(Job)}
    unknown = sorted(set(raw) - names)
    if unknown:
        raise InputError(f"unknown key(s) {unknown}; valid keys: {sorted(names)}", path)
    for key in REQUIRED_JOB_FIELDS:
        if key not in raw:
            raise InputError(f"needs an {key!r} field", path)
    job = Job(**raw)
    job.check_fields(str(path))  # before the paths are resolved

    def resolve(p: str) -> str:
        return str(p if os.path.isabs(p) else job_dir / p)

    job.image, job.labels = resolve(job.image), resolve(job.labels)
    job.unlabeled = [resolve(p) for p in job.unlabeled]
    run_dir, job.run_dir = job.run_dir, resolve(job.run_dir)
    inside = Path(os.path.realpath(job.run_dir)).is_relative_to(os.path.realpath(job_dir))
    if not (inside or allow_outside_run_dir):
        raise InputError(
            f"'run_dir' {run_dir!r} lies outside the job folder; name a folder inside it, or allow this "
            "with semiseg train --allow-outside-run-dir",
            path,
        )
    if job.init_checkpoint:
        job.init_checkpoint = resolve(job.init_checkpoint)
    job.check(str(path))
    return job


def write_status(run_dir: str | os.PathLike, state: str, message: str = "", exit_code: int | None = None) -> None:
    """Write ``status.json`` atomically; on a full disk, over the old file's own bytes."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"state": state, "message": message, "exit_code": exit_code}).encode()
    tmp = run_dir / ".status.json.tmp"
    try:
        tmp.write_bytes(text)
        os.replace(tmp, run_dir / "status.json")
    except OSError:  # no room for a second file: rewrite the one there is, without freeing its blocks first
        tmp.unlink(missing_ok=True)
        fd = os.open(run_dir / "status.json", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.write(fd, text)
            os.ftruncate(fd, len(text))
        finally:
            os.close(fd)


class RunLock:
    """An exclusive lock on a run folder, held by the one training that writes it.

    The lock is ``fcntl.flock`` (``msvcrt.locking`` on Windows) on ``RUN_DIR/.lock``: the system
    releases it when its process ends, however it ends, so a lock is never stale. The file holds the
    holder's pid and host, for the message that refuses a second training.
    """

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / ".lock"
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        """Make the run folder and lock it.

        Raises:
            InputError: the folder cannot be written, or another training holds it (naming it).
        """
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise InputError(f"cannot write the run folder ({err.strerror or err})", self.run_dir) from None
        try:
            _lock(fd)
        except OSError:
            try:
                os.lseek(fd, 0, os.SEEK_SET)
                holder = os.read(fd, 200).decode(errors="replace").strip()
            except OSError:  # Windows: the holder's locked byte cannot be read
                holder = ""
            os.close(fd)
            holder = holder or "another process"
            raise InputError(
                f"is in use by another training ({holder}); wait for it to end or cancel it", self.run_dir
            ) from None
        try:
            import socket

            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
        except OSError:  # a full disk: the lock holds all the same
            pass
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the lock; the file stays (removing it would race a new holder)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _lock(fd: int) -> None:
    """Lock ``fd`` exclusively without waiting; ``OSError`` when another process holds it."""
    if os.name == "nt":
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)


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
    completion: "CompletionConfig"
    prior: "ShapePrior | None"


def check_axis(labels: np.ndarray, axis: int, path: str | os.PathLike) -> None:
    """Refuse an explicit ``axis`` across which the user painted whole slices of another axis.

    With labels on a few K slices and axis 0, every I slice crossing them holds a painted row and
    would count as labelled, and its unpainted pixels would train as background. Our rule: the axis
    is refused when along another axis the labels lie on at most a quarter as many slices, on one
    slice or with unpainted slices between them (painted slices of that axis, not a solid structure).

    Raises:
        InputError: naming the label file, the axes and what to do.
    """

    def painted(a: int) -> np.ndarray:
        moved = np.moveaxis(labels, 2 - a, 0)
        return np.flatnonzero(moved.reshape(moved.shape[0], -1).any(axis=1))

    mine = len(painted(axis))
    for other in (a for a in (2, 1, 0) if a != axis):
        idx = painted(other)
        sparse = len(idx) == 1 or (len(idx) and idx[-1] - idx[0] + 1 > len(idx))
        if len(idx) and sparse and 4 * len(idx) <= mine:
            ijk = "IJK"
            raise InputError(
                f"the labels lie on {len(idx)} slice(s) along axis {other} ({ijk[other]}), but axis {axis} "
                f"({ijk[axis]}) "
                f"was asked for: its {mine} slices crossing the labels are only partly painted, and their unpainted "
                f"pixels would train as background. Use axis {other} or 'auto'",
                path,
            )


def check_checkpoint(path: str | os.PathLike, num_classes: int, method: str | None = None) -> None:
    """Refuse a checkpoint (init or resume) that cannot continue this job, before anything is written."""
    from .training.checkpoint import load_checkpoint

    state = load_checkpoint(path)
    if state.get("num_classes") != num_classes:
        raise InputError(f"checkpoint has {state.get('num_classes')} classes, this job has {num_classes}", path)
    if method is not None and state.get("method_name") != method:
        raise InputError(f"checkpoint is of method {state.get('method_name')!r}, not {method!r}", path)


def prepare(job: Job) -> Prepared:
    """Read and check every input of ``job`` and build its slice sets (writes nothing).

    The job's recipe (:mod:`semiseg.training.recipes`) fills in the training settings and method options
    the job leaves out.
    """
    import torch

    from .completion import CompletionConfig, ShapePrior
    from .io.slices import SliceSet, build_slice_sets, choose_axis, labeled_slice_indices, load_volume
    from .training import TrainData

    recipe, config, options = job.settings
    config.validate()
    declared = len(job.classes) if job.classes else None
    volume = load_volume(job.image, job.labels, declared)
    assert volume.labels is not None
    if declared is None:
        num_classes = int(volume.labels.max()) + 1
        if num_classes < 2 and job.labeled_slices:
            raise InputError(
                "fewer than 2 classes: the label map holds only background; paint at least one class", job.labels
            )
    else:
        num_classes = declared
    if not volume.labels.any() and not job.labeled_slices:
        raise InputError("no labelled slice: the label map is empty and no slice is listed as checked", job.labels)
    if job.axis == "auto":
        axis = choose_axis(volume.labels, volume.spacing_kji)
    else:
        axis = int(job.axis)
        check_axis(volume.labels, axis, job.labels)
    volume.extra_labeled = {axis: list(job.labeled_slices)}
    labeled_slice_indices(volume.labels, axis, job.labeled_slices)  # range check of the listed slices
    unlabeled = [load_volume(p) for p in job.unlabeled]
    for u in unlabeled:
        if min(u.image.shape[2 - a] for a in range(3) if a != axis) < 8:
            raise InputError(f"too small to slice along axis {axis} (size {u.reference.GetSize()})", u.path)
    if job.init_checkpoint:
        check_checkpoint(job.init_checkpoint, num_classes)
    labeled, val, unl = build_slice_sets(
        [volume], unlabeled, axis, config.size, config.min_val_slices, config.val_stride
    )
    names = list(job.classes) if job.classes else ["background"] + [f"class {c}" for c in range(1, num_classes)]
    completion = from_dict(CompletionConfig, job.completion, where="completion")
    completion.validate()
    prior = None
    if completion.enabled:  # the user's slices interpolated, to fuse with the network (semiseg.completion)
        prior = ShapePrior.build(
            volume.labels, axis, labeled_slice_indices(volume.labels, axis, job.labeled_slices), num_classes, completion
        )
        if completion.pseudo_labels > 0:
            extra = prior.pseudo_labeled(volume.image, volume.name, config.size, completion.pseudo_labels)
            labeled = SliceSet.concat(
                [dataclasses.replace(labeled, weights=torch.ones(len(labeled))), extra], config.size, True
            )
    return Prepared(
        volume,
        unlabeled,
        axis,
        num_classes,
        names,
        TrainData(labeled, val, unl, num_classes),
        config,
        recipe,
        options,
        completion,
        prior,
    )


def setup_report(prepared: Prepared) -> dict[str, Any]:
    """Device, recipe and budget of a prepared job, with a ``warning`` when ``auto`` found no GPU.

    Front ends show the warning to the user (a CPU run takes minutes where a GPU takes seconds).
    """
    from .models.device import resolve_device

    c = prepared.config
    device = resolve_device(c.device).type
    report: dict[str, Any] = {
        "device": device,
        "recipe": prepared.recipe,
        "iterations": c.iterations,
        "size": c.size,
        "batch_labeled": c.batch_labeled,
        "batch_unlabeled": c.batch_unlabeled,
    }
    if c.device == "auto" and device == "cpu":
        report["warning"] = (
            f"No GPU found: training runs on the CPU with the '{prepared.recipe}' recipe "
            f"({c.iterations} iterations at {c.size}x{c.size}, batch {c.batch_labeled} + {c.batch_unlabeled}); "
            "this takes minutes. Choose fewer iterations for a quicker first look."
        )
    return report


def _no_space(err: BaseException, run_dir: Path) -> InputError | None:
    """The :class:`InputError` a full disk should have raised, if ``err`` (or its cause) is one."""
    seen: BaseException | None = err
    while seen is not None:
        if (isinstance(seen, OSError) and seen.errno == errno.ENOSPC) or "No space left" in str(seen):
            return InputError(f"no space left on {run_dir}; free some space and resume the run (--resume)")
        seen = seen.__cause__ or seen.__context__
    return None


def _remove_temp_files(run_dir: Path) -> None:
    """Remove what a failed or cancelled write left: ``*.tmp`` files and staged predictions."""
    for pattern in ("*.tmp", ".*.tmp", "predictions/*/.*.tmp.*"):
        for path in run_dir.glob(pattern):
            path.unlink(missing_ok=True)


def _finish(
    run_dir: Path, log: ProgressLog, state: str, message: str, exit_code: int, event: str | None = None
) -> None:
    """The last words of a run that did not finish: its ``error`` event, temporary files removed, its status.

    Each step is tried on its own, so that on a full disk the status is still written (see :func:`write_status`).
    """
    import sys

    steps = [lambda: log.emit("error", message=event)] if event else []
    for step in steps + [lambda: _remove_temp_files(run_dir), lambda: write_status(run_dir, state, message, exit_code)]:
        try:
            step()
        except OSError as err:
            print(f"semiseg: could not record the {state} state in {run_dir}: {err}", file=sys.stderr)


def run_job(
    job: Job, resume: bool = False, log: ProgressLog | None = None, cancel: CancelToken | None = None
) -> dict[str, Any]:
    """Train and (optionally) predict as ``job`` says; returns a summary.

    The run folder is locked (:class:`RunLock`) for the whole run. A cancel (``cancel``, SIGTERM
    through it, or ``RUN_DIR/cancel``) is obeyed in every phase: set-up, training (a checkpoint is
    saved) and prediction.

    Raises:
        InputError: bad input (nothing is written), a run folder that cannot be written or is in use,
            or a full disk (the last good checkpoint is kept, temporary files are removed).
        Cancelled: cancellation; ``status.json`` says so and the last good checkpoint is kept.
    """
    prepared = prepare(job)
    run_dir = Path(job.run_dir)
    if resume and (run_dir / "checkpoint.pt").exists():
        check_checkpoint(run_dir / "checkpoint.pt", prepared.num_classes, job.method)
    with RunLock(run_dir):
        return _run_locked(job, prepared, run_dir, resume, log, cancel or CancelToken(run_dir / "cancel"))


def _run_locked(
    job: Job, prepared: Prepared, run_dir: Path, resume: bool, log: ProgressLog | None, cancel: CancelToken
) -> dict[str, Any]:
    from .completion.preview import Previews
    from .inference import Predictor, write_prediction
    from .io.slices import labeled_slice_indices
    from .training import Trainer
    from .training.progress import ProgressLog

    (run_dir / "cancel").unlink(missing_ok=True)
    log = log or ProgressLog(run_dir / "progress.jsonl")
    try:
        write_status(run_dir, "running")
        meta = {
            "axis": prepared.axis,
            "class_names": prepared.class_names,
            "image": job.image,
            "labeled_slices": labeled_slice_indices(prepared.volume.labels, prepared.axis, job.labeled_slices),
        }
        (run_dir / "config.json").write_text(
            json.dumps(
                {
                    **dataclasses.asdict(job),
                    "axis_resolved": prepared.axis,
                    "recipe_resolved": prepared.recipe,
                    "train_resolved": to_dict(prepared.config),
                    "method_options_resolved": prepared.method_options,
                    "num_classes": prepared.num_classes,
                    "completion_resolved": to_dict(prepared.completion),
                    "prior": prepared.prior.fit if prepared.prior else None,
                },
                indent=1,
            )
        )
        log.emit("setup", **setup_report(prepared))
        trainer = Trainer(
            prepared.config,
            job.method,
            prepared.method_options,
            prepared.num_classes,
            run_dir,
            meta=meta,
            log=log,
            cancel=cancel,
        )
        if resume and trainer.checkpoint_path.exists():
            trainer.resume(trainer.checkpoint_path)
        elif job.init_checkpoint:
            trainer.warm_start(job.init_checkpoint)
        on_step = None
        if prepared.prior is not None and prepared.completion.preview_every > 0:
            previews = Previews(
                run_dir,
                _output_names(prepared)[0],
                prepared.volume,
                prepared.prior,
                prepared.completion.preview_every,
                log,
                job.output_format,
                set(meta["labeled_slices"]),
            )
            previews.first(prepared.config.iterations)

            def on_step(iteration: int, _: dict[str, Any]) -> None:
                if previews.due() and iteration < prepared.config.iterations:
                    previews.network(
                        trainer.model,
                        prepared.config.size,
                        prepared.num_classes,
                        trainer.device,
                        iteration,
                        prepared.config.iterations,
                    )

        summary = trainer.fit(prepared.data, on_step=on_step)
        predictions = {}
        if job.predict:
            predictor = Predictor(trainer.checkpoint_path, prepared.config.device)
            predictor.model.register_forward_pre_hook(
                lambda *_: _obey(cancel, log, "predicting")
            )  # each batch of slices
            labeled = set(meta["labeled_slices"])
            volumes = [(prepared.volume, labeled, prepared.prior)] + [(u, set(), None) for u in prepared.unlabeled]
            for (vol, marks, prior), name in zip(volumes, _output_names(prepared)):
                _obey(cancel, log, "predicting")
                out = write_prediction(
                    predictor, vol.path, run_dir / "predictions" / name, prepared.axis, job.output_format, marks, prior
                )
                predictions[name] = str(out)
                log.emit("predicted", name=name, dir=str(out.relative_to(run_dir)))
        log.emit("done", iteration=summary["iteration"], seconds=summary["seconds"])
        write_status(run_dir, "done", exit_code=EXIT_OK)
        return {
            **summary,
            "run_dir": str(run_dir),
            "axis": prepared.axis,
            "predictions": predictions,
            "num_classes": prepared.num_classes,
        }
    except Cancelled as err:
        _finish(run_dir, log, "cancelled", str(err), EXIT_CANCELLED)
        raise
    except InputError as err:
        _finish(run_dir, log, "failed", str(err), EXIT_BAD_INPUT, str(err))
        raise
    except Exception as err:
        full = _no_space(err, run_dir)
        if full is not None:
            _finish(run_dir, log, "failed", str(full), EXIT_BAD_INPUT, str(full))
            raise full from None
        _finish(
            run_dir,
            log,
            "failed",
            f"{type(err).__name__}: {err}\n{traceback.format_exc(limit=5)}",
            EXIT_INTERNAL,
            f"{type(err).__name__}: {err}",
        )
        raise
    finally:
        log.close()


def _output_names(prepared: Prepared) -> list[str]:
    """The output folder name of the labelled volume, then of each unlabelled one (file names made unique)."""
    used: list[str] = []
    for vol in [prepared.volume, *prepared.unlabeled]:
        name, n = vol.name, 2
        while name in used:
            name, n = f"{vol.name}_{n}", n + 1
        used.append(name)
    return used


def _obey(cancel: CancelToken, log: ProgressLog, phase: str) -> None:
    if cancel.requested():
        log.emit("cancelled", phase=phase)
        raise Cancelled(f"cancelled while {phase}")
