"""How the engine shares the CPU with the program it works for.

The engine never has the CPU to itself: Slicer renders and runs its own logic while it trains, and
the web page's server renders slice views for the browser. PyTorch's CPU wheel runs its parallel
loops on GNU OpenMP (``libgomp``), whose threads *spin* while they wait for each other at the end
of every loop (``OMP_WAIT_POLICY`` unset: a few hundred thousand spins before sleeping). With one
thread per core and another process holding one of those cores, a waiting thread spins through the
time slice the late thread needs, and every one of the thousands of small loops of a training step
pays for it. Passive waiting (a sleeping thread, woken by the last one to finish) removes that
cost; ``semiseg bench contention`` measures both policies with and without busy neighbours
(docs/BENCHMARKS.md §3).

The policy is read once, when ``libgomp`` is loaded by ``import torch``; it must be in the
environment before that. :func:`prefer_passive_wait` is the first thing :func:`semiseg.cli.main`
does, so the engine processes that Slicer and the web page start (``python -m semiseg train``) and
every ``semiseg`` command wait passively, unless the user chose a policy.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

__all__ = ["WAIT_POLICY", "prefer_passive_wait"]

WAIT_POLICY = "OMP_WAIT_POLICY"


def prefer_passive_wait(environ: MutableMapping[str, str] | None = None) -> bool:
    """Set ``OMP_WAIT_POLICY=PASSIVE`` unless a policy is already set; True when this call set it.

    It has an effect only before torch is first imported in this process (and on the processes it
    starts, which inherit the environment). The user's own ``OMP_WAIT_POLICY`` always wins.
    """
    environ = os.environ if environ is None else environ
    if environ.get(WAIT_POLICY):
        return False
    environ[WAIT_POLICY] = "PASSIVE"
    return True
