"""Where training is, and the weight of the unsupervised losses there.

The supervised warm-up and the sigmoid ramp-up of :func:`unsup_weight` are Laine & Aila's
``exp(-5 (1 - t)^2)`` (ICLR 2017, arXiv 1610.02242), as used by Mean Teacher and SSL4MIS; the
papers of the weak-to-strong methods use a constant weight of 1 from the first iteration
(``warmup = rampup = 0``). Short CPU budgets use both (:mod:`semiseg.training.recipes`).
"""

from __future__ import annotations

import dataclasses
import math

__all__ = ["TrainProgress", "unsup_weight"]


@dataclasses.dataclass
class TrainProgress:
    """Where training is: ``iteration`` (0-based) of ``iterations``."""

    iteration: int
    iterations: int

    @property
    def fraction(self) -> float:
        return self.iteration / max(1, self.iterations)


def unsup_weight(progress: TrainProgress, warmup: float, rampup: float) -> float:
    """Weight of the unsupervised losses at ``progress``.

    0 during the first ``warmup`` fraction of the iterations, then ``exp(-5 (1 - t)^2)`` with ``t``
    going from 0 to 1 over the next ``rampup`` fraction, then 1. ``warmup = rampup = 0`` gives the
    papers' constant 1.
    """
    f = progress.fraction
    if f < warmup:
        return 0.0
    if rampup > 0 and f < warmup + rampup:
        t = (f - warmup) / rampup
        return math.exp(-5.0 * (1.0 - t) ** 2)
    return 1.0
