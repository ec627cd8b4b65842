"""Errors the engine raises for bad input.

Every problem with the user's data is an :class:`InputError` whose message names the file and
the problem, so that a front end can show it as it is. The CLI turns it into exit code 2. The exit
codes are those of :mod:`semiseg.contract`, re-exported here.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = ["InputError", "Cancelled", "CancelToken", "EXIT_OK", "EXIT_INTERNAL", "EXIT_BAD_INPUT", "EXIT_CANCELLED"]

from .contract import EXIT_BAD_INPUT, EXIT_CANCELLED, EXIT_INTERNAL, EXIT_OK  # re-exported: defined once, in contract


class InputError(ValueError):
    """Bad input: a missing, unreadable or inconsistent file, or an invalid setting.

    Args:
        message: what is wrong, in the user's terms.
        path: the file or folder concerned, if any; it is prefixed to the message.
    """

    def __init__(self, message: str, path: str | None = None) -> None:
        self.path = None if path is None else str(path)
        super().__init__(f"{self.path}: {message}" if self.path else message)


class Cancelled(RuntimeError):
    """Training was cancelled (SIGTERM or a cancel file); the last good checkpoint is kept."""


class CancelToken:
    """Cancellation requested by a signal handler (:meth:`set`) or by a file (``RUN_DIR/cancel``).

    Torch-free, so that the command line can take SIGTERM before it imports the engine.
    """

    def __init__(self, cancel_file: str | os.PathLike | None = None) -> None:
        self.flag = False
        self.cancel_file = None if cancel_file is None else Path(cancel_file)

    def set(self, *_: Any) -> None:
        self.flag = True

    def requested(self) -> bool:
        return self.flag or (self.cancel_file is not None and self.cancel_file.exists())
