"""What a method is: a loss for one batch, over the shared trainer.

A method holds its hyper-parameters (a dataclass ``Config``), any modules or state of its own
(heads, banks, EMA teachers: saved with the checkpoint through ``state_dict``), and one function,
:meth:`Method.loss`, turning a labelled and an unlabelled batch into a total loss, its named terms
and statistics. It never calls ``backward``, an optimiser, ``.to(device)``, autocast, a logger or
``torch.save``: the trainer does.

:meth:`Method.loss` is a template: what every semi-supervised method does the same way (the
supervised step while the unsupervised weight is 0 or the unlabelled batches are missing, the blend
of L_sup and L_u by :func:`~semiseg.blocks.pseudo.blend`, the detached terms and the ``unsup_weight``
statistic) is written here once; a method writes only :meth:`Method.unsupervised`, its own part.
Its pseudo-label teacher (the student itself or an EMA copy) and the optional reference-guided
filter are strategy objects built from its config (:func:`~semiseg.blocks.pseudo.build_teacher`,
:func:`~semiseg.blocks.refbank.build_references`).
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
import torch.nn as nn

from ..blocks.losses import SupervisedLoss
from ..blocks.perturb import StrongView, strong_view
from ..blocks.pseudo import PseudoLabels, SemiConfig, blend, build_teacher
from ..blocks.refbank import build_references, reference_labels
from ..blocks.schedule import TrainProgress, unsup_weight

__all__ = ["Batch", "LossOutput", "LossParts", "Method", "StrongView"]


@dataclasses.dataclass
class Batch:
    """One training step's data, weakly augmented, on the training device.

    Attributes:
        x_l: labelled images (B_l, 1, S, S).
        y_l: their labels (B_l, S, S) int64.
        x_u: unlabelled images, weak view (B_u, 1, S, S), or ``None`` for a supervised method.
        x_u2: a second unlabelled batch (B_u, 1, S, S) for CutMix, when the method asks for it.
        strong: the method's strong views of ``x_u`` made ahead by :meth:`Method.prepare` (empty:
            :meth:`Method.strong` makes them when asked).
    """

    x_l: torch.Tensor
    y_l: torch.Tensor
    x_u: torch.Tensor | None = None
    x_u2: torch.Tensor | None = None
    strong: list[StrongView] = dataclasses.field(default_factory=list)


@dataclasses.dataclass
class LossOutput:
    """A method's answer for one batch.

    Attributes:
        total: the scalar to back-propagate.
        terms: named loss terms (detached floats or tensors) for the progress log.
        stats: other statistics, e.g. ``mask_ratio`` (fraction of confident pseudo-labels).
    """

    total: torch.Tensor
    terms: dict[str, float] = dataclasses.field(default_factory=dict)
    stats: dict[str, float] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class LossParts:
    """A semi-supervised method's own part of a step (:meth:`Method.unsupervised`).

    Attributes:
        sup: L_sup of the labelled batch, a scalar; the method computes it because its labelled
            logits usually come from the same forward pass as the unlabelled views.
        unsup: L_u, the scalar unsupervised loss with the method's own term weights applied.
        terms: L_u's named terms (scalar tensors, detached by the template) for the progress log.
        stats: other statistics, e.g. ``mask_ratio``.
    """

    sup: torch.Tensor
    unsup: torch.Tensor
    terms: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)
    stats: dict[str, float] = dataclasses.field(default_factory=dict)


class Method(nn.Module):
    """Base class of every method.

    Subclasses set ``name``, ``Config`` (a dataclass of hyper-parameters, paper defaults),
    ``unlabeled_batches`` (0 for supervised, 1 for a weak unlabelled batch, 2 with a second batch
    for CutMix), ``required_unlabeled`` (how many of those the unsupervised part cannot do without:
    1 when the second batch only feeds an optional CutMix) and ``strong_views`` (strong views of the
    unlabelled batch per step, each CutMixed with the second batch at the config's ``cutmix_p``),
    and implement :meth:`unsupervised` (or, for a method without unlabelled data, :meth:`loss`).

    Args:
        config: an instance of ``Config``.
        num_classes: classes including background.
        model: the network being trained (methods may build heads that match its feature sizes).
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type] = object
    unlabeled_batches: ClassVar[int] = 0
    required_unlabeled: ClassVar[int] = 1
    strong_views: ClassVar[int] = 0

    def __init__(self, config, num_classes: int, model: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.num_classes = num_classes
        self.sup_loss = SupervisedLoss()
        self.teacher = build_teacher(config, model)  # StudentTeacher, or EMATeacher for ema > 0
        self.references = build_references(config, num_classes, model)  # ReferenceGuidedLabeler or None

    def unsup_weight(self, progress: TrainProgress) -> float:
        """Weight of the unsupervised losses at ``progress`` (:func:`~semiseg.blocks.schedule.unsup_weight`; 0 without a
        :class:`SemiConfig`)."""
        cfg = self.config
        return unsup_weight(progress, cfg.warmup, cfg.rampup) if isinstance(cfg, SemiConfig) else 0.0

    def uses_unlabeled(self, progress: TrainProgress) -> bool:
        """Whether the step at ``progress`` reads unlabelled images (not during a supervised warm-up)."""
        return self.unlabeled_batches > 0 and self.unsup_weight(progress) > 0.0

    def has_unlabeled(self, batch: Batch) -> bool:
        """Whether ``batch`` holds the ``required_unlabeled`` unlabelled batches the method cannot do without."""
        return all(x is not None for x in (batch.x_u, batch.x_u2)[: self.required_unlabeled])

    def prepare(self, batch: Batch, generator: torch.Generator | None = None) -> Batch:
        """Make the batch's :attr:`Batch.strong` views ahead of the step, drawing with ``generator``.

        Data work only (no network): the trainer runs it in its prefetch thread, off the optimiser's
        critical path, while the previous step trains.
        """
        if self.strong_views and batch.x_u is not None:
            p = float(getattr(self.config, "cutmix_p", 0.0))
            batch.strong = [strong_view(batch.x_u, batch.x_u2, p, generator) for _ in range(self.strong_views)]
        return batch

    def strong(self, batch: Batch, i: int) -> StrongView:
        """The ``i``-th strong view of ``batch.x_u``: the prepared one, else made now (global RNG)."""
        if not batch.strong:
            self.prepare(batch)
        return batch.strong[i]

    def trainable_parameters(self) -> list[nn.Parameter]:
        """Parameters of the method's own modules that the optimiser updates (e.g. SemSim's SFM)."""
        return [p for p in self.parameters() if p.requires_grad]

    def after_step(self, model: nn.Module, progress: TrainProgress) -> None:
        """Called by the trainer after each optimiser step: the teacher follows the student
        (an :class:`~semiseg.blocks.pseudo.EMATeacher` averages it; the student itself has nothing to do)."""
        self.teacher.update(model)

    def with_references(self, model: nn.Module, batch: Batch, pseudo: PseudoLabels) -> PseudoLabels:
        """``pseudo`` (of ``batch.x_u``) kept only where reference-guided labels agree.

        With ``references=True`` in the config, the teacher's (else the model's) decoder features
        label ``batch.x_u`` by their nearest labelled pixel (:func:`~semiseg.blocks.refbank.reference_labels`,
        the bank of the method's :class:`~semiseg.blocks.refbank.ReferenceGuidedLabeler` plus the labelled
        batch, which then enters the bank); pixels whose pseudo-label differs get confidence 0, so
        no threshold keeps them. Without it, ``pseudo`` unchanged. The extra cost is one eval-mode
        forward pass of the labelled and unlabelled batch.
        """
        if self.references is None or batch.x_u is None:
            return pseudo
        label, _, _ = reference_labels(self.references, self.teacher.net(model), batch.x_l, batch.y_l, batch.x_u)
        return pseudo.agreeing(label)

    def supervised_only(self, model: nn.Module, batch: Batch) -> LossOutput:
        """L_sup alone: a semi-supervised method's step while its unsupervised weight is 0
        (:func:`~semiseg.blocks.pseudo.blend` at weight 0, so the warm-up is the supervised baseline)."""
        sup = self.sup_loss(model(batch.x_l), batch.y_l)
        return LossOutput(sup, {"sup": float(sup.detach())}, {"unsup_weight": 0.0})

    def loss(self, model: nn.Module, batch: Batch, progress: TrainProgress) -> LossOutput:
        """The step's loss: ``blend(L_sup, L_u, w)`` with ``w`` the unsupervised weight at ``progress``.

        While ``w`` is 0 (a warm-up) or the batch lacks the unlabelled images the method requires,
        L_sup alone (:meth:`supervised_only`; the unlabelled streams are not computed). Otherwise
        :meth:`unsupervised` gives L_sup and L_u, blended by :func:`~semiseg.blocks.pseudo.blend`.

        Returns:
            the total; the terms ``sup`` then the method's own, detached floats; the method's
            statistics then ``unsup_weight``.
        """
        w = self.unsup_weight(progress)
        if w == 0.0 or not self.has_unlabeled(batch):
            return self.supervised_only(model, batch)
        parts = self.unsupervised(model, batch, progress)
        terms = {"sup": parts.sup, **parts.terms}
        return LossOutput(
            blend(parts.sup, parts.unsup, w),
            {k: float(v.detach()) for k, v in terms.items()},
            {**parts.stats, "unsup_weight": w},
        )

    def unsupervised(self, model: nn.Module, batch: Batch, progress: TrainProgress) -> LossParts:
        """The method's own part of a step that uses the unlabelled batches: L_sup, L_u, terms, stats.

        Called by :meth:`loss` only with an unsupervised weight > 0 and the required unlabelled batches.
        """
        raise NotImplementedError
