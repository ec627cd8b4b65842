"""Networks of the engine."""

from .unet import UNet2D

__all__ = ["UNet2D"]
