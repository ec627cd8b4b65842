"""The folder of cached jobs and runs (exported volumes, checkpoints, predictions)."""

from __future__ import annotations

import os
import shutil
import time

__all__ = ["newJobDir", "jobDirs", "latestCheckpoint", "clearCache", "folderSize"]

_PREFIX = "job-"


def newJobDir(cacheDir: str | os.PathLike) -> str:
    """Create and return a new, empty job folder under ``cacheDir``."""
    cacheDir = os.fspath(cacheDir)
    os.makedirs(cacheDir, exist_ok=True)
    stamp = time.strftime("%Y%m%d-%H%M%S")
    for n in range(1000):
        path = os.path.join(cacheDir, f"{_PREFIX}{stamp}-{n:03d}")
        try:
            os.makedirs(path)
            return path
        except FileExistsError:
            continue
    raise OSError(f"could not create a new job folder under {cacheDir}")


def jobDirs(cacheDir: str | os.PathLike) -> list[str]:
    """The job folders under ``cacheDir``, oldest first."""
    cacheDir = os.fspath(cacheDir)
    if not os.path.isdir(cacheDir):
        return []
    return sorted(os.path.join(cacheDir, name) for name in os.listdir(cacheDir)
                  if name.startswith(_PREFIX) and os.path.isdir(os.path.join(cacheDir, name)))


def latestCheckpoint(runDir: str | os.PathLike | None) -> str | None:
    """``RUN_DIR/checkpoint.pt`` if it exists (the warm start of a retrain)."""
    if not runDir:
        return None
    path = os.path.join(os.fspath(runDir), "checkpoint.pt")
    return path if os.path.isfile(path) else None


def folderSize(path: str | os.PathLike) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for name in files:
            try:
                total += os.path.getsize(os.path.join(root, name))
            except OSError:
                pass
    return total


def clearCache(cacheDir: str | os.PathLike, keep=()) -> tuple[int, int]:
    """Delete every cached job folder except those in ``keep`` (e.g. a running job).

    Returns:
        ``(folders removed, bytes freed)``.
    """
    keep = {os.path.abspath(os.fspath(path)) for path in keep if path}
    removed = freed = 0
    for path in jobDirs(cacheDir):
        if os.path.abspath(path) in keep:
            continue
        size = folderSize(path)
        shutil.rmtree(path, ignore_errors=True)
        if not os.path.exists(path):
            removed += 1
            freed += size
    return removed, freed
