"""What the engine and its front ends (CLI, job folder, Slicer module, web page) agree on, written once.

This module imports nothing but the standard library and numpy, so that the Slicer module
(``SemiSegSlicerLib``) and the web server can import it without torch or MONAI
(``from semiseg.contract import DEFAULT_METHOD``). It holds:

- the method catalogue: :data:`METHOD_LABELS` (the registered method names, ``semiseg.methods.METHODS``,
  and how a front end shows them, in the order a menu lists them) and :data:`DEFAULT_METHOD`;
- the job folder (docs/JOB_FORMAT.md): :data:`JOB_FORMAT_VERSION` (written) and :data:`JOB_FORMAT_VERSIONS`
  (read); the keys of ``job.json`` and their defaults, in its two forms: :class:`VolumesJobFields` (format 2:
  a list of :class:`VolumeFields`) and :class:`JobFields` (one image, format 1's keys). The engine's
  :class:`semiseg.job.VolumesJob` and :class:`semiseg.job.Job` add the checks; a front end writes
  ``dataclasses.asdict(VolumesJobFields(volumes=[VolumeFields(...), ...], ...))`` or
  ``dataclasses.asdict(JobFields(...))``;
- the exit codes of ``semiseg`` (also the ``exit_code`` of ``status.json``) and what they mean;
- the progress event names (:data:`EVENTS`), the ``event`` of each JSON line of progress;
- the labelled-slice and axis rule (:func:`painted_slices`, :func:`labeled_slices`, :func:`choose_axis`);
- the training-setting limits a front end offers and the engine accepts (:func:`train_setting_problem`);
- what ``keep_largest_island`` may say (:func:`keep_largest_island_problem`), and the three words the CLI and the
  front ends offer for it (:data:`ISLAND_CHOICES`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = ["DEFAULT_METHOD", "METHOD_LABELS", "JOB_FORMAT_VERSION", "JOB_FORMAT_VERSIONS", "VOLUMES_FORMAT_VERSION",
           "JobFields", "REQUIRED_JOB_FIELDS", "VolumeFields", "REQUIRED_VOLUME_FIELDS", "VolumesJobFields",
           "REQUIRED_VOLUMES_JOB_FIELDS", "SharedJobFields", "SHARED_JOB_FIELDS", "SINGLE_VOLUME_FIELDS",
           "EXIT_OK", "EXIT_INTERNAL", "EXIT_BAD_INPUT", "EXIT_CANCELLED", "EXIT_MEANINGS", "EVENTS",
           "painted_slices", "labeled_slices", "choose_axis",
           "MIN_ITERATIONS", "SIZE_STEP", "MIN_SIZE", "train_setting_problem", "keep_largest_island_problem",
           "ISLAND_CHOICES", "class_names"]

# -- methods ------------------------------------------------------------------------------------------

METHOD_LABELS: dict[str, str] = {
    "unimatch": "UniMatch",
    "fixmatch": "FixMatch",
    "crossmatch": "CrossMatch",
    "semsim": "SemSim",
    "refguided": "Reference-guided",
    "supervised": "Supervised only",
}

DEFAULT_METHOD = "unimatch"

# -- the job folder -----------------------------------------------------------------------------------

JOB_FORMAT_VERSION = 2
"""The ``format_version`` this engine writes (the default of :class:`VolumesJobFields` and :class:`JobFields`),
and the newest it reads; a ``job.json`` of a newer format is refused."""

JOB_FORMAT_VERSIONS = (1, 2)
"""The ``format_version`` values this engine reads: 1 (one ``image``) and 2 (``volumes``, or one ``image``)."""

VOLUMES_FORMAT_VERSION = 2
"""The first format with ``volumes``: format 1 names one ``image`` only."""


def _required(fields_of: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(fields_of) if f.default is dataclasses.MISSING
                 and f.default_factory is dataclasses.MISSING)


@dataclasses.dataclass(kw_only=True)
class SharedJobFields:
    """The keys both forms of ``job.json`` have, with the same meaning and defaults (docs/JOB_FORMAT.md):
    the classes, the method and its recipe and settings, where the run goes and what it writes."""

    classes: list[str] | None = None
    method: str = DEFAULT_METHOD
    recipe: str = "auto"
    train: dict[str, Any] = dataclasses.field(default_factory=dict)
    method_options: dict[str, Any] = dataclasses.field(default_factory=dict)
    init_checkpoint: str | None = None
    run_dir: str = "run"
    predict: bool = True
    output_format: str = "nii.gz"
    completion: dict[str, Any] = dataclasses.field(default_factory=dict)
    keep_largest_island: bool | str | list[str] = "auto"


@dataclasses.dataclass
class JobFields(SharedJobFields):
    """The keys of a single-volume ``job.json`` and their defaults (docs/JOB_FORMAT.md); ``image`` and ``labels``
    are required.

    Format 1's keys, and the single-volume form of format 2 (the same keys under ``"format_version": 2``):
    one labelled ``image`` and the ``unlabeled`` volumes sliced along its axis. Paths are relative to the job
    folder unless absolute. The engine refuses any other key.
    """

    image: str
    labels: str
    format_version: int = JOB_FORMAT_VERSION
    unlabeled: list[str] = dataclasses.field(default_factory=list)
    labeled_slices: list[int] = dataclasses.field(default_factory=list)
    axis: str | int = "auto"


REQUIRED_JOB_FIELDS = _required(JobFields)


@dataclasses.dataclass
class VolumeFields:
    """One entry of ``volumes`` in a format-2 ``job.json``; ``image`` is required.

    Attributes:
        image: the scan (NIfTI, NRRD, MHA, or a DICOM series folder), relative to the job folder unless absolute.
            Its file name without extension names the volume (``RUN_DIR/predictions/<name>/``), so two volumes
            must not share one.
        labels: its label map (on the image's grid), or ``None``: an unlabelled volume (unlabelled data only).
        labeled_slices: slices (along ``axis``) checked and found empty; only with ``labels``.
        axis: ``"auto"`` or 0, 1, 2 (IJK). ``auto``: the axis of the volume's labelled slices
            (:func:`choose_axis`); for an unlabelled volume, the axis most labelled volumes take.
    """

    image: str
    labels: str | None = None
    labeled_slices: list[int] = dataclasses.field(default_factory=list)
    axis: str | int = "auto"


REQUIRED_VOLUME_FIELDS = _required(VolumeFields)


@dataclasses.dataclass
class VolumesJobFields(SharedJobFields):
    """The keys of a format-2 ``job.json`` that lists its volumes (docs/JOB_FORMAT.md); ``volumes`` is required.

    One training over every volume (the labelled slices of all labelled volumes pooled, every other slice
    unlabelled data), then, with ``predict``, a prediction of every volume and of each of ``predict_images``
    (volumes predicted only, not trained on). The other keys are :class:`SharedJobFields`. The engine refuses
    any other key.
    """

    volumes: list[VolumeFields]
    format_version: int = JOB_FORMAT_VERSION
    predict_images: list[str] = dataclasses.field(default_factory=list)


REQUIRED_VOLUMES_JOB_FIELDS = _required(VolumesJobFields)

SHARED_JOB_FIELDS = tuple(f.name for f in dataclasses.fields(SharedJobFields))
"""The keys both forms of ``job.json`` have, with the same meaning (besides ``format_version``)."""

SINGLE_VOLUME_FIELDS = tuple(f.name for f in dataclasses.fields(JobFields)
                             if f.name not in SHARED_JOB_FIELDS and f.name != "format_version")
"""The keys of the single-volume form that ``volumes`` replaces: ``image``, ``labels``, ``unlabeled``,
``labeled_slices``, ``axis``."""

# -- exit codes ---------------------------------------------------------------------------------------

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_CANCELLED = 3
EXIT_MEANINGS = {EXIT_OK: "done", EXIT_INTERNAL: "internal error", EXIT_BAD_INPUT: "bad input",
                 EXIT_CANCELLED: "cancelled"}

# -- progress events ----------------------------------------------------------------------------------

EVENTS = (
    "setup",            # the job was read and checked: device, threads, labelled slices, warnings
    "volume",           # format 2: one line per volume after ``setup``: its name, axis, labelled slices, role
    "start",            # training starts (or resumes) at ``iteration`` of ``iterations``
    "iteration",        # loss, its terms and statistics, learning rate, seconds left
    "validation",       # Dice on the validation slices
    "checkpoint",       # a checkpoint was saved
    "preview",          # preliminary results of a labelled volume in RUN_DIR/preview/<name>
    "preview_skipped",  # a preview could not be written (a file held open); training goes on
    "trained",          # training ended
    "predicting",       # format 2: the prediction of one volume (``number`` of ``of``) starts
    "predicted",        # the results of one volume are in RUN_DIR/predictions/<name> (predict --images: OUT/<name>)
    "skipped",          # predict --images: a volume's results in OUT/<name> were finished by an earlier run
    "cancelled",        # the run stopped on request; the last good checkpoint is kept
    "done",             # the run finished
    "error",            # the run failed: ``message``
)
"""The ``event`` of every JSON line of progress (stdout and ``RUN_DIR/progress.jsonl``), in the order they come."""

# -- labelled slices and the slicing axis -------------------------------------------------------------
# Volumes are (K, J, I) arrays; axes are IJK axes (0 = I, 1 = J, 2 = K), so IJK axis a is array axis 2 - a.


def painted_slices(labels: np.ndarray, axis: int) -> list[int]:
    """Indices along IJK ``axis`` of the slices of ``labels`` (K, J, I) that hold a label voxel."""
    moved = np.moveaxis(np.asarray(labels), 2 - axis, 0)
    return [int(i) for i in np.flatnonzero(moved.reshape(moved.shape[0], -1).any(axis=1))]


def labeled_slices(labels: np.ndarray, axis: int, extra: Sequence[int] = ()) -> list[int]:
    """The labelled slices along IJK ``axis``, sorted: the painted ones plus ``extra`` (checked and found empty).

    An unpainted slice that is not listed is unlabelled, not background.

    Raises:
        ValueError: an ``extra`` index outside the volume along ``axis``.
    """
    n = np.asarray(labels).shape[2 - axis]
    bad = [int(i) for i in extra if not 0 <= int(i) < n]
    if bad:
        raise ValueError(f"slice index(es) {bad} outside 0..{n - 1} along axis {axis}")
    return sorted(set(painted_slices(labels, axis)) | {int(i) for i in extra})


def choose_axis(labels: np.ndarray, spacing_kji: Sequence[float] = (1.0, 1.0, 1.0)) -> int:
    """The IJK axis along which the labelled slices lie (``job.json``'s ``"axis": "auto"``).

    It is the axis with the fewest painted slices; ties go to the axis of the coarsest spacing, then
    to K, J, I in that order (K, the acquisition axis of a stack, first); without any label, K. Our
    choice: a user labels a few whole slices in one view, so along that view's axis only those few
    indices are labelled, while along the two other axes every row or column that crosses the
    painted structure is (tens of indices for any structure worth segmenting). With dense labels the
    shortest labelled extent wins, which for a stack of thick slices is its slice axis.
    """
    if not np.any(labels):
        return 2
    scores = [(len(painted_slices(labels, axis)), -float(spacing_kji[2 - axis]), -axis) for axis in (2, 1, 0)]
    return -min(scores)[-1]


# -- training settings --------------------------------------------------------------------------------

MIN_ITERATIONS = 1
SIZE_STEP = 16
"""The training size (pixels a side) is a multiple of this: the UNet pools 4 times."""
MIN_SIZE = 16
PRECISIONS = ("auto", "bf16", "fp32")
"""Values of the ``precision`` setting: ``"auto"`` takes bfloat16 where the hardware has it (see
:mod:`semiseg.models.precision`)."""


def train_setting_problem(iterations: int | None = None, size: int | None = None) -> str | None:
    """What is wrong with a number of iterations or a training size (``None`` when both are fine or absent)."""
    if iterations is not None and iterations < MIN_ITERATIONS:
        return f"iterations must be >= {MIN_ITERATIONS}, got {iterations}"
    if size is not None and (size < MIN_SIZE or size % SIZE_STEP):
        return f"size must be a multiple of {SIZE_STEP} and >= {MIN_SIZE} (the UNet pools 4 times), got {size}"
    return None


assert DEFAULT_METHOD in METHOD_LABELS, "the default method must be a registered one"


ISLAND_CHOICES: dict[str, bool | str] = {"auto": "auto", "all": True, "none": False}
"""The words of ``--keep-largest-island`` and of the front ends' *Keep largest island* choice, and the job's
``keep_largest_island`` each stands for (a list of class names is the job file's alone)."""


def class_names(given: Sequence[str] | None, num_classes: int) -> list[str]:
    """The classes' names, background first: ``given`` (a job's ``classes``), or ``"class <c>"`` when none are."""
    return list(given) if given else ["background"] + [f"class {c}" for c in range(1, num_classes)]


def keep_largest_island_problem(setting: Any, class_names: Sequence[str] | None = None) -> str | None:
    """What is wrong with a job's ``keep_largest_island``, or ``None``: it is ``"auto"``, ``true``, ``false`` or a
    list of class names (``semiseg.inference.islands``), and, given the job's ``class_names`` (background first),
    names only those."""
    if setting == "auto" or isinstance(setting, bool):
        return None
    if not (isinstance(setting, list) and all(isinstance(n, str) for n in setting)):
        return f"keep_largest_island must be 'auto', true, false or a list of class names, got {setting!r}"
    if class_names is None:
        return None
    unknown = [n for n in setting if n not in class_names[1:]]
    if unknown:
        return (f"keep_largest_island names classes {unknown} the job does not have "
                f"(its classes: {', '.join(class_names[1:])})")
    return None
