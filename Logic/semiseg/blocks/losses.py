"""Losses shared by every method: the supervised Dice + CE and the masked unsupervised Dice.

``supervised_loss`` is the papers' L_sup = (CE + Dice) / 2, MONAI's :class:`~monai.losses.DiceCELoss`
with both weights 0.5 (softmax, one-hot targets, background included in the Dice, as SSL4MIS and
UniMatch do). ``masked_dice`` is the unsupervised term of FixMatch/UniMatch: a soft Dice in which
only pixels whose pseudo-label confidence reaches the threshold count.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from monai.losses import DiceCELoss

__all__ = ["SupervisedLoss", "masked_dice", "masked_cross_entropy"]


class SupervisedLoss(torch.nn.Module):
    """L_sup = (CE + Dice) / 2 on logits (B, C, H, W) and integer targets (B, H, W)."""

    def __init__(self) -> None:
        super().__init__()
        self.dice_ce = DiceCELoss(
            softmax=True,
            to_onehot_y=True,
            include_background=True,
            lambda_dice=0.5,
            lambda_ce=0.5,
            smooth_nr=1e-5,
            smooth_dr=1e-5,
        )

    def forward(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if logits.ndim != 4 or target.shape != (logits.shape[0], *logits.shape[2:]):
            raise ValueError(
                f"logits (B, C, H, W) and target (B, H, W) expected, got {tuple(logits.shape)} and "
                f"{tuple(target.shape)}"
            )
        return self.dice_ce(logits.float(), target[:, None])


def masked_dice(logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, smooth: float = 1e-5) -> torch.Tensor:
    """Soft Dice loss over the pixels where ``mask`` is 1, averaged over classes (SSL4MIS style).

    Args:
        logits: (B, C, H, W) raw scores of the student.
        target: (B, H, W) integer pseudo-labels.
        mask: (B, H, W) float or bool; pixels with 0 contribute nothing (to numerator and denominator).

    Returns:
        A scalar; 0 when the mask is empty everywhere.
    """
    probs = torch.softmax(logits.float(), dim=1)
    onehot = F.one_hot(target.long(), probs.shape[1]).permute(0, 3, 1, 2).float()
    m = mask.float()[:, None]
    if m.sum() == 0:
        return probs.sum() * 0.0
    inter = (probs * onehot * m).sum(dim=(0, 2, 3))
    denom = (probs * probs * m).sum(dim=(0, 2, 3)) + (onehot * m).sum(dim=(0, 2, 3))
    return (1.0 - (2.0 * inter + smooth) / (denom + smooth)).mean()


def masked_cross_entropy(
    logits: torch.Tensor, target: torch.Tensor, mask: torch.Tensor, weight: torch.Tensor | None = None
) -> torch.Tensor:
    """Cross-entropy averaged over the pixels where ``mask`` is 1 (optionally weighted per pixel).

    Shapes as :func:`masked_dice`; ``weight`` (B, H, W) multiplies each pixel's loss.
    """
    ce = F.cross_entropy(logits.float(), target.long(), reduction="none")
    m = mask.float() if weight is None else mask.float() * weight
    return (ce * m).sum() / mask.float().sum().clamp_min(1.0)
