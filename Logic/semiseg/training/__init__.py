"""The shared trainer: device, optimiser and schedule, streams, validation, progress, checkpoints."""

from .checkpoint import load_checkpoint, save_checkpoint
from .trainer import TrainData, Trainer

__all__ = ["Trainer", "TrainData", "load_checkpoint", "save_checkpoint"]
