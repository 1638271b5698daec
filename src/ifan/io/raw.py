"""Camera RAW files through LibRaw (the ``rawpy`` binding; ``pip install 'ifan[raw]'``).

:func:`read_raw` demosaics a RAW file to what ``ifan.io.read_image`` returns for any photo: float32
RGB in [0, 1], with a bit depth of 16 (so the result is written as a 16-bit TIFF by default) and the
EXIF that can be carried. LibRaw's postprocessing, and why:

* ``use_camera_wb=True``, ``use_auto_wb=False``: the white balance the camera recorded (as-shot).
* ``output_color=sRGB``, ``gamma=(2.4, 12.92)``: sRGB primaries and the sRGB tone curve, what the
  model was trained on (rawpy's default gamma is BT.709's 2.222 / 4.5).
* ``no_auto_bright=True``, ``bright=1``: the exposure as shot, the sensor's white level at 1.0
  (LibRaw would otherwise scale each photo so that 1 % of its pixels clip: a different exposure
  per file). Results look darker than the camera's JPEG, which adds its own tone curve.
* ``output_bps=16``: 16 bits per sample, so that no RAW precision is lost before the network.
* the rest at LibRaw's defaults: AHD demosaicing, highlights clipped, the file's orientation
  applied (the pixels come upright), no noise reduction, full size.

Metadata: for RAW files laid out as TIFF (DNG, CR2, NEF, ARW, ORF, RW2, PEF, SRW, ...) the photo's
EXIF is read from the file (camera, date, exposure, lens, GPS; orientation reset to 1); for the
others (CR3, RAF, ...) what LibRaw reports is written as EXIF: exposure time, f-number, ISO, focal
length, date, artist and lens (not the camera's make and model, which rawpy does not report).
Never carried: the maker notes (their offsets point into the RAW file), the RAW's own tags (CFA
layout, black and white levels, colour matrices, DNG profiles), embedded previews and XMP; no ICC
profile is embedded (the pixels are sRGB, which readers assume without one).
"""

from __future__ import annotations

import datetime as _dt
import os
from pathlib import Path

import numpy as np
from PIL import Image as PILImage
from PIL import TiffImagePlugin

from ifan.fileutil import shown
from ifan.io.image import DEFAULT_LIMIT_NOTE, Image, ImageReadError, check_pixels
from ifan.io.tiff import EXIF_IFD, PHOTO_TAGS, exif_entries

# What LibRaw reads (its list of formats; ".raw" is Leica's and Panasonic's). Folders are searched for these too.
RAW_SUFFIXES = frozenset({
    ".3fr", ".ari", ".arw", ".bay", ".cap", ".cr2", ".cr3", ".crw", ".dcr", ".dcs", ".dng", ".drf", ".eip", ".erf",
    ".fff", ".gpr", ".iiq", ".k25", ".kdc", ".mdc", ".mef", ".mos", ".mrw", ".nef", ".nrw", ".orf", ".ori", ".pef",
    ".ptx", ".pxn", ".raf", ".raw", ".rw2", ".rwl", ".sr2", ".srf", ".srw", ".x3f"})
RAW_OUTPUT_SUFFIX = ".tif"  # a RAW's result: a 16-bit TIFF unless --format says otherwise
MISSING = "reading camera RAW files needs rawpy (LibRaw): pip install 'ifan[raw]'"
POSTPROCESS = dict(use_camera_wb=True, use_auto_wb=False, output_bps=16, no_auto_bright=True, bright=1.0,
                   gamma=(2.4, 12.92))  # + output_color=sRGB (rawpy.ColorSpace.sRGB), set where rawpy is imported
# TIFF-structured RAW files whose header has a maker's own magic number instead of 42
_TIFF_MAGIC = {b"IIU\x00": b"II*\x00", b"IIRO": b"II*\x00", b"IIRS": b"II*\x00", b"MMOR": b"MM\x00*"}


def is_raw(path: str | os.PathLike) -> bool:
    """The file's suffix is one LibRaw reads."""
    return Path(path).suffix.lower() in RAW_SUFFIXES


def _rawpy():
    try:
        import rawpy
    except ImportError:
        return None
    return rawpy


def _error(path: Path, err: Exception):
    what = " ".join(str(err).strip("b'\"").split()) or type(err).__name__
    return ImageReadError(f"{shown(path)}: LibRaw cannot read this RAW file ({what})")


def _open(path: Path):
    """``(rawpy module, an opened RawPy)``; ImageReadError when rawpy is missing or the file unreadable."""
    rawpy = _rawpy()
    if rawpy is None:
        raise ImageReadError(f"{shown(path)}: {MISSING}")
    raw = rawpy.RawPy()
    try:
        raw.open_file(str(path))
    except (rawpy.LibRawError, OSError) as err:
        raw.close()
        raise _error(path, err) from None
    return rawpy, raw


def raw_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(height, width)`` of the developed image, from the header (nothing decoded)."""
    rawpy, raw = _open(Path(path))
    with raw:
        s = raw.sizes
        return (s.width, s.height) if s.flip in (5, 6) else (s.height, s.width)


def _exif_from_file(path: Path) -> bytes | None:
    """The photo's EXIF of a TIFF-structured RAW file (``Exif\\0\\0`` + TIFF), or None."""
    with open(path, "rb") as f:
        data = bytearray(f.read())
    if bytes(data[:4]) in _TIFF_MAGIC:
        data[:4] = _TIFF_MAGIC[bytes(data[:4])]
    if data[:4] not in (b"II*\x00", b"MM\x00*"):
        return None
    top, subs = exif_entries(b"Exif\x00\x00" + bytes(data))
    if not top and not subs:
        return None
    out = PILImage.Exif()
    for tag, value in top.items():
        out[tag] = value
    for pointer, entries in subs.items():
        out[pointer] = entries
    return out.tobytes()


def _exif_from_libraw(raw) -> bytes | None:
    """What LibRaw reports of the shot, as EXIF (None: nothing)."""
    other, lens, sub = raw.other, raw.lens, {}
    if other.shutter_speed > 0:
        sub[33434] = TiffImagePlugin.IFDRational(*_fraction(other.shutter_speed))
    if other.aperture > 0:
        sub[33437] = TiffImagePlugin.IFDRational(round(other.aperture * 10), 10)
    if other.iso_speed > 0:
        sub[34855] = int(round(other.iso_speed))
    if other.focal_length > 0:
        sub[37386] = TiffImagePlugin.IFDRational(round(other.focal_length * 10), 10)
    if isinstance(other.timestamp, _dt.datetime) and other.timestamp.year > 1970:
        sub[36867] = other.timestamp.strftime("%Y:%m:%d %H:%M:%S")
    if lens.make:
        sub[42035] = lens.make
    if lens.model:
        sub[42036] = lens.model
    out = PILImage.Exif()
    if other.artist:
        out[315] = other.artist
    if sub:
        out[EXIF_IFD] = sub
    return out.tobytes() if len(out) else None


def _fraction(seconds: float) -> tuple[int, int]:
    return (1, round(1 / seconds)) if seconds < 1 else (round(seconds * 10), 10)


def _carried(exif: bytes | None) -> str:
    top, subs = exif_entries(exif)
    names = [PHOTO_TAGS[t] for t in top]
    for entries in subs.values():
        names += [PILImage.ExifTags.TAGS.get(t) or PILImage.ExifTags.GPSTAGS.get(t) or str(t) for t in entries]
    return ", ".join(names) if names else "none"


def read_raw(path: str | os.PathLike, max_pixels: int, limit_note: str = DEFAULT_LIMIT_NOTE):
    """Demosaic a camera RAW file (see the module docstring): an :class:`ifan.io.Image` with float32
    RGB in [0, 1], ``bit_depth`` 16, the carried EXIF and a ``description`` of how it was decoded.

    Raises:
        ImageReadError: rawpy is missing (naming the extra), LibRaw cannot read the file, or the
            image is larger than ``max_pixels``.
    """
    path = Path(path)
    rawpy, raw = _open(path)
    with raw:
        h, w = raw.sizes.height, raw.sizes.width
        check_pixels(path, w, h, max_pixels, limit_note)
        try:
            pixels = raw.postprocess(output_color=rawpy.ColorSpace.sRGB, **POSTPROCESS)
        except (rawpy.LibRawError, MemoryError) as err:
            raise _error(path, err) from None
        wb = ", ".join(f"{v:.3g}" for v in raw.camera_whitebalance[:3])
        libraw_exif = _exif_from_libraw(raw)
    rgb = np.divide(pixels, np.float32(65535.0), dtype=np.float32)
    del pixels
    try:
        exif, where = _exif_from_file(path), "the file"
    except OSError:
        exif = None
    if exif is None:
        exif, where = libraw_exif, "LibRaw"
    kind = path.suffix.lstrip(".").upper()
    libraw = ".".join(map(str, rawpy.libraw_version))
    description = (f"camera RAW ({kind}) through LibRaw {libraw}: {rgb.shape[1]}x{rgb.shape[0]}, "
                   f"as-shot white balance (R, G, B x {wb}), sRGB, 16-bit, exposure as shot; EXIF from {where}: "
                   f"{_carried(exif)}; not carried: maker notes, the RAW's own tags (CFA, levels, colour matrices), "
                   "embedded previews, XMP")
    return Image(rgb=rgb, bit_depth=16, exif=exif, format=f"RAW ({kind})", description=description)
