"""The shape prior of one labelled volume: its interpolation, the fitted fusion scale, and the fusion.

:class:`ShapePrior` is what a run keeps of the user's labelled slices beyond the training data:
built from the labelled volume (:meth:`ShapePrior.build`: shape-based at once, then following the image
after :meth:`ShapePrior.refine`), it gives the first result before any training (:meth:`ShapePrior.alone`)
and turns the network's probabilities of that volume into the fused ones (:meth:`ShapePrior.fuse`) and
the result (:meth:`ShapePrior.outputs`) for every preview and for the final result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch

from ..inference import outputs
from ..inference.review import COMMITTEE_NETWORK
from ..io.slices import SliceSet, put_slices, resize_images, resize_labels, take_slices
from .fusion import TEMPERATURE, fit_scale, fuse
from .interpolation import Interpolation, available_backend, interpolate_labels
from .registration import SliceMotion

__all__ = ["ShapePrior", "CompletionConfig"]


@dataclasses.dataclass
class CompletionConfig:
    """How a run completes the labelled volume from the user's slices (``job.json`` key ``"completion"``).

    Args:
        enabled: fuse the network with the interpolation of the labelled slices (off: the network alone).
        interpolation: ``"auto"``, ``"shape"``, ``"morphological"`` or ``"registration"``
            (:mod:`semiseg.completion.interpolation`).
        temperature: exponent of the network's probabilities in the fusion (:mod:`semiseg.completion.fusion`).
        preview_every: seconds between previews while training (0: no previews; the first one,
            the prior alone, comes before training whenever previews are on).
        pseudo_labels: weight of the interpolated slices as extra labelled training slices (0: off,
            the default). A slice at distance ``d`` from the nearest labelled slice is drawn
            ``pseudo_labels * 2 ** (-(d - 1) / 4)`` times as often as a labelled one. A candidate
            that lost (docs/BENCHMARKS.md section 2), kept for the benchmark.
    """

    enabled: bool = True
    interpolation: str = "auto"
    temperature: float = TEMPERATURE
    preview_every: float = 10.0
    pseudo_labels: float = 0.0

    def validate(self) -> None:
        from ..settings import check_ranges
        from .interpolation import available_backend

        available_backend(self.interpolation, with_image=True)  # the name, and ITK where it is asked for
        check_ranges(self, temperature="(0, 10]", preview_every="[0, 86400]", pseudo_labels="[0, 100]")


@dataclasses.dataclass
class ShapePrior:
    """The interpolation of a volume's labelled slices along ``axis``, and its fusion scale.

    Attributes:
        interpolation: in slice-stack order (:class:`~semiseg.completion.interpolation.Interpolation`).
        scale: the fusion scale fitted on the labelled slices (:func:`~semiseg.completion.fusion.fit_scale`).
        fit: what the fit used and found (for ``config.json`` and the progress log).
        axis: the IJK slicing axis.
        temperature: exponent of the network's probabilities.
        motion: the image's slice motion when the interpolation follows it (:class:`SliceMotion`; another prior
            of the same image and axis can share it, see :meth:`build`).
    """

    interpolation: Interpolation
    scale: float
    fit: dict[str, Any]
    axis: int
    temperature: float = TEMPERATURE
    motion: SliceMotion | None = dataclasses.field(default=None, repr=False)

    pending: Any = dataclasses.field(default=None, repr=False)
    """What :meth:`refine` needs when :meth:`build` was staged: ``(stack, labeled, num_classes, motion)``."""

    @classmethod
    def build(cls, labels: np.ndarray, axis: int, labeled: Sequence[int], num_classes: int,
              config: CompletionConfig | None = None, image: np.ndarray | None = None,
              staged: bool = False, motion: SliceMotion | None = None) -> "ShapePrior":
        """The prior of a label map (K, J, I) whose slices ``labeled`` (along IJK ``axis``) the user labelled.

        ``image`` (K, J, I) lets the interpolation follow it (``"auto"`` then means ``"registration"``). With
        ``staged``, an ``"auto"`` prior starts shape-based (instant: the first preview) and follows the image
        after :meth:`refine` (seconds of registration). ``motion``: the :class:`SliceMotion` of this ``image`` along
        ``axis`` from an earlier prior, whose fields are then not estimated again."""
        config = config or CompletionConfig()
        stack = np.asarray(take_slices(labels, axis))
        backend = available_backend(config.interpolation, with_image=image is not None)
        if backend != "registration":
            motion = None
        elif motion is None:
            motion = SliceMotion(take_slices(image, axis))
        staging = staged and config.interpolation == "auto" and motion is not None
        prior = cls._fitted(stack, labeled, num_classes, "shape" if staging else backend, None if staging else motion,
                            axis, config.temperature)
        if staging:
            prior.pending = (stack, list(labeled), num_classes, motion)
        return prior

    @classmethod
    def _fitted(cls, stack: np.ndarray, labeled: Sequence[int], num_classes: int, backend: str,
                motion: SliceMotion | None, axis: int, temperature: float) -> "ShapePrior":
        interp = interpolate_labels(stack, labeled, num_classes, backend, motion)
        scale, fit = fit_scale(stack, labeled, num_classes, backend, motion=motion)
        fit["backend"] = interp.backend
        return cls(interp, scale, fit, axis, temperature, motion)

    def refine(self) -> bool:
        """Let a staged prior follow the image (see :meth:`build`); False when there is nothing to refine."""
        if self.pending is None:
            return False
        stack, labeled, num_classes, motion = self.pending
        followed = self._fitted(stack, labeled, num_classes, "registration", motion, self.axis, self.temperature)
        self.interpolation, self.scale, self.fit = followed.interpolation, followed.scale, followed.fit
        self.motion = motion
        self.pending = None
        return True

    def fuse(self, net_probs: np.ndarray, beyond: bool = True) -> np.ndarray:
        """Fused probabilities (C, K, J, I) of the network's (C, K, J, I) for this volume; ``beyond=False``
        leaves out the shapes beyond the labelled range (a benchmark candidate)."""
        stacked = np.stack([take_slices(p, self.axis) for p in net_probs])
        fused = fuse(stacked, self.interpolation, self.scale, self.temperature, beyond)
        return np.stack([put_slices(p, self.axis) for p in fused])

    def outputs(self, net_probs: np.ndarray, network_weight: float = COMMITTEE_NETWORK) -> dict[str, np.ndarray]:
        """This volume's result from the network's probabilities (C, K, J, I): the fused labels, confidence and
        entropy, and the review's gains with the committee of the fused result and the network alone
        (:data:`~semiseg.inference.review.COMMITTEE_NETWORK`) for the truth's probabilities (the user's labels on
        the labelled slices; :mod:`semiseg.inference.review`); ``network_weight`` is that module's unless a
        benchmark varies it."""
        fused = self.fuse(net_probs)
        committee = (1 - network_weight) * fused + network_weight * net_probs
        labeled = self.interpolation.labeled
        if labeled:
            take_slices(committee, self.axis)[labeled] = take_slices(fused, self.axis)[labeled]
        return outputs(fused, axis=self.axis, truth=committee)

    def pseudo_labeled(self, image: np.ndarray, name: str, size: int, weight: float) -> SliceSet:
        """The interpolated slices of ``image`` (K, J, I) as weighted labelled training slices (see
        :attr:`CompletionConfig.pseudo_labels`); the user's own slices are not among them."""
        interp = self.interpolation
        idx = [
            i
            for i in range(len(interp.distance))
            if interp.inside[i] and interp.distance[i] > 0 and interp.labels[i].any()
        ]
        if not idx or weight <= 0:
            return SliceSet.concat([], size, True)
        images = resize_images(torch.from_numpy(np.ascontiguousarray(take_slices(image, self.axis, idx))), size)
        labels = resize_labels(torch.from_numpy(interp.labels[idx].astype(np.int64)), size)
        weights = torch.tensor([weight * 2.0 ** (-(float(interp.distance[i]) - 1) / 4) for i in idx])
        return SliceSet(images, labels, [(name, i) for i in idx], weights)

    def alone(self) -> np.ndarray:
        """The prior's own probabilities (C, K, J, I): the fusion with an uninformed network."""
        c, n, rows, cols = self.interpolation.sdf.shape
        uniform = np.full((c, n, rows, cols), 1.0 / c, np.float32)
        fused = fuse(uniform, self.interpolation, self.scale, self.temperature, scaled=False)
        return np.stack([put_slices(p, self.axis) for p in fused])
