"""The job folder: the one contract between the front ends and the engine (see docs/JOB_FORMAT.md).

:func:`load_job` reads and checks ``JOB_DIR/job.json``; :func:`run_job` trains and predicts as it
describes. Every input is read and checked before anything is written, so bad input leaves no
partial run folder; a crash or cancel leaves the last good checkpoint and a ``status.json`` that
says what happened.

A job comes in two forms (:mod:`semiseg.contract`): :class:`VolumesJob` lists its volumes (format 2), a
:class:`Job` names one labelled image and its unlabelled volumes (format 1's keys, read under format 1 or
2). :func:`prepare` turns either into one list of :class:`PreparedVolume` (the single-volume form is the
list of its image and its unlabelled volumes), so that training, the completion, the previews and the
prediction are one code for both. What a format-1 job writes and emits is what it always did; a
format-2 job adds a ``volume`` event per volume and a ``predicting`` event before each prediction.
"""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import json
import os
import time
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import numpy as np

from .contract import (
    JOB_FORMAT_VERSION,
    METHOD_LABELS,
    REQUIRED_JOB_FIELDS,
    REQUIRED_VOLUME_FIELDS,
    REQUIRED_VOLUMES_JOB_FIELDS,
    SHARED_JOB_FIELDS,
    SINGLE_VOLUME_FIELDS,
    VOLUMES_FORMAT_VERSION,
    JobFields,
    VolumeFields,
    VolumesJobFields,
)
from .errors import EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_INTERNAL, EXIT_OK, Cancelled, CancelToken, InputError
from .io.images import OUTPUT_FORMATS, volume_name
from .settings import from_dict, to_dict
from .training.config import TrainConfig
from .training.recipes import RECIPES, apply_recipe

if TYPE_CHECKING:  # torch is imported when a job runs, not when it is read and checked
    from .completion import CompletionConfig, ShapePrior
    from .io.slices import Volume
    from .training import TrainData
    from .training.progress import ProgressLog

__all__ = ["JOB_FORMAT_VERSION", "Job", "VolumesJob", "RunLock", "load_job", "run_job", "prepare", "write_status",
           "Prepared", "PreparedVolume"]


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
"""The type (and simple range) of every key of a single-volume ``job.json``: what it must be, as the error message
says it."""

SHARED_RULES = {key: rule for key, rule in FIELD_RULES.items() if key == "format_version" or key in SHARED_JOB_FIELDS}
"""The rules of the keys both forms share."""

VOLUMES_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "volumes": (lambda v: isinstance(v, list) and len(v) > 0, "a non-empty list of volumes"),
    "predict_images": (lambda v: isinstance(v, list) and all(_path(p) for p in v), "a list of file paths"),
}
"""The rules of the keys of the volumes form that the single-volume form does not have."""

VOLUME_RULES: dict[str, tuple[Callable[[Any], bool], str]] = {
    "image": FIELD_RULES["image"],
    "labels": (lambda v: v is None or _path(v), "null or a file path (a non-empty string)"),
    "labeled_slices": FIELD_RULES["labeled_slices"],
    "axis": FIELD_RULES["axis"],
}
"""The rules of the keys of one entry of ``volumes``."""


def _check_rules(obj: Any, rules: dict[str, tuple[Callable[[Any], bool], str]], where: str, prefix: str = "") -> None:
    """Raise :class:`InputError` naming ``where`` (and ``prefix``) and the first key whose value breaks ``rules``."""
    for key, (ok, want) in rules.items():
        value = getattr(obj, key)
        if not ok(value):
            raise InputError(f"{prefix}{key!r} must be {want}, got {value!r}", where)


class _Checks:
    """The checks of what both forms of a job share (:data:`~semiseg.contract.SHARED_JOB_FIELDS`)."""

    format_version: int
    method: str
    recipe: str
    classes: list[str] | None
    train: dict[str, Any]
    method_options: dict[str, Any]
    init_checkpoint: str | None
    output_format: str
    completion: dict[str, Any]

    def _check_settings(self, where: str, check_files: Callable[[], None]) -> None:
        """The format version, method, classes, output format, recipe, the job's own training settings, the
        input files (``check_files``), then the settings as the run will use them (the method registry)."""
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
        check_files()
        if self.init_checkpoint and not Path(self.init_checkpoint).exists():
            raise InputError("file not found", self.init_checkpoint)
        from .methods import METHODS  # torch

        _named(where, lambda: self.settings[1].validate())
        _named(where, lambda: from_dict(METHODS[self.method].Config, self.settings[2], where=f"{self.method} option"))
        from .completion import CompletionConfig

        _named(where, lambda: from_dict(CompletionConfig, self.completion, where="completion").validate())

    @property
    def settings(self) -> tuple[str, TrainConfig, dict[str, Any]]:
        """The recipe this job resolves to, its training config and its method options: the recipe
        (:mod:`semiseg.training.recipes`) applied under the settings the job gives explicitly, for the checks
        and for the run alike (computed from the job's settings as they are now)."""
        recipe, train, options = apply_recipe(self.recipe, self.method, self.train, self.method_options)
        return recipe, from_dict(TrainConfig, train, where="train"), options


class Job(JobFields, _Checks):
    """A single-volume job (the contract's :class:`~semiseg.contract.JobFields`, format 1's keys; paths resolved
    against the job folder), and its checks."""

    def check_fields(self, where: str) -> None:
        """Raise :class:`InputError` naming ``where`` and the first key whose value breaks :data:`FIELD_RULES`."""
        _check_rules(self, FIELD_RULES, where)

    def check(self, where: str) -> None:
        """Raise :class:`InputError` for settings that cannot work, naming ``where``.

        The type of every field and the job's own training settings are checked first, then that
        the input files can be opened, all without torch; then the settings as the run will use them
        (the recipe's, overridden by the job's), which needs the method registry.
        """
        self.check_fields(where)

        def files() -> None:
            for path in [self.image, self.labels, *self.unlabeled]:
                if not Path(path).exists():
                    raise InputError("file not found", path)

        self._check_settings(where, files)


class VolumesJob(VolumesJobFields, _Checks):
    """A job that lists its volumes (the contract's :class:`~semiseg.contract.VolumesJobFields`, format 2; paths
    resolved against the job folder), and its checks.

    Every message about one volume names it: its file and its place in ``job.json``
    (``volumes[1]``, ``predict_images[0]``).
    """

    source = "job.json"
    """The ``job.json`` this job was read from (:func:`load_job` sets it), named by messages about a volume."""

    def check_fields(self, where: str) -> None:
        """Raise :class:`InputError` naming ``where`` and the first key, or the first key of a volume, whose value
        breaks its rule (:data:`SHARED_RULES`, :data:`VOLUMES_RULES`, :data:`VOLUME_RULES`). Entries of ``volumes``
        given as dicts become :class:`~semiseg.contract.VolumeFields`."""
        _check_rules(self, {**SHARED_RULES, **VOLUMES_RULES}, where)
        self.volumes = [_volume_entry(entry, n, where) for n, entry in enumerate(self.volumes)]

    def check(self, where: str) -> None:
        """Raise :class:`InputError` for settings or volumes that cannot work, naming ``where``, and the volume.

        As :meth:`Job.check`, and: at least one volume has labels, ``labeled_slices`` come with labels, no two
        volumes share a name (their output folder), every file exists.
        """
        self.check_fields(where)
        if not any(v.labels for v in self.volumes):
            raise InputError(
                f"no labelled volume: give at least one of the {len(self.volumes)} volume(s) of 'volumes' its "
                "'labels' (a label map with a few painted slices)",
                where,
            )
        for n, v in enumerate(self.volumes):
            if v.labeled_slices and not v.labels:
                raise InputError(
                    f"volumes[{n}] ({self.shown(v.image)}): 'labeled_slices' needs 'labels' (a label map, which may "
                    "be empty)",
                    where,
                )
        seen: dict[str, str] = {}
        for place, path in self.places(self.shown):
            name = volume_name(path)
            if name in seen:
                raise InputError(
                    f"{seen[name]} and {place} have the same name {name!r}, the name of their output folder "
                    f"(predictions/{name}/): rename one of the files",
                    where,
                )
            seen[name] = place

        def files() -> None:
            for n, v in enumerate(self.volumes):
                for path in [v.image] + ([v.labels] if v.labels else []):
                    if not Path(path).exists():
                        raise InputError(f"file not found (volumes[{n}] in {self.source})", path)
            for n, path in enumerate(self.predict_images):
                if not Path(path).exists():
                    raise InputError(f"file not found (predict_images[{n}] in {self.source})", path)

        self._check_settings(where, files)

    def shown(self, path: str) -> str:
        """``path`` as a message shows it: relative to the job folder when inside it."""
        folder = Path(self.source).parent
        return os.path.relpath(path, folder) if Path(path).is_relative_to(folder) else path

    def places(self, shown: Callable[[str], str] | None = None) -> list[tuple[str, str]]:
        """``(place, image path)`` of every volume: ``"volumes[1] (b.nrrd)"``, then ``"predict_images[0] (x.nrrd)"``,
        the file as ``shown`` gives it (default: as the job holds it)."""
        shown = shown or (lambda p: p)
        return [(f"volumes[{n}] ({shown(v.image)})", v.image) for n, v in enumerate(self.volumes)] + [
            (f"predict_images[{n}] ({shown(p)})", p) for n, p in enumerate(self.predict_images)
        ]


def _volume_entry(entry: Any, n: int, where: str) -> VolumeFields:
    """One entry of ``volumes`` checked (an object with known keys of the right types) as a ``VolumeFields``."""
    if isinstance(entry, VolumeFields):
        fields = entry
    else:
        if not isinstance(entry, dict):
            raise InputError(f"volumes[{n}] must be an object such as {{\"image\": ..., \"labels\": ...}}, "
                             f"got {entry!r}", where)
        names = [f.name for f in dataclasses.fields(VolumeFields)]
        unknown = sorted(set(entry) - set(names))
        if unknown:
            raise InputError(f"volumes[{n}]: unknown key(s) {unknown}; valid keys: {names}", where)
        for key in REQUIRED_VOLUME_FIELDS:
            if key not in entry:
                raise InputError(f"volumes[{n}]: needs an {key!r} field", where)
        fields = VolumeFields(**entry)
    shown = fields.image if isinstance(fields.image, str) else repr(fields.image)
    _check_rules(fields, VOLUME_RULES, where, f"volumes[{n}] ({shown}): ")
    return fields


def _named(where: str, check: Callable[[], Any]) -> None:
    """Run ``check``; an :class:`InputError` that names no file is made to name ``where``."""
    try:
        check()
    except InputError as err:
        if err.path:
            raise
        raise InputError(str(err), where) from None


def load_job(job_dir: str | os.PathLike, allow_outside_run_dir: bool = False) -> Job | VolumesJob:
    """Read and check ``JOB_DIR/job.json``; relative paths are taken relative to ``JOB_DIR``.

    A ``job.json`` with ``volumes`` (format 2) gives a :class:`VolumesJob`, one with ``image`` a :class:`Job`.

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
    job: Job | VolumesJob
    if "volumes" in raw:
        job = _read_volumes_job(raw, path)
    else:
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

    if isinstance(job, VolumesJob):
        job.source = str(path)
        job.volumes = [
            dataclasses.replace(v, image=resolve(v.image), labels=resolve(v.labels) if v.labels else None)
            for v in job.volumes
        ]
        job.predict_images = [resolve(p) for p in job.predict_images]
    else:
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


def _read_volumes_job(raw: dict[str, Any], path: Path) -> VolumesJob:
    """The :class:`VolumesJob` of a ``job.json`` with ``volumes``, its keys and types checked (paths as written)."""
    names = [f.name for f in dataclasses.fields(VolumesJob)]
    unknown = sorted(set(raw) - set(names))
    if unknown:
        single = sorted(set(unknown) & set(SINGLE_VOLUME_FIELDS))
        own = ", ".join(repr(k) for k in SINGLE_VOLUME_FIELDS if k != "unlabeled")
        hint = f"; with 'volumes', each volume names its own {own}, and one without 'labels' is unlabelled data"
        hint = hint if single else ""
        raise InputError(f"unknown key(s) {unknown}; valid keys: {sorted(names)}{hint}", path)
    for key in REQUIRED_VOLUMES_JOB_FIELDS:
        if key not in raw:
            raise InputError(f"needs an {key!r} field", path)
    job = VolumesJob(**raw)
    if isinstance(job.format_version, int) and not isinstance(job.format_version, bool):
        if job.format_version < VOLUMES_FORMAT_VERSION:
            raise InputError(
                f"'volumes' needs format_version {VOLUMES_FORMAT_VERSION} or later, got {job.format_version} (format 1 "
                "names one 'image' with its 'labels' and 'unlabeled' volumes)",
                path,
            )
    job.check_fields(str(path))  # before the paths are resolved
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
class PreparedVolume:
    """One volume of a prepared job: what it is trained as and how it is predicted.

    Attributes:
        name: its output name (``RUN_DIR/predictions/<name>/``, ``RUN_DIR/preview/<name>/``).
        path: its image file.
        axis: its IJK slicing axis.
        volume: the volume read (``None`` for a volume only predicted: it is read when predicted).
        labeled: its labelled slice indices along ``axis`` (painted and checked-empty; ``[]``: unlabelled).
        prior: its shape prior (the completion; labelled volumes with the completion on), else ``None``.
        train: part of the training data (labelled slices, or unlabelled data).
        place: where a format-2 ``job.json`` lists it (``"volumes[1]"``, ``"predict_images[0]"``), else ``""``.
        slices: its slice count along ``axis``, when ``volume`` is not kept.
    """

    name: str
    path: str
    axis: int
    volume: Volume | None
    labeled: list[int] = dataclasses.field(default_factory=list)
    prior: ShapePrior | None = None
    train: bool = True
    place: str = ""
    slices: int | None = None


@dataclasses.dataclass
class Prepared:
    """A job's data read, checked and sliced, ready to train.

    Attributes:
        volumes: every volume of the job (:class:`PreparedVolume`), in the order of ``job.json``: a single-volume
            job's image, then its unlabelled volumes; a format-2 job's ``volumes``, then its ``predict_images``.
        axis: the job's axis: that of its labelled volume, or the one most labelled volumes take (format 2);
            the checkpoint's default for ``semiseg predict``.
    """

    volumes: list[PreparedVolume]
    axis: int
    num_classes: int
    class_names: list[str]
    data: TrainData
    config: TrainConfig
    recipe: str
    method_options: dict[str, Any]
    completion: "CompletionConfig"

    @property
    def labeled(self) -> list[PreparedVolume]:
        """The labelled volumes."""
        return [v for v in self.volumes if v.labeled]

    @property
    def volume(self) -> Volume:
        """The (first) labelled volume."""
        volume = self.labeled[0].volume
        assert volume is not None
        return volume

    @property
    def prior(self) -> "ShapePrior | None":
        """The shape prior of the (first) labelled volume."""
        return self.labeled[0].prior


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


def prepare(job: Job | VolumesJob) -> Prepared:
    """Read and check every input of ``job`` and build its slice sets (writes nothing).

    The job's recipe (:mod:`semiseg.training.recipes`) fills in the training settings and method options
    the job leaves out.
    """
    if isinstance(job, VolumesJob):
        return _prepare_volumes(job)
    from .io.slices import choose_axis, labeled_slice_indices, load_volume

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
    labeled = labeled_slice_indices(volume.labels, axis, job.labeled_slices)  # range check of the listed slices
    unlabeled = [load_volume(p) for p in job.unlabeled]
    for u in unlabeled:
        _check_sliceable(u, axis)
    if job.init_checkpoint:
        check_checkpoint(job.init_checkpoint, num_classes)
    volumes = [PreparedVolume("", job.image, axis, volume, labeled)]
    volumes += [PreparedVolume("", u.path, axis, u) for u in unlabeled]
    used: list[str] = []  # output names: file names, made unique
    for v in volumes:
        assert v.volume is not None
        name, n = v.volume.name, 2
        while name in used:
            name, n = f"{v.volume.name}_{n}", n + 1
        used.append(name)
        v.name = name
    return _prepared(job, volumes, axis, num_classes, recipe, config, options)


def _check_sliceable(volume: Volume, axis: int) -> None:
    if min(volume.image.shape[2 - a] for a in range(3) if a != axis) < 8:
        raise InputError(f"too small to slice along axis {axis} (size {volume.reference.GetSize()})", volume.path)


@contextlib.contextmanager
def _about(place: str, source: str, path: str | None = None) -> Iterator[None]:
    """Add to an :class:`InputError` raised inside which volume it is about: ``(volumes[1] in job.json)``; one that
    names no file is made to name ``path``."""
    try:
        yield
    except InputError as err:
        bare = str(err)[len(err.path) + 2 :] if err.path else str(err)
        raise InputError(f"{bare} ({place} in {source})", err.path or path) from None


def _prepare_volumes(job: VolumesJob) -> Prepared:
    """:func:`prepare` of a format-2 job: every volume read and checked, each message naming its volume."""
    from .io.slices import choose_axis, labeled_slice_indices, load_volume

    recipe, config, options = job.settings
    config.validate()
    declared = len(job.classes) if job.classes else None
    source = job.source
    volumes: list[PreparedVolume] = []
    for n, spec in enumerate(job.volumes):
        place = f"volumes[{n}]"
        with _about(place, source, spec.labels or spec.image):
            volume = load_volume(spec.image, spec.labels, declared)
            if volume.labels is not None and not volume.labels.any() and not spec.labeled_slices:
                raise InputError("no labelled slice: the label map is empty and no slice is listed as checked",
                                 spec.labels)
        volumes.append(PreparedVolume(volume.name, spec.image, -1, volume, place=place))
    labeled = [(v, spec) for v, spec in zip(volumes, job.volumes) if spec.labels]
    if declared is None:
        num_classes = max(int(v.volume.labels.max()) for v, _ in labeled if v.volume and v.volume.labels is not None)
        num_classes += 1
        if num_classes < 2:
            raise InputError(
                "fewer than 2 classes: the label maps hold only background; paint at least one class, or declare "
                "'classes'",
                source,
            )
    else:
        num_classes = declared
    for v, spec in labeled:
        assert v.volume is not None and v.volume.labels is not None
        with _about(v.place, source, spec.labels):
            if spec.axis == "auto":
                v.axis = choose_axis(v.volume.labels, v.volume.spacing_kji)
            else:
                v.axis = int(spec.axis)
                check_axis(v.volume.labels, v.axis, spec.labels or "")
            v.volume.extra_labeled = {v.axis: list(spec.labeled_slices)}
            v.labeled = labeled_slice_indices(v.volume.labels, v.axis, spec.labeled_slices)
    axis = max((2, 1, 0), key=[v.axis for v, _ in labeled].count)  # most labelled volumes' (ties: K, J, I)
    for v, spec in zip(volumes, job.volumes):
        if not spec.labels:
            assert v.volume is not None
            v.axis = axis if spec.axis == "auto" else int(spec.axis)
            with _about(v.place, source):
                _check_sliceable(v.volume, v.axis)
    for n, path in enumerate(job.predict_images):  # read now, so that a bad one is refused before training
        place = f"predict_images[{n}]"
        with _about(place, source):
            only = load_volume(path)
            _check_sliceable(only, axis)
        slices = only.num_slices(axis)
        del only
        volumes.append(PreparedVolume(volume_name(path), path, axis, None, train=False, place=place, slices=slices))
    if job.init_checkpoint:
        check_checkpoint(job.init_checkpoint, num_classes)
    return _prepared(job, volumes, axis, num_classes, recipe, config, options)


def _prepared(
    job: Job | VolumesJob,
    volumes: list[PreparedVolume],
    axis: int,
    num_classes: int,
    recipe: str,
    config: TrainConfig,
    options: dict[str, Any],
) -> Prepared:
    """The slice sets of ``volumes`` (the labelled slices of all labelled volumes pooled; every other slice of every
    training volume unlabelled data) and each labelled volume's shape prior."""
    import torch

    from .completion import CompletionConfig, ShapePrior
    from .io.slices import SliceSet, build_slice_sets
    from .training import TrainData

    labeled = [v for v in volumes if v.labeled]
    unlabeled = [v for v in volumes if v.train and not v.labeled]
    labeled_set, val, unl = build_slice_sets(
        [v.volume for v in labeled],  # type: ignore[misc]
        [v.volume for v in unlabeled],  # type: ignore[misc]
        [v.axis for v in labeled + unlabeled],
        config.size,
        config.min_val_slices,
        config.val_stride,
    )
    names = list(job.classes) if job.classes else ["background"] + [f"class {c}" for c in range(1, num_classes)]
    completion = from_dict(CompletionConfig, job.completion, where="completion")
    completion.validate()
    if completion.enabled:  # the user's slices interpolated, to fuse with the network (semiseg.completion)
        extras = []
        for v in labeled:
            assert v.volume is not None and v.volume.labels is not None
            v.prior = ShapePrior.build(v.volume.labels, v.axis, v.labeled, num_classes, completion)
            if completion.pseudo_labels > 0:
                extras.append(v.prior.pseudo_labeled(v.volume.image, v.name, config.size, completion.pseudo_labels))
        if extras:
            labeled_set = SliceSet.concat(
                [dataclasses.replace(labeled_set, weights=torch.ones(len(labeled_set))), *extras], config.size, True
            )
    return Prepared(
        volumes,
        axis,
        num_classes,
        names,
        TrainData(labeled_set, val, unl, num_classes),
        config,
        recipe,
        options,
        completion,
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
    job: Job | VolumesJob, prepared: Prepared, run_dir: Path, resume: bool, log: ProgressLog | None,
    cancel: CancelToken
) -> dict[str, Any]:
    from .completion.preview import Previews
    from .inference import Predictor, write_prediction
    from .training import Trainer
    from .training.progress import ProgressLog

    (run_dir / "cancel").unlink(missing_ok=True)
    log = log or ProgressLog(run_dir / "progress.jsonl")
    several = isinstance(job, VolumesJob)  # format 2's volumes: its events and records say which volume
    try:
        write_status(run_dir, "running")
        meta: dict[str, Any] = {"axis": prepared.axis, "class_names": prepared.class_names}
        resolved: dict[str, Any] = {}
        if several:
            meta["volumes"] = [
                {"name": v.name, "image": v.path, "axis": v.axis, "labeled_slices": v.labeled}
                for v in prepared.volumes if v.train
            ]
            resolved["volumes_resolved"] = [
                {**_volume_record(v), "prior": v.prior.fit if v.prior else None} for v in prepared.volumes
            ]
        else:
            meta.update(image=job.image, labeled_slices=prepared.labeled[0].labeled)
            resolved["prior"] = prepared.prior.fit if prepared.prior else None
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
                    **resolved,
                },
                indent=1,
            )
        )
        log.emit("setup", **setup_report(prepared))
        if several:
            for v in prepared.volumes:
                log.emit("volume", **_volume_record(v))
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
        every = prepared.completion.preview_every
        previews = [
            Previews(run_dir, v.name, v.volume, v.prior, every, log, job.output_format, set(v.labeled))
            for v in prepared.volumes
            if v.prior is not None and v.volume is not None and every > 0
        ]
        if previews:
            for p in previews:  # each labelled volume's prior alone, before training
                p.first(prepared.config.iterations)
            turn = [0]

            def on_step(iteration: int, _: dict[str, Any]) -> None:
                # One volume's preview every `every` seconds, the labelled volumes in turn: a run with many
                # labelled volumes spends on previews what a run with one does.
                if time.monotonic() - max(p.last for p in previews) >= every and iteration < prepared.config.iterations:
                    p = previews[turn[0] % len(previews)]
                    turn[0] += 1
                    p.network(
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
            for number, v in enumerate(prepared.volumes, 1):
                _obey(cancel, log, "predicting")
                count = {"number": number, "of": len(prepared.volumes)} if several else {}
                if several:
                    log.emit("predicting", name=v.name, **count)
                out = write_prediction(
                    predictor, v.path, run_dir / "predictions" / v.name, v.axis, job.output_format, set(v.labeled),
                    v.prior,
                )
                predictions[v.name] = str(out)
                log.emit("predicted", name=v.name, dir=str(out.relative_to(run_dir)), **count)
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


def _volume_record(v: PreparedVolume) -> dict[str, Any]:
    """What a ``volume`` event says of one volume of a format-2 job (and ``config.json``'s ``volumes_resolved``, with
    its prior's fit)."""
    slices = v.volume.num_slices(v.axis) if v.volume is not None else v.slices
    return {
        "name": v.name,
        "place": v.place,
        "image": v.path,
        "axis": v.axis,
        "slices": slices,
        "labeled_slices": v.labeled,
        "train": v.train,
    }


def _obey(cancel: CancelToken, log: ProgressLog, phase: str) -> None:
    if cancel.requested():
        log.emit("cancelled", phase=phase)
        raise Cancelled(f"cancelled while {phase}")
