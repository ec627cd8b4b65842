"""Errors the engine raises for bad input.

Every problem with the user's data is an :class:`InputError` whose message names the file and
the problem, so that a front end can show it as it is. The CLI turns it into exit code 2.
"""

from __future__ import annotations

__all__ = ["InputError", "Cancelled", "EXIT_OK", "EXIT_INTERNAL", "EXIT_BAD_INPUT", "EXIT_CANCELLED"]

EXIT_OK = 0
EXIT_INTERNAL = 1
EXIT_BAD_INPUT = 2
EXIT_CANCELLED = 3


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
