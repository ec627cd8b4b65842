"""Interpolation of a sparse label map between its labelled slices, per class, along one axis.

What a Slicer user gets today from *Fill between slices*, inside the engine, as a shape prior for the
network (:mod:`semiseg.completion.fusion`). Two back ends:

- ``"morphological"``: ITK's morphological contour interpolation (Albu, Beugeling, Laidlaw,
  "A morphology-based approach for interslice interpolation of anatomical slices from volumetric
  images", IEEE TBME 2008), the filter behind Slicer's *Fill between slices*:
  ``vtkITK.vtkITKMorphologicalContourInterpolator`` inside Slicer (and its PythonSlicer), else the
  PyPI wheel ``itk-morphologicalcontourinterpolation``.
- ``"shape"``: shape-based interpolation (Raya and Udupa, "Shape-based interpolation of
  multidimensional objects", IEEE TMI 1990): the signed distance maps of the two bracketing
  slices are blended linearly and thresholded at 0. Needs only SciPy.
- ``"registration"``: the same blend of the two bracketing slices' signed distances, each first carried
  slice by slice along the image by demons registration (:mod:`semiseg.completion.registration`); the
  only back end that looks at the image, so it needs the image's :class:`SliceMotion`.

Either way the result comes with the signed distance (in pixels) of every interpolated slice to
its interpolated contour, which is what the fusion needs to turn the interpolation into a
probability. Choices the papers leave open, ours:

- The labelled slices are the painted ones plus those the user checked and found empty. A class
  is interpolated only between *consecutive* labelled slices that both hold it: a checked-empty
  slice (or a labelled slice without that class) bounds the structure, nothing crosses it.
- Nothing is interpolated beyond the first and the last labelled slice (as *Fill between
  slices*). With ``"registration"``, the outermost labelled shape of each class is carried along the
  image beyond them too (:attr:`Interpolation.carried`), up to the next labelled slice or the stack's end:
  the fusion's shrinking shape beyond the labelled range (:func:`semiseg.completion.fusion.extrapolate`)
  then follows the image instead of staying where it was drawn.
- Where two classes' interpolations overlap, the one with the deeper (more negative) signed
  distance wins, not the higher label number.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np
from scipy import ndimage

from ..errors import InputError
from ..io.slices import take_slices
from .registration import SliceMotion

__all__ = ["Interpolation", "interpolate_labels", "signed_distance", "slice_distance", "BACKENDS", "available_backend"]

BACKENDS = ("auto", "shape", "morphological", "registration")
FAR = 1e4
"""Signed distance (pixels) given to a slice where a class is absent: far outside."""


@dataclasses.dataclass
class Interpolation:
    """A label map filled between its labelled slices, in slice-stack order (N, rows, cols).

    Attributes:
        labels: uint8 (N, rows, cols); labelled slices as given, interpolated slices filled, others 0.
        sdf: float32 (C, N, rows, cols) signed distance in pixels to each class's contour (negative
            inside; :data:`FAR` where the class is absent, except where ``carried``); background (class 0) is
            unused (0).
        labeled: the labelled slice indices (painted or checked empty), sorted.
        distance: float32 (N,) slices to the nearest labelled slice (0 on a labelled slice).
        inside: bool (N,) whether the slice lies between the first and the last labelled slice.
        backend: ``"shape"``, ``"morphological"`` or ``"registration"``.
        carried: bool (C, N): where ``sdf`` holds, beyond the outermost labelled slices that hold a class, their
            shape carried along the image (``"registration"`` only; there, not :data:`FAR`).
    """

    labels: np.ndarray
    sdf: np.ndarray
    labeled: list[int]
    distance: np.ndarray
    inside: np.ndarray
    backend: str
    carried: np.ndarray | None = None

    def __post_init__(self) -> None:
        if self.carried is None:
            self.carried = np.zeros(self.sdf.shape[:2], bool)


def signed_distance(mask: np.ndarray) -> np.ndarray:
    """Signed Euclidean distance (pixels, float32) of a 2D mask: negative inside, positive outside,
    measured to the nearest pixel of the other side; :data:`FAR` for an empty mask."""
    mask = np.asarray(mask, dtype=bool)
    if not mask.any():
        return np.full(mask.shape, FAR, np.float32)
    if mask.all():
        return np.full(mask.shape, -FAR, np.float32)
    outside = ndimage.distance_transform_edt(~mask)
    inside = ndimage.distance_transform_edt(mask)
    return (outside - inside + np.where(mask, 0.5, -0.5)).astype(np.float32)


def slice_distance(num_slices: int, labeled: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
    """(distance to the nearest labelled slice, inside the labelled range) for each of ``num_slices``."""
    idx = np.arange(num_slices)
    lab = np.asarray(sorted(set(int(i) for i in labeled)), dtype=float)
    if not len(lab):
        return np.full(num_slices, np.inf, np.float32), np.zeros(num_slices, bool)
    distance = np.abs(idx[:, None] - lab[None, :]).min(1).astype(np.float32)
    return distance, (idx >= lab[0]) & (idx <= lab[-1])


def _morphological_module():
    """The ITK filter as a callable ``(binary stack) -> filled stack``, or ``None`` when neither build is importable."""
    try:  # Slicer's own build (the application and PythonSlicer)
        import vtk
        import vtkITK  # type: ignore[import-not-found]
        from vtk.util import numpy_support  # type: ignore[import-not-found]

        def run_vtk(stack: np.ndarray) -> np.ndarray:
            image = vtk.vtkImageData()
            image.SetDimensions(stack.shape[2], stack.shape[1], stack.shape[0])
            image.GetPointData().SetScalars(numpy_support.numpy_to_vtk(np.ascontiguousarray(stack).ravel(), deep=True,
                                                                       array_type=vtk.VTK_UNSIGNED_CHAR))
            interpolator = vtkITK.vtkITKMorphologicalContourInterpolator()
            interpolator.SetInputData(image)
            interpolator.SetAxis(2)
            interpolator.Update()
            out = numpy_support.vtk_to_numpy(interpolator.GetOutput().GetPointData().GetScalars())
            return out.reshape(stack.shape)

        return run_vtk
    except ImportError:
        pass
    try:  # the PyPI wheel itk-morphologicalcontourinterpolation
        import itk  # type: ignore[import-not-found]

        itk.MorphologicalContourInterpolator  # noqa: B018  (fails early when the wheel lacks the filter)
    except (ImportError, AttributeError):
        return None

    def run_itk(stack: np.ndarray) -> np.ndarray:
        interpolator = itk.MorphologicalContourInterpolator.New(
            itk.image_from_array(np.ascontiguousarray(stack, dtype=np.uint8))
        )
        interpolator.SetAxis(2)
        interpolator.Update()
        return np.asarray(itk.array_from_image(interpolator.GetOutput()))

    return run_itk


def available_backend(requested: str = "auto", with_image: bool = False) -> str:
    """The back end that will run: ``"auto"`` is ``"registration"`` when the image is at hand (``with_image``),
    else ``"shape"`` (docs/BENCHMARKS.md section 2 compares them); ``"morphological"`` fails when no ITK build is
    importable, ``"registration"`` without the image."""
    if requested not in BACKENDS:
        raise InputError(f"interpolation must be one of {', '.join(BACKENDS)}, got {requested!r}")
    if requested == "morphological" and _morphological_module() is None:
        raise InputError(
            "interpolation 'morphological' needs ITK's MorphologicalContourInterpolator: run inside Slicer, "
            "or pip install itk-morphologicalcontourinterpolation"
        )
    if requested == "registration" and not with_image:
        raise InputError("interpolation 'registration' follows the image: it needs the image's slices")
    if requested == "auto":
        return "registration" if with_image else "shape"
    return requested


def _fill_pair_shape(sdf_a: np.ndarray, sdf_b: np.ndarray, steps: int) -> np.ndarray:
    """Signed distances of the ``steps - 1`` slices strictly between two slices ``steps`` apart (linear blend)."""
    t = (np.arange(1, steps, dtype=np.float32) / steps)[:, None, None]
    return (1 - t) * sdf_a[None] + t * sdf_b[None]


def _fill_pair_registration(sdf_a: np.ndarray, sdf_b: np.ndarray, a: int, b: int, motion: SliceMotion) -> np.ndarray:
    """Signed distances of the slices strictly between ``a`` and ``b``: each end's carried along the image, blended
    linearly by distance."""
    ahead, back = motion.carry(sdf_a, a, b), motion.carry(sdf_b, b, a)
    return np.stack([(b - s) / (b - a) * ahead[s] + (s - a) / (b - a) * back[s] for s in range(a + 1, b)])


def outer_range(stack: np.ndarray, labeled: Sequence[int], c: int) -> list[tuple[int, range]]:
    """``[(edge, slices)]``: the first and the last labelled slice holding class ``c``, each with the slices beyond
    it up to the next labelled slice (which bounds the structure) or the stack's end; ``[]`` when none holds it."""
    lab = sorted(set(int(i) for i in labeled))
    holding = [i for i in lab if (stack[i] == c).any()]
    if not holding:
        return []
    first, last = holding[0], holding[-1]
    start = max([i for i in lab if i < first], default=-1) + 1
    stop = min([i for i in lab if i > last], default=stack.shape[0])
    return [(first, range(first - 1, start - 1, -1)), (last, range(last + 1, stop))]


def interpolate_labels(
    stack: np.ndarray, labeled: Sequence[int], num_classes: int | None = None, backend: str = "auto",
    motion: SliceMotion | None = None, beyond: bool = True,
) -> Interpolation:
    """Fill a sparse label stack (N, rows, cols) between its labelled slices, class by class.

    Args:
        stack: integer labels in slice-stack order (``semiseg.io.slices.take_slices`` of a label map).
        labeled: slice indices that are labelled (painted, or checked and found empty).
        num_classes: classes including background (default: ``stack.max() + 1``).
        backend: one of :data:`BACKENDS`.
        motion: the image's slice-to-slice motion, for ``"registration"``.
        beyond: with ``"registration"``, also carry the outermost shapes beyond the labelled range
            (:attr:`Interpolation.carried`; the leave-one-out fit does not need them).

    Returns:
        An :class:`Interpolation` on the same grid.

    Raises:
        InputError: an unknown back end, ``"morphological"`` without ITK, or ``"registration"`` without ``motion``.
    """
    backend = available_backend(backend, with_image=motion is not None)
    stack = np.asarray(stack)
    n = stack.shape[0]
    num_classes = int(stack.max(initial=0)) + 1 if num_classes is None else int(num_classes)
    lab = sorted(set(int(i) for i in labeled))
    distance, inside = slice_distance(n, lab)
    sdf = np.full((num_classes, *stack.shape), FAR, np.float32)
    sdf[0] = 0.0
    run_morph = _morphological_module() if backend == "morphological" else None
    for c in range(1, num_classes):
        for i in lab:
            sdf[c, i] = signed_distance(stack[i] == c)
        for a, b in zip(lab[:-1], lab[1:]):
            if b - a < 2 or not ((stack[a] == c).any() and (stack[b] == c).any()):
                continue  # adjacent, or the class ends at a labelled slice: nothing crosses it
            if backend == "registration":
                sdf[c, a + 1 : b] = _fill_pair_registration(sdf[c, a], sdf[c, b], a, b, motion)  # type: ignore[arg-type]
            elif run_morph is None:
                sdf[c, a + 1 : b] = _fill_pair_shape(sdf[c, a], sdf[c, b], b - a)
            else:
                pair = np.zeros((b - a + 1, *stack.shape[1:]), np.uint8)
                pair[0], pair[-1] = stack[a] == c, stack[b] == c
                filled = run_morph(pair)[1:-1] > 0
                sdf[c, a + 1 : b] = np.stack([signed_distance(m) for m in filled])
    labels = np.zeros(stack.shape, np.uint8)
    if num_classes > 1:
        deepest = sdf[1:].argmin(0)
        labels = np.where(sdf[1:].min(0) < 0, deepest + 1, 0).astype(np.uint8)
    labels[lab] = stack[lab]  # the user's slices exactly as given
    carried = np.zeros((num_classes, n), bool)
    if backend == "registration" and beyond:  # into sdf's FAR slices beyond the range, after the labels are drawn
        for c in range(1, num_classes):
            for edge, slices in outer_range(stack, lab, c):
                if len(slices):
                    moved = motion.carry(sdf[c, edge], edge, slices[-1] + slices.step)  # type: ignore[union-attr]
                    for s in slices:
                        sdf[c, s], carried[c, s] = moved[s], True
    return Interpolation(labels, sdf, lab, distance, inside, backend, carried)


def filled_labels(labels: np.ndarray, axis: int, labeled: Sequence[int], num_classes: int) -> np.ndarray:
    """A label map (K, J, I) with its ``labeled`` slices (along IJK ``axis``) filled between, shape-based, in
    slice-stack order: what ``keep_largest_island`` ``"auto"`` looks at without a prior
    (``semiseg.inference.islands``)."""
    return interpolate_labels(np.asarray(take_slices(labels, axis)), labeled, num_classes, "shape").labels
