"""Training and inference throughput of the UNet on this machine, against its matrix-multiply peak.

Training images/s counts labelled images per second of the ``supervised`` method's full step (weak
augmentation, forward, Dice+CE, backward, SGD) through the real :class:`~semiseg.training.Trainer`;
inference slices/s counts slices per second of :class:`~semiseg.inference.Predictor` on a volume
(resize, forward, softmax, resize back). FLOP utilisation = achieved FLOP/s (counted with
:func:`~semiseg.bench.flops.forward_flops`, x3 for a training step) / measured matmul peak.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from ..config import TrainConfig
from ..data import SliceSet
from ..models import UNet2D
from ..training import Trainer, TrainData
from ..training.progress import ProgressLog
from .flops import forward_flops, matmul_peak_gflops

__all__ = ["measure_throughput"]


def measure_throughput(size: int = 256, batch: int = 12, steps: int = 10, slices: int = 24, num_classes: int = 4,
                       device: str = "cpu", method: str = "supervised") -> dict[str, float]:
    """Measure and return training and inference throughput (after one warm-up step each)."""
    from ..inference import Predictor

    peak = matmul_peak_gflops()
    fwd = forward_flops(UNet2D(1, num_classes).eval(), torch.zeros(1, 1, size, size))
    g = torch.Generator().manual_seed(0)
    lab = torch.randint(0, num_classes, (batch * 2, size, size), generator=g)
    img = torch.rand(batch * 2, 1, size, size, generator=g)
    empty = SliceSet(torch.zeros(0, 1, size, size), torch.zeros(0, size, size, dtype=torch.long), [])
    data = TrainData(SliceSet(img, lab, []), empty, SliceSet(img.clone(), None, []), num_classes)
    with tempfile.TemporaryDirectory() as tmp:
        cfg = TrainConfig(iterations=steps + 1, size=size, batch_labeled=batch, batch_unlabeled=batch, device=device,
                          val_every=0, checkpoint_every=0)
        trainer = Trainer(cfg, method, {}, num_classes, tmp, log=ProgressLog(None, stream=None))
        trainer.step(data)
        t = time.perf_counter()
        for _ in range(steps):
            trainer.step(data)
        step_s = (time.perf_counter() - t) / steps
        trainer.save()
        predictor = Predictor(Path(tmp) / "checkpoint.pt", device, batch_size=batch)
        volume = np.random.default_rng(0).random((slices, size, size)).astype(np.float32)
        predictor.probabilities(volume[:2])
        t = time.perf_counter()
        predictor.probabilities(volume)
        infer_s = time.perf_counter() - t
    train_ips = batch / step_s
    infer_sps = slices / infer_s
    return {
        "size": size, "batch": batch, "threads": torch.get_num_threads(), "method": method,
        "matmul_peak_gflops": round(peak, 1), "unet_forward_gflop_per_image": round(fwd / 1e9, 3),
        "train_seconds_per_step": round(step_s, 3), "train_images_per_s": round(train_ips, 2),
        "train_flop_utilisation": round(train_ips * 3 * fwd / 1e9 / peak, 3),
        "inference_slices_per_s": round(infer_sps, 2),
        "inference_flop_utilisation": round(infer_sps * fwd / 1e9 / peak, 3),
    }


def print_table(result: dict[str, float]) -> None:
    """Print the result as JSON, then as a two-column summary table (last)."""
    print(json.dumps(result))
    width = max(len(k) for k in result)
    print("\n".join(f"{k:<{width}}  {v}" for k, v in result.items()))
