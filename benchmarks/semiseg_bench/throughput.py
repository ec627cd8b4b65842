"""Training and inference throughput on this machine, float32 against bfloat16, against the matmul peaks.

Everything is measured in one process, float32 and bfloat16 blocks interleaved (a block of ``steps``
steps of one precision, then of the other, ``blocks`` times; the median step of each precision),
so that the ratio holds even when other processes load the machine and the absolute numbers do not.

- Training: the real :class:`~semiseg.training.Trainer` step of ``method`` (its prefetch thread
  on, as in :meth:`~semiseg.training.Trainer.fit`) at a steady-state iteration (past any warm-up,
  every stream of the method running), batch ``batch`` + ``batch``; images/s counts every image a
  step reads (labelled plus each unlabelled batch).
- FLOPs per step are counted by :class:`torch.utils.flop_counter.FlopCounterMode` around one real
  step (forward and backward of every convolution, matrix product and attention); FLOP
  utilisation = counted FLOP/s / the fp32 and the bf16 ``2048 x 2048`` matmul peaks, measured in
  the same run.
- Inference: slices/s of :class:`~semiseg.inference.Predictor` on a volume of ``slices`` slices
  (resize, forward, softmax, resize back) in each precision; utilisation from
  :func:`~semiseg_bench.flops.forward_flops`.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch

from semiseg.io.slices import SliceSet
from semiseg.models import UNet2D, bf16_supported
from semiseg.training import TrainData, Trainer
from semiseg.training.config import TrainConfig
from semiseg.training.progress import ProgressLog

from .common import check_methods, int_list, str_list
from .flops import forward_flops, matmul_peak_gflops

__all__ = ["measure_throughput", "compare_methods", "matmul_peaks", "add_utilisation", "print_table", "add_arguments",
           "main"]

PRECISIONS = ("fp32", "bf16")


def matmul_peaks(seconds: float = 2.0) -> dict[str, float]:
    """Best GFLOP/s of a 2048x2048 matmul in float32 and in bfloat16, with torch's threads."""
    return {
        p: matmul_peak_gflops(seconds=seconds, dtype=dt)
        for p, dt in (("fp32", torch.float32), ("bf16", torch.bfloat16))
    }


def _data(size: int, batch: int, num_classes: int) -> TrainData:
    g = torch.Generator().manual_seed(0)
    n = max(2 * batch, 8)
    lab = torch.randint(0, num_classes, (n, size, size), generator=g)
    img = torch.rand(n, 1, size, size, generator=g)
    empty = SliceSet(torch.zeros(0, 1, size, size), torch.zeros(0, size, size, dtype=torch.long), [])
    return TrainData(SliceSet(img, lab, []), empty, SliceSet(img.clone(), None, []), num_classes)


def _interleaved(run: dict[str, Any], steps: int, blocks: int) -> dict[str, float]:
    """Median seconds of ``run[p]()`` per precision p, timed in ``blocks`` interleaved blocks of ``steps`` calls."""
    times: dict[str, list[float]] = {p: [] for p in run}
    for _ in range(blocks):
        for p, fn in run.items():
            for _ in range(steps):
                t = time.perf_counter()
                fn()
                times[p].append(time.perf_counter() - t)
    return {p: statistics.median(v) for p, v in times.items()}


def measure_throughput(
    size: int = 256,
    batch: int = 12,
    steps: int = 10,
    slices: int = 24,
    num_classes: int = 4,
    device: str = "cpu",
    method: str = "supervised",
    blocks: int = 3,
    peaks: dict[str, float] | None = None,
    inference: bool = True,
) -> dict[str, Any]:
    """Training (and inference) throughput of ``method`` at ``size``, fp32 and bf16 interleaved in this process.

    Args:
        size, batch: training size and labelled (= each unlabelled) batch.
        steps: steps (inference: volumes) per block; ``blocks``: blocks per precision.
        slices: slices of the inference volume.
        peaks: matmul peaks to use (default: measured now, :func:`matmul_peaks`).
        inference: measure the Predictor too.

    Returns:
        A flat dict: ``train_seconds_per_step_fp32``, ``..._bf16``, images/s, GFLOP per step, utilisation against
        each peak, ``train_bf16_speedup`` (fp32 s/step / bf16 s/step), and the same for inference.
    """
    from semiseg.inference import Predictor
    from semiseg.models import resolve_precision

    peaks = peaks or matmul_peaks()
    fwd = forward_flops(UNet2D(1, num_classes).eval(), torch.zeros(1, 1, size, size))
    data = _data(size, batch, num_classes)
    out: dict[str, Any] = {
        "method": method,
        "size": size,
        "batch": batch,
        "threads": torch.get_num_threads(),
        "bf16_native": bf16_supported(),
        "matmul_peak_gflops_fp32": round(peaks["fp32"], 1),
        "matmul_peak_gflops_bf16": round(peaks["bf16"], 1),
        "unet_forward_gflop_per_image": round(fwd / 1e9, 3),
    }
    with tempfile.TemporaryDirectory() as tmp:
        trainers = {}
        for p in PRECISIONS:
            cfg = TrainConfig(
                iterations=100000,
                size=size,
                batch_labeled=batch,
                batch_unlabeled=batch,
                device=device,
                val_every=0,
                checkpoint_every=0,
                threads=torch.get_num_threads(),
                precision=p,
            )
            trainers[p] = Trainer(cfg, method, {}, num_classes, Path(tmp) / p, log=ProgressLog(None, stream=None))
            trainers[p].iteration = cfg.iterations // 2  # steady state: past any warm-up / ramp-up
        with trainers["fp32"].prefetching(), trainers["bf16"].prefetching():
            for t in trainers.values():
                t.step(data)
            from torch.utils.flop_counter import FlopCounterMode

            with FlopCounterMode(display=False) as counter:
                trainers["fp32"].step(data)
            flops = counter.get_total_flops()
            step_s = _interleaved({p: (lambda t=t: t.step(data)) for p, t in trainers.items()}, steps, blocks)
        images = batch * (1 + trainers["fp32"].method.unlabeled_batches)
        out["train_images_per_step"], out["train_gflop_per_step"] = images, round(flops / 1e9, 2)
        for p in PRECISIONS:
            out[f"train_seconds_per_step_{p}"] = round(step_s[p], 4)
            out[f"train_images_per_s_{p}"] = round(images / step_s[p], 2)
        out["train_bf16_speedup"] = round(step_s["fp32"] / step_s["bf16"], 3)
        if inference:
            trainers["fp32"].save()
            ckpt = trainers["fp32"].checkpoint_path
            predictors = {p: Predictor(ckpt, device, batch_size=16, precision=p) for p in PRECISIONS}
            volume = np.random.default_rng(0).random((slices, size, size)).astype(np.float32)
            for pr in predictors.values():
                pr.probabilities(volume[:2])
            infer_s = _interleaved(
                {p: (lambda pr=pr: pr.probabilities(volume)) for p, pr in predictors.items()}, 1, blocks
            )
            for p in PRECISIONS:
                out[f"inference_slices_per_s_{p}"] = round(slices / infer_s[p], 2)
            out["inference_bf16_speedup"] = round(infer_s["fp32"] / infer_s["bf16"], 3)
    # the precision a run takes by default ("auto"), under the names of the single-precision report
    auto = resolve_precision("auto", torch.device(device))
    auto = auto if auto in PRECISIONS else "fp32"
    out.update(
        precision=auto,
        matmul_peak_gflops=out[f"matmul_peak_gflops_{auto}"],
        train_seconds_per_step=out[f"train_seconds_per_step_{auto}"],
        train_images_per_s=out[f"train_images_per_s_{auto}"],
    )
    if inference:
        out["inference_slices_per_s"] = out[f"inference_slices_per_s_{auto}"]
    return add_utilisation(out, peaks)


def add_utilisation(row: dict[str, Any], peaks: dict[str, float]) -> dict[str, Any]:
    """(Re)compute ``row``'s FLOP utilisations (achieved FLOP/s over each matmul peak); the last key is
    ``inference_flop_utilisation`` (or ``train_flop_utilisation``): the default precision against its own peak."""
    fwd, auto = row["unet_forward_gflop_per_image"], row["precision"]
    for kind, work in (("train", row["train_gflop_per_step"]), ("inference", fwd)):
        for p in PRECISIONS:
            rate = row.get(f"train_seconds_per_step_{p}") if kind == "train" else row.get(f"inference_slices_per_s_{p}")
            if rate is None:
                continue
            achieved = work / rate if kind == "train" else work * rate
            for peak in PRECISIONS:
                row[f"{kind}_flop_utilisation_{p}_vs_{peak}_peak"] = round(achieved / peaks[peak], 3)
    for kind in ("train", "inference"):
        key = f"{kind}_flop_utilisation_{auto}_vs_{auto}_peak"
        if key in row:
            row.pop(f"{kind}_flop_utilisation", None)
            row[f"{kind}_flop_utilisation"] = row[key]
    return row


def compare_methods(
    methods: Sequence[str],
    sizes: Sequence[int],
    batch: int = 4,
    steps: int = 3,
    blocks: int = 3,
    slices: int = 24,
    inference_size: int = 256,
) -> list[dict[str, Any]]:
    """:func:`measure_throughput` for every method and size; the peaks are measured before and after, the higher
    kept."""
    peaks = matmul_peaks()
    rows = [
        measure_throughput(
            size,
            batch,
            steps,
            slices,
            method=m,
            blocks=blocks,
            peaks=peaks,
            inference=size == inference_size and m == methods[0],
        )
        for size in sizes
        for m in methods
    ]
    peaks = {p: max(v, w) for (p, v), w in zip(peaks.items(), matmul_peaks().values())}
    for row in rows:
        row.update({f"matmul_peak_gflops_{p}": round(v, 1) for p, v in peaks.items()})
        add_utilisation(row, peaks)
    return rows


def print_table(result: dict[str, Any] | list[dict[str, Any]]) -> None:
    """Print the result as JSON lines, then a summary (a two-column table, or one row per method and size)."""
    rows = result if isinstance(result, list) else [result]
    for row in rows:
        print(json.dumps(row))
    if len(rows) == 1:
        width = max(len(k) for k in rows[0])
        print("\n".join(f"{k:<{width}}  {v}" for k, v in rows[0].items()))
        return
    print(
        "| method | size | s/it fp32 | s/it bf16 | bf16 speed-up | images/s fp32 | images/s bf16 | GFLOP/it | "
        "util. fp32 vs fp32 peak | util. bf16 vs bf16 peak |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['method']} | {r['size']} | {r['train_seconds_per_step_fp32']:.3f} | "
            f"{r['train_seconds_per_step_bf16']:.3f} | "
            f"{r['train_bf16_speedup']:.2f} | {r['train_images_per_s_fp32']:.1f} | "
            f"{r['train_images_per_s_bf16']:.1f} | "
            f"{r['train_gflop_per_step']:.1f} | {r['train_flop_utilisation_fp32_vs_fp32_peak']:.0%} | "
            f"{r['train_flop_utilisation_bf16_vs_bf16_peak']:.0%} |"
        )


def add_arguments(p: argparse.ArgumentParser) -> None:
    """The options of ``semiseg bench throughput`` and of ``benchmarks/throughput.py``."""
    from semiseg.contract import METHOD_LABELS

    p.add_argument("--method", default="supervised", choices=list(METHOD_LABELS))
    p.add_argument("--methods", type=str_list, default=[], help="comma-separated methods: one row per method and size")
    p.add_argument("--size", type=int, default=256)
    p.add_argument("--sizes", type=int_list, default=[], help="comma-separated sizes (with --methods)")
    p.add_argument("--batch", type=int, default=12)
    p.add_argument("--steps", type=int, default=10, help="steps per interleaved block")
    p.add_argument("--blocks", type=int, default=3, help="blocks per precision")
    p.add_argument("--slices", type=int, default=24, help="slices of the inference volume")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda", "mps"])


def main(args: argparse.Namespace) -> int:
    if args.methods:
        check_methods(args.methods)
        print_table(compare_methods(args.methods, args.sizes or [args.size], args.batch, args.steps, args.blocks,
                                    args.slices))
    else:
        print_table(measure_throughput(args.size, args.batch, args.steps, args.slices, device=args.device,
                                       method=args.method, blocks=args.blocks))
    return 0
