"""Networks of the engine."""

from .precision import PRECISIONS, bf16_supported, resolve_precision, set_precision
from .unet import UNet2D

__all__ = ["UNet2D", "PRECISIONS", "bf16_supported", "resolve_precision", "set_precision"]
