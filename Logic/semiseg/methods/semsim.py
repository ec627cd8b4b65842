"""SemSim: weak-to-strong consistency plus intra- and cross-image semantic similarity.

Xie et al., "SemSim: Revisiting Weak-to-Strong Consistency from a Semantic Similarity Perspective
for Semi-supervised Medical Image Segmentation", arXiv 2410.13486, 2024. No public code; this is
our implementation from the paper; its choices are listed below.

Streams, as UniMatch (Yang et al., CVPR 2023): the weak view gives pseudo-labels (tau = 0.95);
two strong views s1, s2 (colour jitter + blur, each CutMixed with a strong view of the second
unlabelled batch, whose pseudo-labels come from a no-grad eval-mode pass) and a feature-perturbed
weak stream (Dropout2d 0.5 on every encoder feature) learn them with masked Dice:
``L_u = 0.25 L_s1 + 0.25 L_s2 + 0.5 L_fp`` (UniMatch's relative weights, summing to 1).

On top, a Spatial-aware Fusion Module (:class:`~semiseg.models.sfm.SpatialFusion`, owned by the
method, trained with the network, unused at inference) turns encoder stages into features f on
which two terms are computed:

* ``L_intra`` (:mod:`semiseg.blocks.affinity`): masked Dice between the weak view's affinity-rectified
  prediction (target: argmax, mask: its confidence >= tau) and s1's rectified prediction.
* ``L_cross`` (:mod:`semiseg.blocks.prototypes`): local prototypes of the labelled images are queried by
  s2's features; masked CE to the argmax of the weak view's querying prediction, each pixel
  weighted by the uncertainty weight U (r = 1000) of the weak view's querying.

``L = (L_sup + 0.5 L_u + 0.25 L_intra + 0.25 L_cross) / 2`` blended in by ``w(t)``
(:func:`~semiseg.blocks.pseudo.blend`); ``w(t)`` is :func:`~semiseg.blocks.schedule.unsup_weight` (1
throughout with the paper's defaults).

Choices the paper leaves open (ours; all in :class:`SemSimConfig`):

* The SFM reads ``sfm_stages``: 0-based indices into ``UNet2D.encode``, default (2, 3, 4), the
  64/128/256-channel stages at strides 4/8/16 (0.70 M SFM parameters, nearer the paper's 0.79 M
  than the 1-based reading (1, 2, 3) at strides 2/4/8 with 0.67 M, and cheaper: its grids are
  four times coarser). Its output lies on the middle
  stage's grid (stride 8): affinities and prototypes live there, predictions are area-pooled to
  it, ``L_intra``/``L_cross`` are computed there, and CutMix boxes are area-pooled to it (> 0.5).
* The SFM runs twice per step: with gradient on the students (labelled images, s1, s2: the
  prototypes and the queries of s2 share one set of batch-norm statistics), and without gradient
  on the targets (weak view, second batch), which saves the backward pass over two fifths of the
  SFM's input.
* Mask of ``L_cross``: the model's weak-view confidence (pooled to the grid) >= tau, the same rule
  as ``L_u``; the querying prediction itself is close to uniform at temperature 1.
* Prototypes keep their gradient (``detach_prototypes=False``): ``L_cross`` also shapes the
  labelled features; the targets (weak view, second batch) are always detached.
* During a warm-up (``warmup > 0``) only ``L_sup`` is computed (the SFM gets no gradient then).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn
import torch.nn.functional as F

from ..blocks.affinity import affinity, rectify, to_grid
from ..blocks.losses import masked_cross_entropy, masked_dice
from ..blocks.perturb import decode_with_dropout, mix_targets
from ..blocks.prototypes import class_weights, local_prototypes, query, uncertainty_weight
from ..blocks.pseudo import PseudoLabels, SemiConfig, confidence_mask, evaluating
from ..blocks.schedule import TrainProgress
from ..errors import InputError
from ..models.sfm import SpatialFusion
from ..settings import check_ranges
from .base import Batch, LossParts, Method

__all__ = ["SemSim", "SemSimConfig"]


@dataclasses.dataclass
class SemSimConfig(SemiConfig):
    """SemSim's hyper-parameters (paper defaults unless marked "ours").

    Args:
        tau, warmup, rampup: see :class:`~semiseg.blocks.pseudo.SemiConfig` (0.95, 0, 0).
        fp_dropout: channel dropout of the feature-perturbed stream (0.5).
        cutmix_p: probability of a CutMix box per strong view (0.5).
        weight_u, weight_intra, weight_cross: weights of L_u, L_intra, L_cross (0.5, 0.25, 0.25).
        sfm_stages: encoder stages fed to the SFM, 0-based (ours: (2, 3, 4)).
        sfm_dim: D (128). sfm_window: window side on the coarsest SFM stage (ours: 2).
        sfm_heads: attention heads (ours: 4).
        affinity_temperature: softmax temperature of the affinity (ours: 0.1).
        regions: prototype blocks per side (2, i.e. N = 4).
        query_temperature: softmax temperature of the querying (1: the paper's plain softmax).
        uncertainty_r: r of the uncertainty weight (1000).
        detach_prototypes: stop the gradient through the prototypes (ours: False).
    """

    fp_dropout: float = 0.5
    cutmix_p: float = 0.5
    weight_u: float = 0.5
    weight_intra: float = 0.25
    weight_cross: float = 0.25
    sfm_stages: tuple[int, ...] = (2, 3, 4)
    sfm_dim: int = 128
    sfm_window: int = 2
    sfm_heads: int = 4
    affinity_temperature: float = 0.1
    regions: int = 2
    query_temperature: float = 1.0
    uncertainty_r: float = 1000.0
    detach_prototypes: bool = False

    def __post_init__(self) -> None:
        super().__post_init__()
        if len(self.sfm_stages) != 3 or sorted(set(self.sfm_stages)) != list(self.sfm_stages):
            raise InputError(f"sfm_stages must be three increasing stage indices, got {self.sfm_stages}")
        check_ranges(
            self, fp_dropout="[0, 1)", cutmix_p="[0, 1]", affinity_temperature="(0, inf)", query_temperature="(0, inf)"
        )


def _pool_mask(mask: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """A full-resolution CutMix box (B, H, W) on a coarser grid: cells more than half inside."""
    return F.interpolate(mask[:, None].float(), size=size, mode="area")[:, 0] > 0.5


class SemSim(Method):
    """SemSim over UNet2D; registered as ``semsim``, two unlabelled batches (CutMix)."""

    name = "semsim"
    Config = SemSimConfig
    unlabeled_batches = 2
    required_unlabeled = 2
    strong_views = 2

    def __init__(self, config: SemSimConfig, num_classes: int, model: nn.Module) -> None:
        super().__init__(config, num_classes, model)
        if config.sfm_stages[-1] >= len(model.features):
            raise ValueError(
                f"sfm_stages {config.sfm_stages} beyond the network's {len(model.features)} encoder stages"
            )
        channels = [model.features[i] for i in config.sfm_stages]
        self.sfm = SpatialFusion(channels, config.sfm_dim, config.sfm_window, config.sfm_heads)

    def _stages(self, feats: list[torch.Tensor]) -> list[torch.Tensor]:
        return [feats[i] for i in self.config.sfm_stages]

    def unsupervised(self, model: nn.Module, batch: Batch, progress: TrainProgress) -> LossParts:
        cfg = self.config
        x_l, y_l, x_u, x_u2 = batch.x_l, batch.y_l, batch.x_u, batch.x_u2
        nl, nu = x_l.shape[0], x_u.shape[0]

        # second batch: pseudo-labels without gradient in eval mode (as UniMatch), encoder features kept
        with evaluating(model):
            feats2 = model.encode(x_u2)
            logits2 = model.decode(feats2)
        (s1, mask1), (s2, mask2) = (self.strong(batch, i) for i in range(2))

        feats = model.encode(torch.cat([x_l, x_u]))
        logits, logits_fp = decode_with_dropout(model, feats, (cfg.fp_dropout,), start=nl)
        logits_l, logits_w = logits.split([nl, nu])
        feats_s = model.encode(torch.cat([s1, s2]))
        logits_s1, logits_s2 = model.decode(feats_s).split([nu, nu])

        # SFM: students (labelled, s1, s2) with gradient in one call; targets (weak, second batch) without
        stages_l, stages_w = zip(*(f.split([nl, nu]) for f in self._stages(feats)))
        f_l, f_s1, f_s2 = self.sfm([torch.cat([a, b]) for a, b in zip(stages_l, self._stages(feats_s))]).split(
            [nl, nu, nu]
        )
        with torch.no_grad():
            f_w, f_2 = self.sfm([torch.cat([a, b]) for a, b in zip(stages_w, self._stages(feats2))]).split([nu, nu])
        grid = tuple(f_w.shape[-2:])

        # L_u: UniMatch's weak-to-strong and feature-perturbation terms
        sup = self.sup_loss(logits_l, y_l)
        y_w, y_2 = (
            self.with_references(model, batch, PseudoLabels.from_logits(logits_w)),
            PseudoLabels.from_logits(logits2),
        )
        m_w = y_w.mask(cfg.tau)
        loss_s = [
            masked_dice(pred, y.label, y.mask(cfg.tau))
            for pred, y in zip((logits_s1, logits_s2), (y_w.mixed(y_2, b) for b in (mask1, mask2)))
        ]
        loss_fp = masked_dice(logits_fp, y_w.label, m_w)
        loss_u = 0.25 * loss_s[0] + 0.25 * loss_s[1] + 0.5 * loss_fp

        # L_intra: rectified weak (and second batch) predictions teach s1's rectified prediction
        g1, g2 = _pool_mask(mask1, grid), _pool_mask(mask2, grid)
        with torch.no_grad():
            p_w = to_grid(torch.softmax(logits_w.detach().float(), 1), grid)
            p_2 = to_grid(torch.softmax(logits2.float(), 1), grid)
            r_t = mix_targets(
                rectify(p_w, affinity(f_w, cfg.affinity_temperature)),
                rectify(p_2, affinity(f_2, cfg.affinity_temperature)),
                g1,
            )
            conf_r, pl_r = r_t.max(1)
            m_r = confidence_mask(conf_r, cfg.tau)
        p_s1 = to_grid(torch.softmax(logits_s1.float(), 1), grid)
        r_s1 = rectify(p_s1, affinity(f_s1, cfg.affinity_temperature))
        loss_intra = masked_dice(torch.log(r_s1.clamp_min(1e-8)), pl_r, m_r)

        # L_cross: local prototypes of the labelled images queried by s2 (targets from the weak view)
        protos, valid = local_prototypes(f_l, class_weights(y_l, self.num_classes, grid), cfg.regions)
        with torch.no_grad():
            q_w = query(f_w, protos.detach(), valid, cfg.regions, cfg.query_temperature)
            q_2 = query(f_2, protos.detach(), valid, cfg.regions, cfg.query_temperature)
            pl_c = mix_targets(q_w.mean(1).argmax(1), q_2.mean(1).argmax(1), g2)
            u = mix_targets(uncertainty_weight(q_w, cfg.uncertainty_r), uncertainty_weight(q_2, cfg.uncertainty_r), g2)
            m_c = confidence_mask(mix_targets(p_w.max(1).values, p_2.max(1).values, g2), cfg.tau)
        q_s2 = query(
            f_s2, protos.detach() if cfg.detach_prototypes else protos, valid, cfg.regions, cfg.query_temperature
        )
        loss_cross = masked_cross_entropy(torch.log(q_s2.mean(1).clamp_min(1e-8)), pl_c, m_c, weight=u)

        unsup = cfg.weight_u * loss_u + cfg.weight_intra * loss_intra + cfg.weight_cross * loss_cross
        terms = {"s1": loss_s[0], "s2": loss_s[1], "fp": loss_fp, "intra": loss_intra, "cross": loss_cross}
        stats = {
            "mask_ratio": float(m_w.mean()),
            "intra_mask_ratio": float(m_r.mean()),
            "cross_u": float((u * m_c).sum() / m_c.sum().clamp_min(1)),
        }
        return LossParts(sup, unsup, terms, stats)
