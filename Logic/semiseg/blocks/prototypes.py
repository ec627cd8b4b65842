"""Cross-image local prototype querying (SemSim's cross-image semantic consistency).

Xie et al., "SemSim: Revisiting Weak-to-Strong Consistency from a Semantic Similarity Perspective
for Semi-supervised Medical Image Segmentation", arXiv 2410.13486, 2024.

The feature grid is cut into ``regions x regions`` blocks (the paper: N = 4, i.e. 2 x 2). For every
labelled image, block and class, a *local prototype* is the masked mean feature of that class in
that block; a class absent from the block falls back to the image's whole-image prototype. An
unlabelled position's score for class c under labelled image j is the cosine similarity between
its feature and image j's prototype of c *in the same block*; a softmax over classes gives m_j,
and the query prediction is their mean over the labelled images. The reliability of a position
is ``U = mean_j exp(-r KL(m_j || mean_k m_k))`` (r = 1000 in the paper): 1 when every labelled image
agrees, smaller when they differ.

Choices the paper leaves open (ours):

* **Masked mean with soft masks.** Labels are given at the input resolution; on the feature grid
  each class's mask is its area fraction in the cell (average-pooled one-hot), so prototypes are
  area-weighted means and thin structures do not vanish when the grid is coarse. With labels
  already on the grid this is the plain masked mean.
* **Class absent from the whole labelled image.** That image gives no score for the class: its
  logit is -inf, so m_j puts no mass there (the other labelled images still may). Every image has
  at least one class, so m_j is always defined.
* **Blocks of uneven size.** With an odd grid the first block takes ``h // regions`` rows, etc.
* **Temperature.** Scores are divided by ``temperature`` before the softmax. The paper writes a
  plain softmax over cosines (temperature 1), for which m_j stays close to uniform and KL values
  are of order 1e-3, the scale r = 1000 is made for; that is the default.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["class_weights", "region_index", "local_prototypes", "query", "uncertainty_weight"]


def class_weights(labels: torch.Tensor, num_classes: int, size: tuple[int, int]) -> torch.Tensor:
    """Soft class masks on a grid: the area fraction of each class per cell.

    Args:
        labels: (B, H, W) integers in [0, num_classes).
        size: the grid (h, w).

    Returns:
        (B, C, h, w) non-negative, summing to 1 over C.
    """
    onehot = F.one_hot(labels.long(), num_classes).permute(0, 3, 1, 2).float()
    if tuple(onehot.shape[-2:]) == tuple(size):
        return onehot
    return F.interpolate(onehot, size=size, mode="area")


def region_index(h: int, w: int, regions: int, device: torch.device | None = None) -> torch.Tensor:
    """(h, w) int64 block index in [0, regions**2), row-major, of each grid position."""
    if regions < 1 or regions > min(h, w):
        raise ValueError(f"regions must be in 1..{min(h, w)} for a {h}x{w} grid, got {regions}")
    rows = (torch.arange(h, device=device) * regions) // h
    cols = (torch.arange(w, device=device) * regions) // w
    return rows[:, None] * regions + cols[None, :]


def local_prototypes(
    features: torch.Tensor, weights: torch.Tensor, regions: int = 2
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per image, block and class masked-mean prototypes, with the whole-image fallback.

    Args:
        features: (B, D, h, w) features of the labelled images.
        weights: (B, C, h, w) soft class masks on the same grid (:func:`class_weights`).
        regions: blocks per side.

    Returns:
        ``(prototypes, valid)``: (B, R, C, D) with R = regions**2, and (B, C) bool, False where the
        class is absent from the whole image (those prototypes are zeros and must not be used).
    """
    b, d, h, w = features.shape
    if weights.shape[0] != b or weights.shape[-2:] != features.shape[-2:]:
        raise ValueError(f"weights {tuple(weights.shape)} do not match features {tuple(features.shape)}")
    r = regions * regions
    region = F.one_hot(region_index(h, w, regions, features.device), r).float()  # (h, w, R)
    wr = weights.float()[:, None] * region.permute(2, 0, 1)[None, :, None]  # (B, R, C, h, w)
    f = features.float()
    sums = torch.einsum("brchw,bdhw->brcd", wr, f)
    mass = wr.sum(dim=(-2, -1))  # (B, R, C)
    img_sums, img_mass = sums.sum(1), mass.sum(1)  # (B, C, D), (B, C)
    img_proto = img_sums / img_mass.clamp_min(1e-6)[..., None]
    local = sums / mass.clamp_min(1e-6)[..., None]
    present = (mass > 1e-6)[..., None]
    protos = torch.where(present, local, img_proto[:, None])
    return protos, img_mass > 1e-6


def query(
    features: torch.Tensor, prototypes: torch.Tensor, valid: torch.Tensor, regions: int = 2, temperature: float = 1.0
) -> torch.Tensor:
    """Per labelled image class distributions m_j of every unlabelled position.

    Args:
        features: (B_u, D, h, w) features of the images to label.
        prototypes, valid: from :func:`local_prototypes` on the labelled images (B_l of them).
        regions: blocks per side (as for the prototypes).
        temperature: cosine scores are divided by it before the softmax over classes.

    Returns:
        (B_u, B_l, C, h, w): softmax over C of each labelled image's cosine scores.
    """
    bu, d, h, w = features.shape
    bl, r, c, d2 = prototypes.shape
    if d2 != d or r != regions * regions:
        raise ValueError(
            f"prototypes {tuple(prototypes.shape)} do not match features {tuple(features.shape)} / regions {regions}"
        )
    f = F.normalize(features.float(), dim=1)
    p = F.normalize(prototypes.float(), dim=-1)
    scores = torch.einsum("udhw,jrcd->ujrchw", f, p)  # (B_u, B_l, R, C, h, w)
    region = F.one_hot(region_index(h, w, regions, features.device), r).float().permute(2, 0, 1)  # (R, h, w)
    scores = (scores * region[None, None, :, None]).sum(2) / temperature  # (B_u, B_l, C, h, w)
    scores = scores.masked_fill(~valid[None, :, :, None, None], float("-inf"))
    return torch.softmax(scores, dim=2)


def uncertainty_weight(m: torch.Tensor, r: float = 1000.0) -> torch.Tensor:
    """``U = mean_j exp(-r KL(m_j || mean_k m_k))`` per position.

    Args:
        m: (B_u, B_l, C, h, w) from :func:`query`.
        r: sharpness (paper: 1000).

    Returns:
        (B_u, h, w) in (0, 1]; exactly 1 where all m_j are equal.
    """
    m64 = m.double()  # r = 1000 magnifies float32 rounding of the KL (~1e-7) into visible weights
    mean = m64.mean(1, keepdim=True)
    kl = (m64 * (torch.log(m64.clamp_min(1e-12)) - torch.log(mean.clamp_min(1e-12)))).sum(2)  # (B_u, B_l, h, w)
    return torch.exp(-r * kl.clamp_min(0.0)).mean(1).to(m.dtype)
