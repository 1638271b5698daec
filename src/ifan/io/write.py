"""Writing image files: float pixels in [0, 1] encoded as the format table says (:mod:`ifan.io.formats`)
and written atomically (temporary file + rename, :mod:`ifan.fileutil`).

16-bit PNGs are encoded with OpenCV (Pillow writes 16-bit RGB as 8-bit) and get their ICC profile and EXIF
as ``iCCP``/``eXIf`` chunks; TIFFs are written by :func:`ifan.io.tiff.encode_tiff` with their metadata
(all but 16-bit grey + alpha, which is written and read back by OpenCV); the rest by Pillow.

Memory: a write quantizes in bands of rows: no float copy of the whole image.
"""

from __future__ import annotations

import io as _stdio
import os
import struct
import zlib
from pathlib import Path

import cv2
import numpy as np
from PIL import Image as PILImage

from ifan.fileutil import atomic_write_bytes, shown
from ifan.io.formats import format_for_path, output_format
from ifan.io.image import Image, ImageWriteError
from ifan.io.metadata import fit_exif
from ifan.io.tiff import encode_tiff


def _quantize(x: np.ndarray, bit_depth: int, out: np.ndarray | None = None) -> np.ndarray:
    """Round float pixels in [0, 1] to uint8 or uint16 (into ``out`` when given), a band of rows at a
    time: no float copy of the whole image."""
    scale, dtype = (255.0, np.uint8) if bit_depth == 8 else (65535.0, np.uint16)
    out = np.empty(x.shape, dtype) if out is None else out
    rows = max(1, 2**22 // max(1, x[0].size))  # about 16 MiB of float32 per band
    for top in range(0, x.shape[0], rows):
        band = np.clip(x[top:top + rows], 0.0, 1.0)
        band *= scale
        out[top:top + rows] = np.rint(band, out=band)
    return out


def _png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _add_png_metadata(png: bytes, icc_profile: bytes | None, exif: bytes | None) -> bytes:
    """Insert ``iCCP`` and ``eXIf`` chunks right after ``IHDR`` (8-byte signature + 25-byte IHDR)."""
    extra = b""
    if icc_profile:
        extra += _png_chunk(b"iCCP", b"ICC profile\x00\x00" + zlib.compress(icc_profile))
    if exif:
        extra += _png_chunk(b"eXIf", exif[6:] if exif.startswith(b"Exif\x00\x00") else exif)
    return png[:33] + extra + png[33:]


def encode_png_pixels(pixels: np.ndarray, compress_level: int = 6) -> bytes:
    """Integer pixels -> PNG bytes with OpenCV (8 or 16 bits; grey, RGB or RGBA ``(H, W[, C])``).

    ``compress_level`` is zlib's 0-9: level 1 encodes a 512x512 image ~3x faster than level 6
    for files ~20% larger (what ``ifan synth`` uses).
    """
    arr = np.ascontiguousarray(pixels)
    if arr.dtype not in (np.uint8, np.uint16):
        raise ImageWriteError(f"PNG pixels must be uint8 or uint16, got {arr.dtype}")
    if arr.ndim == 3:
        arr = cv2.cvtColor(arr, cv2.COLOR_RGBA2BGRA if arr.shape[2] == 4 else cv2.COLOR_RGB2BGR)
    ok, buf = cv2.imencode(".png", arr, [cv2.IMWRITE_PNG_COMPRESSION, int(compress_level)])
    if not ok:
        raise ImageWriteError("OpenCV could not encode the PNG")
    return buf.tobytes()


def encode_image(
    rgb: np.ndarray,
    fmt: str,
    bit_depth: int = 8,
    alpha: np.ndarray | None = None,
    grayscale: bool = False,
    icc_profile: bytes | None = None,
    exif: bytes | None = None,
    quality: int | None = None,
    notes: list[str] | None = None,
) -> bytes:
    """Encode float ``(H, W, 3)`` (or ``(H, W)``) pixels in [0, 1] as ``fmt`` (png, jpg, tiff, webp).

    What the format cannot hold is left out: 16 bits become 8 in JPEG and WebP, alpha is dropped in
    JPEG (:data:`ifan.io.formats.FORMATS`). A grey image is written with one channel (the mean of the
    three). ``quality`` (JPEG, WebP) defaults to the format's. EXIF too large for a JPEG is cut down
    (:func:`ifan.io.metadata.fit_exif`), and ``notes`` (when given) gets a line saying what was dropped.
    """
    out_format = output_format(fmt)
    if bit_depth not in (8, 16):
        raise ImageWriteError(f"bit depth must be 8 or 16, got {bit_depth}")
    rgb = np.asarray(rgb, dtype=np.float32)
    if rgb.ndim == 3 and grayscale:
        rgb = rgb.mean(axis=2)
    if bit_depth not in out_format.bit_depths:
        bit_depth = max(out_format.bit_depths)
    if not out_format.alpha:
        alpha = None
    if out_format.name == "jpg" and exif:
        exif, note = fit_exif(exif)
        if note and notes is not None:
            notes.append(note)
    if alpha is None:
        arr = _quantize(rgb, bit_depth)
    else:  # colour planes, then alpha, quantized straight into one array
        arr = np.empty((*rgb.shape[:2], (1 if rgb.ndim == 2 else 3) + 1), np.uint8 if bit_depth == 8 else np.uint16)
        _quantize(rgb[:, :, None] if rgb.ndim == 2 else rgb, bit_depth, out=arr[:, :, :-1])
        _quantize(np.asarray(alpha, dtype=np.float32), bit_depth, out=arr[:, :, -1])

    grey_alpha16 = bit_depth == 16 and arr.ndim == 3 and arr.shape[2] == 2
    if out_format.name == "tiff" and not grey_alpha16:  # with the EXIF directory Pillow cannot write
        return encode_tiff(arr, icc_profile, exif)  # and the metadata OpenCV drops
    if bit_depth == 16:
        if out_format.name == "png":
            return _add_png_metadata(encode_png_pixels(arr), icc_profile, exif)
        ok, buf = cv2.imencode(".tiff", arr)  # 16-bit grey + alpha: as OpenCV writes (and reads) it
        if not ok:
            raise ImageWriteError("OpenCV could not encode a 16-bit TIFF")
        return buf.tobytes()

    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[1 if arr.ndim == 2 else arr.shape[2]]
    pil = PILImage.fromarray(arr, mode=mode)
    kwargs: dict = dict(out_format.options)
    if icc_profile:
        kwargs["icc_profile"] = icc_profile
    if exif:
        kwargs["exif"] = exif
    if out_format.quality is not None:
        kwargs["quality"] = out_format.quality if quality is None else quality
    out = _stdio.BytesIO()
    pil.save(out, format=out_format.pillow, **kwargs)
    return out.getvalue()


def write_image(path: str | os.PathLike, rgb: np.ndarray, bit_depth: int = 8, alpha: np.ndarray | None = None,
                grayscale: bool = False, icc_profile: bytes | None = None, exif: bytes | None = None,
                quality: int | None = None, notes: list[str] | None = None) -> Path:
    """Write float pixels in [0, 1] to ``path`` atomically; the format follows the suffix.

    Args:
        rgb: ``(H, W, 3)`` or ``(H, W)`` float, clipped to [0, 1] and rounded.
        bit_depth: 8 or 16 (16 only for PNG and TIFF; JPEG/WebP are always 8-bit).
        alpha: ``(H, W)`` in [0, 1], written where the format has alpha.
        grayscale: write one grey channel.
        icc_profile, exif: metadata to embed where the format allows.
        quality: JPEG/WebP quality (default: the format's, :data:`ifan.io.formats.DEFAULT_QUALITY`).
        notes: gets a line for each piece of metadata the format could not hold.
    """
    data = encode_image(rgb, format_for_path(path), bit_depth, alpha, grayscale, icc_profile, exif, quality, notes)
    try:
        return atomic_write_bytes(path, data)
    except OSError as err:
        raise ImageWriteError(f"{shown(path)}: cannot write ({err.strerror or err})") from err


def write_like(path: str | os.PathLike, rgb: np.ndarray, like: Image, bit_depth: int | None = None,
               quality: int | None = None, notes: list[str] | None = None) -> Path:
    """Write ``rgb`` with the bit depth, grey/alpha and metadata of the image it came from."""
    return write_image(path, rgb, bit_depth or like.bit_depth, like.alpha, like.grayscale, like.icc_profile,
                       like.exif, quality, notes)
