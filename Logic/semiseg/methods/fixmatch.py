"""FixMatch: weak-to-strong consistency with confident hard pseudo-labels.

Sohn, Berthelot, Li, Zhang, Carlini, Cubuk, Kurakin, Zhang, Raffel. "FixMatch: Simplifying
Semi-Supervised Learning with Consistency and Confidence", NeurIPS 2020, arXiv 2001.07685; in the
segmentation form of the UniMatch paper's baseline (Yang et al., CVPR 2023, arXiv 2208.09910).

L = (L_sup + L_u) / 2 (blended in by the weight w, :func:`~semiseg.pseudo.blend`), L_u = masked Dice(p_s, argmax p_w) over pixels with max p_w >= tau.

Choices the papers leave open (ours):

- The strong view is :func:`~semiseg.perturb.strong_augment` (colour jitter + blur) of the weak
  view, without CutMix: this method reads one unlabelled batch.
- Labelled, weak and strong images pass the network in one forward (one set of batch-norm
  statistics, as FixMatch's reference code does); the weak prediction is detached.
- ``warmup``/``rampup`` (:class:`~semiseg.pseudo.SemiConfig`, 0/0 = papers' constant weight 1)
  and ``ema`` (0 = off, papers' choice; else the pseudo-labels come from an EMA teacher,
  :class:`~semiseg.pseudo.EMATeacher`) are for short budgets. While the weight is 0 the
  unlabelled streams are not computed and L = L_sup (see :func:`~semiseg.pseudo.blend`).
"""

from __future__ import annotations

import dataclasses

import torch.nn as nn

from ..errors import InputError
from ..losses import masked_dice
from ..perturb import strong_augment
from ..pseudo import blend, SemiConfig, confidence_mask, forward_split, pseudo_label, unsup_weight
from .base import Batch, LossOutput, Method, TrainProgress

__all__ = ["FixMatch", "FixMatchConfig"]


@dataclasses.dataclass
class FixMatchConfig(SemiConfig):
    """FixMatch settings: ``tau``, ``warmup``, ``rampup`` (see :class:`SemiConfig`) and

    Args:
        ema: EMA decay of a teacher that makes the pseudo-labels (0: the student's own weak
            prediction, the paper's choice).
    """

    ema: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        if not 0.0 <= self.ema < 1.0:
            raise InputError(f"ema must be in [0, 1), got {self.ema}")


class FixMatch(Method):
    """FixMatch for segmentation; see the module docstring."""

    name = "fixmatch"
    Config = FixMatchConfig
    unlabeled_batches = 1

    def loss(self, model: nn.Module, batch: Batch, progress: TrainProgress) -> LossOutput:
        cfg = self.config
        w = unsup_weight(progress, cfg.warmup, cfg.rampup)
        if w == 0.0 or batch.x_u is None:
            return self.supervised_only(model, batch)
        x_s = strong_augment(batch.x_u)
        if self.teacher is None:
            pred_l, pred_w, pred_s = forward_split(model, [batch.x_l, batch.x_u, x_s])
        else:
            pred_l, pred_s = forward_split(model, [batch.x_l, x_s])
            pred_w = self.teacher(batch.x_u)
        conf, label = pseudo_label(pred_w)
        mask = confidence_mask(conf, cfg.tau)
        sup = self.sup_loss(pred_l, batch.y_l)
        unsup = masked_dice(pred_s, label, mask)
        total = blend(sup, unsup, w)
        terms = {"sup": float(sup.detach()), "u": float(unsup.detach())}
        return LossOutput(total, terms, {"mask_ratio": float(mask.mean()), "unsup_weight": w})
