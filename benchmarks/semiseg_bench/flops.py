"""Counting a network's floating-point work and measuring the machine's matrix-multiply peak.

FLOPs are counted, not estimated: forward hooks on every convolution, transposed convolution and
linear layer add ``2 * in/groups * out * kernel area * output pixels`` (a multiply and an add per
weight and output). Norms, activations and pooling are left out (they are a few percent at most and
memory-bound). One training step costs about three forward passes (forward, gradient with respect
to activations, gradient with respect to weights), the usual convention.
"""

from __future__ import annotations

import time

import torch
import torch.nn as nn

__all__ = ["forward_flops", "matmul_peak_gflops"]


def forward_flops(model: nn.Module, x: torch.Tensor) -> int:
    """FLOPs of one forward pass of ``model`` on ``x`` (whole batch)."""
    total = 0

    def hook(module, inputs, output):
        nonlocal total
        if isinstance(module, (nn.Conv2d, nn.ConvTranspose2d, nn.Conv3d)):
            k = 1
            for s in module.kernel_size:
                k *= s
            cin = module.in_channels // module.groups
            if isinstance(module, nn.ConvTranspose2d):
                # each input pixel scatters cin/groups x out x kernel multiply-adds
                total += 2 * cin * module.out_channels * k * inputs[0][0, 0].numel() * inputs[0].shape[0]
            else:
                total += 2 * cin * module.out_channels * k * output[0, 0].numel() * output.shape[0]
        elif isinstance(module, nn.Linear):
            total += 2 * module.in_features * module.out_features * (output.numel() // module.out_features)

    handles = [
        m.register_forward_hook(hook)
        for m in model.modules()
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d, nn.Conv3d, nn.Linear))
    ]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for h in handles:
            h.remove()
    return total


def matmul_peak_gflops(n: int = 2048, seconds: float = 2.0, dtype: torch.dtype = torch.float32) -> float:
    """Best sustained GFLOP/s of an ``n x n`` float32 matrix multiply on the CPU with torch's threads."""
    a, b = torch.randn(n, n, dtype=dtype), torch.randn(n, n, dtype=dtype)
    torch.mm(a, b)
    best, start = 0.0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        t = time.perf_counter()
        torch.mm(a, b)
        best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
    return best
