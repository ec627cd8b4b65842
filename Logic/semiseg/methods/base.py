"""What a method is: a loss for one batch, over the shared trainer.

A method holds its hyper-parameters (a dataclass ``Config``), any modules or state of its own
(heads, banks, EMA teachers: saved with the checkpoint through ``state_dict``), and one function,
:meth:`Method.loss`, turning a labelled and an unlabelled batch into a total loss, its named terms
and statistics. It never calls ``backward``, an optimiser, ``.to(device)``, autocast, a logger or
``torch.save``: the trainer does.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import torch
import torch.nn as nn

from ..losses import SupervisedLoss
from ..perturb import StrongView, strong_view
from ..pseudo import EMATeacher, PseudoLabels, SemiConfig, eval_logits, unsup_weight
from ..refbank import ReferenceGuidedLabeler, reference_labels

__all__ = ["Batch", "LossOutput", "Method", "StrongView", "TrainProgress"]


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
class TrainProgress:
    """Where training is: ``iteration`` (0-based) of ``iterations``."""

    iteration: int
    iterations: int

    @property
    def fraction(self) -> float:
        return self.iteration / max(1, self.iterations)


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


class Method(nn.Module):
    """Base class of every method.

    Subclasses set ``name``, ``Config`` (a dataclass of hyper-parameters, paper defaults),
    ``unlabeled_batches`` (0 for supervised, 1 for a weak unlabelled batch, 2 with a second batch
    for CutMix) and ``strong_views`` (strong views of the unlabelled batch per step, each CutMixed
    with the second batch at the config's ``cutmix_p``), and implement :meth:`loss`.

    Args:
        config: an instance of ``Config``.
        num_classes: classes including background.
        model: the network being trained (methods may build heads that match its feature sizes).
    """

    name: ClassVar[str] = ""
    Config: ClassVar[type] = object
    unlabeled_batches: ClassVar[int] = 0
    strong_views: ClassVar[int] = 0

    def __init__(self, config, num_classes: int, model: nn.Module) -> None:
        super().__init__()
        self.config = config
        self.num_classes = num_classes
        self.sup_loss = SupervisedLoss()
        ema = float(getattr(config, "ema", 0.0) or 0.0)
        self.teacher = EMATeacher(model, ema) if ema > 0 else None
        self.references = None  # ReferenceGuidedLabeler of a config with references=True
        if getattr(config, "references", False):
            self.references = ReferenceGuidedLabeler(num_classes, model.features[0])

    def unsup_weight(self, progress: TrainProgress) -> float:
        """Weight of the unsupervised losses at ``progress`` (:func:`~semiseg.pseudo.unsup_weight`; 0 without a :class:`SemiConfig`)."""
        cfg = self.config
        return unsup_weight(progress, cfg.warmup, cfg.rampup) if isinstance(cfg, SemiConfig) else 0.0

    def uses_unlabeled(self, progress: TrainProgress) -> bool:
        """Whether the step at ``progress`` reads unlabelled images (not during a supervised warm-up)."""
        return self.unlabeled_batches > 0 and self.unsup_weight(progress) > 0.0

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
        """Called by the trainer after each optimiser step: updates the EMA teacher, if any.

        A method whose config has an ``ema`` decay > 0 gets ``self.teacher``, an
        :class:`~semiseg.pseudo.EMATeacher` of the model; otherwise ``self.teacher`` is ``None``.
        """
        if self.teacher is not None:
            self.teacher.update(model)

    def teacher_net(self, model: nn.Module) -> nn.Module:
        """The network that makes pseudo-labels: the EMA teacher's copy if there is one, else ``model``."""
        return self.teacher.model if self.teacher is not None else model

    def teacher_logits(self, model: nn.Module, x: torch.Tensor) -> torch.Tensor:
        """No-grad logits of ``x`` for pseudo-labels: the EMA teacher's if there is one, else the
        model's own in eval mode (:func:`~semiseg.pseudo.eval_logits`), e.g. for a CutMix batch."""
        return self.teacher(x) if self.teacher is not None else eval_logits(model, x)

    def with_references(self, model: nn.Module, batch: Batch, pseudo: PseudoLabels) -> PseudoLabels:
        """``pseudo`` (of ``batch.x_u``) kept only where reference-guided labels agree.

        With ``references=True`` in the config, the teacher's (else the model's) decoder features
        label ``batch.x_u`` by their nearest labelled pixel (:func:`~semiseg.refbank.reference_labels`,
        the bank of the method's :class:`~semiseg.refbank.ReferenceGuidedLabeler` plus the labelled
        batch, which then enters the bank); pixels whose pseudo-label differs get confidence 0, so
        no threshold keeps them. Without it, ``pseudo`` unchanged. The extra cost is one eval-mode
        forward pass of the labelled and unlabelled batch.
        """
        if self.references is None or batch.x_u is None:
            return pseudo
        label, _, _ = reference_labels(self.references, self.teacher_net(model), batch.x_l, batch.y_l, batch.x_u)
        return pseudo.agreeing(label)

    def supervised_only(self, model: nn.Module, batch: Batch) -> LossOutput:
        """L_sup alone: a semi-supervised method's step while its unsupervised weight is 0
        (:func:`~semiseg.pseudo.blend` at weight 0, so the warm-up is the supervised baseline)."""
        sup = self.sup_loss(model(batch.x_l), batch.y_l)
        return LossOutput(sup, {"sup": float(sup.detach())}, {"unsup_weight": 0.0})

    def loss(self, model: nn.Module, batch: Batch, progress: TrainProgress) -> LossOutput:
        raise NotImplementedError
