"""Intra-image affinity rectification of predictions (SemSim's intra-image semantic consistency).

Xie et al., "SemSim: Revisiting Weak-to-Strong Consistency from a Semantic Similarity Perspective
for Semi-supervised Medical Image Segmentation", arXiv 2410.13486, 2024.

Within one image, an affinity matrix ``M`` (N x N over the N = h*w feature positions) is the
row-wise softmax of the cosine similarities between position features; a prediction ``p`` on the
same grid is rectified by adding, to each position's class distribution, the affinity-weighted
mean of all positions' distributions, and renormalising.

Choices the paper leaves open (ours, stated here and exposed by :class:`~semiseg.methods.semsim.SemSim`):

* **Temperature.** Cosines lie in [-1, 1], so a plain softmax over a few thousand positions is
  nearly uniform (every row ~1/N) and the rectification degenerates into adding the image's mean
  prediction. We divide the cosines by a temperature (default 0.1 in SemSim's config).
* **Orientation of ``p M``.** With ``M`` row-normalised, we let row ``i`` of ``M`` hold the weights
  with which position ``i`` *receives* the predictions of the others:
  ``p'_i = p_i + sum_j M_ij p_j`` (``p M^T`` in the (C, N) layout). Each ``p'_i`` is then a sum of
  two distributions, so the renormalisation is an exact division by 2 and ``p'`` stays a
  distribution; with the transposed reading, columns of ``M`` do not sum to one and the added term
  has no fixed mass.
* **Resolution.** ``M`` has (h*w)^2 entries per image, so the affinity is computed on the feature
  grid the caller chooses (SemSim uses the SFM output grid, the middle SFM stage), never at the
  input resolution; predictions are average-pooled to that grid.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["affinity", "rectify", "to_grid"]


def affinity(features: torch.Tensor, temperature: float = 0.1) -> torch.Tensor:
    """Row-softmax of the cosine similarities between the positions of each image.

    Args:
        features: (B, D, h, w).
        temperature: cosines are divided by it before the softmax (> 0).

    Returns:
        (B, N, N) with N = h * w; every row is non-negative and sums to 1.

    Raises:
        ValueError: a non-positive temperature or features that are not 4D.
    """
    if temperature <= 0:
        raise ValueError(f"temperature must be > 0, got {temperature}")
    if features.ndim != 4:
        raise ValueError(f"features (B, D, h, w) expected, got {tuple(features.shape)}")
    f = F.normalize(features.float().flatten(2), dim=1)  # (B, D, N)
    cos = torch.bmm(f.transpose(1, 2), f)  # (B, N, N)
    return torch.softmax(cos / temperature, dim=-1)


def rectify(probs: torch.Tensor, aff: torch.Tensor) -> torch.Tensor:
    """Rectified prediction ``p'_i = (p_i + sum_j M_ij p_j) / 2``, still a distribution per position.

    Args:
        probs: (B, C, h, w) class probabilities on the affinity's grid.
        aff: (B, N, N) from :func:`affinity`, N = h * w.

    Returns:
        (B, C, h, w): non-negative, summing to 1 over C wherever ``probs`` does.
    """
    b, c, h, w = probs.shape
    if aff.shape != (b, h * w, h * w):
        raise ValueError(f"affinity {tuple(aff.shape)} does not match predictions {tuple(probs.shape)}")
    p = probs.float().flatten(2)  # (B, C, N)
    gathered = torch.bmm(p, aff.transpose(1, 2))  # (B, C, N): column i = sum_j M_ij p_j
    out = p + gathered
    out = out / out.sum(dim=1, keepdim=True).clamp_min(1e-12)
    return out.view(b, c, h, w)


def to_grid(probs: torch.Tensor, size: tuple[int, int]) -> torch.Tensor:
    """Class probabilities (B, C, H, W) average-pooled (area) to ``size``; sums over C are kept."""
    if tuple(probs.shape[-2:]) == tuple(size):
        return probs
    return F.interpolate(probs, size=size, mode="area")
