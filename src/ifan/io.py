"""Image files in and out: 8- and 16-bit PNG/TIFF, JPEG (RGB, grey, CMYK), WebP, BMP.

``read_image`` returns the pixels as float32 RGB ``(H, W, 3)`` in [0, 1] with everything
needed to write the result back faithfully: the bit depth (8 or 16), whether the image was
grey, its alpha channel, its ICC profile and EXIF (orientation reset, since the pixels are
returned upright). ``write_image`` writes atomically (temporary file + rename).

Pillow decodes 16-bit RGB PNG as 8-bit, so 16-bit PNG and TIFF are decoded and encoded with
OpenCV; metadata is read with Pillow, and ICC/EXIF are put back into 16-bit PNGs as
``iCCP``/``eXIf`` chunks. TIFF layouts neither can decode (16-bit CMYK, extra channels, float
samples) are named as unsupported, not called corrupt.

Memory: a read holds the decoded integer pixels and the float image it returns, nothing more
(8-bit RGB: 15 bytes per pixel for 12 returned); a write quantizes in bands of rows.
"""

from __future__ import annotations

import functools
import io as _stdio
import os
import struct
import threading
import warnings
import zlib
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
from PIL import Image as PILImage
from PIL import UnidentifiedImageError

from ifan.fileutil import atomic_write_bytes, shown
from ifan.io_raw import is_raw, raw_size, read_raw
from ifan.io_tiff import encode_tiff
from ifan.metadata import TIFF_LAYOUT_TAGS, fit_exif

READ_SUFFIXES = frozenset({".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp", ".bmp"})
WRITE_FORMATS = {"png": ".png", "jpg": ".jpg", "tiff": ".tif", "webp": ".webp"}
DEFAULT_MAX_PIXELS = 300_000_000  # 300 MP; larger files are refused as possible decompression bombs
_ORIENTATION = 0x0112
_PIL_LIMIT_LOCK = threading.Lock()


class ImageReadError(ValueError):
    """A file that cannot be read as an image (missing, corrupt, truncated, unsupported, too large)."""


class ImageWriteError(OSError):
    """An image that cannot be written (unsupported format, unwritable location)."""


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
            settings and the metadata carried, :mod:`ifan.io_raw`), else empty.
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


_TIFF_KINDS = {0: "grey", 1: "grey", 2: "RGB", 3: "palette", 4: "mask", 5: "CMYK", 6: "YCbCr", 8: "CIELab"}
_TIFF_COLOURS = {"grey": 1, "RGB": 3, "palette": 1, "CMYK": 4, "YCbCr": 3, "CIELab": 3}
_TIFF_SUPPORTED = ("grey, RGB or RGBA with 8- or 16-bit integer samples; "
                   "8-bit grey + alpha, palette, CMYK, YCbCr, CIELab")


def _tiff_tags(path: Path) -> dict[int, tuple[int, ...]] | None:
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


def _unsupported_tiff(path: Path) -> str | None:
    """What makes a TIFF's layout one this reader cannot decode (``"16-bit CMYK"``), or None."""
    tags = _tiff_tags(path)
    if tags is None:
        return None
    bits = max(tags.get(258, (1,)))
    samples = tags.get(277, (1,))[0]
    sample_format = tags.get(339, (1,))[0]
    photometric = tags.get(262, (-1,))[0]
    kind = _TIFF_KINDS.get(photometric, f"photometric-{photometric}")
    extra = samples - _TIFF_COLOURS.get(kind, samples)
    fine = sample_format == 1 and (
        (kind == "grey" and bits in (1, 8, 16) and (extra == 0 or (extra == 1 and bits == 8)))
        or (kind == "RGB" and bits in (8, 16) and extra <= 1)
        or (kind in ("palette", "CMYK", "YCbCr", "CIELab") and bits <= 8 and extra == 0))
    if fine:
        return None
    numbers = {2: "signed ", 3: "floating-point "}.get(sample_format, "")
    more = f" with {extra} extra channel{'s' * (extra > 1)}" if extra > 0 else ""
    return f"{bits}-bit {numbers}{kind}{more}"


def _tiff_error(path: Path) -> ImageReadError | None:
    what = _unsupported_tiff(path)
    return None if what is None else ImageReadError(
        f"{shown(path)}: unsupported TIFF layout: {what}; supported: {_TIFF_SUPPORTED}")


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
    :class:`ImageReadError` when it cannot be opened as an image. Camera RAW files: :mod:`ifan.io_raw`."""
    if is_raw(path):
        return raw_size(path)
    try:
        with _open_unlimited(Path(path)) as pil:
            return pil.size[1], pil.size[0]
    except (OSError, UnidentifiedImageError) as err:
        raise ImageReadError(f"{shown(path)}: cannot be opened as an image ({err})") from None


def read_image(path: str | os.PathLike, max_pixels: int = DEFAULT_MAX_PIXELS,
               limit_note: str = "decompression-bomb guard") -> Image:
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
        if w * h > max_pixels:
            raise ImageReadError(
                f"{shown(path)}: {w}x{h} = {w * h / 1e6:.3g} MP exceeds the limit of {max_pixels / 1e6:.3g} MP "
                f"({limit_note}); raise it with --max-pixels if the file is trusted and the memory is there"
            )
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
    quality: int = 95,
    notes: list[str] | None = None,
) -> bytes:
    """Encode float ``(H, W, 3)`` (or ``(H, W)``) pixels in [0, 1] as ``fmt`` (png, jpg, tiff, webp).

    16-bit output is available for PNG and TIFF; JPEG and WebP are 8-bit and have no alpha.
    A grey image is written with one channel (the mean of the three). EXIF too large for a JPEG is cut
    down (:func:`ifan.metadata.fit_exif`), and ``notes`` (when given) gets a line saying what was dropped.
    """
    fmt = fmt.lower().lstrip(".")
    fmt = {"jpeg": "jpg", "tif": "tiff"}.get(fmt, fmt)
    if fmt not in WRITE_FORMATS:
        raise ImageWriteError(f"unsupported output format {fmt!r}; choose one of {sorted(WRITE_FORMATS)}")
    if bit_depth not in (8, 16):
        raise ImageWriteError(f"bit depth must be 8 or 16, got {bit_depth}")
    rgb = np.asarray(rgb, dtype=np.float32)
    if rgb.ndim == 3 and grayscale:
        rgb = rgb.mean(axis=2)
    if fmt in ("jpg", "webp"):
        bit_depth = 8
        alpha = None if fmt == "jpg" else alpha
    if fmt == "jpg" and exif:
        exif, note = fit_exif(exif)
        if note and notes is not None:
            notes.append(note)
    if alpha is None:
        arr = _quantize(rgb, bit_depth)
    else:  # colour planes, then alpha, quantized straight into one array
        arr = np.empty((*rgb.shape[:2], (1 if rgb.ndim == 2 else 3) + 1), np.uint8 if bit_depth == 8 else np.uint16)
        _quantize(rgb[:, :, None] if rgb.ndim == 2 else rgb, bit_depth, out=arr[:, :, :-1])
        _quantize(np.asarray(alpha, dtype=np.float32), bit_depth, out=arr[:, :, -1])

    if fmt == "tiff" and (arr.ndim == 2 or arr.shape[2] != 2):  # with the EXIF directory Pillow cannot write
        return encode_tiff(arr, icc_profile, exif)  # and the metadata OpenCV drops
    if bit_depth == 16:
        if fmt == "png":
            return _add_png_metadata(encode_png_pixels(arr), icc_profile, exif)
        ok, buf = cv2.imencode(".tiff", arr)  # 16-bit grey + alpha: as OpenCV writes (and reads) it
        if not ok:
            raise ImageWriteError("OpenCV could not encode a 16-bit TIFF")
        return buf.tobytes()

    mode = {1: "L", 2: "LA", 3: "RGB", 4: "RGBA"}[1 if arr.ndim == 2 else arr.shape[2]]
    pil = PILImage.fromarray(arr, mode=mode)
    kwargs: dict = {}
    if icc_profile:
        kwargs["icc_profile"] = icc_profile
    if exif:
        kwargs["exif"] = exif
    if fmt == "jpg":
        kwargs.update(quality=quality, subsampling=0)
    elif fmt == "webp":
        kwargs.update(quality=quality)
    elif fmt == "tiff":
        kwargs.update(compression="tiff_deflate")
    out = _stdio.BytesIO()
    pil.save(out, format={"jpg": "JPEG", "png": "PNG", "tiff": "TIFF", "webp": "WEBP"}[fmt], **kwargs)
    return out.getvalue()


def format_for_path(path: str | os.PathLike) -> str:
    """The output format named by a file's suffix (png, jpg, tiff, webp)."""
    suffix = Path(path).suffix.lower()
    for fmt, ext in WRITE_FORMATS.items():
        if suffix == ext or (fmt == "jpg" and suffix == ".jpeg") or (fmt == "tiff" and suffix == ".tiff"):
            return fmt
    raise ImageWriteError(f"{shown(path)}: unsupported output suffix {suffix!r}; use one of .png .jpg .tif .webp")


def write_image(path: str | os.PathLike, rgb: np.ndarray, bit_depth: int = 8, alpha: np.ndarray | None = None,
                grayscale: bool = False, icc_profile: bytes | None = None, exif: bytes | None = None,
                quality: int = 95, notes: list[str] | None = None) -> Path:
    """Write float pixels in [0, 1] to ``path`` atomically; the format follows the suffix.

    Args:
        rgb: ``(H, W, 3)`` or ``(H, W)`` float, clipped to [0, 1] and rounded.
        bit_depth: 8 or 16 (16 only for PNG and TIFF; JPEG/WebP are always 8-bit).
        alpha: ``(H, W)`` in [0, 1], written where the format has alpha.
        grayscale: write one grey channel.
        icc_profile, exif: metadata to embed where the format allows.
        notes: gets a line for each piece of metadata the format could not hold.
    """
    data = encode_image(rgb, format_for_path(path), bit_depth, alpha, grayscale, icc_profile, exif, quality, notes)
    try:
        return atomic_write_bytes(path, data)
    except OSError as err:
        raise ImageWriteError(f"{shown(path)}: cannot write ({err.strerror or err})") from err


def write_like(path: str | os.PathLike, rgb: np.ndarray, like: Image, bit_depth: int | None = None,
               quality: int = 95, notes: list[str] | None = None) -> Path:
    """Write ``rgb`` with the bit depth, grey/alpha and metadata of the image it came from."""
    return write_image(path, rgb, bit_depth or like.bit_depth, like.alpha, like.grayscale, like.icc_profile,
                       like.exif, quality, notes)
