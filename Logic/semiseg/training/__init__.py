"""Training: the shared trainer (optimiser and schedule, streams, validation, progress, checkpoints),
its settings (:mod:`.config`), the recipes that fill them in (:mod:`.recipes`) and the CPU thread
policy (:mod:`.cpu`).

The settings, recipes and CPU modules are torch-free, so that reading and checking a job or
printing ``--help`` does not load torch; the trainer and checkpoints are imported on first use.
"""

from __future__ import annotations

import importlib
from typing import Any

__all__ = ["Trainer", "TrainData", "load_checkpoint", "save_checkpoint"]

_HOMES = {
    "Trainer": ".trainer",
    "TrainData": ".trainer",
    "load_checkpoint": ".checkpoint",
    "save_checkpoint": ".checkpoint",
}


def __getattr__(name: str) -> Any:
    if name in _HOMES:
        return getattr(importlib.import_module(_HOMES[name], __name__), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
