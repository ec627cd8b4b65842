"""Strong image perturbations, CutMix and feature perturbation, batched on the tensor's device.

The strong view of UniMatch (Yang et al., CVPR 2023, arXiv 2208.09910) for ACDC is, per slice:
colour jitter (brightness 0.5, contrast 0.5, saturation 0.5, hue 0.25) with probability 0.8,
Gaussian blur (sigma 0.1-2) with probability 0.5, and CutMix (probability 0.5, one box of 2-40 % of
the image, aspect 0.3-3.3) with a second unlabelled batch. The feature-perturbed stream applies
``Dropout2d(0.5)`` to every encoder feature. CrossMatch and SemSim reuse the same pieces.

Everything here acts on a whole batch at once: the few random numbers per sample are drawn with
``generator`` (on the generator's device, the CPU by default, so a seed gives the same draws on every
device) and the image work runs on the tensor's device, with no per-sample Python loop.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import NamedTuple

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = [
    "colour_jitter",
    "gaussian_blur",
    "strong_augment",
    "cutmix_mask",
    "cutmix",
    "mix_targets",
    "StrongView",
    "strong_view",
    "feature_dropout",
    "decode_with_dropout",
]


def _rand(shape: Sequence[int], generator: torch.Generator | None, device: torch.device) -> torch.Tensor:
    """Uniform [0, 1) numbers drawn with ``generator`` (global RNG when None), moved to ``device``."""
    gen_device = generator.device if generator is not None else torch.device("cpu")
    return torch.rand(tuple(shape), generator=generator, device=gen_device).to(device)


def colour_jitter(
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    brightness: float = 0.5,
    contrast: float = 0.5,
    saturation: float = 0.5,
    hue: float = 0.25,
    p: float = 0.8,
) -> torch.Tensor:
    """Random intensity jitter of grey images, each sample independently with probability ``p``.

    Applied in a fixed order, each result clipped to [0, 1] (as torchvision clips float images):

    - brightness: ``x * b``, b ~ U(1 - brightness, 1 + brightness) (torchvision's definition);
    - contrast: ``(x - mean) * c + mean``, c ~ U(1 - contrast, 1 + contrast), mean of the image;
    - saturation -> gamma (our choice): ``x ** g``, log g ~ U(-log(1 + saturation), log(1 + saturation)),
      i.e. g in [0.67, 1.5] at the default;
    - hue -> additive offset (our choice): ``x + o``, o ~ U(-hue / 2, hue / 2), i.e. +-0.125 at the default.

    Saturation and hue have no meaning on grey images: in UniMatch's ACDC code torchvision's
    ``ColorJitter`` runs on PIL images of mode ``L``, where both are no-ops, so ``saturation=0,
    hue=0`` reproduces it, except that torchvision shuffles the order of the four operations (ours
    is fixed) and works on 8-bit values.
    Mapping them to gamma and offset is our choice, to keep the strength the papers asked for.

    Args:
        x: images (B, 1, H, W) (any C works: one draw per sample) in [0, 1].
        generator: random source for the per-sample draws (global RNG when None).
        brightness, contrast, saturation, hue: strengths as in torchvision's ``ColorJitter``.
        p: probability of jittering each sample.

    Returns:
        Jittered images, same shape and dtype, in [0, 1].

    Raises:
        ValueError: ``x`` is not 4-D or a strength is negative.
    """
    if x.ndim != 4:
        raise ValueError(f"images (B, C, H, W) expected, got shape {tuple(x.shape)}")
    if min(brightness, contrast, saturation, hue) < 0:
        raise ValueError("jitter strengths must be >= 0")
    n, dev = x.shape[0], x.device
    r = _rand((n, 5), generator, dev).to(x.dtype)
    apply = (r[:, 0] < p).to(x.dtype)

    def factor(u: torch.Tensor, lo: float, hi: float) -> torch.Tensor:  # identity where not applied
        return (1 + apply * (lo + (hi - lo) * u - 1)).view(n, 1, 1, 1)

    out = (x * factor(r[:, 1], 1 - brightness, 1 + brightness)).clamp(0, 1)
    mean = out.mean(dim=(1, 2, 3), keepdim=True)
    out = ((out - mean) * factor(r[:, 2], 1 - contrast, 1 + contrast) + mean).clamp(0, 1)
    log_g = math.log1p(saturation) * (2 * r[:, 3] - 1) * apply
    out = out.clamp_min(1e-6).pow(torch.exp(log_g).view(n, 1, 1, 1)).clamp(0, 1)
    offset = (hue * (r[:, 4] - 0.5) * apply).view(n, 1, 1, 1)
    out = (out + offset).clamp(0, 1)
    return torch.where(apply.view(n, 1, 1, 1) > 0, out, x)


def gaussian_blur(
    x: torch.Tensor,
    generator: torch.Generator | None = None,
    sigma: tuple[float, float] = (0.1, 2.0),
    p: float = 0.5,
) -> torch.Tensor:
    """Gaussian blur with a per-sample sigma ~ U(sigma), each sample with probability ``p``.

    One separable grouped convolution blurs the whole batch with per-sample kernels. The kernel
    radius is ``ceil(3 * sigma_max)`` and borders are replicated (our choices; UniMatch blurs PIL
    images with ``GaussianBlur(radius=sigma)``).

    Args:
        x: images (B, C, H, W).
        generator: random source for the per-sample draws (global RNG when None).
        sigma: (min, max) standard deviation in pixels.
        p: probability of blurring each sample.

    Returns:
        Blurred images, same shape; values stay within each image's range (kernels are normalised).
    """
    if x.ndim != 4:
        raise ValueError(f"images (B, C, H, W) expected, got shape {tuple(x.shape)}")
    if not 0 < sigma[0] <= sigma[1]:
        raise ValueError(f"sigma must be 0 < min <= max, got {sigma}")
    b, c, h, w = x.shape
    r = _rand((b, 2), generator, x.device)
    apply = r[:, 0] < p
    s = sigma[0] + (sigma[1] - sigma[0]) * r[:, 1]
    radius = int(math.ceil(3 * sigma[1]))
    t = torch.arange(-radius, radius + 1, device=x.device, dtype=x.dtype)
    k = torch.exp(-0.5 * (t[None] / s[:, None].to(x.dtype)) ** 2)
    k = (k / k.sum(1, keepdim=True)).repeat_interleave(c, dim=0)  # (B*C, K)
    y = F.pad(x.reshape(1, b * c, h, w), (radius, radius, radius, radius), mode="replicate")
    y = F.conv2d(y, k[:, None, :, None], groups=b * c)
    y = F.conv2d(y, k[:, None, None, :], groups=b * c).reshape(b, c, h, w)
    return torch.where(apply.view(b, 1, 1, 1), y, x)


def strong_augment(x: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """UniMatch's strong view without CutMix: :func:`colour_jitter` then :func:`gaussian_blur`, defaults."""
    return gaussian_blur(colour_jitter(x, generator), generator)


def cutmix_mask(
    n: int,
    h: int,
    w: int,
    generator: torch.Generator | None = None,
    p: float = 0.5,
    area: tuple[float, float] = (0.02, 0.4),
    ratio: tuple[float, float] = (0.3, 1 / 0.3),
    device: torch.device | str | None = None,
) -> torch.Tensor:
    """One random CutMix box per sample (all False when the sample is not mixed).

    With probability ``p`` a sample gets a box of area ``A ~ U(area) * h * w`` and aspect
    ``r = height / width ~ U(ratio)``, placed uniformly where it fits. UniMatch draws the aspect and
    the corner again until the box fits; we draw the aspect directly from the part of ``ratio`` for
    which it fits (``r >= A / w**2`` and ``r <= h**2 / A``) and the corner uniformly over the valid
    positions (our choice: the same support, no loop). Sides are rounded to whole pixels.

    Args:
        n, h, w: number of masks and their size.
        generator: random source (global RNG when None).
        p: probability of a box.
        area: (min, max) box area as a fraction of ``h * w``.
        ratio: (min, max) of height / width.
        device: device of the result.

    Returns:
        (n, h, w) bool, True inside the box (pixels to take from the mixing image).
    """
    if not 0 < area[0] <= area[1] <= 1 or not 0 < ratio[0] <= ratio[1]:
        raise ValueError(f"area must satisfy 0 < min <= max <= 1 and ratio 0 < min <= max, got {area}, {ratio}")
    dev = torch.device(device) if device is not None else torch.device("cpu")
    r = _rand((n, 5), generator, torch.device("cpu")).double()
    size = (area[0] + (area[1] - area[0]) * r[:, 1]) * h * w
    lo = torch.clamp(size / (w * w), min=ratio[0])
    hi = torch.clamp(h * h / size, max=ratio[1])
    hi = torch.maximum(hi, lo)
    aspect = lo + (hi - lo) * r[:, 2]
    bh = torch.sqrt(size * aspect).round().clamp(1, h)
    bw = torch.sqrt(size / aspect).round().clamp(1, w)
    y0 = torch.floor(r[:, 3] * (h - bh + 1)).clamp(max=h - bh)
    x0 = torch.floor(r[:, 4] * (w - bw + 1)).clamp(max=w - bw)
    on = r[:, 0] < p
    ys = torch.arange(h, device=dev).view(1, h, 1)
    xs = torch.arange(w, device=dev).view(1, 1, w)

    def col(v: torch.Tensor) -> torch.Tensor:
        return v.long().to(dev).view(n, 1, 1)

    return (col(on) > 0) & (ys >= col(y0)) & (ys < col(y0 + bh)) & (xs >= col(x0)) & (xs < col(x0 + bw))


def _broadcast_mask(mask: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    if mask.ndim != 3 or mask.shape[0] != t.shape[0] or mask.shape[1:] != t.shape[-2:]:
        raise ValueError(f"mask (B, H, W) must match (B, ..., H, W), got {tuple(mask.shape)} and {tuple(t.shape)}")
    return mask.view(mask.shape[0], *([1] * (t.ndim - 3)), *mask.shape[1:]).bool()


def cutmix(x: torch.Tensor, x_mix: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Paste ``x_mix`` into ``x`` where ``mask`` is True: images (B, C, H, W), mask (B, H, W)."""
    if x.shape != x_mix.shape:
        raise ValueError(f"images to mix differ in shape: {tuple(x.shape)} and {tuple(x_mix.shape)}")
    return torch.where(_broadcast_mask(mask, x), x_mix, x)


def mix_targets(t: torch.Tensor, t_mix: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """The same paste for any per-pixel tensor (B, ..., H, W): labels, confidences, masks."""
    if t.shape != t_mix.shape:
        raise ValueError(f"targets to mix differ in shape: {tuple(t.shape)} and {tuple(t_mix.shape)}")
    return torch.where(_broadcast_mask(mask, t), t_mix, t)


class StrongView(NamedTuple):
    """A strong view of an unlabelled batch: ``image`` (B, 1, H, W), and ``box`` (B, H, W) bool, where
    the second batch was pasted in (``None`` when the view is not CutMixed)."""

    image: torch.Tensor
    box: torch.Tensor | None = None


def strong_view(
    x: torch.Tensor, x_mix: torch.Tensor | None = None, p: float = 0.5, generator: torch.Generator | None = None
) -> StrongView:
    """:func:`strong_augment` of ``x``, CutMixed (:func:`cutmix_mask` at probability ``p``) with
    :func:`strong_augment` of ``x_mix`` unless ``x_mix`` is ``None``: UniMatch's strong stream.
    At ``p = 0`` the box is empty and ``x_mix`` is not augmented."""
    image = strong_augment(x, generator)
    if x_mix is None:
        return StrongView(image)
    n, _, h, w = x.shape
    if p == 0:
        return StrongView(image, torch.zeros(n, h, w, dtype=torch.bool, device=x.device))
    box = cutmix_mask(n, h, w, generator, p=p, device=x.device)
    return StrongView(cutmix(image, strong_augment(x_mix, generator), box), box)


def feature_dropout(feats: Sequence[torch.Tensor], p: float = 0.5) -> list[torch.Tensor]:
    """UniMatch's feature perturbation: ``Dropout2d(p)`` (whole channels, rescaled) on every feature map.

    Always active (it is a training perturbation, independent of the module's train/eval mode).

    Args:
        feats: encoder features [(B, C_i, H_i, W_i), ...].
        p: channel drop probability (UniMatch 0.5; CrossMatch 0.25 weak, 0.75 strong).
    """
    if not 0 <= p < 1:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    return [F.dropout2d(f, p, training=True) for f in feats]


def decode_with_dropout(
    model: nn.Module, feats: Sequence[torch.Tensor], ps: Sequence[float], start: int = 0
) -> list[torch.Tensor]:
    """Decode clean features and their channel-dropped copies in one decoder pass, split back.

    The decoder (``model.decode``, see :class:`~semiseg.models.UNet2D`) sees the clean features of
    the whole batch followed by, for each ``p`` in ``ps``, :func:`feature_dropout` of the samples
    ``start:`` (e.g. the unlabelled part of a labelled + unlabelled batch), so that batch
    normalisation uses one set of statistics for all streams, as UniMatch and CrossMatch do.
    Decoding only the samples whose perturbed prediction is used (UniMatch also decodes dropped
    labelled features and discards them) is our choice; it saves decoder work.

    Args:
        model: a network with ``decode(feats)``.
        feats: encoder features [(B, C_i, H_i, W_i), ...].
        ps: drop probabilities, one perturbed stream each (UniMatch ``(0.5,)``, CrossMatch ``(0.25, 0.75)``).
        start: first sample that gets perturbed streams.

    Returns:
        ``[clean logits (B, K, H, W), perturbed logits (B - start, K, H, W) for each p]``.
    """
    b = feats[0].shape[0]
    if not 0 <= start < b:
        raise ValueError(f"start must be in [0, {b}), got {start}")
    streams = [list(feats)] + [feature_dropout([f[start:] for f in feats], p) for p in ps]
    logits = model.decode([torch.cat(level) for level in zip(*streams)])
    return list(logits.split([b] + [b - start] * len(ps)))
