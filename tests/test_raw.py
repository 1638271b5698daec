"""Camera RAW input (rawpy / LibRaw) and 16-bit TIFF output with metadata.

The DNG files are written here: a Bayer mosaic (RGGB) of a known scene with the tags LibRaw needs
(DNGVersion, PhotometricInterpretation 32803, CFARepeatPatternDim, CFAPattern, BlackLevel,
WhiteLevel, ColorMatrix1, AsShotNeutral, CalibrationIlluminant1) and an EXIF directory. The camera's
colour space is made linear sRGB (ColorMatrix1 = the XYZ -> sRGB matrix) and the scene is recorded
under a tinted light (AsShotNeutral), so that a decode with the camera's white balance, the sRGB
curve and no auto-brightening must give back the scene's sRGB values.
"""

from __future__ import annotations

import struct
from fractions import Fraction

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import TiffImagePlugin

from ifan.apps.cli import main
from ifan.io import read_image, read_size, write_image

rawpy = pytest.importorskip("rawpy", reason="rawpy is in the [raw] and [test] extras")

XYZ_TO_SRGB = [[3.2404542, -1.5371385, -0.4985314], [-0.9692660, 1.8760108, 0.0415560],
               [0.0556434, -0.2040259, 1.0572252]]
NEUTRAL = (0.5, 1.0, 0.7)  # the camera's response to white under the shot's light: R and B weaker
BLACK, WHITE = 256, 4095  # a 12-bit sensor's levels


def srgb_encode(x: np.ndarray) -> np.ndarray:
    x = np.clip(x, 0, 1)
    return np.where(x <= 0.0031308, 12.92 * x, 1.055 * x ** (1 / 2.4) - 0.055)


def scene(h: int = 64, w: int = 96) -> np.ndarray:
    """A smooth linear-light scene in mid-tones (no edge the demosaicing would have to guess)."""
    yy, xx = np.mgrid[0:h, 0:w] / 16.0
    return np.stack([0.30 + 0.20 * np.sin(xx), 0.25 + 0.20 * np.cos(yy), 0.20 + 0.15 * np.sin(xx + yy)], axis=2)


def write_dng(path, linear: np.ndarray, neutral=NEUTRAL, orientation: int = 1) -> None:
    """A minimal DNG of ``linear`` (H, W, 3) seen through an RGGB mosaic (see the module docstring)."""
    h, w, _ = linear.shape
    cfa = np.empty((h, w))
    cfa[0::2, 0::2] = linear[0::2, 0::2, 0] * neutral[0]
    cfa[0::2, 1::2] = linear[0::2, 1::2, 1] * neutral[1]
    cfa[1::2, 0::2] = linear[1::2, 0::2, 1] * neutral[1]
    cfa[1::2, 1::2] = linear[1::2, 1::2, 2] * neutral[2]
    data = np.round(BLACK + np.clip(cfa, 0, 1) * (WHITE - BLACK)).astype("<u2").tobytes()
    ifd = TiffImagePlugin.ImageFileDirectory_v2(prefix=b"II")
    short, long_, rational, srational, byte, ascii_ = 3, 4, 5, 10, 1, 2
    tags = [(254, 0, long_), (256, w, long_), (257, h, long_), (258, 16, short), (259, 1, short),
            (262, 32803, short), (271, "ifan", ascii_), (272, "test camera", ascii_), (273, 0, long_),
            (274, orientation, short), (277, 1, short), (278, h, long_), (279, len(data), long_), (284, 1, short),
            (33421, (2, 2), short), (33422, bytes((0, 1, 1, 2)), byte), (50706, bytes((1, 4, 0, 0)), byte),
            (50708, "ifan test camera", ascii_), (50714, BLACK, long_), (50717, WHITE, long_),
            (50721, tuple(Fraction(v).limit_denominator(100000) for row in XYZ_TO_SRGB for v in row), srational),
            (50728, tuple(Fraction(v).limit_denominator(1000) for v in neutral), rational), (50778, 21, short),
            (34665, {33434: TiffImagePlugin.IFDRational(1, 125), 33437: TiffImagePlugin.IFDRational(28, 10),
                     34855: 400, 36867: "2024:05:06 07:08:09", 37500: b"maker notes" * 8}, long_)]
    for tag, value, kind in tags:
        ifd[tag] = value
        ifd.tagtype[tag] = kind
    body = ifd.tobytes(8)  # Pillow points StripOffsets (0 here) just past the directory and its values
    path.write_bytes(b"II*\x00" + struct.pack("<I", 8) + body + data)


def test_dng_decodes_to_the_scene_in_16_bit_srgb_with_the_camera_white_balance(tmp_path):
    linear = scene()
    write_dng(tmp_path / "shot.dng", linear)
    img = read_image(tmp_path / "shot.dng")
    assert img.bit_depth == 16 and img.size == (64, 96) and img.alpha is None and img.format == "RAW (DNG)"
    err = np.abs(img.rgb - srgb_encode(linear)) * 255
    # Tolerance, in 8-bit levels: the 12-bit samples quantize linear light in steps of 1/3839, at most
    # 0.15 of a level through the sRGB curve over these mid-tones; AHD demosaicing interpolates the
    # colours it does not sample, within 0.84 of a level on this smooth scene (measured), worse on the
    # outermost row and column, which lack half their neighbours (5 levels). Any error in the black or
    # white level, the white balance, the colour matrix or the tone curve costs tens of levels.
    assert err[1:-1, 1:-1].max() < 1.0
    assert err[1:-1, 1:-1].mean() < 0.1
    # the tolerance tells the right decode from a wrong one: LibRaw's daylight balance is off by tens of levels
    import ifan.io.raw

    with rawpy.imread(str(tmp_path / "shot.dng")) as raw:
        params = dict(ifan.io.raw.POSTPROCESS, use_camera_wb=False)
        daylight = raw.postprocess(output_color=rawpy.ColorSpace.sRGB, **params) / 65535.0
    assert (np.abs(daylight - srgb_encode(linear)) * 255)[1:-1, 1:-1].mean() > 10
    assert "as-shot white balance" in img.description and "maker notes" in img.description


def test_dng_exif_is_carried_and_orientation_applied(tmp_path):
    write_dng(tmp_path / "turned.dng", scene(), orientation=6)
    img = read_image(tmp_path / "turned.dng")
    assert img.size == (96, 64) == read_size(tmp_path / "turned.dng")  # 90 degrees clockwise: the pixels come upright
    exif = PILImage.Exif()
    exif.load(img.exif)
    assert exif[271] == "ifan" and exif[272] == "test camera" and exif.get(274, 1) == 1
    sub = exif.get_ifd(0x8769)
    assert float(sub[33434]) == pytest.approx(1 / 125) and sub[34855] == 400 and sub[36867] == "2024:05:06 07:08:09"
    assert 37500 not in sub  # maker notes point into the RAW file: not carried


def test_deblur_a_raw_file_to_a_16_bit_tiff_with_its_exif(tmp_path, weights, capsys):
    write_dng(tmp_path / "shot.dng", scene())
    assert main(["deblur", str(tmp_path / "shot.dng"), "-o", str(tmp_path / "out"), "--model", str(weights),
                 "-v"]) == 0
    err = capsys.readouterr().err
    assert "camera RAW (DNG) through LibRaw" in err and "EXIF from the file: Make, Model" in err
    out = read_image(tmp_path / "out" / "shot_deblurred.tif")
    assert out.bit_depth == 16 and out.size == (64, 96)
    with PILImage.open(tmp_path / "out" / "shot_deblurred.tif") as tif:
        exif = tif.getexif()
        assert exif[271] == "ifan" and exif.get_ifd(0x8769)[34855] == 400
    # asked for JPEG: 8 bits, as asked (not PNG, as a 16-bit PNG or TIFF input would fall back to)
    assert main(["deblur", str(tmp_path / "shot.dng"), "-o", str(tmp_path / "jpg"), "--model", str(weights),
                 "--format", "jpg"]) == 0
    jpg = read_image(tmp_path / "jpg" / "shot_deblurred.jpg")
    assert jpg.bit_depth == 8 and jpg.size == (64, 96)
    # folders are searched for RAW files too
    assert main(["deblur", str(tmp_path), "-o", str(tmp_path / "folder"), "--model", str(weights)]) == 0
    assert (tmp_path / "folder" / "shot_deblurred.tif").is_file()


def test_unreadable_raw_files_get_one_line(tmp_path, weights, capsys, monkeypatch):
    (tmp_path / "broken.nef").write_bytes(b"not a raw file at all" * 100)
    write_image(tmp_path / "fine.png", np.full((16, 16, 3), 0.5, np.float32))
    assert main(["deblur", str(tmp_path / "broken.nef"), str(tmp_path / "fine.png"), "--model", str(weights)]) == 1
    err = capsys.readouterr().err
    lines = [line for line in err.splitlines() if "broken.nef" in line]
    assert len(lines) == 1 and "LibRaw cannot read this RAW file" in lines[0], err
    assert (tmp_path / "fine_deblurred.png").is_file()  # the others are still done

    import ifan.io.raw

    monkeypatch.setattr(ifan.io.raw, "_rawpy", lambda: None)  # as without the extra
    write_dng(tmp_path / "shot.dng", scene())
    assert main(["deblur", str(tmp_path / "shot.dng"), "--model", str(weights)]) == 1
    assert "needs rawpy (LibRaw): pip install 'ifan[raw]'" in capsys.readouterr().err


def test_16_bit_tiff_keeps_icc_and_exif(tmp_path):
    exif = PILImage.Exif()
    exif[271], exif[272], exif[274] = "Maker", "Camera", 1
    exif[0x8769] = {34855: 800, 37500: b"notes"}
    rgb = np.random.default_rng(0).random((40, 30, 3)).astype(np.float32)
    path = write_image(tmp_path / "a.tif", rgb, bit_depth=16, icc_profile=b"icc" * 50, exif=exif.tobytes())
    back = read_image(path)
    assert back.bit_depth == 16 and back.icc_profile == b"icc" * 50
    np.testing.assert_array_equal(np.round(back.rgb * 65535), np.round(rgb * 65535))
    got = PILImage.Exif()
    got.load(back.exif)
    assert got[271] == "Maker" and got.get_ifd(0x8769) == {34855: 800}


def test_exif_of_raw_files_not_laid_out_as_tiff_comes_from_libraw(tmp_path, monkeypatch):
    """CR3, RAF, ...: no TIFF directory to read, so what LibRaw reports is written as EXIF."""
    import ifan.io.raw

    monkeypatch.setattr(ifan.io.raw, "_exif_from_file", lambda path: None)
    write_dng(tmp_path / "shot.dng", scene())
    img = read_image(tmp_path / "shot.dng")
    exif = PILImage.Exif()
    exif.load(img.exif)
    sub = exif.get_ifd(0x8769)
    assert float(sub[33434]) == pytest.approx(1 / 125) and float(sub[33437]) == pytest.approx(2.8)
    assert sub[34855] == 400 and sub[36867] == "2024:05:06 07:08:09" and 271 not in exif
    assert "EXIF from LibRaw: " in img.description and "DateTimeOriginal" in img.description
