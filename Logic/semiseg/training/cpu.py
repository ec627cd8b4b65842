"""How the engine shares the CPU with the program it works for.

The engine never has the CPU to itself: Slicer renders and runs its own logic while it trains, the
web page's server renders slice views for the browser, and a user may run a second job. PyTorch's
Linux CPU wheel runs its parallel loops on GNU OpenMP with one thread per core; at the end of every
loop each thread waits for the others. When another process holds one of those cores, the thread
that runs there is descheduled half of the time and every other thread waits for it, in each of the
thousands of small loops of a training step.

``semiseg bench contention`` (docs/BENCHMARKS.md §3) measured it on the 2-core development machine
(a supervised step at 64 and 128 px, s/iteration): with one other busy process, two threads ran
3-4.4 times slower than on the idle machine while one thread ran as fast as on the idle machine.
How the waiting threads wait (``OMP_WAIT_POLICY``, ``GOMP_SPINCOUNT``) was measured too and does
not remove the slowdown: sleeping at once (``PASSIVE``) still ran 1.4-1.7 times slower under load
and cost 28-90 % on the idle machine, and short spins helped at one size and hurt at the other.
So the engine keeps OpenMP's defaults and chooses the number of threads instead:
:func:`training_threads`, once, when a training starts.
"""

from __future__ import annotations

import os
import time
from collections.abc import MutableMapping
from pathlib import Path

__all__ = ["process_ticks", "others_busy_cores", "torch_default_threads", "training_threads"]


def process_ticks(pid: int | str = "self") -> int:
    """CPU time of a process, all its threads, in clock ticks: utime + stime of ``/proc/<pid>/stat`` (Linux).

    Raises ``OSError`` where there is no ``/proc``.
    """
    fields = (
        Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    )  # after the command name, which may hold spaces
    return int(fields[11]) + int(fields[12])


def _cpu_ticks() -> tuple[int, int, int] | None:
    """(busy ticks of the machine, all ticks, busy ticks of this process) from ``/proc`` (Linux), else None."""
    try:
        fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
        own = process_ticks()
    except (OSError, ValueError, IndexError):
        return None
    idle = fields[3] + (fields[4] if len(fields) > 4 else 0)  # idle + iowait
    total = sum(fields[:8])  # user nice system idle iowait irq softirq steal (guest time is inside user)
    return total - idle, total, own


def others_busy_cores(seconds: float = 0.25) -> float | None:
    """How many cores other processes kept busy during the next ``seconds`` (Linux ``/proc``; None elsewhere)."""
    cores = os.cpu_count() or 1
    first = _cpu_ticks()
    time.sleep(seconds)
    last = _cpu_ticks()
    if first is None or last is None or last[1] <= first[1]:
        return None
    busy, total, own = (b - a for a, b in zip(first, last))
    return max(0.0, (busy - own) / total * cores)


_TORCH_DEFAULT: int | None = None


def torch_default_threads() -> int:
    """torch's thread count as this process found it (one per physical core, or ``OMP_NUM_THREADS``), before
    any training of this process lowered it."""
    global _TORCH_DEFAULT
    if _TORCH_DEFAULT is None:
        import torch

        _TORCH_DEFAULT = torch.get_num_threads()
    return _TORCH_DEFAULT


def training_threads(
    requested: int, default: int, environ: MutableMapping[str, str] | None = None, busy: float | None = None
) -> int:
    """The torch CPU threads of a training: ``requested`` if set (> 0), else the cores the others leave free.

    A thread that waits for a descheduled one wastes its core (see the module docstring). So, unless
    the user fixed the count (``requested``, or ``OMP_NUM_THREADS`` in the environment), the training
    takes ``default`` (torch's, one per core) minus the cores other processes kept busy while it
    started (:func:`others_busy_cores`, rounded), and at least one. It is chosen once, at start: the count also
    fixes the order of floating-point
    sums, and a run should not change it half-way.
    """
    environ = os.environ if environ is None else environ
    if requested > 0:
        return requested
    if environ.get("OMP_NUM_THREADS"):
        return default
    busy = others_busy_cores() if busy is None else busy
    if busy is None:
        return default
    return max(1, min(default, round((os.cpu_count() or default) - busy)))
