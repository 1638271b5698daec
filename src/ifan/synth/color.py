"""sRGB encoding: ifan.synth renders in linear light and writes sRGB-encoded files."""

from __future__ import annotations

import numpy as np

_LINEAR_FROM_U8 = None


def srgb_to_linear(srgb: np.ndarray) -> np.ndarray:
    """sRGB-encoded values in [0, 1] to linear light (float32, IEC 61966-2-1)."""
    s = np.clip(np.asarray(srgb, dtype=np.float32), 0.0, 1.0)
    return np.where(s <= 0.04045, s / 12.92, ((s + 0.055) / 1.055) ** 2.4).astype(np.float32)


def linear_to_srgb(linear: np.ndarray) -> np.ndarray:
    """Linear light in [0, 1] (clipped) to sRGB-encoded values in [0, 1] (float32)."""
    x = np.clip(np.asarray(linear, dtype=np.float32), 0.0, 1.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055).astype(np.float32)


def u8_srgb_to_linear(image: np.ndarray) -> np.ndarray:
    """uint8 sRGB image to float32 linear light in [0, 1] (lookup table)."""
    global _LINEAR_FROM_U8
    if _LINEAR_FROM_U8 is None:
        _LINEAR_FROM_U8 = srgb_to_linear(np.arange(256, dtype=np.float32) / 255.0)
    return _LINEAR_FROM_U8[np.asarray(image, dtype=np.uint8)]
