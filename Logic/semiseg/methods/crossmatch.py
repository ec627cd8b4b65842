"""CrossMatch: UniMatch plus knowledge distillation across perturbed decoders.

Zhao, Wang, Ding. "CrossMatch: Enhance Semi-Supervised Medical Image Segmentation with
Perturbation Strategies and Knowledge Distillation", IEEE Journal of Biomedical and Health
Informatics (JBHI), 2024, arXiv 2405.00354 (its public ACDC code).

One encoder and one decoder. The decoder is applied to the clean encoder features and, in the
same pass, to weakly (``Dropout2d(0.25)``) and strongly (``Dropout2d(0.75)``) dropped copies. With
u the weak view of an unlabelled batch, s1/s2 two strong views CutMixed with a second batch m:

- teacher: the clean prediction of u (detached) -> pseudo-labels y_w, and for s1/s2 the same
  labels CutMixed with m's (no-grad eval pass);
- L_s1, L_s2: masked Dice of the clean predictions of s1 and s2 (as UniMatch);
- L_tkd = mean of four masked Dice terms: the weak- and strong-drop decoders on u against y_w,
  and on s2 against the CutMixed y_w;
- L_dkd = mean of two: each perturbed decoder on s2 against that same decoder's own (detached)
  prediction of u, CutMixed with its prediction of m (the weak image teaches the strong one);
- L_kd = (1 - eta) L_tkd + eta L_dkd, eta = 0.3;
- L = (L_sup + 0.25 L_s1 + 0.25 L_s2 + 0.5 L_kd) / 2, blended in by the weight w_u
  (:func:`~semiseg.blocks.pseudo.blend`).

Every unsupervised Dice counts only pixels whose target's confidence is >= tau (0.95). There is no
separate fp stream (the perturbed decoders replace it), no EMA and no ramp-up in the paper.

Choices that differ from the public code or that it leaves open (ours):

- The no-grad eval pass of m encodes m alone (the code also re-encodes the labelled batch there
  and discards it); the feature dropout stays active in that pass, as in the code (its dropout
  modules are not registered, so ``model.eval()`` leaves them on).
- ``warmup``/``rampup`` scale the unsupervised part by ``w_u`` (0/0 = the paper's constant 1;
  while ``w_u`` is 0 only the labelled forward runs and L = L_sup (see
  :func:`~semiseg.blocks.pseudo.blend`)). ``ema`` > 0 makes the teacher labels (y_w and all of m's
  predictions) with an EMA copy of the network; the L_dkd
  targets on u still come from the student's perturbed decoders (0 = off, the paper's choice).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn

from ..blocks.losses import masked_dice
from ..blocks.perturb import decode_with_dropout
from ..blocks.pseudo import PseudoLabels, TeacherConfig, evaluating
from ..blocks.schedule import TrainProgress
from ..settings import check_ranges
from .base import Batch, LossParts, Method

__all__ = ["CrossMatch", "CrossMatchConfig"]


@dataclasses.dataclass
class CrossMatchConfig(TeacherConfig):
    """CrossMatch settings: ``tau``, ``warmup``, ``rampup``, ``references`` (see :class:`SemiConfig`),
    ``ema`` (see :class:`TeacherConfig`; 0: off, the paper's choice) and

    Args:
        weak_dropout: channel dropout of the weakly perturbed decoder stream (0.25).
        strong_dropout: channel dropout of the strongly perturbed decoder stream (0.75).
        eta: share of the decoder distillation L_dkd in L_kd (0.3).
        cutmix_p: probability of a CutMix box per strong view (0.5).
    """

    weak_dropout: float = 0.25
    strong_dropout: float = 0.75
    eta: float = 0.3
    cutmix_p: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges(self, weak_dropout="[0, 1)", strong_dropout="[0, 1)", eta="[0, 1]", cutmix_p="[0, 1]")


class CrossMatch(Method):
    """CrossMatch for segmentation; see the module docstring."""

    name = "crossmatch"
    Config = CrossMatchConfig
    unlabeled_batches = 2
    required_unlabeled = 2
    strong_views = 2

    def unsupervised(self, model: nn.Module, batch: Batch, progress: TrainProgress) -> LossParts:
        cfg = self.config
        x_l, x_u, x_m = batch.x_l, batch.x_u, batch.x_u2
        n_l, n_u = x_l.shape[0], x_u.shape[0]
        drops = (cfg.weak_dropout, cfg.strong_dropout)
        net = self.teacher.net(model)
        with evaluating(net):
            m_clean, m_weak, m_strong = map(PseudoLabels.from_logits, decode_with_dropout(net, net.encode(x_m), drops))
        (s1, box1), (s2, box2) = (self.strong(batch, i) for i in range(2))

        clean, u_weak, u_strong = decode_with_dropout(model, model.encode(torch.cat([x_l, x_u])), drops, start=n_l)
        pred_l, pred_w = clean.split([n_l, n_u])
        clean_s, s2_weak, s2_strong = decode_with_dropout(model, model.encode(torch.cat([s1, s2])), drops, start=n_u)
        pred_s1, pred_s2 = clean_s.split([n_u, n_u])
        y_w = self.with_references(model, batch, PseudoLabels.from_logits(self.teacher.logits(model, x_u, own=pred_w)))
        y_s1, y_s2 = y_w.mixed(m_clean, box1), y_w.mixed(m_clean, box2)
        y_weak2 = PseudoLabels.from_logits(u_weak).mixed(m_weak, box2)
        y_strong2 = PseudoLabels.from_logits(u_strong).mixed(m_strong, box2)

        def dice(logits: torch.Tensor, target: PseudoLabels) -> torch.Tensor:
            return masked_dice(logits, target.label, target.mask(cfg.tau))

        sup = self.sup_loss(pred_l, batch.y_l)
        l_s1, l_s2 = dice(pred_s1, y_s1), dice(pred_s2, y_s2)
        l_tkd = (dice(u_weak, y_w) + dice(u_strong, y_w) + dice(s2_weak, y_s2) + dice(s2_strong, y_s2)) / 4
        l_dkd = (dice(s2_weak, y_weak2) + dice(s2_strong, y_strong2)) / 2
        l_kd = (1 - cfg.eta) * l_tkd + cfg.eta * l_dkd
        terms = {"s1": l_s1, "s2": l_s2, "tkd": l_tkd, "dkd": l_dkd}
        return LossParts(
            sup, 0.25 * l_s1 + 0.25 * l_s2 + 0.5 * l_kd, terms, {"mask_ratio": float(y_w.mask(cfg.tau).mean())}
        )
