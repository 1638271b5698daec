"""Image files in and out: 8- and 16-bit PNG/TIFF, JPEG (RGB, grey, CMYK), WebP, BMP, camera RAW.

Modules: ``formats`` (the table of output formats), ``image`` (what a read returns, the errors),
``read`` and ``write``, ``tiff`` (TIFFs with their metadata), ``raw`` (camera RAW through LibRaw),
``metadata`` (EXIF that fits where it goes). The names below are the ones callers use.
"""

from ifan.io.formats import DEFAULT_QUALITY, FORMATS, READ_SUFFIXES, WRITE_FORMATS, format_for_path
from ifan.io.image import DEFAULT_MAX_PIXELS, Image, ImageReadError, ImageWriteError
from ifan.io.read import read_image, read_size, to_unit_float
from ifan.io.write import encode_image, encode_png_pixels, write_image, write_like

__all__ = ["DEFAULT_MAX_PIXELS", "DEFAULT_QUALITY", "FORMATS", "READ_SUFFIXES", "WRITE_FORMATS", "Image",
           "ImageReadError", "ImageWriteError", "encode_image", "encode_png_pixels", "format_for_path",
           "read_image", "read_size", "to_unit_float", "write_image", "write_like"]
