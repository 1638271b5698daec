"""Reading image files: 8- and 16-bit PNG/TIFF, JPEG (RGB, grey, CMYK), WebP, BMP; camera RAW through
:mod:`ifan.io.raw`.

:func:`read_image` returns the pixels as float32 RGB ``(H, W, 3)`` in [0, 1] with everything needed to
write the result back faithfully (:class:`ifan.io.image.Image`): the bit depth (8 or 16), whether the
image was grey, its alpha channel, its ICC profile and EXIF (orientation reset, since the pixels are
returned upright).

Pillow decodes 16-bit RGB PNG as 8-bit, so 16-bit PNG and TIFF are decoded with OpenCV; metadata is
read with Pillow. TIFF layouts neither can decode (16-bit CMYK, extra channels, float samples) are
named as unsupported, not called corrupt (:func:`ifan.io.tiff.unsupported_layout`).

Memory: a read holds the decoded integer pixels and the float image it returns, nothing more
(8-bit RGB: 15 bytes per pixel for 12 returned).
"""

from __future__ import annotations

import functools
import io as _stdio
import os
import struct
import threading
import warnings
from pathlib import Path

import cv2
import numpy as np
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from ifan.fileutil import shown
from ifan.io.formats import READ_SUFFIXES
from ifan.io.image import DEFAULT_LIMIT_NOTE, DEFAULT_MAX_PIXELS, Image, ImageReadError, check_pixels
from ifan.io.metadata import TIFF_LAYOUT_TAGS
from ifan.io.raw import is_raw, raw_size, read_raw
from ifan.io.tiff import SUPPORTED_LAYOUTS, unsupported_layout

_ORIENTATION = 0x0112
_PIL_LIMIT_LOCK = threading.Lock()


def _apply_orientation(arr: np.ndarray, orientation: int) -> np.ndarray:
    """Turn an ``(H, W, ...)`` array as EXIF orientation 1-8 says, so that it displays upright (a view)."""
    ops = {
        2: lambda a: a[:, ::-1],
        3: lambda a: a[::-1, ::-1],
        4: lambda a: a[::-1],
        5: lambda a: np.swapaxes(a, 0, 1),
        6: lambda a: np.swapaxes(a, 0, 1)[:, ::-1],
        7: lambda a: np.swapaxes(a, 0, 1)[::-1, ::-1],
        8: lambda a: np.swapaxes(a, 0, 1)[::-1],
    }
    return ops[orientation](arr) if orientation in ops else arr


def _is_16bit(path: Path, pil: PILImage.Image) -> bool:
    if pil.format == "PNG":
        with open(path, "rb") as f:
            header = f.read(26)
        return len(header) >= 25 and header[24] == 16
    if pil.format == "TIFF":
        bits = pil.tag_v2.get(258, (8,))
        bits = bits if isinstance(bits, tuple) else (bits,)
        return max(bits) > 8
    return pil.mode.startswith("I;16") or pil.mode == "I"


def _tiff_error(path: Path) -> ImageReadError | None:
    what = unsupported_layout(path)
    return None if what is None else ImageReadError(
        f"{shown(path)}: unsupported TIFF layout: {what}; supported: {SUPPORTED_LAYOUTS}")


@functools.cache
def _opencv_turns(fmt: str) -> bool:
    """Whether OpenCV's decoder of ``fmt`` (``"PNG"``, ``"TIFF"``) applies the EXIF orientation itself
    (OpenCV 5 turns TIFFs whatever the flags): found once, by decoding a 2x1 probe tagged as mirrored."""
    exif = PILImage.Exif()
    exif[_ORIENTATION] = 2
    probe = _stdio.BytesIO()
    PILImage.fromarray(np.array([[[255] * 3, [0] * 3]], np.uint8)).save(probe, format=fmt, exif=exif.tobytes())
    arr = cv2.imdecode(np.frombuffer(probe.getvalue(), np.uint8), cv2.IMREAD_UNCHANGED)
    return arr is not None and int(arr[0, 0, 0]) == 0


def _decode_16bit(path: Path) -> np.ndarray:
    """OpenCV decode keeping 16 bits: ``(H, W)`` or ``(H, W, 3|4)`` RGB(A) uint16 (turned upright where
    OpenCV does it itself, :func:`_opencv_turns`)."""
    arr = cv2.imdecode(np.fromfile(path, dtype=np.uint8), cv2.IMREAD_UNCHANGED)
    if arr is None:
        raise ImageReadError(f"{shown(path)}: corrupt or truncated 16-bit image (OpenCV could not decode it)")
    if arr.ndim == 3 and arr.shape[2] >= 3:  # in place: no second copy of the image
        arr = cv2.cvtColor(arr, cv2.COLOR_BGRA2RGBA if arr.shape[2] == 4 else cv2.COLOR_BGR2RGB, dst=arr)
    if arr.dtype == np.uint8:  # e.g. a TIFF whose 16-bit tag was not the sample size
        arr = arr.astype(np.uint16) * 257
    if arr.dtype != np.uint16:
        raise ImageReadError(f"{shown(path)}: unsupported sample type {arr.dtype}; expected 8- or 16-bit integers")
    return arr


def _decode_pillow(path: Path, pil: PILImage.Image) -> tuple[np.ndarray, int, bool]:
    """Pillow decode of 8-bit (and Pillow's 16-bit grey) files: (array, bit depth, dropped ICC)."""
    mode = pil.mode
    drop_icc = False
    if mode in ("P", "PA"):
        pil = pil.convert("RGBA" if ("transparency" in pil.info or mode == "PA") else "RGB")
    elif mode == "CMYK":
        pil, drop_icc = pil.convert("RGB"), True  # the CMYK profile does not describe RGB pixels
    elif mode == "1":
        pil = pil.convert("L")
    elif mode in ("YCbCr", "LAB", "HSV", "RGBX", "RGBa"):
        pil = pil.convert("RGB")
    elif mode == "La":
        pil = pil.convert("LA")
    if pil.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N"):
        return np.clip(np.asarray(pil, dtype=np.int64), 0, 65535).astype(np.uint16), 16, drop_icc
    if pil.mode == "F":
        return (np.clip(np.asarray(pil, dtype=np.float32), 0, 1) * 65535 + 0.5).astype(np.uint16), 16, drop_icc
    return np.asarray(pil), 8, drop_icc


def to_unit_float(img: np.ndarray) -> np.ndarray:
    """8/16-bit integer pixels -> float32 in [0, 1] by their full range (as :func:`read_image`
    scales them); float arrays are returned as float32 unchanged."""
    if img.dtype in (np.uint8, np.uint16):
        return np.divide(img, np.float32(255.0 if img.dtype == np.uint8 else 65535.0), dtype=np.float32)
    return img.astype(np.float32, copy=False)


def _to_float(arr: np.ndarray, bit_depth: int, orientation: int) -> tuple[np.ndarray, np.ndarray | None, bool]:
    """Integer ``(H, W[, C])`` pixels -> upright float32 RGB ``(H, W, 3)`` in [0, 1], alpha ``(H, W)`` or
    None, and whether the image is grey. Each output is written once, straight from the integers
    (no float copy of the whole image, no repeated grey planes in between)."""
    scale = np.float32(255.0 if bit_depth == 8 else 65535.0)
    src = _apply_orientation(arr[:, :, None] if arr.ndim == 2 else arr, orientation)
    channels = src.shape[2]
    grayscale = channels in (1, 2)
    rgb = np.empty((*src.shape[:2], 3), np.float32)
    np.divide(src[:, :, :1] if grayscale else src[:, :, :3], scale, out=rgb, dtype=np.float32)
    alpha = np.divide(src[:, :, -1], scale, dtype=np.float32) if channels in (2, 4) else None
    return rgb, alpha, grayscale


def _open_unlimited(path: Path) -> PILImage.Image:
    """``PIL.Image.open`` (lazy) without Pillow's limit, which is process-wide: threads take turns."""
    with _PIL_LIMIT_LOCK, warnings.catch_warnings():
        warnings.simplefilter("ignore", PILImage.DecompressionBombWarning)
        saved_limit, PILImage.MAX_IMAGE_PIXELS = PILImage.MAX_IMAGE_PIXELS, None
        try:
            return PILImage.open(path)
        finally:
            PILImage.MAX_IMAGE_PIXELS = saved_limit


def read_size(path: str | os.PathLike) -> tuple[int, int]:
    """``(height, width)`` from the file's header, nothing decoded (as stored, or for a TIFF, which Pillow turns
    as it opens it, upright: the pixel count is what matters);
    :class:`ImageReadError` when it cannot be opened as an image. Camera RAW files: :mod:`ifan.io.raw`."""
    if is_raw(path):
        return raw_size(path)
    try:
        with _open_unlimited(Path(path)) as pil:
            return pil.size[1], pil.size[0]
    except (OSError, UnidentifiedImageError) as err:
        raise ImageReadError(f"{shown(path)}: cannot be opened as an image ({err})") from None


def read_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS,
               limit_note: str = DEFAULT_LIMIT_NOTE) -> Image:
    """Read an image file. See :class:`Image` for what comes back.

    The peak memory of a read is the decoded pixels plus the float image returned (for 8-bit RGB
    15 bytes per pixel, 1.25x the result), with no float copy in between.

    Args:
        max_pixels: refuse larger images before decoding them; ``limit_note`` says where the
            limit comes from, in the error.

    Raises:
        ImageReadError: with the file named and what is wrong (missing, not an image, corrupt
            or truncated, unsupported mode, larger than ``max_pixels``, empty).
    """
    path = Path(path)
    if not path.exists():
        raise ImageReadError(f"{shown(path)}: no such file")
    if not path.is_file():
        raise ImageReadError(f"{shown(path)}: not a file")
    if path.stat().st_size == 0:
        raise ImageReadError(f"{shown(path)}: empty file (0 bytes)")
    if is_raw(path):  # camera RAW: LibRaw demosaics it to 16-bit sRGB
        return read_raw(path, max_pixels, limit_note)
    try:
        pil = _open_unlimited(path)
    except UnidentifiedImageError:
        raise _tiff_error(path) or ImageReadError(
            f"{shown(path)}: not a recognised image file (supported: {', '.join(sorted(READ_SUFFIXES))})") from None
    except OSError as err:
        raise _tiff_error(path) or ImageReadError(f"{shown(path)}: cannot be opened as an image ({err})") from None
    with pil:
        w, h = pil.size
        if w < 1 or h < 1:
            raise ImageReadError(f"{shown(path)}: image has no pixels ({w}x{h})")
        check_pixels(path, w, h, max_pixels, limit_note)
        fmt = pil.format or path.suffix.lstrip(".").upper()
        try:
            frames = max(1, int(getattr(pil, "n_frames", 1)))  # animated PNG/WebP, multi-page TIFF
        except (OSError, ValueError, EOFError, struct.error):
            frames = 1
        try:
            exif = pil.getexif()  # for PNG this can read (and fail on) the image data
            orientation = int(exif.get(_ORIENTATION, 1) or 1)
            info = dict(pil.info)
            if _is_16bit(path, pil) and fmt in ("PNG", "TIFF"):
                if fmt == "TIFF" and (unsupported := _tiff_error(path)):
                    raise unsupported
                arr, bit_depth, drop_icc = _decode_16bit(path), 16, False
                turned = _opencv_turns(fmt)
            else:
                pil.load()
                arr, bit_depth, drop_icc = _decode_pillow(path, pil)
                # Pillow (12 on) turns a TIFF upright as it loads it, and then drops the tag
                turned = fmt == "TIFF" and _ORIENTATION not in pil.tag_v2
            if fmt == "TIFF":
                for tag in TIFF_LAYOUT_TAGS & set(exif):  # the TIFF's own layout, not the photo's metadata
                    del exif[tag]
            exif_bytes = None
            if len(exif):  # while the file is open: a TIFF's EXIF directory is read from it now
                if orientation != 1:
                    exif[_ORIENTATION] = 1
                exif_bytes = exif.tobytes()
        except ImageReadError:
            raise
        except (OSError, SyntaxError, ValueError) as err:
            raise _tiff_error(path) or ImageReadError(f"{shown(path)}: corrupt or truncated image data ({err})") from err
    pil.close()  # frees Pillow's copy of the pixels now (leaving `with` only closes the file)

    rgb, alpha, grayscale = _to_float(arr, bit_depth, 1 if turned else orientation)
    del arr
    return Image(
        rgb=rgb,
        alpha=alpha,
        bit_depth=bit_depth,
        grayscale=grayscale,
        icc_profile=None if drop_icc else info.get("icc_profile"),
        exif=exif_bytes,
        format=fmt,
        frames=frames,
    )
