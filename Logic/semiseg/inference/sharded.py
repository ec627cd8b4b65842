"""``semiseg predict --images`` under torchrun: the volumes shared out over the ranks (docs/SCALE.md).

``torchrun --nproc-per-node N -m semiseg predict --run RUN --images ... --out OUT`` starts N processes;
each finds its place in the environment torchrun sets (``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``LOCAL_WORLD_SIZE``; :func:`semiseg.training.distributed.world_from_env`) and predicts its share of the
volumes with :func:`predict_many`. The choices made:

- The sharding needs no communication: every rank lists the inputs the same way (:func:`image_paths`,
  sorted, the same duplicate and missing checks) and rank r takes the volumes whose index in that
  list is r modulo the world size. No volume is missed or done twice; each rank writes its own
  volumes into ``OUT/<name>/`` as a single process would, so a killed run resumes with the usual
  skip of finished volumes (whatever the world size of the rerun).
- One process group (gloo, CPU) carries only the end: every rank hands its result (its volumes'
  summaries, or its error) to rank 0, which prints the one summary table over all volumes, or says
  which ranks failed. A rank that fails still reports, so nobody waits for it; a rank that dies is
  ended by torchrun with the others; a rank that never reports ends the wait after
  ``SEMISEG_DIST_TIMEOUT`` seconds (default 1800).
- GPUs: with ``--device auto`` or ``cuda`` each process of a machine takes the GPU of its ``LOCAL_RANK``.
- Threads: each rank takes its share of the free cores (:func:`rank_threads`); ``OMP_NUM_THREADS``
  overrides, and torchrun sets it to 1 when it starts more than one process and it is unset.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Mapping, Sequence
from typing import TypeVar

from ..training.cpu import others_busy_cores, torch_default_threads
from ..training.distributed import World
from .many import ManySummary

__all__ = ["shard", "rank_threads", "merge_summaries", "use_local_gpu", "DEFAULT_TIMEOUT"]

DEFAULT_TIMEOUT = 1800.0
"""Seconds rank 0 waits for the others' results (``SEMISEG_DIST_TIMEOUT`` overrides): the process group's timeout."""

T = TypeVar("T")


def shard(items: Sequence[T], rank: int, world: int) -> list[tuple[int, T]]:
    """The items of ``rank``: those whose index is ``rank`` modulo ``world``, with their index."""
    return [(i, item) for i, item in enumerate(items) if i % world == rank]


def rank_threads(requested: int, world: World, busy: float | None = None) -> int:
    """The torch threads of one rank's network: ``requested``; else ``OMP_NUM_THREADS``'s count (torch's default);
    else the cores other processes leave free, shared by the ranks of this machine, minus one for the rank's
    reader and writer, and at least one.

    ``busy`` is measured (:func:`others_busy_cores`) when not given: the ranks call this together, after a
    barrier, so that they do not count each other.
    """
    if requested > 0:
        return requested
    default = torch_default_threads()
    if os.environ.get("OMP_NUM_THREADS"):
        return default
    busy = others_busy_cores() if busy is None else busy
    free = default if busy is None else max(1, min(default, round((os.cpu_count() or default) - busy)))
    return max(1, free // world.local_size - 1)


def use_local_gpu(world: World) -> None:
    """Make ``cuda`` mean GPU ``LOCAL_RANK`` (modulo the GPUs there are) of this machine; nothing without GPUs."""
    import torch

    if torch.cuda.is_available() and torch.cuda.device_count() > 0:
        torch.cuda.set_device(world.local_rank % torch.cuda.device_count())


def merge_summaries(parts: Sequence[ManySummary], order: Sequence[str]) -> ManySummary:
    """One summary over the ranks' parts: the volumes in the order of the input list (``order``: image paths), the
    seconds of the slowest rank, each rank's threads."""
    position = {image: i for i, image in enumerate(order)}
    volumes = sorted((v for part in parts for v in part.volumes), key=lambda v: position[v.image])
    return ManySummary(volumes, max((p.seconds for p in parts), default=0.0), max((p.threads for p in parts),
                                                                                   default=1), processes=len(parts))


def timeout_seconds(environ: Mapping[str, str] | None = None) -> float:
    environ = os.environ if environ is None else environ
    try:
        value = float(environ.get("SEMISEG_DIST_TIMEOUT", DEFAULT_TIMEOUT))
    except ValueError:
        return DEFAULT_TIMEOUT
    return value if value > 0 else DEFAULT_TIMEOUT


def init_group(world: World) -> None:
    """The gloo process group of the run (torchrun's rendezvous: ``MASTER_ADDR``, ``MASTER_PORT``)."""
    import torch.distributed as dist

    if not dist.is_initialized():
        dist.init_process_group("gloo", rank=world.rank, world_size=world.size,
                                timeout=datetime.timedelta(seconds=timeout_seconds()))


def barrier() -> None:
    import torch.distributed as dist

    dist.barrier()


def gather_results(result: object, world: World) -> list[object] | None:
    """Every rank's ``result`` on rank 0 (in rank order); None on the others."""
    import torch.distributed as dist

    gathered: list[object] | None = [None] * world.size if world.main else None
    dist.gather_object(result, gathered, dst=0)
    return gathered


def close_group() -> None:
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
