"""Networks of the engine, and where and in which precision they run."""

from .device import resolve_device
from .precision import PRECISIONS, bf16_supported, resolve_precision, set_precision
from .unet import UNet2D

__all__ = ["UNet2D", "PRECISIONS", "bf16_supported", "resolve_device", "resolve_precision", "set_precision"]
