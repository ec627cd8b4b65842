"""Checkpoints that load with ``torch.load(..., weights_only=True)`` and are replaced atomically.

A checkpoint is a dict of tensors, state dicts and plain Python values (no pickled classes), so
that loading it runs no code. It is written to a temporary file and moved over the previous one,
so a crash or a cancel during the write leaves the last good checkpoint intact.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError

__all__ = ["CHECKPOINT_FORMAT", "save_checkpoint", "load_checkpoint"]

CHECKPOINT_FORMAT = 1


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` (with ``format`` added) atomically to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"format": CHECKPOINT_FORMAT, **state}, tmp)
    os.replace(tmp, path)
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True``.

    Raises:
        InputError: missing, unreadable, or written by a newer format.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError("checkpoint not found", path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as err:  # noqa: BLE001 - any unpickling failure means an unusable file
        raise InputError(f"not a readable checkpoint ({type(err).__name__}: {str(err)[:200]})", path) from None
    if not isinstance(state, dict) or "model" not in state:
        raise InputError("not a SemiSegSlicer checkpoint", path)
    if int(state.get("format", 0)) > CHECKPOINT_FORMAT:
        raise InputError(f"written by a newer SemiSegSlicer (checkpoint format {state['format']} > {CHECKPOINT_FORMAT}); update it", path)
    return state
