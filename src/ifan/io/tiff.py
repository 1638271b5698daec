"""TIFF files (8 and 16 bits) with their metadata: the pixels, the ICC profile and the EXIF (camera,
exposure, GPS); and which TIFF layouts the reader decodes (:func:`unsupported_layout`).

OpenCV writes 16-bit TIFFs without metadata, Pillow does not write 16-bit colour, and it fails on an
EXIF directory in a TIFF (any camera JPEG's, written ``--format tiff``), so :func:`encode_tiff`
writes them itself (all but 16-bit grey + alpha, :func:`ifan.io.write.encode_image`): one image, strips
of about 256 KiB compressed with deflate and the horizontal predictor (as libtiff, OpenCV, Pillow and every
photo editor read them), the ICC profile (tag 34675), and the EXIF: the tags of its first directory
that describe the photo (camera, date, artist, copyright, ...; not those that describe another
file's pixels) and its EXIF and GPS directories, re-serialised by Pillow
(``TiffImagePlugin.ImageFileDirectory_v2``).
"""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import TiffImagePlugin

EXIF_IFD, GPS_IFD = 0x8769, 0x8825
# Tags of an EXIF's first directory that describe the photo, not the layout of some file's pixels.
PHOTO_TAGS = {270: "ImageDescription", 271: "Make", 272: "Model", 305: "Software", 306: "DateTime",
              315: "Artist", 33432: "Copyright"}
DROPPED_EXIF_TAGS = {37500: "MakerNote", 40965: "InteroperabilityIFD"}  # offsets into the file they came from
STRIP_BYTES = 1 << 18
DEFLATE, PREDICTOR_HORIZONTAL = 8, 2

_KINDS = {0: "grey", 1: "grey", 2: "RGB", 3: "palette", 4: "mask", 5: "CMYK", 6: "YCbCr", 8: "CIELab"}
_COLOURS = {"grey": 1, "RGB": 3, "palette": 1, "CMYK": 4, "YCbCr": 3, "CIELab": 3}
SUPPORTED_LAYOUTS = ("grey, RGB or RGBA with 8- or 16-bit integer samples; "
                     "8-bit grey + alpha, palette, CMYK, YCbCr, CIELab")


def _first_directory(path: Path) -> dict[int, tuple[int, ...]] | None:
    """The integer tags of a classic TIFF's first image (short values only), or None for other files."""
    try:
        with open(path, "rb") as f:
            head = f.read(8)
            order = {b"II": "<", b"MM": ">"}.get(head[:2])
            if order is None or len(head) < 8 or struct.unpack(order + "H", head[2:4])[0] != 42:
                return None
            f.seek(struct.unpack(order + "I", head[4:8])[0])
            count = struct.unpack(order + "H", f.read(2))[0]
            entries = f.read(12 * count)
            tags = {}
            for i in range(len(entries) // 12):
                tag, kind, n, value = struct.unpack(order + "HHI4s", entries[12 * i:12 * i + 12])
                code = {1: "B", 3: "H", 4: "I"}.get(kind)
                if code is None or n > 16:
                    continue
                size = struct.calcsize(code * n)
                if size > 4:
                    f.seek(struct.unpack(order + "I", value)[0])
                    value = f.read(size)
                tags[tag] = struct.unpack(order + code * n, value[:size])
            return tags
    except (OSError, struct.error):
        return None


def unsupported_layout(path: Path) -> str | None:
    """What makes a TIFF's layout one :func:`ifan.io.read_image` cannot decode (``"16-bit CMYK"``), or None."""
    tags = _first_directory(path)
    if tags is None:
        return None
    bits = max(tags.get(258, (1,)))
    samples = tags.get(277, (1,))[0]
    sample_format = tags.get(339, (1,))[0]
    photometric = tags.get(262, (-1,))[0]
    kind = _KINDS.get(photometric, f"photometric-{photometric}")
    extra = samples - _COLOURS.get(kind, samples)
    fine = sample_format == 1 and (
        (kind == "grey" and bits in (1, 8, 16) and (extra == 0 or (extra == 1 and bits == 8)))
        or (kind == "RGB" and bits in (8, 16) and extra <= 1)
        or (kind in ("palette", "CMYK", "YCbCr", "CIELab") and bits <= 8 and extra == 0))
    if fine:
        return None
    numbers = {2: "signed ", 3: "floating-point "}.get(sample_format, "")
    more = f" with {extra} extra channel{'s' * (extra > 1)}" if extra > 0 else ""
    return f"{bits}-bit {numbers}{kind}{more}"


def exif_entries(exif: bytes | None) -> tuple[dict[int, object], dict[int, dict]]:
    """The photo's tags of an EXIF block (``Exif\\0\\0`` + TIFF, as Pillow writes it): the
    :data:`PHOTO_TAGS` of its first directory, and its EXIF and GPS directories (without
    :data:`DROPPED_EXIF_TAGS`) by their pointer tag. Empty where the block cannot be read."""
    if not exif:
        return {}, {}
    parsed = PILImage.Exif()
    try:
        parsed.load(exif)
        top = {tag: parsed[tag] for tag in PHOTO_TAGS if tag in parsed}
        subs = {}
        for pointer in (EXIF_IFD, GPS_IFD):
            entries = {k: v for k, v in parsed.get_ifd(pointer).items() if k not in DROPPED_EXIF_TAGS}
            if entries:
                subs[pointer] = entries
    except (SyntaxError, ValueError, struct.error, OSError, KeyError, TypeError):
        return {}, {}
    return top, subs


def encode_tiff(pixels: np.ndarray, icc_profile: bytes | None = None, exif: bytes | None = None) -> bytes:
    """A TIFF file of ``uint8`` or ``uint16`` pixels ``(H, W)`` (grey) or ``(H, W, C)`` (C = 2: grey +
    alpha, 3: RGB, 4: RGBA), with the ICC profile and the photo's EXIF."""
    arr = np.ascontiguousarray(pixels)
    if arr.dtype not in (np.uint8, np.uint16):
        raise ValueError(f"TIFF pixels must be uint8 or uint16, got {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[:, :, None]
    h, w, c = arr.shape
    if c not in (1, 2, 3, 4):
        raise ValueError(f"TIFF pixels must have 1-4 channels, got {c}")
    arr = arr.astype(arr.dtype.newbyteorder("<"), copy=False)
    diff = arr.copy()  # the horizontal predictor: each sample minus its left neighbour (modulo 2^bits)
    diff[:, 1:] -= arr[:, :-1]
    rows = max(1, STRIP_BYTES // max(1, diff[0].nbytes))
    strips = [zlib.compress(diff[top:top + rows].tobytes(), 6) for top in range(0, h, rows)]

    ifd = TiffImagePlugin.ImageFileDirectory_v2(prefix=b"II")

    def put(tag: int, value, kind: int) -> None:
        ifd[tag] = value
        ifd.tagtype[tag] = kind

    short, long_, undefined = 3, 4, 7
    top, subs = exif_entries(exif)
    for tag, value in top.items():
        ifd[tag] = value
    for pointer, entries in subs.items():
        put(pointer, entries, long_)
    put(256, w, long_)
    put(257, h, long_)
    put(258, (arr.dtype.itemsize * 8,) * c, short)
    put(259, DEFLATE, short)
    put(262, 1 if c <= 2 else 2, short)  # BlackIsZero grey, or RGB
    offsets = np.cumsum([0] + [len(s) for s in strips[:-1]])
    put(273, tuple(int(v) for v in offsets), long_)  # from the end of the IFD and its values: Pillow adds that
    put(274, 1, short)  # the pixels are upright
    put(277, c, short)
    put(278, rows, long_)
    put(279, tuple(len(s) for s in strips), long_)
    put(284, 1, short)
    put(317, PREDICTOR_HORIZONTAL, short)
    if c in (2, 4):
        put(338, 2, short)  # unassociated alpha
    if icc_profile:
        put(34675, icc_profile, undefined)
    body = ifd.tobytes(8)
    return b"II*\x00" + struct.pack("<I", 8) + body + b"".join(strips)
