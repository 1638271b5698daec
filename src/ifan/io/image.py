"""What a read returns (:class:`Image`), the largest image read, and the errors of reading and writing
image files."""

from __future__ import annotations

import os
from dataclasses import dataclass

import numpy as np

from ifan.fileutil import shown

DEFAULT_MAX_PIXELS = 300_000_000  # 300 MP; larger files are refused as possible decompression bombs
DEFAULT_LIMIT_NOTE = "decompression-bomb guard"  # why DEFAULT_MAX_PIXELS, in the error


class ImageReadError(ValueError):
    """A file that cannot be read as an image (missing, corrupt, truncated, unsupported, too large)."""


class ImageWriteError(OSError):
    """An image that cannot be written (unsupported format, unwritable location)."""


def check_pixels(path: str | os.PathLike, w: int, h: int, max_pixels: int, limit_note: str) -> None:
    """Refuse a ``w x h`` image larger than ``max_pixels`` (``limit_note``: where the limit comes from)."""
    if w * h > max_pixels:
        raise ImageReadError(
            f"{shown(path)}: {w}x{h} = {w * h / 1e6:.3g} MP exceeds the limit of {max_pixels / 1e6:.3g} MP "
            f"({limit_note}); raise it with --max-pixels if the file is trusted and the memory is there")


@dataclass
class Image:
    """A decoded image and what is needed to write a result back like it.

    Attributes:
        rgb: float32 ``(H, W, 3)`` in [0, 1], upright (EXIF orientation applied); grey images
            are repeated over the three channels.
        alpha: float32 ``(H, W)`` in [0, 1], or None.
        bit_depth: 8 or 16 (of the file's samples).
        grayscale: the file had one colour channel (or was CMYK-free grey).
        icc_profile: the embedded ICC profile (dropped for CMYK files, converted to RGB).
        exif: EXIF bytes with the orientation reset to 1, or None.
        format: the file format as Pillow names it (``"PNG"``, ``"JPEG"``, ...; ``"RAW (NEF)"``).
        frames: the frames (or pages) in the file; only the first is read.
        description: how the pixels were obtained where that is worth saying (camera RAW: LibRaw's
            settings and the metadata carried, :mod:`ifan.io.raw`), else empty.
    """

    rgb: np.ndarray
    alpha: np.ndarray | None = None
    bit_depth: int = 8
    grayscale: bool = False
    icc_profile: bytes | None = None
    exif: bytes | None = None
    format: str = "PNG"
    frames: int = 1
    description: str = ""

    @property
    def size(self) -> tuple[int, int]:
        """``(height, width)``."""
        return self.rgb.shape[0], self.rgb.shape[1]
