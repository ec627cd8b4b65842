"""The registry of methods by name.

Each method is one class in its own module; :data:`METHODS` maps the names accepted by
``semiseg train --method`` to them. An unknown name fails listing the valid ones.
"""

from __future__ import annotations

from typing import Any

import torch.nn as nn

from ..blocks.schedule import TrainProgress
from ..errors import InputError
from ..settings import from_dict
from .base import Batch, LossOutput, Method
from .crossmatch import CrossMatch
from .fixmatch import FixMatch
from .refguided import RefGuided
from .semsim import SemSim
from .supervised import Supervised
from .unimatch import UniMatch

__all__ = ["METHODS", "build_method", "Batch", "LossOutput", "Method", "TrainProgress"]

METHODS: dict[str, type[Method]] = {
    cls.name: cls for cls in (Supervised, FixMatch, UniMatch, CrossMatch, SemSim, RefGuided)
}


def build_method(name: str, options: dict[str, Any] | None, num_classes: int, model: nn.Module) -> Method:
    """Instantiate method ``name`` with its config built from ``options`` (unknown keys refused)."""
    if name not in METHODS:
        raise InputError(f"unknown method {name!r}; valid methods: {', '.join(sorted(METHODS))}")
    cls = METHODS[name]
    return cls(from_dict(cls.Config, options, where=f"{name} option"), num_classes, model)
