"""Keep freed activation memory for the next step instead of returning it to the system.

glibc's ``malloc`` serves every block above its mmap threshold (at most 32 MB, and a UNet
activation at 256x256 or a batch of 12 at 128x128 is larger) with a fresh ``mmap`` and unmaps it on
``free``; the next step then page-faults through the same memory again, every step. Fixing the
threshold above any activation and raising the trim threshold lets freed blocks be reused, at the
price of a higher resident peak, as PyTorch's own caching allocators make on GPUs
(``benchmarks/per_change.py`` measures what it saves, docs/BENCHMARKS.md section 3).
"""

from __future__ import annotations

import ctypes
import ctypes.util
import sys

__all__ = ["keep_freed_memory"]

_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3  # mallopt parameters of glibc's malloc.h
_MMAP_THRESHOLD = 1 << 30  # 1 GiB: no activation of the engine is that large
_TRIM_THRESHOLD = 1 << 30
_done = False


def keep_freed_memory() -> bool:
    """Set glibc's mmap and trim thresholds once per process; ``False`` where there is no glibc (macOS, Windows,
    musl)."""
    global _done
    if _done:
        return True
    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):
        return False
    _done = bool(mallopt(_M_MMAP_THRESHOLD, _MMAP_THRESHOLD)) and bool(mallopt(_M_TRIM_THRESHOLD, _TRIM_THRESHOLD))
    return _done
