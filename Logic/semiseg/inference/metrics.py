"""Overlap and surface-distance metrics of a segmentation against a reference.

All functions take boolean (or 0/1) masks of any dimension; :func:`evaluate_volume` takes two
integer label maps and scores every foreground class. The surface distances follow
``medpy.metric.binary``, so numbers can be compared with the papers' tables:

* the surface of a mask is ``mask XOR binary_erosion(mask)`` with the face-connected structuring
  element (``generate_binary_structure(ndim, 1)``) and ``border_value=0``, so a foreground voxel
  on the edge of the array is a surface voxel;
* the distance of a surface voxel of ``a`` to ``b`` is the Euclidean distance (in the units of
  ``spacing``) to the nearest surface voxel of ``b``, from
  ``scipy.ndimage.distance_transform_edt(~surface_b, sampling=spacing)``;
* :func:`hd95` is the 95th percentile of the distances of both directions pooled together,
  :func:`asd` the mean of one direction (``pred`` surface to ``ref`` surface) and :func:`assd`
  the mean of both one-directional means.

Empty masks (medpy raises; here every case has a value):

=====================  ======  =======  ======  ======  ======
case                   dice    jaccard  hd95    asd     assd
=====================  ======  =======  ======  ======  ======
both empty             1.0     1.0      0.0     0.0     0.0
exactly one empty      0.0     0.0      NaN     NaN     NaN
=====================  ======  =======  ======  ======  ======

NaN means *undefined*; :func:`to_jsonable` turns it into ``None`` so JSON reports hold ``null``.
Averages over classes use ``nanmean``, so an undefined distance does not poison the mean.

Spacing is always given in the axis order of the array (numpy order), e.g. ``(sz, sy, sx)`` for a
``(K, J, I)`` volume.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import ndimage

from ..errors import InputError

__all__ = [
    "dice",
    "jaccard",
    "surface_distances",
    "hd95",
    "asd",
    "assd",
    "evaluate_volume",
    "to_jsonable",
    "METRIC_KEYS",
]

#: Keys of the per-class metric dictionaries of :func:`evaluate_volume`.
METRIC_KEYS: tuple[str, ...] = ("dice", "jaccard", "hd95_vox", "asd_vox", "hd95_mm", "asd_mm")


def _as_masks(pred: np.ndarray, ref: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Both inputs as boolean arrays of at least one dimension and of the same shape."""
    p = np.atleast_1d(np.asarray(pred)).astype(bool, copy=False)
    r = np.atleast_1d(np.asarray(ref)).astype(bool, copy=False)
    if p.shape != r.shape:
        raise InputError(f"prediction shape {p.shape} differs from reference shape {r.shape}")
    return p, r


def _spacing(spacing: Sequence[float] | float | None, ndim: int) -> tuple[float, ...]:
    """A validated spacing tuple of length ``ndim`` (unit spacing for ``None``)."""
    if spacing is None:
        return (1.0,) * ndim
    values = tuple(float(s) for s in np.atleast_1d(np.asarray(spacing, dtype=float)))
    if len(values) == 1 and ndim != 1:
        values = values * ndim
    if len(values) != ndim:
        raise InputError(f"spacing {values} has {len(values)} values for an array of {ndim} dimensions")
    if not all(math.isfinite(s) and s > 0 for s in values):
        raise InputError(f"spacing {values} must be finite and positive")
    return values


def dice(pred: np.ndarray, ref: np.ndarray) -> float:
    """Dice similarity coefficient ``2 |P & R| / (|P| + |R|)``.

    Args:
        pred: predicted mask (non-zero = foreground), any dimension.
        ref: reference mask of the same shape.

    Returns:
        a value in [0, 1]; 1.0 when both masks are empty.

    Raises:
        ValueError: the shapes differ.
    """
    p, r = _as_masks(pred, ref)
    total = int(np.count_nonzero(p)) + int(np.count_nonzero(r))
    if total == 0:
        return 1.0
    return 2.0 * int(np.count_nonzero(p & r)) / total


def jaccard(pred: np.ndarray, ref: np.ndarray) -> float:
    """Jaccard index (intersection over union) ``|P & R| / |P | R|``; arguments, range, empty masks and
    errors as in :func:`dice`."""
    p, r = _as_masks(pred, ref)
    union = int(np.count_nonzero(p | r))
    if union == 0:
        return 1.0
    return int(np.count_nonzero(p & r)) / union


def _crop_box(p: np.ndarray, r: np.ndarray) -> tuple[slice, ...]:
    """Bounding box of ``p | r`` grown by one voxel and clipped to the array.

    Cropping to it changes no surface distance: a voxel one step outside the masks stays zero for
    the erosion (as the ``border_value=0`` outside the array does), voxels on the array edge stay
    on the crop edge, and the exact EDT measures distances to the nearest surface voxel wherever it is.
    """
    box = []
    union = p | r
    for axis in range(union.ndim):
        other = tuple(a for a in range(union.ndim) if a != axis)
        hit = np.flatnonzero(union.any(axis=other)) if other else np.flatnonzero(union)
        box.append(slice(max(int(hit[0]) - 1, 0), min(int(hit[-1]) + 2, union.shape[axis])))
    return tuple(box)


def _surface(mask: np.ndarray) -> np.ndarray:
    """Surface voxels of ``mask``: the mask minus its face-connected erosion (array edge is outside)."""
    structure = ndimage.generate_binary_structure(mask.ndim, 1)
    return mask & ~ndimage.binary_erosion(mask, structure=structure, iterations=1, border_value=0)


def _directed(surface_a: np.ndarray, surface_b: np.ndarray, spacing: tuple[float, ...]) -> np.ndarray:
    """Distances from every voxel of ``surface_a`` to the nearest voxel of (non-empty) ``surface_b``."""
    dt = ndimage.distance_transform_edt(~surface_b, sampling=spacing)
    return np.asarray(dt[surface_a], dtype=float)


def surface_distances(a: np.ndarray, b: np.ndarray, spacing: Sequence[float] | None = None) -> np.ndarray:
    """Distances from each surface voxel of ``a`` to the nearest surface voxel of ``b`` (medpy-style).

    Args:
        a: mask whose surface voxels are measured, any dimension.
        b: mask of the same shape whose surface is the target.
        spacing: voxel size per array axis (numpy order); ``None`` for unit spacing. A single
            number is used for every axis.

    Returns:
        1D float array with one distance per surface voxel of ``a`` (in C order of the voxels);
        empty when ``a`` is empty.

    Raises:
        ValueError: the shapes or the spacing do not fit, or ``b`` is empty while ``a`` is not
            (no surface to measure to).
    """
    pa, pb = _as_masks(a, b)
    sampling = _spacing(spacing, pa.ndim)
    if not pa.any():
        return np.zeros(0, dtype=float)
    if not pb.any():
        raise InputError("surface distances to an empty mask are undefined")
    box = _crop_box(pa, pb)
    return _directed(_surface(pa[box]), _surface(pb[box]), sampling)


def _surface_distances(
    pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | None, both: bool = True
) -> tuple[np.ndarray, ...] | float:
    """``(d(pred->ref), d(ref->pred))`` (``(d(pred->ref),)`` without ``both``), or the conventional value
    (0.0 when both masks are empty, NaN when exactly one is)."""
    p, r = _as_masks(pred, ref)
    sampling = _spacing(spacing, p.ndim)
    has_p, has_r = bool(p.any()), bool(r.any())
    if not has_p and not has_r:
        return 0.0
    if has_p != has_r:
        return math.nan
    box = _crop_box(p, r)
    sp, sr = _surface(p[box]), _surface(r[box])
    forward = _directed(sp, sr, sampling)
    return (forward, _directed(sr, sp, sampling)) if both else (forward,)


def hd95(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """95th percentile Hausdorff distance, as ``medpy.metric.binary.hd95``.

    The distances of both directions (pred surface to ref surface and back) are pooled and their
    95th percentile (numpy's linear interpolation) is returned.

    Args:
        pred: predicted mask, any dimension.
        ref: reference mask of the same shape.
        spacing: voxel size per array axis (numpy order); ``None`` for unit spacing (voxels).

    Returns:
        the distance in the units of ``spacing``; 0.0 when both masks are empty, NaN when
        exactly one is.

    Raises:
        ValueError: the shapes or the spacing do not fit.
    """
    d = _surface_distances(pred, ref, spacing)
    if isinstance(d, float):
        return d
    return float(np.percentile(np.hstack(d), 95))


def asd(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """Average surface distance from ``pred`` to ``ref``, as ``medpy.metric.binary.asd``.

    One direction only: the mean over the surface voxels of ``pred`` of the distance to the
    nearest surface voxel of ``ref``; so ``asd(a, b) != asd(b, a)`` in general (see :func:`assd`).

    Arguments, empty masks and errors as in :func:`hd95`.
    """
    d = _surface_distances(pred, ref, spacing, both=False)
    if isinstance(d, float):
        return d
    return float(d[0].mean())


def assd(pred: np.ndarray, ref: np.ndarray, spacing: Sequence[float] | None = None) -> float:
    """Average symmetric surface distance: the mean of ``asd(pred, ref)`` and ``asd(ref, pred)``.

    As ``medpy.metric.binary.assd`` (the mean of the two one-directional means, not the mean of
    the pooled distances). Arguments, empty masks and errors as in :func:`hd95`.
    """
    d = _surface_distances(pred, ref, spacing)
    if isinstance(d, float):
        return d
    return float((d[0].mean() + d[1].mean()) / 2.0)


def _class_metrics(p: np.ndarray, r: np.ndarray, spacing: tuple[float, ...]) -> dict[str, Any]:
    """The :data:`METRIC_KEYS` of one class (masks already cropped or not; shapes equal)."""
    out: dict[str, Any] = {"dice": dice(p, r), "jaccard": jaccard(p, r)}
    has_p, has_r = bool(p.any()), bool(r.any())
    if has_p and has_r:
        box = _crop_box(p, r)
        sp, sr = _surface(p[box]), _surface(r[box])
        for suffix, sampling in (("vox", (1.0,) * p.ndim), ("mm", spacing)):
            d_pr, d_rp = _directed(sp, sr, sampling), _directed(sr, sp, sampling)
            out[f"hd95_{suffix}"] = float(np.percentile(np.hstack((d_pr, d_rp)), 95))
            out[f"asd_{suffix}"] = float(d_pr.mean())
    else:
        value = 0.0 if not has_p and not has_r else math.nan
        for key in ("hd95_vox", "asd_vox", "hd95_mm", "asd_mm"):
            out[key] = value
    out["present"] = has_p or has_r
    return out


def _nanmean(values: list[float]) -> float:
    """Mean of the finite values (NaN when there are none), without numpy's empty-slice warning."""
    kept = [v for v in values if not math.isnan(v)]
    return float(sum(kept) / len(kept)) if kept else math.nan


def evaluate_volume(
    pred: np.ndarray,
    ref: np.ndarray,
    num_classes: int | None = None,
    spacing: Sequence[float] | None = (1.0, 1.0, 1.0),
    class_names: Sequence[str] | None = None,
) -> dict[str, Any]:
    """Score every foreground class of a predicted label map against the reference.

    Args:
        pred: integer label map (0 = background).
        ref: integer label map of the same shape.
        num_classes: number of classes including the background; ``None`` infers it from the
            largest label in either map (and the length of ``class_names``, if given).
        spacing: voxel size per array axis in the array's own axis order (numpy order, e.g.
            ``(sz, sy, sx)``), used for the ``*_mm`` distances; ``None`` for unit spacing.
        class_names: one name per class, background first; defaults to ``"1"``, ``"2"``, ...
            for the foreground classes.

    Returns:
        ``{"classes": {name: metrics}, "mean": metrics, "spacing": [...]}`` where each per-class
        ``metrics`` holds ``dice``, ``jaccard``, ``hd95_vox``, ``asd_vox`` (unit spacing),
        ``hd95_mm``, ``asd_mm`` (with ``spacing``) and ``present`` (the class occurs in ``pred``
        or ``ref``). ``mean`` is the NaN-ignoring mean of each value over the present foreground
        classes (a class absent from both maps is left out); it is NaN when no class is present.
        ``asd`` is one-directional (prediction surface to reference surface), as medpy's.

    Raises:
        ValueError: the shapes differ, the spacing does not fit, labels are negative or not
            below ``num_classes``, or ``class_names`` is too short.
    """
    p = np.atleast_1d(np.asarray(pred))
    r = np.atleast_1d(np.asarray(ref))
    if p.shape != r.shape:
        raise InputError(f"prediction shape {p.shape} differs from reference shape {r.shape}")
    for name, arr in (("prediction", p), ("reference", r)):
        if not (np.issubdtype(arr.dtype, np.integer) or arr.dtype == bool):
            if not np.array_equal(arr, np.round(arr)):
                raise InputError(f"{name} label map holds non-integer values (dtype {arr.dtype})")
    p = p.astype(np.int64, copy=False)
    r = r.astype(np.int64, copy=False)
    sampling = _spacing(spacing, p.ndim)
    lo = min(int(p.min()), int(r.min())) if p.size else 0
    hi = max(int(p.max()), int(r.max())) if p.size else 0
    if lo < 0:
        raise InputError(f"label maps hold a negative label {lo}")
    if num_classes is None:
        num_classes = max(hi + 1, len(class_names) if class_names is not None else 0, 1)
    elif hi >= num_classes:
        raise InputError(f"label {hi} found but num_classes is {num_classes}")
    if class_names is None:
        names = [str(c) for c in range(num_classes)]
    else:
        names = [str(n) for n in class_names]
        if len(names) < num_classes:
            raise InputError(f"{len(names)} class names {names} for {num_classes} classes (background must come first)")
        if len(set(names[1:num_classes])) != num_classes - 1:
            raise InputError(f"class names {names[1:num_classes]} are not unique")

    classes: dict[str, dict[str, Any]] = {}
    for c in range(1, num_classes):
        classes[names[c]] = _class_metrics(p == c, r == c, sampling)
    present = [m for m in classes.values() if m["present"]]
    mean = {key: _nanmean([m[key] for m in present]) for key in METRIC_KEYS}
    return {"classes": classes, "mean": mean, "spacing": list(sampling)}


def to_jsonable(obj: Any) -> Any:
    """A copy of ``obj`` that ``json.dumps`` accepts and that holds no NaN or infinity.

    Dictionaries (keys made strings), lists, tuples and numpy arrays are converted recursively;
    numpy floats become Python floats, numpy integers ints and numpy booleans bools; NaN and
    infinite floats become ``None`` (JSON ``null``). Other values are returned unchanged.

    Args:
        obj: a nested structure such as the result of :func:`evaluate_volume`.

    Returns:
        the converted structure.
    """
    if isinstance(obj, Mapping):
        return {str(k): to_jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return [to_jsonable(v) for v in obj.tolist()] if obj.ndim else to_jsonable(obj.item())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        value = float(obj)
        return value if math.isfinite(value) else None
    return obj
