"""A checked job made ready to run: every volume read and checked, its slices built, its shape prior made
(:func:`prepare`); writes nothing."""

from __future__ import annotations

import contextlib
import dataclasses
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import numpy as np

from ..contract import class_names
from ..errors import InputError
from ..io.images import volume_name
from ..settings import from_dict
from ..training.config import TrainConfig
from .reading import Job, VolumesJob

if TYPE_CHECKING:  # torch is imported when a job runs, not when it is read and checked
    from ..completion import CompletionConfig, ShapePrior
    from ..io.slices import Volume
    from ..training import TrainData


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
    islands: list[int] = dataclasses.field(default_factory=list)
    """The classes kept to their largest island (:mod:`semiseg.inference.islands`), as the job's
    ``keep_largest_island`` and its labelled volumes decide; the run's checkpoint keeps them for ``semiseg predict``."""

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
    from ..training.checkpoint import load_checkpoint

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
    from ..io.slices import choose_axis, labeled_slice_indices, load_volume

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
    from ..io.slices import choose_axis, labeled_slice_indices, load_volume

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

    from ..completion import CompletionConfig, ShapePrior
    from ..io.slices import SliceSet, build_slice_sets
    from ..training import TrainData

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
    names = class_names(job.classes, num_classes)
    completion = from_dict(CompletionConfig, job.completion, where="completion")
    completion.validate()
    if completion.enabled:  # the user's slices interpolated, to fuse with the network (semiseg.completion)
        extras = []
        for v in labeled:
            assert v.volume is not None and v.volume.labels is not None
            v.prior = ShapePrior.build(v.volume.labels, v.axis, v.labeled, num_classes, completion, v.volume.image,
                                       staged=True)  # follows the image after the first preview (job.run)
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
        _islands(job, labeled, names, num_classes),
    )


def _islands(job: Job | VolumesJob, labeled: list[PreparedVolume], names: list[str], num_classes: int) -> list[int]:
    """The classes the job's ``keep_largest_island`` names; for ``"auto"``, those that are one structure in the
    labelled volumes, filled between their labelled slices (each one's prior's interpolation; shape-based without
    one)."""
    from ..completion.interpolation import filled_labels
    from ..inference.islands import one_piece_classes, resolve_islands

    auto: list[int] = []
    if job.keep_largest_island == "auto":
        filled = []
        for v in labeled:
            assert v.volume is not None and v.volume.labels is not None
            filled.append(v.prior.interpolation.labels if v.prior is not None
                          else filled_labels(v.volume.labels, v.axis, v.labeled, num_classes))
        auto = one_piece_classes(filled, num_classes)
    return resolve_islands(job.keep_largest_island, names, auto, job.source)


def setup_report(prepared: Prepared) -> dict[str, Any]:
    """Device, recipe and budget of a prepared job, with a ``warning`` when ``auto`` found no GPU.

    Front ends show the warning to the user (a CPU run takes minutes where a GPU takes seconds).
    """
    from ..models.device import resolve_device

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
