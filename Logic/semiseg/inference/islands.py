"""Keep the largest island: a class that is one structure is kept to its largest connected piece.

A slice-wise network predicts each slice on its own, so a structure that is one piece in 3D (a heart
chamber, an atrium) comes back with stray islands on other slices and in look-alike tissue. Slicer's
Segment Editor removes them with *Islands > Keep largest island*; MONAI's ``KeepLargestConnectedComponent``
and nnU-Net's post-processing do the same (nnU-Net keeps it for a class only where cross-validation says it
helps). Here the islands are ITK's connected components (SimpleITK ``ConnectedComponent``, face
connectivity, its default), and the voxels of every other island of the class become background, as in
MONAI.

Which classes: a setting of the job (``keep_largest_island``, docs/JOB_FORMAT.md): ``"auto"``, ``true``
(every class), ``false`` (none) or a list of class names. ``"auto"`` decides from the user's labels, as
they are filled between the labelled slices (the completion's interpolation): a class is one structure
when its largest islands, summed over the labelled volumes, hold at least :data:`ONE_PIECE_SHARE` of its
voxels. Our choices: a share, not "exactly one island", because expert labels have pieces apart (the
right ventricle of ACDC often); summed over the volumes, not required of each, because filling between
slices 10 mm apart breaks a thin ring now and then (the measurements: ``benchmarks/islands.py``,
docs/BENCHMARKS.md section 2b). A class of several lesions of
similar size falls well below it and is left alone.

Where: the network's own predictions (a volume predicted without a shape prior: the unlabelled volumes
and ``predict_images`` of a job, ``semiseg predict``, a labelled volume with the completion off). A
labelled volume's completion (the network fused with its prior, :mod:`semiseg.completion`) is left as
fused: the prior already holds the structure together, and cutting it to one island there did not pay
(docs/BENCHMARKS.md section 2). The user's labelled slices are never changed: islands are removed on the
other slices only.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any

import numpy as np
import SimpleITK as sitk

from ..contract import keep_largest_island_problem
from ..errors import InputError
from ..io.slices import take_slices

__all__ = ["ONE_PIECE_SHARE", "island_sizes", "one_piece_classes", "keep_largest_island", "resolve_islands"]

ONE_PIECE_SHARE = 0.9
"""The share of a class's voxels its largest islands (one per labelled volume) must hold for ``"auto"``."""


def _islands(mask: np.ndarray) -> np.ndarray:
    """The islands (face-connected components) of a boolean ``mask``, numbered 1, 2, ... from the largest; 0 off it."""
    return sitk.GetArrayFromImage(
        sitk.RelabelComponent(sitk.ConnectedComponent(sitk.GetImageFromArray(mask.astype(np.uint8))))
    )


def island_sizes(mask: np.ndarray) -> np.ndarray:
    """Voxel counts of the islands (face-connected components) of a boolean ``mask``, largest first."""
    if not mask.any():
        return np.zeros(0, np.int64)
    counts = np.bincount(_islands(mask).ravel())[1:]
    return counts[counts > 0]


def one_piece_classes(filled: Sequence[np.ndarray], num_classes: int) -> list[int]:
    """The classes (1 .. ``num_classes - 1``) whose largest islands in the label maps ``filled`` hold at least
    :data:`ONE_PIECE_SHARE` of their voxels there (see the module docstring); a class no map holds is not one."""
    chosen = []
    for c in range(1, num_classes):
        sizes = [s for s in (island_sizes(f == c) for f in filled) if len(s)]
        if sizes and sum(int(s[0]) for s in sizes) >= ONE_PIECE_SHARE * sum(int(s.sum()) for s in sizes):
            chosen.append(c)
    return chosen


def keep_largest_island(
    labels: np.ndarray, classes: Collection[int], axis: int = 2, labeled: Collection[int] = ()
) -> np.ndarray:
    """``labels`` (K, J, I) with every class of ``classes`` kept to its largest island; the voxels of its other
    islands become background, except on the ``labeled`` slices (along IJK ``axis``), which are kept as they are."""
    if not classes:
        return labels
    out = labels.copy()
    for c in classes:
        mask = labels == c
        if mask.any():
            out[mask & (_islands(mask) != 1)] = 0
    if labeled:  # a view of ``out``: the user's slices written back into it
        take_slices(out, axis)[sorted(labeled)] = take_slices(labels, axis, sorted(labeled))
    return out


def resolve_islands(setting: Any, class_names: Sequence[str], auto: Sequence[int], where: str = "") -> list[int]:
    """The class indices the job's ``keep_largest_island`` setting names: ``auto`` (the classes
    :func:`one_piece_classes` found), ``True`` (every class), ``False`` (none) or a list of class names;
    :class:`InputError` naming ``where`` for anything else (:func:`~semiseg.contract.keep_largest_island_problem`)."""
    problem = keep_largest_island_problem(setting, class_names)
    if problem:
        raise InputError(problem, where or None)
    if setting == "auto":
        return sorted(int(c) for c in auto)
    if isinstance(setting, bool):
        return list(range(1, len(class_names))) if setting else []
    return sorted(class_names.index(n) for n in setting)
