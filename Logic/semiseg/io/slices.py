"""Volumes to 2D training slices and back.

A :class:`Volume` holds one scan (and optionally its label map) in numpy order (K, J, I). Slices
are taken along an IJK index ``axis`` (0 = I, 1 = J, 2 = K; Slicer and SimpleITK order): the
numpy axis is ``2 - axis``. A slice counts as labelled when it holds any label voxel or is listed
explicitly (checked and found empty); every other slice is unlabelled and carries no supervised
loss.

Preprocessing happens once, here: intensities are clipped to the 0.5-99.5 percentiles of the
volume and scaled to [0, 1] (our choice; the papers feed ACDC already min-max scaled to [0, 1],
on which this is nearly the identity; CT is windowed from air to the body's brightest voxels
instead, see :func:`normalize_intensity`), and slices are resized to ``size x size`` (bilinear for
images, nearest for labels, as the papers' ``zoom`` does). Inference resizes the class
probabilities back to each slice's own size, so every output lies on the input's grid.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Sequence

import numpy as np
import SimpleITK as sitk
import torch
import torch.nn.functional as F

from ..contract import choose_axis, labeled_slices
from ..errors import InputError
from .images import check_same_geometry, read_image, read_labels, volume_name

__all__ = [
    "Volume",
    "SliceSet",
    "load_volume",
    "labeled_slice_indices",
    "choose_axis",  # the contract's rule, re-exported
    "normalize_intensity",
    "looks_like_ct",
    "take_slices",
    "resize_images",
    "resize_labels",
    "build_slice_sets",
]


@dataclasses.dataclass
class Volume:
    """One scan on its own grid.

    Attributes:
        name: file name without extension.
        image: float32 array (K, J, I), normalised to [0, 1].
        reference: the SimpleITK image (geometry of every output).
        labels: integer label map (K, J, I) or ``None`` for an unlabelled volume.
        extra_labeled: slice indices that count as labelled although empty, per IJK axis.
        path: where it was read from.
    """

    name: str
    image: np.ndarray
    reference: sitk.Image
    labels: np.ndarray | None = None
    extra_labeled: dict[int, list[int]] = dataclasses.field(default_factory=dict)
    path: str = ""

    @property
    def spacing_kji(self) -> tuple[float, float, float]:
        """Voxel spacing in numpy axis order."""
        return tuple(reversed(self.reference.GetSpacing()))  # type: ignore[return-value]

    def num_slices(self, axis: int) -> int:
        return self.image.shape[2 - axis]


CT_AIR = -1024.0
"""Hounsfield units of air; a CT volume's padding (often -2048 or -3024) is clipped to it."""


def looks_like_ct(array: np.ndarray) -> bool:
    """Whether intensities are Hounsfield units: whole numbers spanning air (<= -900) to bone (>= 300).

    Our test, in the spirit of nnU-Net's "CT" normalisation scheme (Isensee et al., Nature Methods
    2021), which a dataset declares; a single scan from a user declares nothing, so we look.
    """
    if array.size == 0:
        return False
    lo, hi = float(array.min()), float(array.max())
    if lo > -900 or hi < 300:
        return False
    sample = array.ravel()[:: max(1, array.size // 100000)]
    return bool(np.all(np.mod(sample, 1) == 0))


def normalize_intensity(array: np.ndarray, low: float = 0.5, high: float = 99.5) -> np.ndarray:
    """Scale intensities to [0, 1] on a window that the body, not the padding, decides.

    MR and other relative scales: clip to the ``low``/``high`` percentiles of the volume (a
    constant volume gives 0). CT (:func:`looks_like_ct`): the window runs from air
    (:data:`CT_AIR`; the scanner's padding below it is clipped to air) to the 99.9th percentile of
    the body's voxels (above -500 HU), so that bone keeps its contrast. With the volume's own
    percentiles, the padding of a CT (a fifth of ``CTChest4.nrrd``) pulls the window down to
    -3024..409 HU and clips most bone to one value.
    """
    array = np.asarray(array)
    if looks_like_ct(array):
        body = array[array > -500]
        lo, hi = CT_AIR, float(np.percentile(body, 99.9)) if body.size else 0.0
    else:
        lo, hi = np.percentile(array, [low, high])
    if hi <= lo:
        return np.zeros_like(array, dtype=np.float32)
    return ((np.clip(array, lo, hi) - lo) / (hi - lo)).astype(np.float32)


def load_volume(
    image_path: str | os.PathLike,
    labels_path: str | os.PathLike | None = None,
    num_classes: int | None = None,
) -> Volume:
    """Read a scan and (optionally) its label map, checking that both lie on one grid.

    Raises:
        InputError: see :func:`semiseg.io.images.read_image` and :func:`read_labels`.
    """
    array, reference = read_image(image_path)
    labels = None
    if labels_path is not None:
        labels, label_image = read_labels(labels_path, num_classes)
        check_same_geometry(reference, label_image, labels_path)
    return Volume(volume_name(image_path), normalize_intensity(array), reference, labels, path=str(image_path))


def take_slices(array: np.ndarray, axis: int, indices: Sequence[int] | None = None) -> np.ndarray:
    """Slices of a (K, J, I) array along IJK ``axis``, stacked first: (N, rows, cols); of a (C, K, J, I) array,
    (N, C, rows, cols)."""
    moved = np.moveaxis(array, array.ndim - 1 - axis, 0)
    return moved if indices is None else moved[np.asarray(list(indices), dtype=int)]


def put_slices(stack: np.ndarray, axis: int) -> np.ndarray:
    """Inverse of :func:`take_slices` for all slices: (N, rows, cols) back to (K, J, I)."""
    return np.moveaxis(stack, 0, 2 - axis)


def labeled_slice_indices(labels: np.ndarray, axis: int, extra: Sequence[int] = ()) -> list[int]:
    """:func:`semiseg.contract.labeled_slices` (painted slices plus ``extra``), an index out of range as an
    InputError."""
    try:
        return labeled_slices(labels, axis, extra)
    except ValueError as err:
        raise InputError(f"labelled {err}") from None


def resize_images(stack: torch.Tensor, size: int) -> torch.Tensor:
    """(N, H, W) float -> (N, 1, size, size), or (N, C, H, W) -> (N, C, size, size), bilinear."""
    stack = stack[:, None] if stack.ndim == 3 else stack
    return F.interpolate(stack.float(), size=(size, size), mode="bilinear", align_corners=False)


def resize_labels(stack: torch.Tensor, size: int) -> torch.Tensor:
    """(N, H, W) integer -> (N, size, size) int64, nearest."""
    out = F.interpolate(stack[:, None].float(), size=(size, size), mode="nearest-exact")
    return out[:, 0].long()


@dataclasses.dataclass
class SliceSet:
    """Preprocessed training slices at the training size.

    Attributes:
        images: (N, 1, S, S) float32 (N, C, S, S with extra input channels, :attr:`ModelConfig.in_channels`).
        labels: (N, S, S) int64, or ``None`` for unlabelled slices.
        origin: (volume name, slice index) of each slice.
        weights: (N,) relative sampling weights, or ``None`` for uniform sampling (e.g. slices
            labelled by interpolation weigh less the farther they lie from a labelled slice).
    """

    images: torch.Tensor
    labels: torch.Tensor | None
    origin: list[tuple[str, int]]
    weights: torch.Tensor | None = None

    def __len__(self) -> int:
        return self.images.shape[0]

    def to(self, device: torch.device) -> "SliceSet":
        labels = None if self.labels is None else self.labels.to(device)
        return SliceSet(self.images.to(device), labels, self.origin, self.weights)

    @staticmethod
    def concat(sets: Sequence["SliceSet"], size: int, labeled: bool) -> "SliceSet":
        sets = [s for s in sets if len(s)]
        if not sets:
            return SliceSet(
                torch.zeros(0, 1, size, size), torch.zeros(0, size, size, dtype=torch.long) if labeled else None, []
            )
        labels = torch.cat([s.labels for s in sets]) if labeled else None  # type: ignore[misc]
        weights = None
        if any(s.weights is not None for s in sets):
            weights = torch.cat([torch.ones(len(s)) if s.weights is None else s.weights.float() for s in sets])
        return SliceSet(torch.cat([s.images for s in sets]), labels, [o for s in sets for o in s.origin], weights)


def _slice_set(volume: Volume, axis: int, indices: Sequence[int], size: int, labeled: bool) -> SliceSet:
    if not len(indices):
        return SliceSet.concat([], size, labeled)
    images = resize_images(torch.from_numpy(np.ascontiguousarray(take_slices(volume.image, axis, indices))), size)
    labels = None
    if labeled:
        assert volume.labels is not None
        raw = np.ascontiguousarray(take_slices(volume.labels, axis, indices)).astype(np.int64)
        labels = resize_labels(torch.from_numpy(raw), size)
    return SliceSet(images, labels, [(volume.name, int(i)) for i in indices])


def build_slice_sets(
    labeled_volumes: Sequence[Volume],
    unlabeled_volumes: Sequence[Volume],
    axis: int | Sequence[int],
    size: int,
    min_val_slices: int = 6,
    val_stride: int = 5,
) -> tuple[SliceSet, SliceSet, SliceSet]:
    """Split the data into labelled training, held-out validation and unlabelled slice sets.

    Labelled slices of ``labeled_volumes`` feed the supervised loss; their other slices and all
    slices of ``unlabeled_volumes`` are unlabelled. When there are at least ``min_val_slices``
    labelled slices, every ``val_stride``-th one is held out for validation.

    Args:
        axis: the IJK slicing axis of every volume, or one per volume (``labeled_volumes``, then
            ``unlabeled_volumes``).

    Raises:
        InputError: no labelled slice at all.
    """
    count = len(labeled_volumes) + len(unlabeled_volumes)
    axes = [axis] * count if isinstance(axis, int) else [int(a) for a in axis]
    if len(axes) != count:
        raise ValueError(f"{len(axes)} axes for {count} volumes")
    labeled_axes, unlabeled_axes = axes[: len(labeled_volumes)], axes[len(labeled_volumes) :]
    train, val, unlabeled = [], [], []
    all_labeled: list[tuple[Volume, int]] = []
    for vol, a in zip(labeled_volumes, labeled_axes):
        assert vol.labels is not None
        idx = labeled_slice_indices(vol.labels, a, vol.extra_labeled.get(a, ()))
        all_labeled += [(vol, i) for i in idx]
        rest = sorted(set(range(vol.num_slices(a))) - set(idx))
        unlabeled.append(_slice_set(vol, a, rest, size, labeled=False))
    if not all_labeled:
        names = ", ".join(v.path or v.name for v in labeled_volumes)
        along = f"axis {axis}" if isinstance(axis, int) else f"axes {sorted(set(labeled_axes))}"
        raise InputError(
            f"no labelled slice along {along} in {names}: paint at least one slice or list checked-empty slices"
        )
    held = set()
    if len(all_labeled) >= min_val_slices:
        held = set(range(val_stride - 1, len(all_labeled), val_stride))
    for vol, a in zip(labeled_volumes, labeled_axes):
        mine = [(n, i) for n, (v, i) in enumerate(all_labeled) if v is vol]
        train.append(_slice_set(vol, a, [i for n, i in mine if n not in held], size, labeled=True))
        val.append(_slice_set(vol, a, [i for n, i in mine if n in held], size, labeled=True))
    for vol, a in zip(unlabeled_volumes, unlabeled_axes):
        unlabeled.append(_slice_set(vol, a, list(range(vol.num_slices(a))), size, labeled=False))
    return (
        SliceSet.concat(train, size, True),
        SliceSet.concat(val, size, True),
        SliceSet.concat(unlabeled, size, False),
    )
