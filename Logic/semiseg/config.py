"""Typed configuration of a training run: one dataclass per concern, unknown keys rejected.

The defaults are the common 2D protocol of the papers (UNet 16-256, SGD 0.01 with poly decay,
momentum 0.9, weight decay 1e-4, 256x256 slices, batch 12 labelled + 12 unlabelled); front ends
lower the iterations and size for a CPU budget. A different number of iterations is a value,
never a subclass.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, TypeVar

from .contract import train_setting_problem
from .errors import InputError

__all__ = ["TrainConfig", "ModelConfig", "PRECISIONS", "check_ranges", "from_dict", "to_dict"]

PRECISIONS = ("auto", "bf16", "fp32")
"""Values of :attr:`TrainConfig.precision` (see :mod:`semiseg.models.precision`)."""

T = TypeVar("T")


@dataclasses.dataclass
class ModelConfig:
    """The papers' 2D UNet (see :mod:`semiseg.models.unet`)."""

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
        threads: torch CPU threads (0: one per core that other processes leave free, see :mod:`semiseg.cpu`).
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
        )


def check_ranges(config: Any, **intervals: str) -> None:
    """Raise :class:`InputError` naming the first field of ``config`` outside its interval.

    Intervals are written as in mathematics: ``"[0, 1]"`` closed, ``"[0, 1)"`` open at 1, ``"(0, inf)"``
    positive, e.g. ``check_ranges(self, cutmix_p="[0, 1]", ema="[0, 1)")``.
    """
    for name, interval in intervals.items():
        value = getattr(config, name)
        low, high = (float(x) for x in interval[1:-1].split(","))
        above = value >= low if interval[0] == "[" else value > low
        below = value <= high if interval[-1] == "]" else value < high
        if not (above and below):
            raise InputError(f"{name} must be in {interval}, got {value}")


def from_dict(cls: type[T], values: dict[str, Any] | None, where: str = "config") -> T:
    """Build dataclass ``cls`` from ``values``, refusing unknown keys.

    Raises:
        InputError: not a dict, a key that ``cls`` does not have (naming the valid ones), or a value
            whose type is not that of the field's default (``"300"`` or ``3.7`` or ``true`` for an integer).
    """
    if values is not None and not isinstance(values, dict):
        raise InputError(f"{where} settings must be an object of key: value, got {values!r}")
    values = dict(values or {})
    names = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(names))
    if unknown:
        raise InputError(f"unknown {where} key(s) {unknown}; valid keys: {sorted(names)}")
    for key, value in list(values.items()):
        default = names[key].default
        if default is not dataclasses.MISSING and not _same_kind(value, default):
            raise InputError(
                f"{where} {key!r} must be {_KIND_NAMES.get(type(default), type(default).__name__)}, got {value!r}"
            )
        if isinstance(default, tuple) and isinstance(value, list):
            values[key] = tuple(value)
    return cls(**values)


_KIND_NAMES = {bool: "true or false", int: "an integer", float: "a number", str: "a string", tuple: "a list"}


def _same_kind(value: Any, default: Any) -> bool:
    """Whether ``value`` may stand for a field whose default is ``default`` (JSON types; an int is a float)."""
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(value, bool) and isinstance(default, bool)
    if isinstance(default, int):
        return isinstance(value, int)
    if isinstance(default, float):
        return isinstance(value, (int, float)) and math.isfinite(value)
    if isinstance(default, tuple):
        return isinstance(value, (list, tuple)) and (not default or all(_same_kind(v, default[0]) for v in value))
    return default is None or isinstance(value, type(default))


def to_dict(obj: Any) -> dict[str, Any]:
    """A JSON-friendly dict of a config dataclass."""
    return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(obj).items()}
