"""FixMatch: weak-to-strong consistency with confident hard pseudo-labels.

Sohn, Berthelot, Li, Zhang, Carlini, Cubuk, Kurakin, Zhang, Raffel. "FixMatch: Simplifying
Semi-Supervised Learning with Consistency and Confidence", NeurIPS 2020, arXiv 2001.07685; in the
segmentation form of the UniMatch paper's baseline (Yang et al., CVPR 2023, arXiv 2208.09910),
whose strong view is CutMixed with a second unlabelled batch.

Streams on an unlabelled batch u with weak view w and a second unlabelled batch m:

- w (with the labelled batch, one forward): pseudo-labels ``argmax p_w``, confidence ``max p_w``;
- s: a strong view of u CutMixed (one box per sample, probability ``cutmix_p``) with a strong view
  of m, whose pseudo-labels come from a no-grad pass in eval mode, mixed with the same box.

L = (L_sup + L_u) / 2 blended in by w_u (:func:`~semiseg.blocks.pseudo.blend`),
L_u = masked Dice(p_s, mixed argmax) over pixels whose mixed confidence is >= tau (0.95).

Choices the papers leave open (ours):

- The strong view is :func:`~semiseg.blocks.perturb.strong_augment` (colour jitter + blur) of the weak
  view. ``cutmix_p = 0`` gives the original FixMatch (no box; m is then not read). Measured on ACDC
  with 3 labelled patients (docs/BENCHMARKS.md): without CutMix FixMatch fell below the supervised
  baseline at a 1000-iteration CPU budget, so CutMix is on by default, as in UniMatch's baseline.
- Labelled, weak and strong images pass the network in one forward (one set of batch-norm
  statistics, as FixMatch's reference code does); the weak prediction is detached.
- ``warmup``/``rampup`` (:class:`~semiseg.blocks.pseudo.SemiConfig`, 0/0 = papers' constant weight 1)
  and ``ema`` (0 = off, papers' choice; else the pseudo-labels come from an EMA teacher,
  :class:`~semiseg.blocks.pseudo.EMATeacher`) are for short budgets. While the weight is 0 the
  unlabelled streams are not computed and L = L_sup (see :func:`~semiseg.blocks.pseudo.blend`).
"""

from __future__ import annotations

import dataclasses

import torch.nn as nn

from ..blocks.losses import masked_dice
from ..blocks.pseudo import PseudoLabels, TeacherConfig, forward_split
from ..blocks.schedule import TrainProgress
from ..settings import check_ranges
from .base import Batch, LossParts, Method

__all__ = ["FixMatch", "FixMatchConfig"]


@dataclasses.dataclass
class FixMatchConfig(TeacherConfig):
    """FixMatch settings: ``tau``, ``warmup``, ``rampup``, ``references`` (see :class:`SemiConfig`),
    ``ema`` (see :class:`TeacherConfig`; 0: the student's own weak prediction, the paper's choice) and

    Args:
        cutmix_p: probability of a CutMix box in the strong view (0.5, UniMatch's baseline; 0 =
            the original FixMatch).
    """

    cutmix_p: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges(self, cutmix_p="[0, 1]")


class FixMatch(Method):
    """FixMatch for segmentation; see the module docstring."""

    name = "fixmatch"
    Config = FixMatchConfig
    unlabeled_batches = 2
    strong_views = 1

    def unsupervised(self, model: nn.Module, batch: Batch, progress: TrainProgress) -> LossParts:
        cfg, teacher = self.config, self.teacher
        x_u, x_m = batch.x_u, batch.x_u2
        x_s, box = self.strong(batch, 0)
        mix = cfg.cutmix_p > 0 and x_m is not None
        if teacher.is_student:  # the weak view joins the labelled and strong ones in one forward
            pred_l, pred_w, pred_s = forward_split(model, [batch.x_l, x_u, x_s])
        else:
            (pred_l, pred_s), pred_w = forward_split(model, [batch.x_l, x_s]), None
        y_w = self.with_references(model, batch, PseudoLabels.from_logits(teacher.logits(model, x_u, own=pred_w)))
        y_s = y_w.mixed(PseudoLabels.from_logits(teacher.logits(model, x_m)), box) if mix else y_w
        unsup = masked_dice(pred_s, y_s.label, y_s.mask(cfg.tau))
        return LossParts(
            self.sup_loss(pred_l, batch.y_l), unsup, {"u": unsup}, {"mask_ratio": float(y_w.mask(cfg.tau).mean())}
        )
