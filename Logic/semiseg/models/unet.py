"""The 2D UNet of the semi-supervised segmentation papers, from MONAI building blocks.

SSL4MIS, UniMatch, CrossMatch and SemSim share one 2D UNet on ACDC: an encoder of five levels with
16-32-64-128-256 channels, each block two 3x3 convolutions with batch norm and LeakyReLU, encoder
dropout 0.05/0.1/0.2/0.3/0.5 by level, max-pool down, transposed convolution up and skip
concatenation; about 1.8 M parameters.

Built from MONAI's ``Convolution`` block (conv, batch norm, LeakyReLU, dropout in that order) and
its ``UpCat`` decoder block (``monai.networks.nets.basic_unet``). An encoder block drops out once,
between its two convolutions, as SSL4MIS does. MONAI's ``TwoConv`` would drop after both
convolutions; measured here, that doubles the dropout/batch-norm variance shift (Li et al., CVPR
2019) and the eval-mode network scored far below the train-mode one on its own training slices.

The network exposes :meth:`encode` and :meth:`decode` so that methods can perturb encoder
features (UniMatch, CrossMatch), read the encoder stages (SemSim) or the decoder's last features
(reference-guided pseudo-labels) without a model of their own.

Its forward passes run in the precision the trainer sets (:mod:`semiseg.models.precision`): encoder
features come in the compute dtype (bfloat16 under mixed precision), logits and decoder features
always in float32. The decoder concatenates without MONAI's replicate pad (``is_pad=False``): the
input sides are multiples of 16, so the pad is zero-width, yet it copied every upsampled map.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
from monai.networks.blocks import Convolution
from monai.networks.nets.basic_unet import UpCat

from .precision import MixedPrecision

__all__ = ["UNet2D"]

_ACT = ("LeakyReLU", {"negative_slope": 0.01, "inplace": True})
_NORM = ("batch", {"affine": True})


def encoder_block(in_channels: int, out_channels: int, dropout: float) -> nn.Sequential:
    """conv3x3-BN-LeakyReLU-dropout, conv3x3-BN-LeakyReLU (SSL4MIS's ConvBlock)."""
    return nn.Sequential(
        Convolution(2, in_channels, out_channels, adn_ordering="NAD", act=_ACT, norm=_NORM, dropout=dropout or None),
        Convolution(2, out_channels, out_channels, adn_ordering="NA", act=_ACT, norm=_NORM),
    )


class UNet2D(MixedPrecision, nn.Module):
    """2D UNet: (B, in_channels, H, W) -> logits (B, num_classes, H, W); H, W multiples of 16.

    Args:
        in_channels: image channels (1 for MRI).
        num_classes: output classes including background.
        features: channels of the five encoder levels (default 16-32-64-128-256).
        dropout: encoder dropout per level (default 0.05/0.1/0.2/0.3/0.5); the decoder has none.
    """

    def __init__(
        self,
        in_channels: int = 1,
        num_classes: int = 2,
        features: Sequence[int] = (16, 32, 64, 128, 256),
        dropout: Sequence[float] = (0.05, 0.1, 0.2, 0.3, 0.5),
    ) -> None:
        super().__init__()
        if len(features) != 5 or len(dropout) != 5:
            raise ValueError(f"features and dropout need 5 levels, got {len(features)} and {len(dropout)}")
        if num_classes < 2:
            raise ValueError(f"num_classes must be >= 2, got {num_classes}")
        f, d = list(features), list(dropout)
        self.num_classes = num_classes
        self.features = tuple(f)
        self.inc = encoder_block(in_channels, f[0], d[0])
        self.downs = nn.ModuleList(
            nn.Sequential(nn.MaxPool2d(2), encoder_block(f[i], f[i + 1], d[i + 1])) for i in range(4)
        )
        self.ups = nn.ModuleList(
            UpCat(2, f[i + 1], f[i], f[i], _ACT, _NORM, True, 0.0, upsample="deconv", is_pad=False)
            for i in reversed(range(4))
        )
        self.head = nn.Conv2d(f[0], num_classes, kernel_size=3, padding=1)

    def encode(self, x: torch.Tensor) -> list[torch.Tensor]:
        """Encoder features of the five levels, finest first: [(B, 16, H, W), ..., (B, 256, H/16, W/16)]."""
        with self.autocast(x):
            feats = [self.inc(self.layout(x))]
            for down in self.downs:
                feats.append(down(feats[-1]))
        return feats

    def decode(self, feats: Sequence[torch.Tensor], return_features: bool = False):
        """Decode encoder features to logits.

        Returns:
            float32 logits (B, num_classes, H, W), or ``(logits, features)`` with the decoder's last
            features (B, 16, H, W) before the classifier when ``return_features``.
        """
        x = feats[-1]
        with self.autocast(x):
            for up, skip in zip(self.ups, reversed(feats[:-1])):
                x = up(x, skip)
            logits = self.head(x)
        logits = logits.float()
        return (logits, x.float()) if return_features else logits

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.decode(self.encode(x))
