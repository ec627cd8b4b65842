"""Pseudo-labels, confidence masks, the unsupervised weight schedule, an EMA teacher and the
multi-view forward: the pieces every semi-supervised method shares, written once.

FixMatch (Sohn et al., NeurIPS 2020, arXiv 2001.07685), UniMatch (Yang et al., CVPR 2023, arXiv
2208.09910) and its descendants take the argmax of the weak view's softmax as the pseudo-label and
count only pixels whose max probability reaches ``tau = 0.95``, with a constant unsupervised weight
of 1 from the first iteration. The supervised warm-up and sigmoid ramp-up of :func:`unsup_weight`
(Laine & Aila's ``exp(-5 (1 - t)^2)``, used by Mean Teacher and SSL4MIS) and the optional
:class:`EMATeacher` are for short budgets; they are off by default.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
from collections.abc import Iterator, Sequence
from typing import ClassVar, Union

import torch
import torch.nn as nn

from ..errors import InputError
from ..settings import check_ranges
from .perturb import mix_targets

__all__ = [
    "SemiConfig", "TeacherConfig", "PseudoLabels", "pseudo_label", "confidence_mask", "blend",
    "Teacher", "StudentTeacher", "EMATeacher", "build_teacher", "forward_split", "evaluating", "eval_logits",
]


@dataclasses.dataclass
class SemiConfig:
    """Settings every pseudo-label method shares; method configs extend it.

    Args:
        tau: confidence threshold; pixels whose pseudo-label confidence is below it contribute
            nothing to the unsupervised losses (papers: 0.95).
        warmup: fraction of the iterations trained on the labelled loss alone (papers: 0).
        rampup: fraction of the iterations, after the warm-up, over which the unsupervised weight
            rises along ``exp(-5 (1 - t)^2)`` to 1 (papers: 0, i.e. a constant weight of 1).
        references: reference-guided pseudo-labels as an extra source (ours; off in the papers):
            a weak-view pixel counts only where its pseudo-label also equals the class of its
            nearest labelled pixel in feature space (Seibold et al., AAAI 2022; see
            :meth:`semiseg.methods.base.Method.with_references`).

    The papers' defaults (0, 0) are kept here. Our short-CPU-budget recipe sets e.g. ``warmup=0.2,
    rampup=0.3``: pseudo-labels of an untrained network are noise, and with ~1000 iterations the
    network has no time to recover from them (docs/BENCHMARKS.md section 1). That recipe is our choice, to be
    measured against the papers' defaults.
    """

    tau: float = 0.95
    warmup: float = 0.0
    rampup: float = 0.0
    references: bool = False

    def __post_init__(self) -> None:
        """Raises :class:`~semiseg.errors.InputError` (a ``ValueError``) for values no run can use."""
        check_ranges(self, tau="[0, 1]")
        if self.warmup < 0 or self.rampup < 0 or self.warmup + self.rampup > 1:
            raise InputError(
                f"warmup and rampup must be >= 0 with warmup + rampup <= 1, got {self.warmup}, {self.rampup}"
            )


@dataclasses.dataclass
class TeacherConfig(SemiConfig):
    """:class:`SemiConfig` of a method whose pseudo-labels may come from an EMA teacher.

    Args:
        ema: EMA decay of the teacher that makes the pseudo-labels (0: the student itself, the
            papers' choice; see :func:`build_teacher`).
    """

    ema: float = 0.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_ranges(self, ema="[0, 1)")


def pseudo_label(logits: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Confidence and hard pseudo-label of detached logits (B, C, H, W).

    Returns:
        ``(confidence, label)``: max softmax probability (B, H, W) float32 and its argmax (B, H, W) int64.
    """
    probs = torch.softmax(logits.detach().float(), dim=1)
    confidence, label = probs.max(dim=1)
    return confidence, label


def confidence_mask(confidence: torch.Tensor, tau: float) -> torch.Tensor:
    """1.0 where ``confidence >= tau``, else 0.0 (float, same shape); its mean is the mask ratio."""
    return (confidence >= tau).float()


@dataclasses.dataclass
class PseudoLabels:
    """Hard pseudo-labels with their confidence, kept together so CutMix moves both with one box.

    Attributes:
        confidence: (B, H, W) max softmax probability.
        label: (B, H, W) int64 argmax.
    """

    confidence: torch.Tensor
    label: torch.Tensor

    @classmethod
    def from_logits(cls, logits: torch.Tensor) -> "PseudoLabels":
        """From (B, C, H, W) logits, detached (see :func:`pseudo_label`)."""
        return cls(*pseudo_label(logits))

    def mixed(self, other: "PseudoLabels", box: torch.Tensor) -> "PseudoLabels":
        """``other``'s labels and confidences inside ``box`` (B, H, W) bool, ours outside."""
        return PseudoLabels(
            mix_targets(self.confidence, other.confidence, box), mix_targets(self.label, other.label, box)
        )

    def agreeing(self, other_label: torch.Tensor) -> "PseudoLabels":
        """The same labels with confidence 0 (so below any threshold tau > 0) where ``other_label`` differs."""
        return PseudoLabels(self.confidence.masked_fill(self.label != other_label, 0.0), self.label)

    def mask(self, tau: float) -> torch.Tensor:
        """:func:`confidence_mask` of the confidences."""
        return confidence_mask(self.confidence, tau)


def blend(sup: torch.Tensor, unsup: torch.Tensor | float, weight: float) -> torch.Tensor:
    """The total loss ``(1 - w/2) L_sup + (w/2) L_u`` for an unsupervised weight ``w`` in [0, 1].

    At ``w = 1`` this is the papers' ``(L_sup + L_u) / 2``. At ``w = 0`` (a supervised warm-up) it is
    ``L_sup`` itself, so the warm-up is exactly the supervised baseline at the same learning rate,
    and the ramp moves smoothly from one to the other. Our choice: scaling only the unsupervised
    term, ``(L_sup + w L_u) / 2``, would train the warm-up at half the supervised step size, a
    handicap that matters at the short budgets a CPU affords.
    """
    return (1.0 - weight / 2.0) * sup + (weight / 2.0) * unsup


class EMATeacher(nn.Module):
    """A frozen copy of a model whose weights follow the student's by exponential moving average.

    After each optimiser step, :meth:`update` sets ``teacher = d * teacher + (1 - d) * student`` for
    parameters with ``d = min(decay, 1 - 1 / (n + 1))`` at the n-th update (n from 0), Mean Teacher's
    (Tarvainen & Valpola, NeurIPS 2017, arXiv 1703.01780) start-up rule: the first update copies the
    student, so a teacher built before the student's weights were loaded or warm-started is harmless.
    Buffers (batch-norm statistics) are copied (our choice). The teacher predicts in eval mode
    without gradients. It is a sub-module, so it is saved and loaded with the method's state_dict.

    Args:
        model: the student; copied.
        decay: EMA decay in (0, 1), e.g. 0.99.
    """

    is_student: ClassVar[bool] = False

    def __init__(self, model: nn.Module, decay: float = 0.99) -> None:
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"EMA decay must be in (0, 1), got {decay}")
        self.decay = decay
        self.model = copy.deepcopy(model)
        for p in self.model.parameters():
            p.requires_grad_(False)
        self.register_buffer("num_updates", torch.zeros((), dtype=torch.long))

    @torch.no_grad()
    def update(self, student: nn.Module) -> None:
        d = min(self.decay, 1.0 - 1.0 / (float(self.num_updates) + 1.0))
        for t, s in zip(self.model.parameters(), student.parameters()):
            t.mul_(d).add_(s.detach(), alpha=1.0 - d)
        for t, s in zip(self.model.buffers(), student.buffers()):
            t.copy_(s)
        self.num_updates += 1

    @torch.no_grad()
    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.model.eval()
        return self.model(x)

    def net(self, model: nn.Module) -> nn.Module:
        """The network that labels: the EMA copy (``model``, the student, is not used)."""
        return self.model

    def logits(self, model: nn.Module, x: torch.Tensor, own: torch.Tensor | None = None) -> torch.Tensor:
        """The EMA copy's no-grad logits of ``x`` (B, C, H, W); the student's ``model`` and ``own`` are not used."""
        return self(x)


class StudentTeacher(nn.Module):
    """The student labels its own data: the papers' choice, no copy and no state.

    The same interface as :class:`EMATeacher` (``is_student``, :meth:`net`, :meth:`logits`,
    :meth:`update`), so a method asks its teacher without knowing which one it has.
    """

    is_student: ClassVar[bool] = True

    def net(self, model: nn.Module) -> nn.Module:
        """The network that labels: the student ``model`` itself."""
        return model

    def logits(self, model: nn.Module, x: torch.Tensor, own: torch.Tensor | None = None) -> torch.Tensor:
        """Logits that label ``x``: ``own``, the student's prediction of ``x`` from its training pass,
        when given (the caller detaches it, e.g. :meth:`PseudoLabels.from_logits`); else a no-grad
        eval-mode pass (:func:`eval_logits`), as UniMatch labels its CutMix batch."""
        return own if own is not None else eval_logits(model, x)

    def update(self, student: nn.Module) -> None:
        """Nothing to follow: the student is the teacher."""


Teacher = Union[StudentTeacher, EMATeacher]


def build_teacher(config: object, model: nn.Module) -> Teacher:
    """The pseudo-labelling teacher ``config`` asks for: an :class:`EMATeacher` of ``model`` for a
    :class:`TeacherConfig` with ``ema > 0``, else the student itself (:class:`StudentTeacher`)."""
    if isinstance(config, TeacherConfig) and config.ema > 0:
        return EMATeacher(model, config.ema)
    return StudentTeacher()


def forward_split(model: nn.Module, tensors: Sequence[torch.Tensor]) -> list[torch.Tensor]:
    """One forward pass over the concatenated views, split back in order.

    Batch normalisation in training mode then normalises all views with one set of batch
    statistics, as UniMatch does (``model(torch.cat((img_x, img_u_w)))``), instead of a different
    set per view. ``model`` is any callable from (N, ...) to a tensor (N, ...).
    """
    sizes = [t.shape[0] for t in tensors]
    return list(model(torch.cat(list(tensors))).split(sizes))


@contextlib.contextmanager
def evaluating(model: nn.Module) -> Iterator[nn.Module]:
    """Run ``model`` in eval mode without gradients inside the block; restore its mode after."""
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            yield model
    finally:
        model.train(was_training)


def eval_logits(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """Logits of ``model`` in eval mode without gradients, restoring its train/eval mode after.

    UniMatch labels its second (CutMix) batch this way: ``model.eval()`` under ``no_grad``.
    """
    with evaluating(model):
        return model(x)
