"""Reading and checking ``job.json``: the two forms of a job (:mod:`semiseg.contract`), each field's rule,
and the checks that run before anything is written."""

from __future__ import annotations

import dataclasses
import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Sequence

from ..contract import (
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
    keep_largest_island_problem,
)
from ..errors import InputError
from ..io.images import OUTPUT_FORMATS, volume_name
from ..settings import from_dict
from ..training.config import TrainConfig
from ..training.recipes import RECIPES, apply_recipe

if TYPE_CHECKING:  # torch is imported when a job runs, not when it is read and checked
    pass


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
    "keep_largest_island": (lambda v: keep_largest_island_problem(v) is None,
                            "'auto', true, false or a list of class names"),
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
    keep_largest_island: bool | str | list[str]

    source = "job.json"
    """The ``job.json`` this job was read from (:func:`load_job` sets it), named by messages about a volume or a
    setting checked when the data is read."""

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
        islands = keep_largest_island_problem(self.keep_largest_island, self.classes)
        if islands:  # without declared classes, the names are checked when the labels are read (job.prepare)
            raise InputError(islands, where)
        if self.recipe not in RECIPES:
            raise InputError(f"recipe must be one of {', '.join(RECIPES)}, got {self.recipe!r}", where)
        _named(where, lambda: from_dict(TrainConfig, self.train, where="train").validate())
        check_files()
        if self.init_checkpoint and not Path(self.init_checkpoint).exists():
            raise InputError("file not found", self.init_checkpoint)
        from ..methods import METHODS  # torch

        _named(where, lambda: self.settings[1].validate())
        _named(where, lambda: from_dict(METHODS[self.method].Config, self.settings[2], where=f"{self.method} option"))
        from ..completion import CompletionConfig

        _named(where, lambda: from_dict(CompletionConfig, self.completion, where="completion").validate())

    @property
    def settings(self) -> tuple[str, TrainConfig, dict[str, Any]]:
        """The recipe this job resolves to, its training config and its method options: the recipe
        (:mod:`semiseg.training.recipes`) applied under the settings the job gives explicitly, for the checks
        and for the run alike (computed from the job's settings as they are now)."""
        recipe, train, options = apply_recipe(
            self.recipe, self.method, self.train, self.method_options, warm_start=bool(self.init_checkpoint)
        )
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


def _check_keys(
    raw: dict[str, Any], fields: type, required: Sequence[str], where: str | Path, prefix: str = "", hint: str = ""
) -> None:
    """``raw`` has only keys of the dataclass ``fields`` and every one of ``required`` (else :class:`InputError`
    naming ``where``, its message led by ``prefix``; ``hint`` follows the list of valid keys)."""
    names = sorted(f.name for f in dataclasses.fields(fields))
    unknown = sorted(set(raw) - set(names))
    if unknown:
        raise InputError(f"{prefix}unknown key(s) {unknown}; valid keys: {names}{hint}", where)
    for key in required:
        if key not in raw:
            raise InputError(f"{prefix}needs an {key!r} field", where)


def _volume_entry(entry: Any, n: int, where: str) -> VolumeFields:
    """One entry of ``volumes`` checked (an object with known keys of the right types) as a ``VolumeFields``."""
    if isinstance(entry, VolumeFields):
        fields = entry
    else:
        if not isinstance(entry, dict):
            raise InputError(f"volumes[{n}] must be an object such as {{\"image\": ..., \"labels\": ...}}, "
                             f"got {entry!r}", where)
        _check_keys(entry, VolumeFields, REQUIRED_VOLUME_FIELDS, where, f"volumes[{n}]: ")
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
        _check_keys(raw, Job, REQUIRED_JOB_FIELDS, path)
        job = Job(**raw)
        job.check_fields(str(path))  # before the paths are resolved

    def resolve(p: str) -> str:
        return str(p if os.path.isabs(p) else job_dir / p)

    job.source = str(path)
    if isinstance(job, VolumesJob):
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
    own = ", ".join(repr(k) for k in SINGLE_VOLUME_FIELDS if k != "unlabeled")
    hint = f"; with 'volumes', each volume names its own {own}, and one without 'labels' is unlabelled data"
    _check_keys(raw, VolumesJob, REQUIRED_VOLUMES_JOB_FIELDS, path,
                hint=hint if set(raw) & set(SINGLE_VOLUME_FIELDS) else "")
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
