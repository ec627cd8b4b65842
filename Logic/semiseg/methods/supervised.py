"""Supervised training on the labelled slices only: the lower bound every method must beat."""

from __future__ import annotations

import dataclasses

import torch.nn as nn

from ..blocks.schedule import TrainProgress
from .base import Batch, LossOutput, Method

__all__ = ["Supervised"]


@dataclasses.dataclass
class SupervisedConfig:
    """No hyper-parameters beyond the trainer's."""


class Supervised(Method):
    """L = L_sup = (CE + Dice) / 2 on the labelled batch; unlabelled slices are not used."""

    name = "supervised"
    Config = SupervisedConfig
    unlabeled_batches = 0

    def loss(self, model: nn.Module, batch: Batch, progress: TrainProgress) -> LossOutput:
        sup = self.sup_loss(model(batch.x_l), batch.y_l)
        return LossOutput(sup, {"sup": float(sup.detach())})
