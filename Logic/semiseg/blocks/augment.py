"""Batched geometric augmentation on the training device (the papers' weak view).

UniMatch and SSL4MIS augment ACDC slices with, each with probability 0.5, a random rot90 plus flip
and a random rotation in [-20, 20] degrees. Here both are one affine transform per sample, applied
to the whole batch with a single ``grid_sample`` (bilinear for images, nearest for labels), so no
per-sample Python loop runs on the hot path. Pixels rotated in from outside are 0 (background).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F

__all__ = ["random_affines", "apply_affine", "weak_augment"]


def random_affines(
    n: int,
    generator: torch.Generator,
    device: torch.device,
    p_rot90: float = 0.5,
    p_rotate: float = 0.5,
    max_degrees: float = 20.0,
) -> torch.Tensor:
    """(n, 2, 3) affine matrices for ``affine_grid``: rot90 + flip with ``p_rot90``, small rotation with
    ``p_rotate``."""
    u = torch.rand(n, 4, generator=generator)
    k = torch.randint(0, 4, (n,), generator=generator).float()
    use90 = (u[:, 0] < p_rot90).float()
    angle = use90 * k * (math.pi / 2)
    userot = (u[:, 1] < p_rotate).float()
    angle = angle + userot * (u[:, 2] * 2 - 1) * math.radians(max_degrees)
    flip = torch.where((u[:, 3] < 0.5) & (use90 > 0), -1.0, 1.0)
    cos, sin = torch.cos(angle), torch.sin(angle)
    theta = torch.zeros(n, 2, 3)
    theta[:, 0, 0], theta[:, 0, 1] = cos * flip, -sin
    theta[:, 1, 0], theta[:, 1, 1] = sin * flip, cos
    return theta.to(device)


def apply_affine(theta: torch.Tensor, images: torch.Tensor, labels: torch.Tensor | None = None):
    """Warp images (B, C, H, W) bilinearly and labels (B, H, W) by nearest with the same transforms."""
    grid = F.affine_grid(theta.to(images.dtype), list(images.shape), align_corners=False)
    out = F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)
    if labels is None:
        return out
    lab = F.grid_sample(
        labels[:, None].to(images.dtype), grid, mode="nearest", padding_mode="zeros", align_corners=False
    )
    return out, lab[:, 0].round().long()


def weak_augment(images: torch.Tensor, labels: torch.Tensor | None, generator: torch.Generator):
    """The weak view of a batch; returns images, or (images, labels) when labels are given."""
    theta = random_affines(images.shape[0], generator, images.device)
    return apply_affine(theta, images, labels)
