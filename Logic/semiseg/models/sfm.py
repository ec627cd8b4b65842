"""SemSim's Spatial-aware Fusion Module (SFM): multi-scale encoder features fused by windowed attention.

Xie et al., "SemSim: Revisiting Weak-to-Strong Consistency from a Semantic Similarity Perspective
for Semi-supervised Medical Image Segmentation", arXiv 2410.13486, 2024.

Three encoder stages are projected to ``dim`` channels (1x1 convolutions), each is cut into
windows covering the same image area, the spatially matching windows of the three scales are
concatenated into one token sequence and pass one pre-norm transformer block (multi-head
self-attention + MLP, both residual), the tokens are split back into their maps, resized to a
common grid, concatenated and fused by Conv3x3-BN-ReLU. The module belongs to the method, is
trained with the network, and is not used at inference. About 0.70 M parameters with the
defaults (paper: ~0.79 M at D = 128; the paper does not give the layer sizes that make up the
difference).

Choices the paper leaves open (ours):

* **Window size.** ``window`` is the side, in tokens, of a window on the *coarsest* of the three
  stages; a stage ``k`` times finer uses windows ``k`` times larger, so matching windows cover the
  same area. A fixed window size (rather than a fixed number of windows) keeps the cost linear in
  the image area. Maps whose size is not a multiple of the window are zero-padded and cropped.
* **Positions.** No positional encoding inside a window (the convolutional features carry
  position); a learned per-scale embedding tells the attention which stage a token comes from.
* **Common grid.** The grid of the middle one of the three stages; bilinear resizing.
* **Heads / MLP.** 4 heads, MLP ratio 4 with GELU, as in ViT/Swin.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F

from .precision import MixedPrecision

__all__ = ["SpatialFusion"]


class _Block(nn.Module):
    """Pre-norm transformer block on (N, T, D) token sequences."""

    def __init__(self, dim: int, heads: int, mlp_ratio: float) -> None:
        super().__init__()
        if dim % heads:
            raise ValueError(f"dim {dim} must be divisible by heads {heads}")
        self.heads = heads
        self.norm1 = nn.LayerNorm(dim)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.norm2 = nn.LayerNorm(dim)
        hidden = int(dim * mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(dim, hidden), nn.GELU(), nn.Linear(hidden, dim))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, t, d = x.shape
        q, k, v = self.qkv(self.norm1(x)).view(n, t, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v).transpose(1, 2).reshape(n, t, d)
        x = x + self.proj(a)
        return x + self.mlp(self.norm2(x))


class SpatialFusion(MixedPrecision, nn.Module):
    """Spatial-aware Fusion Module: three encoder maps -> enhanced features (B, dim, h, w).

    Args:
        in_channels: channels of the three stages, finest first (default: UNet2D's ``encode`` outputs 2-4).
        dim: D, the projected and output channels (paper: 128).
        window: window side in tokens on the coarsest stage (see module docstring).
        heads: attention heads.
        mlp_ratio: hidden size of the MLP over ``dim``.

    Input: three maps (B, C_k, H_k, W_k), finest first, each an integer multiple (in size) of the
    next. Output: (B, dim, H_1 / r, W_1 / r) on the middle stage's grid.
    """

    def __init__(
        self,
        in_channels: Sequence[int] = (64, 128, 256),
        dim: int = 128,
        window: int = 2,
        heads: int = 4,
        mlp_ratio: float = 4.0,
    ) -> None:
        super().__init__()
        if len(in_channels) != 3:
            raise ValueError(f"SpatialFusion takes three stages, got {len(in_channels)}")
        if window < 1:
            raise ValueError(f"window must be >= 1, got {window}")
        self.window = window
        self.proj = nn.ModuleList(nn.Conv2d(c, dim, kernel_size=1) for c in in_channels)
        self.scale_embed = nn.Parameter(torch.zeros(len(in_channels), dim))
        nn.init.trunc_normal_(self.scale_embed, std=0.02)
        self.block = _Block(dim, heads, mlp_ratio)
        self.fuse = nn.Sequential(
            nn.Conv2d(len(in_channels) * dim, dim, kernel_size=3, padding=1, bias=False),
            nn.BatchNorm2d(dim),
            nn.ReLU(inplace=True),
        )

    def forward(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        """Fused features (B, dim, h, w), float32 whatever the compute dtype (see :mod:`semiseg.models.precision`)."""
        if len(feats) != 3:
            raise ValueError(f"three feature maps expected, got {len(feats)}")
        with self.autocast(feats[0]):
            return self._fuse(feats).float()

    def _fuse(self, feats: Sequence[torch.Tensor]) -> torch.Tensor:
        coarse = feats[-1].shape[-2:]
        scales = []
        for f in feats:
            sh, sw = f.shape[-2] // coarse[0], f.shape[-1] // coarse[1]
            if sh * coarse[0] != f.shape[-2] or sw * coarse[1] != f.shape[-1]:
                raise ValueError(
                    f"stage sizes must be integer multiples of the coarsest, got {[tuple(x.shape[-2:]) for x in feats]}"
                )
            scales.append((sh, sw))
        # pad every map so that the coarsest is a multiple of the window (same area for all)
        gh, gw = -(-coarse[0] // self.window), -(-coarse[1] // self.window)  # windows per side
        b = feats[0].shape[0]
        tokens, shapes = [], []
        for k, (f, (sh, sw)) in enumerate(zip(feats, scales)):
            x = self.proj[k](f)
            wh, ww = self.window * sh, self.window * sw
            if (gw * ww, gh * wh) != (x.shape[-1], x.shape[-2]):
                x = F.pad(x, (0, gw * ww - x.shape[-1], 0, gh * wh - x.shape[-2]))
            d = x.shape[1]
            # (B, D, gh, wh, gw, ww) -> (B * gh * gw, wh * ww, D)
            x = x.view(b, d, gh, wh, gw, ww).permute(0, 2, 4, 3, 5, 1).reshape(b * gh * gw, wh * ww, d)
            tokens.append(x + self.scale_embed[k])
            shapes.append((wh, ww, f.shape[-2], f.shape[-1]))
        out = self.block(torch.cat(tokens, dim=1))
        maps = []
        middle = feats[1].shape[-2:]
        for x, (wh, ww, h, w) in zip(out.split([s[0] * s[1] for s in shapes], dim=1), shapes):
            d = x.shape[-1]
            x = x.reshape(b, gh, gw, wh, ww, d).permute(0, 5, 1, 3, 2, 4).reshape(b, d, gh * wh, gw * ww)[..., :h, :w]
            if (h, w) != tuple(middle):
                x = F.interpolate(x, size=tuple(middle), mode="bilinear", align_corners=False)
            maps.append(x)
        return self.fuse(torch.cat(maps, dim=1))
