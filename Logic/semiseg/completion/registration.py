"""Slice-to-slice registration: the motion of the image from one slice to the next, to carry a labelled shape.

Shape-based interpolation blends the two bracketing labelled shapes without looking at the image; where the
structure turns or bulges between them, it misses. Registration follows the image instead: the shape
drawn on slice ``a`` is carried to ``a + 1``, then to ``a + 2`` and so on, each step by the deformation that
maps one slice's image onto its neighbour's (Thirion's demons, "Image matching as a diffusion process:
an analogy with Maxwell's demons", Medical Image Analysis 1998; SimpleITK's fast symmetric-forces variant,
Vercauteren et al. 2007), and the shapes carried from both bracketing slices are blended by distance as the
shape-based interpolation blends the originals (:func:`semiseg.completion.interpolation.interpolate_labels`,
back end ``"registration"``).

Choices the papers leave open, ours:

- The shapes are carried as signed distance maps (linear resampling), not as masks: a mask resampled
  step after step erodes at its edge; a signed distance keeps its zero level.
- Each step's field is estimated between neighbouring slices only (small motion, one resolution) and
  smoothed by a Gaussian of :data:`SIGMA` pixels (the demons' regularisation). The intensities are the
  engine's, already scaled to [0, 1] on the body's window (:func:`semiseg.io.slices.normalize_intensity`,
  CT-aware), so that one setting fits MR and CT.
- The fields do not depend on the labels: estimated once per neighbouring pair (:class:`SliceMotion`,
  on demand, then kept), they serve the interpolation and every leave-one-out interpolation of the
  fusion's fit alike.
- Images are registered at ``1 / shrink`` of their resolution (:data:`SHRINK`) and the fields, kept on
  that grid (in physical units, so a field is read at any point of the full grid), carry the shapes at
  full resolution: the motion between neighbouring slices is smooth, and this divides the cost and the
  memory of the fields by ``shrink ** 2``.
"""

from __future__ import annotations

import numpy as np

__all__ = ["SliceMotion", "ITERATIONS", "SIGMA", "SHRINK"]

ITERATIONS = 30
"""Demons iterations per neighbouring pair."""
SIGMA = 1.5
"""Gaussian smoothing of each field (pixels of the registered grid)."""
SHRINK = 3
"""Registration grid: 1 / SHRINK of the slice's resolution."""
_CLIP = 50.0
"""Signed distances are carried clipped to +-this many pixels (far from the contour they need no precision)."""


class SliceMotion:
    """The demons fields between neighbouring slices of an image stack (N, rows, cols) normalised to [0, 1] as the
    engine reads images (:func:`semiseg.io.slices.normalize_intensity`), estimated on demand.

    ``carry(sdf, start, stop)`` carries a signed distance map drawn on slice ``start`` through every slice up
    to ``stop`` (either direction) and returns the maps of the slices strictly between them.
    """

    def __init__(self, images: np.ndarray, iterations: int = ITERATIONS, sigma: float = SIGMA, shrink: int = SHRINK):
        self.images = np.asarray(images, np.float32)  # the engine's normalised slices, in [0, 1]
        self.iterations, self.sigma, self.shrink = int(iterations), float(sigma), max(1, int(shrink))
        self._fields: dict[tuple[int, int], object] = {}

    def _field(self, source: int, target: int):
        """The transform that maps points of slice ``target`` into slice ``source`` (to resample ``source``
        onto ``target``'s grid)."""
        key = (source, target)
        if key not in self._fields:
            import SimpleITK as sitk

            fixed = sitk.GetImageFromArray(self.images[target])
            moving = sitk.GetImageFromArray(self.images[source])
            if self.shrink > 1:
                fixed = sitk.Shrink(fixed, [self.shrink] * 2)
                moving = sitk.Shrink(moving, [self.shrink] * 2)
            demons = sitk.FastSymmetricForcesDemonsRegistrationFilter()
            demons.SetNumberOfIterations(self.iterations)
            demons.SetStandardDeviations(self.sigma)
            field = demons.Execute(fixed, moving)  # on the shrunk grid: the transform interpolates it anywhere
            self._fields[key] = sitk.DisplacementFieldTransform(sitk.Cast(field, sitk.sitkVectorFloat64))
        return self._fields[key]

    def carry(self, sdf: np.ndarray, start: int, stop: int) -> dict[int, np.ndarray]:
        """``{slice: signed distances}`` of ``sdf`` (drawn on slice ``start``) carried to each slice strictly
        between ``start`` and ``stop``, step by step."""
        import SimpleITK as sitk

        step = 1 if stop > start else -1
        current = np.clip(sdf, -_CLIP, _CLIP).astype(np.float32)
        out: dict[int, np.ndarray] = {}
        for s in range(start + step, stop, step):
            grid = sitk.GetImageFromArray(self.images[s])
            moved = sitk.Resample(sitk.GetImageFromArray(current), grid, self._field(s - step, s), sitk.sitkLinear,
                                  _CLIP)
            current = sitk.GetArrayFromImage(moved)
            out[s] = current
        return out
