"""The image formats ifan writes, in one table: the suffixes that name each, what it can hold (bit
depths, alpha), how Pillow names and saves it, and its default quality.

``ifan deblur --format``, the output names of the file loop (:mod:`ifan.apps.files`), its fallback to
PNG for what a format cannot hold, and the encoder (:func:`ifan.io.write.encode_image`) all read it.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from ifan.fileutil import shown
from ifan.io.image import ImageWriteError

DEFAULT_QUALITY = 95  # JPEG and WebP


@dataclass(frozen=True)
class Format:
    """An image format that ifan writes.

    Attributes:
        name: as ``--format`` names it (``"jpg"``).
        suffixes: the file suffixes that name it; the first is the one written.
        pillow: Pillow's name of it (``"JPEG"``).
        bit_depths: the bit depths of the samples it holds.
        alpha: whether it holds an alpha channel.
        quality: its default quality (lossy formats), None where it has none.
        options: further options of Pillow's encoder.
    """

    name: str
    suffixes: tuple[str, ...]
    pillow: str
    bit_depths: tuple[int, ...]
    alpha: bool
    quality: int | None = None
    options: tuple[tuple[str, object], ...] = ()

    @property
    def suffix(self) -> str:
        """The suffix it is written with (``".jpg"``)."""
        return self.suffixes[0]

    def holds(self, bit_depth: int, alpha: bool) -> bool:
        """Whether it can hold an image of ``bit_depth`` (with ``alpha``) as it is."""
        return bit_depth in self.bit_depths and (self.alpha or not alpha)


FORMATS: dict[str, Format] = {f.name: f for f in (
    Format("png", (".png",), "PNG", (8, 16), alpha=True),
    Format("jpg", (".jpg", ".jpeg"), "JPEG", (8,), alpha=False, quality=DEFAULT_QUALITY,
           options=(("subsampling", 0),)),
    Format("tiff", (".tif", ".tiff"), "TIFF", (8, 16), alpha=True),  # encoded by ifan.io.tiff
    Format("webp", (".webp",), "WEBP", (8,), alpha=True, quality=DEFAULT_QUALITY),
)}
FALLBACK = FORMATS["png"]  # where a result goes when its own format cannot be written or cannot hold it
READ_SUFFIXES = frozenset({".bmp", *(s for f in FORMATS.values() for s in f.suffixes)})  # BMP: read only
WRITE_FORMATS = {name: f.suffix for name, f in FORMATS.items()}  # --format's choices and their suffixes


def format_of_suffix(suffix: str) -> Format | None:
    """The format a file suffix names (``".JPEG"`` too), or None when ifan cannot write it."""
    suffix = suffix.lower()
    return next((f for f in FORMATS.values() if suffix in f.suffixes), None)


def output_format(name: str) -> Format:
    """The format ``name`` names (``"jpg"``; also ``"jpeg"``, ``".tif"``...).

    Raises:
        ImageWriteError: no format ifan writes has that name.
    """
    key = name.lower().lstrip(".")
    found = FORMATS.get(key) or format_of_suffix(f".{key}")
    if found is None:
        raise ImageWriteError(f"unsupported output format {key!r}; choose one of {sorted(FORMATS)}")
    return found


def format_for_path(path: str | os.PathLike) -> str:
    """The output format named by a file's suffix (png, jpg, tiff, webp)."""
    found = format_of_suffix(Path(path).suffix)
    if found is None:
        raise ImageWriteError(f"{shown(path)}: unsupported output suffix {Path(path).suffix.lower()!r}; use one of "
                              f"{' '.join(f.suffix for f in FORMATS.values())}")
    return found.name
