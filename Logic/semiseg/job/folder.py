"""The run folder's state: ``status.json`` and the lock that keeps two runs out of one folder."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ..errors import InputError

if TYPE_CHECKING:  # torch is imported when a job runs, not when it is read and checked
    pass


def write_status(run_dir: str | os.PathLike, state: str, message: str = "", exit_code: int | None = None) -> None:
    """Write ``status.json`` atomically; on a full disk, over the old file's own bytes."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    text = json.dumps({"state": state, "message": message, "exit_code": exit_code}).encode()
    tmp = run_dir / ".status.json.tmp"
    try:
        tmp.write_bytes(text)
        os.replace(tmp, run_dir / "status.json")
    except OSError:  # no room for a second file: rewrite the one there is, without freeing its blocks first
        tmp.unlink(missing_ok=True)
        fd = os.open(run_dir / "status.json", os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.write(fd, text)
            os.ftruncate(fd, len(text))
        finally:
            os.close(fd)


class RunLock:
    """An exclusive lock on a run folder, held by the one training that writes it.

    The lock is ``fcntl.flock`` (``msvcrt.locking`` on Windows) on ``RUN_DIR/.lock``: the system
    releases it when its process ends, however it ends, so a lock is never stale. The file holds the
    holder's pid and host, for the message that refuses a second training.
    """

    def __init__(self, run_dir: str | os.PathLike) -> None:
        self.run_dir = Path(run_dir)
        self.path = self.run_dir / ".lock"
        self._fd: int | None = None

    def acquire(self) -> "RunLock":
        """Make the run folder and lock it.

        Raises:
            InputError: the folder cannot be written, or another training holds it (naming it).
        """
        try:
            self.run_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise InputError(f"cannot write the run folder ({err.strerror or err})", self.run_dir) from None
        try:
            _lock(fd)
        except OSError:
            try:
                os.lseek(fd, 0, os.SEEK_SET)
                holder = os.read(fd, 200).decode(errors="replace").strip()
            except OSError:  # Windows: the holder's locked byte cannot be read
                holder = ""
            os.close(fd)
            holder = holder or "another process"
            raise InputError(
                f"is in use by another training ({holder}); wait for it to end or cancel it", self.run_dir
            ) from None
        try:
            import socket

            os.ftruncate(fd, 0)
            os.lseek(fd, 0, os.SEEK_SET)
            os.write(fd, f"pid {os.getpid()} on {socket.gethostname()}".encode())
        except OSError:  # a full disk: the lock holds all the same
            pass
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.close(self._fd)  # closing releases the lock; the file stays (removing it would race a new holder)
            self._fd = None

    def __enter__(self) -> "RunLock":
        return self.acquire()

    def __exit__(self, *exc: Any) -> None:
        self.release()


def _lock(fd: int) -> None:
    """Lock ``fd`` exclusively without waiting; ``OSError`` when another process holds it."""
    if os.name == "nt":
        import msvcrt

        msvcrt.locking(fd, msvcrt.LK_NBLCK, 1)
    else:
        import fcntl

        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
