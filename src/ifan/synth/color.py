"""sRGB encoding: ifan.synth renders in linear light and writes sRGB-encoded files."""

from __future__ import annotations

import numpy as np

_LINEAR_FROM_U8 = None
_ENCODE_BITS = 20  # linear light quantised to 2^20 levels before the lookup: < 1 16-bit step near black
_ENCODE_LUT: dict[int, np.ndarray] = {}


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


def encode_srgb(linear: np.ndarray, bit_depth: int = 8) -> np.ndarray:
    """Linear light (clipped to [0, 1]) to rounded sRGB integers: uint8 or uint16 (lookup table)."""
    if bit_depth not in (8, 16):
        raise ValueError(f"bit depth must be 8 or 16, got {bit_depth}")
    lut = _ENCODE_LUT.get(bit_depth)
    if lut is None:
        levels = np.arange(2 ** _ENCODE_BITS, dtype=np.float64) / (2 ** _ENCODE_BITS - 1)
        srgb = np.where(levels <= 0.0031308, 12.92 * levels, 1.055 * levels ** (1.0 / 2.4) - 0.055)
        scale, dtype = (255.0, np.uint8) if bit_depth == 8 else (65535.0, np.uint16)
        lut = _ENCODE_LUT[bit_depth] = np.round(srgb * scale).astype(dtype)
    x = np.clip(np.asarray(linear, dtype=np.float32), 0.0, 1.0) * np.float32(2 ** _ENCODE_BITS - 1)
    return lut[(x + np.float32(0.5)).astype(np.int32)]


def linear_to_srgb_extended(linear: np.ndarray) -> np.ndarray:
    """sRGB encoding that keeps values above 1 (highlights): the curve continued past 1, float32."""
    x = np.maximum(np.asarray(linear, dtype=np.float32), 0.0)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * np.power(x, 1.0 / 2.4) - 0.055).astype(np.float32)
