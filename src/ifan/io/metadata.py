"""EXIF that fits where it goes: what a TIFF's EXIF must lose (its layout tags), and what JPEG cannot hold.

Pillow reads a TIFF's EXIF from the file's own first directory, so it holds the TIFF's layout (width,
height, strip offsets, ...) beside the photo's metadata; that layout must not travel into another file
(a TIFF written with the input's ImageWidth/Length over turned pixels would be corrupt). A JPEG holds at
most :data:`JPEG_EXIF_MAX` bytes of EXIF (one APP1 segment): larger EXIF is cut down, the thumbnail first
(Pillow never writes one back), then the largest entries one by one, and a note says what went.
"""

from __future__ import annotations

from PIL import ExifTags
from PIL import Image as PILImage

# Tags that describe a TIFF's layout, not the photo. The ICC profile (34675) travels on its own.
TIFF_LAYOUT_TAGS = frozenset({254, 255, 256, 257, 258, 259, 262, 263, 266, 273, 277, 278, 279, 280, 281, 284, 290,
                              291, 292, 293, 317, 320, 322, 323, 324, 325, 330, 338, 339, 340, 341, 347, 513, 514,
                              530, 531, 532, 34675})
JPEG_EXIF_MAX = 65533  # bytes of EXIF (its "Exif\0\0" header included) in a JPEG's APP1 segment
_POINTERS = frozenset({ExifTags.IFD.Exif, ExifTags.IFD.GPSInfo, ExifTags.IFD.Interop})
_ORIENTATION = 0x0112


def _size(value) -> int:
    return len(value) if isinstance(value, (bytes, str)) else len(repr(value))


def _name(where: int | None, tag: int) -> str:
    names = ExifTags.GPSTAGS if where == ExifTags.IFD.GPSInfo else ExifTags.TAGS
    return names.get(tag, f"tag 0x{tag:04X}")


def fit_exif(exif: bytes, limit: int = JPEG_EXIF_MAX) -> tuple[bytes | None, str | None]:
    """``exif`` cut down to at most ``limit`` bytes, and a note saying what was dropped (None when it
    fitted as it was): the thumbnail first, then the largest entries (never the orientation) until the
    rest fits; None when nothing fits, or when it cannot be parsed."""
    if len(exif) <= limit:
        return exif, None
    try:
        probe = PILImage.Exif()  # asking for IFD1 leaves an entry that tobytes cannot write: a copy asks
        probe.load(exif)
        dropped = ["the thumbnail"] if probe.get_ifd(ExifTags.IFD.IFD1) else []
        parsed = PILImage.Exif()
        parsed.load(exif)
        data = parsed.tobytes()  # without the thumbnail's directory
        entries = [(_size(v), None, t) for t, v in parsed.items() if t not in _POINTERS and t != _ORIENTATION]
        for where in (ExifTags.IFD.Exif, ExifTags.IFD.GPSInfo):
            entries += [(_size(v), where, t) for t, v in parsed.get_ifd(where).items() if t not in _POINTERS]
        for _, where, tag in sorted(entries, key=lambda e: -e[0]):
            if len(data) <= limit:
                break
            del (parsed if where is None else parsed.get_ifd(where))[tag]
            if where is not None and not parsed.get_ifd(where) and where in parsed:
                del parsed[where]  # an empty directory: Pillow cannot write one
            dropped.append(_name(where, tag))
            data = parsed.tobytes()
    except Exception:  # noqa: BLE001 - EXIF that Pillow cannot parse again is dropped whole, and said so
        return None, f"EXIF dropped: {len(exif)} bytes that do not fit a JPEG ({limit} at most) and cannot be cut down"
    if len(data) > limit:
        return None, f"EXIF dropped: {len(exif)} bytes, and still {len(data)} without its largest entries ({limit} fit a JPEG)"
    return data, (f"EXIF cut from {len(exif)} to {len(data)} bytes to fit a JPEG ({limit} at most): "
                  f"dropped {', '.join(dropped)}")
