"""Typed configuration of a training run: one dataclass per concern, unknown keys rejected.

The defaults are the common 2D protocol of the papers (UNet 16-256, SGD 0.01 with poly decay,
momentum 0.9, weight decay 1e-4, 256x256 slices, batch 12 labelled + 12 unlabelled); front ends
lower the iterations and size for a CPU budget. A different number of iterations is a value,
never a subclass.
"""

from __future__ import annotations

import dataclasses

from ..contract import PRECISIONS, train_setting_problem
from ..errors import InputError
from ..settings import check_ranges

__all__ = ["TrainConfig", "ModelConfig"]


@dataclasses.dataclass
class ModelConfig:
    """The papers' 2D UNet (see :mod:`semiseg.models.unet`).

    ``in_channels`` is 1, the slice itself, everywhere in the product; more channels (the slice's neighbours,
    or the shape prior as an input) are benchmark candidates (docs/BENCHMARKS.md section 2)."""

    in_channels: int = 1
    features: tuple[int, ...] = (16, 32, 64, 128, 256)
    dropout: tuple[float, ...] = (0.05, 0.1, 0.2, 0.3, 0.5)


@dataclasses.dataclass
class TrainConfig:
    """Optimisation, data sampling and bookkeeping of the shared trainer.

    Args:
        iterations: optimiser steps.
        size: slices are resized to ``size x size`` for training and inference.
        batch_labeled / batch_unlabeled: slices per step from each stream (papers: 12 + 12).
        lr, momentum, weight_decay, poly_power: SGD with poly decay ``lr * (1 - t/T) ** power``.
        optimizer: ``"sgd"`` (papers) or ``"adamw"`` (our choice for short CPU budgets).
        warmup_iterations: linear learning-rate warm-up (0 in the papers).
        seed: seeds torch and the samplers; the same seed and thread count give the same run on the same device.
        device: ``"auto"`` (CUDA, else CPU), ``"cpu"``, ``"cuda"``, ``"mps"``.
        amp: mixed precision on CUDA.
        precision: ``"auto"`` (bfloat16 forward passes on a CPU with native bf16 kernels, CUDA AMP
            when ``amp``, else float32), ``"bf16"`` (bfloat16 even where it is emulated) or ``"fp32"``.
            Losses, softmax and confidences are float32 in every case (:mod:`semiseg.models.precision`).
        val_every: validation period in iterations (0: never).
        checkpoint_every: checkpoint period in iterations (a checkpoint is always written at the end).
        min_val_slices: hold out labelled slices for validation only when at least this many
            labelled slices exist; then every ``val_stride``-th labelled slice is held out (our choice:
            with fewer labels every labelled slice is worth more as training data).
        log_every: progress line period in iterations.
        threads: torch CPU threads (0: one per core that other processes leave free, see :mod:`semiseg.training.cpu`;
            under torchrun, shared among the node's processes).
        dist_timeout: seconds a collective of a torchrun run waits for the other processes before the run fails
            (a rank that died; see :mod:`semiseg.training.distributed`). Unused in one process.
    """

    iterations: int = 30000
    size: int = 256
    batch_labeled: int = 12
    batch_unlabeled: int = 12
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 1e-4
    poly_power: float = 0.9
    optimizer: str = "sgd"
    warmup_iterations: int = 0
    seed: int = 0
    device: str = "auto"
    amp: bool = True
    precision: str = "auto"
    val_every: int = 200
    checkpoint_every: int = 500
    min_val_slices: int = 6
    val_stride: int = 5
    log_every: int = 10
    threads: int = 0
    dist_timeout: float = 600.0

    def validate(self) -> None:
        """Raise :class:`InputError` for values no run can use."""
        problem = train_setting_problem(self.iterations, self.size)  # the limits every front end offers
        if problem:
            raise InputError(problem)
        if self.batch_labeled < 1 or self.batch_unlabeled < 0:
            raise InputError("batch_labeled must be >= 1 and batch_unlabeled >= 0")
        if self.optimizer not in ("sgd", "adamw"):
            raise InputError(f"optimizer must be 'sgd' or 'adamw', got {self.optimizer!r}")
        if self.device not in ("auto", "cpu", "cuda", "mps"):
            raise InputError(f"device must be one of auto, cpu, cuda, mps, got {self.device!r}")
        if self.precision not in PRECISIONS:
            raise InputError(f"precision must be one of {', '.join(PRECISIONS)}, got {self.precision!r}")
        check_ranges(
            self,
            lr="(0, inf)",
            momentum="[0, 1)",
            weight_decay="[0, inf)",
            poly_power="[0, inf)",
            warmup_iterations="[0, inf)",
            seed="[0, 4294967295]",
            val_every="[0, inf)",
            checkpoint_every="[0, inf)",
            min_val_slices="[0, inf)",
            val_stride="[1, inf)",
            log_every="[1, inf)",
            threads="[0, 4096]",
            dist_timeout="(0, inf)",
        )
