"""Checkpoints that load with ``torch.load(..., weights_only=True)`` and are replaced atomically.

A checkpoint is a dict of tensors, state dicts and plain Python values (no pickled classes), so
that loading it runs no code. It is written to a temporary file and moved over the previous one,
so a crash, a cancel or a full disk during the write leaves the last good checkpoint intact. A
checksum of its content is stored in it and verified on load, so a damaged or edited checkpoint is
refused rather than loaded.
"""

from __future__ import annotations

import errno
import hashlib
import io
import os
from pathlib import Path
from typing import Any

import torch

from ..errors import InputError

__all__ = ["CHECKPOINT_FORMAT", "save_checkpoint", "load_checkpoint", "state_digest"]

CHECKPOINT_FORMAT = 2
"""2: with a ``checksum`` (:func:`state_digest`), verified on load; 1: without (still read)."""


def state_digest(state: Any) -> str:
    """SHA-256 of a checkpoint's content: every tensor's dtype, shape and bytes, and every plain value.

    Computed on the values, not the file, so that it is stored in the file it checks and the file still
    loads with a plain ``torch.load``. A flipped byte in any tensor or value changes it.
    """
    h = hashlib.sha256()

    def walk(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            t = value.detach().cpu().contiguous()
            h.update(f"T{t.dtype}{tuple(t.shape)}".encode())
            h.update(t.reshape(-1).view(torch.uint8).numpy().tobytes() if t.numel() else b"")
        elif isinstance(value, dict):
            h.update(b"D%d" % len(value))
            for key in sorted(value, key=repr):
                h.update(repr(key).encode())
                walk(value[key])
        elif isinstance(value, (list, tuple)):
            h.update(b"L%d" % len(value))
            for item in value:
                walk(item)
        else:
            h.update(f"V{type(value).__name__}:{value!r}".encode())

    walk(state)
    return h.hexdigest()


def save_checkpoint(state: dict[str, Any], path: str | os.PathLike) -> Path:
    """Write ``state`` (with ``format`` and ``checksum`` added) atomically to ``path``.

    The checkpoint is serialised in memory, written to ``path.tmp``, synced and moved over ``path``.

    Raises:
        InputError: no space left on the disk (``path`` and its temporary file are left as they were / removed).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    state = {"format": CHECKPOINT_FORMAT, **state}
    state["checksum"] = state_digest(state)
    buffer = io.BytesIO()
    torch.save(state, buffer)
    try:
        with open(tmp, "wb") as f:
            f.write(buffer.getbuffer())
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except OSError as err:
        tmp.unlink(missing_ok=True)
        if err.errno == errno.ENOSPC:
            raise InputError(f"no space left on {path.parent} (writing {path.name}; the last good checkpoint is kept); "
                             "free some space and resume the run (--resume)") from None
        raise
    return path


def load_checkpoint(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> dict[str, Any]:
    """Load a checkpoint with ``weights_only=True`` and verify its checksum.

    Raises:
        InputError: missing, unreadable, damaged or edited (checksum mismatch), or written by a newer format.
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
    version = state.get("format", 0)
    if not isinstance(version, int) or version > CHECKPOINT_FORMAT:
        raise InputError(
            f"written by a newer SemiSegSlicer (checkpoint format {version} > {CHECKPOINT_FORMAT}); update it", path
        )
    if version >= 2:
        stored = state.pop("checksum", None)
        if stored != state_digest(state):
            raise InputError("is damaged or was edited: its content does not match its checksum", path)
    return state
