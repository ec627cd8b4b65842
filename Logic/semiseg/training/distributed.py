"""Training under ``torchrun``: the world a process belongs to, and the few collectives the trainer needs.

``torchrun --nproc-per-node N -m semiseg train --job JOB`` starts N processes with ``WORLD_SIZE``,
``RANK``, ``LOCAL_RANK`` (and ``MASTER_ADDR``/``MASTER_PORT``) in their environment; :func:`world_from_env`
reads them. A world of one process (no torchrun, or ``--nproc-per-node 1``) is today's run: no process
group, no collective, nothing below is called.

Choices (see docs/SCALE.md, "Training under torchrun"):

* **Gradient sync: an explicit all-reduce, not DistributedDataParallel.** The methods call the network
  through ``model.encode`` / ``model.decode`` / ``decode_with_dropout`` and train modules of their own
  (SemSim's fusion module): DDP syncs only the gradients of parameters reached through its wrapper's
  ``forward``, so it would silently miss most of them. :func:`average_gradients` instead all-reduces every
  optimised parameter's gradient after ``backward`` (one flat tensor, divided by the world size) before the
  optimiser step. A parameter without a gradient on every rank keeps none (so SGD's momentum and weight
  decay skip it as in one process); one with a gradient on some rank gets the average with zeros.
* **Buffers follow rank 0** (:func:`broadcast_buffers` after each step): batch-norm running statistics (as
  DDP's ``broadcast_buffers``) and the methods' banks, so every rank holds the same model, teacher and bank,
  and rank 0's checkpoint is every rank's state.
* **Cancel**: :func:`any_rank` (a MAX all-reduce of each rank's flag) before each step; rank 0 reads the
  cancel file, any rank may have got SIGTERM; all ranks stop at the same iteration.
* **Failure**: every collective has the process group's timeout (``TrainConfig.dist_timeout``); a rank that
  dies makes the others' next collective fail (at once when its sockets close, at the latest after the
  timeout), so they end with an error and the run is marked failed, never hung.
"""

from __future__ import annotations

import dataclasses
import datetime
import os
from typing import Iterable, Mapping

import torch
import torch.distributed as dist
import torch.nn as nn

__all__ = [
    "World",
    "world_from_env",
    "init_world",
    "close_world",
    "average_gradients",
    "broadcast_buffers",
    "broadcast_state",
    "any_rank",
]


@dataclasses.dataclass(frozen=True)
class World:
    """This process's place in a torchrun job (size 1: a plain one-process run)."""

    size: int = 1
    rank: int = 0
    local_rank: int = 0
    local_size: int = 1

    @property
    def distributed(self) -> bool:
        return self.size > 1

    @property
    def main(self) -> bool:
        """Rank 0: the one process that writes the run folder."""
        return self.rank == 0


def world_from_env(environ: Mapping[str, str] | None = None) -> World:
    """The world torchrun describes in the environment (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``,
    ``LOCAL_WORLD_SIZE``); one process without them (or with values that do not make a world)."""
    env = os.environ if environ is None else environ
    try:
        size = int(env.get("WORLD_SIZE", "1"))
        rank = int(env.get("RANK", "0"))
        local_rank = int(env.get("LOCAL_RANK", str(rank)))
        local_size = int(env.get("LOCAL_WORLD_SIZE", str(size)))
    except ValueError:
        return World()
    if size <= 1 or not 0 <= rank < size:
        return World()
    return World(size, rank, local_rank, max(1, local_size))


def init_world(world: World, device: str, timeout_seconds: float) -> None:
    """Join the process group: gloo on the CPU, NCCL on CUDA (each local rank on its own GPU).

    Every collective fails after ``timeout_seconds`` instead of waiting for a dead rank.
    """
    if not world.distributed or dist.is_initialized():
        return
    cuda = device in ("auto", "cuda") and torch.cuda.is_available()
    if cuda:
        torch.cuda.set_device(world.local_rank)
    dist.init_process_group(
        backend="nccl" if cuda else "gloo",
        init_method="env://",
        world_size=world.size,
        rank=world.rank,
        timeout=datetime.timedelta(seconds=timeout_seconds),
    )


def close_world(barrier: bool = True) -> None:
    """Leave the process group (nothing when there is none); with ``barrier``, together with the other ranks.

    The barrier keeps a rank from tearing its connections down while another still uses them (gloo then
    aborts the process, "terminate called without an active exception"); after a failure it is skipped.
    """
    if dist.is_available() and dist.is_initialized():
        try:
            if barrier:
                dist.barrier()
            dist.destroy_process_group()
        except Exception:  # noqa: BLE001 - a dead peer: the process ends anyway
            pass


def average_gradients(params: Iterable[nn.Parameter], world: World) -> None:
    """Replace each parameter's gradient by its mean over the ranks (see the module docstring)."""
    params = list(params)
    if not world.distributed or not params:
        return
    device = params[0].device
    has = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=device)
    flat = torch.cat(
        [(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1).float() for p in params] + [has]
    )
    dist.all_reduce(flat)
    has = flat[-len(params) :]
    offset = 0
    for p, present in zip(params, has.tolist()):
        n = p.numel()
        if present > 0:
            g = (flat[offset : offset + n] / world.size).view_as(p).to(p.dtype)
            if p.grad is None:
                p.grad = g
            else:
                p.grad.copy_(g)
        offset += n


def _broadcast(tensors: list[torch.Tensor]) -> None:
    for t in tensors:
        dist.broadcast(t, src=0)


def broadcast_buffers(modules: Iterable[nn.Module], world: World) -> None:
    """Every rank takes rank 0's buffers (batch-norm statistics, banks, counters)."""
    if not world.distributed:
        return
    for module in modules:
        _broadcast([b for b in module.buffers()])


def broadcast_state(modules: Iterable[nn.Module], world: World) -> None:
    """Every rank takes rank 0's parameters and buffers (at the start: after a resume or warm start)."""
    if not world.distributed:
        return
    with torch.no_grad():
        for module in modules:
            _broadcast([p.data for p in module.parameters()] + [b for b in module.buffers()])


def any_rank(flag: bool, world: World, device: torch.device | str = "cpu") -> bool:
    """True on every rank when ``flag`` is true on at least one."""
    if not world.distributed:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return bool(t.item() > 0)
