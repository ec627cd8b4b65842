"""Mixed precision of the networks: which dtype their forward passes compute in, and where bf16 pays.

The trainer (and the :class:`~semiseg.inference.Predictor`) decides the precision of a run and sets
it on every network with :func:`set_precision`; methods never see it. A network that takes part
(:class:`MixedPrecision`) runs its own forward under ``torch.autocast`` with that dtype and hands
back float32 logits and features, so everything outside the networks (losses, softmax, confidence,
pseudo-labels, affinities, prototypes) computes in float32 whatever the precision. Weights, their
gradients and the optimiser state stay float32, and so do checkpoints.

On the CPU, bfloat16 pays where oneDNN has native bf16 kernels (AVX512-BF16 or AMX): the
convolutions then run on the bf16 dot-product units. Without them oneDNN emulates bf16 and is
slower than float32, so ``"auto"`` keeps float32 there. Channels-last (NHWC) activations are what
oneDNN's convolutions use internally; keeping them in that layout saves a reorder per convolution,
in float32 as well as in bf16 (docs/BENCHMARKS.md section 3 has the numbers).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterable, Iterator

import torch
import torch.nn as nn

from ..contract import PRECISIONS

__all__ = ["PRECISIONS", "MixedPrecision", "bf16_supported", "resolve_precision", "set_precision"]

def bf16_supported() -> bool:
    """Whether this CPU has native bfloat16 kernels in oneDNN (detected: AVX512-BF16 / AMX), not assumed."""
    try:
        return bool(torch.backends.mkldnn.is_available() and torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # a torch without the probe: no claim of support
        return False


def resolve_precision(precision: str, device: torch.device, amp: bool = True) -> str:
    """The precision a run computes in: ``"bf16"``, ``"fp16"`` (CUDA AMP) or ``"fp32"``.

    Args:
        precision: ``"auto"`` (bf16 on a CPU with native bf16 kernels, CUDA AMP when ``amp``, else fp32),
            ``"bf16"`` (bf16 wherever it runs, emulated if it must: slower there, for tests) or ``"fp32"``.
        device: the training or inference device.
        amp: the run's ``amp`` setting (mixed precision on CUDA).

    Raises:
        ValueError: an unknown ``precision``.
    """
    if precision not in PRECISIONS:
        raise ValueError(f"precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "fp16" if amp else "fp32"
    return "bf16" if device.type == "cpu" and bf16_supported() else "fp32"


_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16, "fp32": None}


class MixedPrecision:
    """Mixin of a network whose forward passes run in :attr:`compute_dtype` (``None``: float32).

    Subclasses wrap the body of their public forward functions in ``with self.autocast(x):`` and
    return float32 tensors from them.
    """

    compute_dtype: torch.dtype | None = None
    channels_last: bool = False

    def autocast(self, x: torch.Tensor) -> contextlib.AbstractContextManager:
        if self.compute_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(x.device.type, dtype=self.compute_dtype)

    def layout(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` (B, C, H, W) in the network's memory format."""
        return x.contiguous(memory_format=torch.channels_last) if self.channels_last and x.ndim == 4 else x


def set_precision(modules: Iterable[nn.Module], precision: str, device: torch.device) -> None:
    """Make every :class:`MixedPrecision` network in ``modules`` (and their sub-modules) compute in ``precision``.

    On the CPU their parameters and activations also go channels-last (see the module docstring).
    """
    dtype = _DTYPES[precision]
    channels_last = device.type == "cpu"
    for root in modules:
        for m in _networks(root):
            m.compute_dtype = dtype
            m.channels_last = channels_last
            if channels_last:
                m.to(memory_format=torch.channels_last)


def _networks(root: nn.Module) -> Iterator[nn.Module]:
    for m in root.modules():
        if isinstance(m, MixedPrecision):
            yield m
