"""What each of issue 16's speed changes is worth, in s/it, measured in ONE process.

Each variant is the engine as it is with ONE change undone (leave-one-out), against the engine as it
is ("all"). Every variant has its own trainer, built alike, and they are timed in interleaved blocks
of ``--steps`` steps, ``--blocks`` times each, so that a busy or throttled machine slows them all
alike; the figure is each variant's median step.

- ``fp32``: forward passes in float32 instead of bfloat16 (only where the CPU has native bf16).
- ``no channels-last``: the networks and their activations in the default (NCHW) memory layout.
- ``no prefetch``: the strong views and CutMix boxes made on the training thread, inside the step.
- ``replicate pad``: the decoder's zero-width replicate pad of MONAI's ``UpCat`` put back.
- ``mmap every block``: glibc's thresholds back at their 128 KiB defaults during the variant's blocks,
  so every large activation is mapped and unmapped each step (the process keeps the engine's setting
  for the others).

Run at 1 thread on an otherwise idle core, e.g.::

    OMP_NUM_THREADS=1 taskset -c 1 python benchmarks/per_change.py --method unimatch --size 128
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import shutil
import statistics
import tempfile
import time
from typing import Callable

import torch

from semiseg.io.slices import SliceSet
from semiseg.models import bf16_supported
from semiseg.models.precision import MixedPrecision
from semiseg.training import TrainData, Trainer
from semiseg.training.allocator import keep_freed_memory
from semiseg.training.config import TrainConfig
from semiseg.training.progress import ProgressLog

DEFAULT_MMAP = 128 * 1024  # glibc's initial mmap and trim thresholds


def _data(size: int, classes: int) -> TrainData:
    g = torch.Generator().manual_seed(0)
    images = torch.rand(40, 1, size, size, generator=g)
    labels = torch.randint(0, classes, (40, size, size), generator=g)
    empty = SliceSet(torch.zeros(0, 1, size, size), torch.zeros(0, size, size, dtype=torch.long), [])
    return TrainData(SliceSet(images, labels, []), empty, SliceSet(images.clone(), None, []), classes)


def _trainer(args: argparse.Namespace, precision: str, folder: str) -> Trainer:
    config = TrainConfig(
        iterations=1000, size=args.size, batch_labeled=args.batch, batch_unlabeled=args.batch, lr=0.03,
        device="cpu", val_every=0, checkpoint_every=0, threads=1, precision=precision,
    )
    trainer = Trainer(config, args.method, {}, 4, folder, log=ProgressLog(None, stream=None))
    trainer.iteration = 500  # past any warm-up: the method's whole step
    return trainer


def _networks(trainer: Trainer) -> list[torch.nn.Module]:
    return [m for m in trainer.model.modules() if isinstance(m, MixedPrecision)]


def _mallopt(threshold: int) -> None:
    libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    libc.mallopt(-3, threshold)  # M_MMAP_THRESHOLD
    libc.mallopt(-1, threshold)  # M_TRIM_THRESHOLD


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--method", default="unimatch")
    p.add_argument("--size", type=int, default=128)
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--steps", type=int, default=3, help="steps per block")
    p.add_argument("--blocks", type=int, default=4, help="blocks per variant")
    args = p.parse_args()
    torch.set_num_threads(1)
    if not keep_freed_memory():
        raise SystemExit("needs glibc (Linux) for the allocator variant")
    bf16 = bf16_supported()
    fast = "bf16" if bf16 else "fp32"
    data = _data(args.size, 4)
    tmp = tempfile.mkdtemp()

    trainers = {name: _trainer(args, fast, f"{tmp}/{i}") for i, name in enumerate(
        ["all", "no channels-last", "no prefetch", "replicate pad", "mmap every block"])}
    if bf16:
        trainers["fp32"] = _trainer(args, "fp32", f"{tmp}/fp32")
    for net in _networks(trainers["no channels-last"]):
        net.channels_last = False
        net.to(memory_format=torch.contiguous_format)
    for m in trainers["replicate pad"].model.modules():
        if hasattr(m, "is_pad"):
            m.is_pad = True

    contexts = [t.prefetching() for name, t in trainers.items() if name != "no prefetch"]
    for c in contexts:
        c.__enter__()
    runs: dict[str, Callable[[], object]] = {name: (lambda t=t: t.step(data)) for name, t in trainers.items()}
    before = {"mmap every block": lambda: _mallopt(DEFAULT_MMAP)}
    after = {"mmap every block": lambda: _mallopt(1 << 30)}
    for name, run in runs.items():  # warm-up: first-call costs out of the timings
        before.get(name, lambda: None)()
        run()
        run()
        after.get(name, lambda: None)()
    times: dict[str, list[float]] = {k: [] for k in runs}
    for _ in range(args.blocks):
        for name, run in runs.items():
            before.get(name, lambda: None)()
            for _ in range(args.steps):
                start = time.perf_counter()
                run()
                times[name].append(time.perf_counter() - start)
            after.get(name, lambda: None)()
    for c in contexts:
        c.__exit__(None, None, None)
    shutil.rmtree(tmp, ignore_errors=True)  # the trainers' empty run folders

    median = {k: statistics.median(v) for k, v in times.items()}
    base = median["all"]
    print(f"{args.method} at {args.size} px, batch {args.batch} + {args.batch}, 1 thread, engine precision {fast}; "
          f"median of {args.steps * args.blocks} steps per variant in {args.blocks} interleaved blocks")
    print("| variant (one change undone) | s/it | against all | the change saves |")
    print("|---|---|---|---|")
    for name, t in median.items():
        print(f"| {name} | {t:.3f} | {t / base:.2f}x | {t - base:+.3f} s/it |" if name != "all"
              else f"| all changes | {t:.3f} | 1.00x | |")


if __name__ == "__main__":
    main()
