"""Reference-guided pseudo-labels: unlabelled pixels take the class of their nearest labelled pixel.

Seibold, Reiß, Kleesiek, Stiefelhagen, "Reference-guided Pseudo-Label Generation for Medical
Semantic Segmentation", AAAI 2022, arXiv 2112.00735. No public code; our reconstruction (its
choices are listed below; :mod:`semiseg.blocks.refbank` holds the labelling itself as a reusable
pseudo-label source).

Per step, after a supervised warm-up, on an unlabelled batch u and a second unlabelled batch m:

1. a teacher pass (the network itself in eval mode without gradients, or an EMA copy) over the
   labelled batch and the weak views of u and m gives the decoder's last features (before the
   classifier), average-pooled by ``feature_stride`` and L2-normalised, and the teacher's own
   prediction;
2. references = the labelled batch's cells on that grid (:func:`~semiseg.blocks.refbank.grid_references`)
   plus the class-balanced bank of earlier steps; every unlabelled cell gets, per class, its best
   cosine similarity to that class's references (computed in ``chunk`` x ``chunk`` blocks); the
   batch's references then enter the bank;
3. the per-class scores are upsampled to the image, the reference label is their argmax and its
   reliability the margin between the best and second-best class; reference and network labels
   are combined (``combine``, below) into targets and a mask;
4. a strong view of u (colour jitter + blur) is CutMixed with a strong view of m (one box per
   sample, probability ``cutmix_p``; targets and masks mixed with the same box) and trained on
   the targets: ``L_u = (masked CE + masked Dice) / 2``;
   ``L = (L_sup + weight_u * L_u) / 2`` blended in by ``w(t)`` (:func:`~semiseg.blocks.pseudo.blend`),
   ``w(t)`` from :func:`~semiseg.blocks.schedule.unsup_weight`.

The network is unchanged and inference costs nothing extra.

The same labels serve the other methods as an extra pseudo-label source: ``references=True`` in
the config of fixmatch, unimatch, crossmatch or semsim keeps a weak-view pseudo-label only where
the reference label agrees (:meth:`semiseg.methods.base.Method.with_references`).

Choices the paper leaves open (ours; all in :class:`RefGuidedConfig`):

* Embedding grid 1/4 of the image (``feature_stride=4``), bank of 1024 embeddings per class with
  at most 256 new per class and step, ``min_purity=0.5`` for a reference cell.
* ``combine="agree"`` (default) keeps only pixels where the reference label equals the teacher
  network's own argmax, with no margin threshold (``min_margin=0``). Foreground margins are tiny
  (the decoder features follow a LeakyReLU): an absolute margin threshold keeps almost only the
  background, so ``combine="alone"`` with one trains the network towards background, while
  agreement keeps a good part of the foreground at a higher accuracy than either label alone
  (measured by ``benchmarks/refguided_labels.py``: docs/BENCHMARKS.md section 1).
* ``combine``: ``"alone"`` uses the reference labels by themselves where ``margin >= min_margin``
  (the paper's idea in its pure form); ``"agree"`` keeps only those that equal the teacher
  network's own argmax; ``"union"`` takes the network's label where its confidence is >= tau, the
  reference label elsewhere (tau is used only there).
* CutMix with a second unlabelled batch (``cutmix_p=0.5``, as UniMatch; 0 = none, m not read).
* ``upsample="bilinear"`` interpolates the per-class score maps before the argmax (smooth
  boundaries); ``"nearest"`` repeats the coarse labels and margins.
* Warm-up 0.2 and ramp-up 0.2 of the iterations (the paper warms up on labelled data; the
  fractions are ours). The blended (...) / 2 scaling matches the other methods, so one learning rate
  serves all. The teacher pass runs in eval mode (batch-norm running statistics, no dropout).
"""

from __future__ import annotations

import dataclasses

import torch
import torch.nn as nn

from ..blocks.losses import masked_cross_entropy, masked_dice
from ..blocks.perturb import mix_targets
from ..blocks.pseudo import TeacherConfig, forward_split, pseudo_label
from ..blocks.refbank import ReferenceGuidedLabeler, reference_labels
from ..blocks.schedule import TrainProgress
from ..errors import InputError
from ..settings import check_ranges
from .base import Batch, LossParts, Method

__all__ = ["RefGuided", "RefGuidedConfig", "COMBINE", "combine_labels"]

COMBINE = ("alone", "agree", "union")


@dataclasses.dataclass
class RefGuidedConfig(TeacherConfig):
    """Reference-guided pseudo-labelling settings (all ours, see the module docstring).

    Args:
        tau: confidence threshold of the network's own labels, used by ``combine="union"`` (0.95).
        warmup, rampup: supervised warm-up and ramp-up fractions (0.2, 0.2).
        weight_u: weight of L_u (1.0).
        feature_stride: decoder features are average-pooled by it (4).
        min_margin: a reference label counts when best - second-best similarity >= it (0.0).
        min_purity: a labelled cell is a reference when its majority class covers >= it (0.5).
        bank_size: bank embeddings per class (1024; 0 = batch references only).
        per_update: at most this many embeddings per class enter the bank per step (256).
        chunk: block size of the similarity computation (4096).
        upsample: ``"bilinear"`` (score maps) or ``"nearest"`` (labels) (bilinear).
        combine: ``"alone"``, ``"agree"`` or ``"union"`` (agree).
        cutmix_p: probability of a CutMix box in the strong view (0.5; 0 = none).
        ema: EMA decay of the teacher that computes the embeddings (0: the network itself; see
            :class:`~semiseg.blocks.pseudo.TeacherConfig`).
    """

    warmup: float = 0.2
    rampup: float = 0.2
    weight_u: float = 1.0
    feature_stride: int = 4
    min_margin: float = 0.0
    min_purity: float = 0.5
    bank_size: int = 1024
    per_update: int = 256
    chunk: int = 4096
    upsample: str = "bilinear"
    combine: str = "agree"
    cutmix_p: float = 0.5

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.combine not in COMBINE:
            raise InputError(f"combine must be one of {COMBINE}, got {self.combine!r}")
        if self.upsample not in ("bilinear", "nearest"):
            raise InputError(f"upsample must be 'bilinear' or 'nearest', got {self.upsample!r}")
        if self.references:
            raise InputError("refguided makes reference labels itself: set combine instead of references")
        if self.feature_stride < 1 or self.chunk < 1:
            raise InputError("feature_stride and chunk must be >= 1")
        check_ranges(self, min_purity="[0, 1]", cutmix_p="[0, 1]")


def combine_labels(
    label: torch.Tensor,
    margin: torch.Tensor,
    own: torch.Tensor,
    own_conf: torch.Tensor,
    combine: str,
    min_margin: float,
    tau: float,
):
    """Targets and mask from reference labels and the network's own pseudo-labels (all (B, H, W)).

    ``"alone"``: reference labels where ``margin >= min_margin``; ``"agree"``: only where they also
    equal ``own``; ``"union"``: ``own`` where ``own_conf >= tau``, reference labels elsewhere.

    Returns:
        ``(target int64, mask float)``.
    """
    mask = margin >= min_margin
    target = label
    if combine == "agree":
        mask = mask & (label == own)
    elif combine == "union":
        confident = own_conf >= tau
        target = torch.where(confident, own, label)
        mask = mask | confident
    elif combine != "alone":
        raise ValueError(f"combine must be one of {COMBINE}, got {combine!r}")
    return target, mask.float()


class RefGuided(Method):
    """Reference-guided pseudo-labels; registered as ``refguided``, two unlabelled batches (CutMix)."""

    name = "refguided"
    Config = RefGuidedConfig
    unlabeled_batches = 2
    strong_views = 1

    def __init__(self, config: RefGuidedConfig, num_classes: int, model: nn.Module) -> None:
        super().__init__(config, num_classes, model)
        self.labeler = ReferenceGuidedLabeler(
            num_classes, model.features[0], config.bank_size, config.per_update, config.chunk, config.min_purity
        )

    def pseudo_labels(
        self, model: nn.Module, x_l: torch.Tensor, y_l: torch.Tensor, x_u: torch.Tensor, update: bool = True
    ):
        """Reference-guided labels of ``x_u`` (:func:`~semiseg.blocks.refbank.reference_labels` with the
        teacher: the EMA copy if any, else the network itself).

        Returns:
            ``(label (B, H, W), margin (B, H, W), teacher logits of x_u (B, C, H, W))``.
        """
        return reference_labels(
            self.labeler,
            self.teacher.net(model),
            x_l,
            y_l,
            x_u,
            self.config.feature_stride,
            self.config.upsample,
            update,
        )

    def unsupervised(self, model: nn.Module, batch: Batch, progress: TrainProgress) -> LossParts:
        cfg = self.config
        x_l, y_l, x_u, x_m = batch.x_l, batch.y_l, batch.x_u, batch.x_u2
        mix = cfg.cutmix_p > 0 and x_m is not None
        queries = torch.cat([x_u, x_m]) if mix else x_u
        label, margin, logits_t = self.pseudo_labels(model, x_l, y_l, queries)
        conf_t, label_t = pseudo_label(logits_t)
        target, mask = combine_labels(label, margin, label_t, conf_t, cfg.combine, cfg.min_margin, cfg.tau)
        x_s, box = self.strong(batch, 0)
        if mix:
            target, mask = (mix_targets(*t.split(x_u.shape[0]), box) for t in (target, mask))

        logits_l, logits_s = forward_split(model, [x_l, x_s])
        sup = self.sup_loss(logits_l, y_l)
        l_ce = masked_cross_entropy(logits_s, target, mask)
        l_dice = masked_dice(logits_s, target, mask)
        unsup = (l_ce + l_dice) / 2
        stats = {
            "mask_ratio": float(mask.mean()),
            "ref_agreement": float((label == label_t).float().mean()),
            "bank_fill": float(self.labeler.count.float().mean() / max(1, cfg.bank_size)),
        }
        return LossParts(sup, cfg.weight_u * unsup, {"ref_ce": l_ce, "ref_dice": l_dice}, stats)
