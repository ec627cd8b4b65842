"""UniMatch: unified dual-stream perturbations (two strong image views and a feature-perturbed view).

Yang, Qi, Feng, Zhang, Shi. "Revisiting Weak-to-Strong Consistency in Semi-Supervised Semantic
Segmentation", CVPR 2023, arXiv 2208.09910 (its ``more-scenarios/medical`` ACDC recipe).

Streams on an unlabelled batch u with weak view w and a second unlabelled batch m for CutMix:

- w (with the labelled batch, one forward): pseudo-labels ``argmax p_w``, confidence ``max p_w``;
- s1, s2: independent strong views of u, each CutMixed (own box) with an independent strong view
  of m; the pseudo-labels of m come from a no-grad pass in eval mode, mixed with the same box;
- fp: the decoder on ``Dropout2d(0.5)`` of every encoder feature of w, trained on w's pseudo-labels.

L = (L_sup + 0.25 L_s1 + 0.25 L_s2 + 0.5 L_fp) / 2 blended in by w_u (:func:`~semiseg.blocks.pseudo.blend`), each
unsupervised term a masked Dice
over pixels whose (mixed) confidence is >= tau (0.95).

Choices the paper leaves open or that differ from its code (ours):

- Only the unlabelled samples' features are dropped and decoded for the fp stream (UniMatch also
  decodes dropped labelled features and discards them), in the same decoder pass as the clean
  features (:func:`~semiseg.blocks.perturb.decode_with_dropout`).
- ``warmup``/``rampup`` scale the unsupervised part by ``w_u`` (0/0 = papers' constant 1); while
  ``w_u`` is 0 only the labelled forward runs and L = L_sup (see :func:`~semiseg.blocks.pseudo.blend`).
  ``ema`` > 0 takes every pseudo-label (u and m) from an EMA teacher instead of the student (0 = off, the
  paper's choice).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn

from ..blocks.losses import masked_dice
from ..blocks.perturb import decode_with_dropout
from ..blocks.pseudo import PseudoLabels, TeacherConfig, forward_split
from ..blocks.schedule import TrainProgress
from ..settings import check_ranges
from .base import Batch, LossParts, Method

__all__ = ["UniMatch", "UniMatchConfig"]


@dataclasses.dataclass
class UniMatchConfig(TeacherConfig):
    """UniMatch settings: ``tau``, ``warmup``, ``rampup``, ``references`` (see :class:`SemiConfig`),
    ``ema`` (see :class:`TeacherConfig`; 0: off, the paper's choice) and

    Args:
        fp_dropout: channel dropout of the feature-perturbed stream (0.5).
        cutmix_p: probability of a CutMix box per strong view (0.5).
    """

    fp_dropout: float = 0.5
    cutmix_p: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges(self, fp_dropout="[0, 1)", cutmix_p="[0, 1]")


class UniMatch(Method):
    """UniMatch for segmentation; see the module docstring."""

    name = "unimatch"
    Config = UniMatchConfig
    unlabeled_batches = 2
    required_unlabeled = 2
    strong_views = 2

    def unsupervised(self, model: nn.Module, batch: Batch, progress: TrainProgress) -> LossParts:
        cfg = self.config
        x_l, x_u, x_m = batch.x_l, batch.x_u, batch.x_u2
        n_l, n_u = x_l.shape[0], x_u.shape[0]
        y_m = PseudoLabels.from_logits(self.teacher.logits(model, x_m))
        (s1, box1), (s2, box2) = (self.strong(batch, i) for i in range(2))

        clean, pred_fp = decode_with_dropout(model, model.encode(torch.cat([x_l, x_u])), (cfg.fp_dropout,), start=n_l)
        pred_l, pred_w = clean.split([n_l, n_u])
        pred_s1, pred_s2 = forward_split(model, [s1, s2])
        y_w = self.with_references(model, batch, PseudoLabels.from_logits(self.teacher.logits(model, x_u, own=pred_w)))

        sup = self.sup_loss(pred_l, batch.y_l)
        l_s = [
            masked_dice(pred, y.label, y.mask(cfg.tau))
            for pred, y in zip((pred_s1, pred_s2), (y_w.mixed(y_m, b) for b in (box1, box2)))
        ]
        l_fp = masked_dice(pred_fp, y_w.label, y_w.mask(cfg.tau))
        unsup = 0.25 * l_s[0] + 0.25 * l_s[1] + 0.5 * l_fp
        return LossParts(
            sup, unsup, {"s1": l_s[0], "s2": l_s[1], "fp": l_fp}, {"mask_ratio": float(y_w.mask(cfg.tau).mean())}
        )
