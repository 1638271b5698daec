"""Image files: bit depths, orientation, grey/alpha/CMYK, metadata, and clear errors on bad files."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image as PILImage
from PIL import ImageCms

from ifan.io import ImageReadError, ImageWriteError, encode_image, read_image, write_image, write_like


def gradient(h=23, w=37, seed=0):
    rng = np.random.default_rng(seed)
    base = np.linspace(0, 1, h * w * 3, dtype=np.float32).reshape(h, w, 3)
    return np.clip(base + 0.1 * rng.standard_normal((h, w, 3)).astype(np.float32), 0, 1)


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("bit_depth", [8, 16])
def test_round_trip_keeps_bit_depth(tmp_path, suffix, bit_depth):
    rgb = gradient()
    path = write_image(tmp_path / f"x{suffix}", rgb, bit_depth=bit_depth)
    img = read_image(path)
    assert img.bit_depth == bit_depth and not img.grayscale and img.alpha is None
    step = 1 / (255 if bit_depth == 8 else 65535)
    assert np.abs(img.rgb - rgb).max() <= step / 2 + 1e-7


def test_sixteen_bit_png_is_really_sixteen_bit(tmp_path):
    rgb = np.full((4, 5, 3), 1000 / 65535, dtype=np.float32)  # not representable in 8 bits
    path = write_image(tmp_path / "x.png", rgb, bit_depth=16)
    assert PILImage.open(path).mode == "RGB"  # Pillow alone would lose the low byte
    img = read_image(path)
    assert img.bit_depth == 16
    assert np.all(np.round(img.rgb * 65535) == 1000)


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_grayscale_and_alpha(tmp_path, bit_depth):
    gray = gradient()[:, :, 0]
    path = write_image(tmp_path / "g.png", np.repeat(gray[:, :, None], 3, 2), bit_depth=bit_depth, grayscale=True)
    img = read_image(path)
    assert img.grayscale and img.bit_depth == bit_depth and img.rgb.shape == (23, 37, 3)
    assert np.allclose(img.rgb[:, :, 0], img.rgb[:, :, 2])
    alpha = np.linspace(0, 1, 23 * 37, dtype=np.float32).reshape(23, 37)
    path = write_image(tmp_path / "a.png", gradient(), bit_depth=bit_depth, alpha=alpha)
    img = read_image(path)
    assert img.alpha is not None and np.abs(img.alpha - alpha).max() < 1 / 255
    out = write_like(tmp_path / "b.png", img.rgb, img)
    assert read_image(out).alpha is not None and read_image(out).bit_depth == bit_depth


def test_exif_orientation_applied_and_reset(tmp_path):
    arr = (gradient(20, 30) * 255).astype(np.uint8)
    pil = PILImage.fromarray(arr)
    exif = pil.getexif()
    exif[0x0112] = 6  # rotate 90 CW to display
    exif[0x010F] = "TestCam"
    path = tmp_path / "rot.jpg"
    pil.save(path, exif=exif.tobytes(), quality=100, subsampling=0)
    img = read_image(path)
    assert img.rgb.shape == (30, 20, 3)
    upright = np.asarray(PILImage.open(path).transpose(PILImage.Transpose.ROTATE_270), dtype=np.float32) / 255
    assert np.abs(img.rgb - upright).max() < 1e-6
    out = write_like(tmp_path / "out.jpg", img.rgb, img)
    back = PILImage.open(out).getexif()
    assert back[0x0112] == 1 and back[0x010F] == "TestCam"
    assert read_image(out).rgb.shape == (30, 20, 3)


@pytest.mark.parametrize("suffix, bit_depth", [(".png", 8), (".png", 16), (".jpg", 8), (".tif", 8)])
def test_icc_profile_kept(tmp_path, suffix, bit_depth):
    icc = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    path = write_image(tmp_path / f"x{suffix}", gradient(), bit_depth=bit_depth, icc_profile=icc)
    assert PILImage.open(path).info.get("icc_profile") == icc
    assert read_image(path).icc_profile == icc


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    rgb = PILImage.fromarray((gradient() * 255).astype(np.uint8))
    path = tmp_path / "cmyk.jpg"
    rgb.convert("CMYK").save(path, quality=100)
    img = read_image(path)
    assert img.rgb.shape == (23, 37, 3) and img.bit_depth == 8
    expected = np.asarray(PILImage.open(path).convert("RGB"), dtype=np.float32) / 255
    assert np.abs(img.rgb - expected).max() < 1e-6


def test_palette_with_transparency(tmp_path):
    pil = PILImage.fromarray((gradient() * 255).astype(np.uint8)).convert("P")
    index = np.asarray(pil)
    path = tmp_path / "p.png"
    pil.save(path, transparency=int(index[0, 0]))  # one palette entry is transparent
    img = read_image(path)
    assert img.rgb.shape == (23, 37, 3)
    np.testing.assert_array_equal(img.alpha, (index != index[0, 0]).astype(np.float32))
    assert 0 < (img.alpha == 0).sum() < img.alpha.size  # some pixels, not all


def test_bad_files_raise_clear_errors(tmp_path):
    with pytest.raises(ImageReadError, match="no such file"):
        read_image(tmp_path / "missing.png")
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    with pytest.raises(ImageReadError, match="empty file"):
        read_image(empty)
    text = tmp_path / "notes.png"
    text.write_text("hello")
    with pytest.raises(ImageReadError, match="not a recognised image"):
        read_image(text)
    good = write_image(tmp_path / "good.jpg", gradient(64, 64))
    truncated = tmp_path / "truncated.jpg"
    truncated.write_bytes(good.read_bytes()[:600])
    with pytest.raises(ImageReadError, match="truncated.jpg"):
        read_image(truncated)
    good16 = write_image(tmp_path / "good16.png", gradient(64, 64), bit_depth=16)
    trunc16 = tmp_path / "trunc16.png"
    trunc16.write_bytes(good16.read_bytes()[:300])
    with pytest.raises(ImageReadError, match="trunc16.png"):
        read_image(trunc16)
    with pytest.raises(ImageReadError, match="decompression-bomb"):
        read_image(good, max_pixels=1000)
    with pytest.raises(ImageReadError, match="not a file"):
        read_image(tmp_path)


def test_write_errors_and_atomicity(tmp_path):
    with pytest.raises(ImageWriteError, match="unsupported output suffix"):
        write_image(tmp_path / "x.gif", gradient())
    with pytest.raises(ImageWriteError, match="bit depth"):
        encode_image(gradient(), "png", bit_depth=12)
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(ImageWriteError, match="cannot write"):
        write_image(blocker / "sub" / "x.png", gradient())
    # an existing output is replaced whole, and no temporary files are left behind
    target = write_image(tmp_path / "t.png", gradient())
    write_image(target, np.zeros((5, 5, 3), np.float32))
    assert read_image(target).rgb.shape == (5, 5, 3)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file", "t.png"]



def tiff_bytes(pixels: np.ndarray, photometric: int, extra_samples: int = 0, orientation: int | None = None) -> bytes:
    """A minimal uncompressed little-endian TIFF of ``(H, W, C)`` uint8/uint16 pixels in one strip
    (with an orientation tag when given)."""
    h, w, c = pixels.shape
    data = pixels.astype(pixels.dtype.newbyteorder("<")).tobytes()
    tags = {256: (4, [w]), 257: (4, [h]), 258: (3, [pixels.dtype.itemsize * 8] * c), 259: (3, [1]),
            262: (3, [photometric]), 273: (4, [0]), 277: (3, [c]), 278: (4, [h]), 279: (4, [len(data)]),
            284: (3, [1])}
    if extra_samples:
        tags[338] = (3, [0] * extra_samples)
    if orientation is not None:
        tags[274] = (3, [orientation])
    ifd_end = 8 + 2 + 12 * len(tags) + 4
    entries, overflow = [], b""
    for tag, (kind, values) in sorted(tags.items()):
        raw = struct.pack(f"<{len(values)}{'H' if kind == 3 else 'I'}", *values)
        if len(raw) > 4:
            entries.append((tag, kind, len(values), struct.pack("<I", ifd_end + len(overflow))))
            overflow += raw
        else:
            entries.append((tag, kind, len(values), raw.ljust(4, b"\0")))
    data_at = ifd_end + len(overflow)
    entries = [(t, k, n, struct.pack("<I", data_at) if t == 273 else v) for t, k, n, v in entries]
    ifd = struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHI", t, k, n) + v for t, k, n, v in entries)
    return struct.pack("<2sHI", b"II", 42, 8) + ifd + struct.pack("<I", 0) + overflow + data


def test_unsupported_tiff_layouts_are_named_not_called_corrupt(tmp_path, capfd):
    rng = np.random.default_rng(0)
    ok = tmp_path / "rgb16.tif"
    ok.write_bytes(tiff_bytes(rng.integers(0, 65535, (6, 5, 3), dtype=np.uint16), photometric=2))
    assert read_image(ok).bit_depth == 16  # the hand-made layout itself is readable
    cases = {"cmyk16.tif": (rng.integers(0, 65535, (6, 5, 4), dtype=np.uint16), 5, 0, "16-bit CMYK"),
             "extra16.tif": (rng.integers(0, 65535, (6, 5, 5), dtype=np.uint16), 2, 2,
                             "16-bit RGB with 2 extra channels")}
    for name, (pixels, photometric, extra, what) in cases.items():
        path = tmp_path / name
        path.write_bytes(tiff_bytes(pixels, photometric, extra))
        capfd.readouterr()
        with pytest.raises(ImageReadError) as err:
            read_image(path)
        assert str(err.value).startswith(f"{path}: unsupported TIFF layout: {what}; supported: ")
        assert "corrupt" not in str(err.value) and not capfd.readouterr().err  # and no decoder noise


_READ_PEAK = """
import resource, sys
from ifan.io import read_image

def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key))

read_image(sys.argv[2])  # warm up: imports and Pillow's plug-ins
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # reset the peak RSS (VmHWM) to the RSS now
    reset = True
except OSError:  # then the peak of the whole process counts, imports too: a stricter bound
    reset = False
base = status("VmRSS:")
img = read_image(sys.argv[1])
peak = status("VmHWM:") if reset else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
print((peak - base) / (img.rgb.nbytes + (0 if img.alpha is None else img.alpha.nbytes)))
"""


@pytest.mark.slow  # a subprocess
@pytest.mark.skipif(not Path("/proc/self/status").is_file(), reason="needs Linux /proc to measure memory")
@pytest.mark.parametrize("kind", ["rgb8", "rgb16", "rgba8"])
def test_reading_costs_little_more_than_the_image_it_returns(tmp_path, kind):
    """The peak memory of a read, over the float image it returns (was 2.5-2.9 with float copies)."""
    n = 1600
    yy, xx = np.mgrid[0:n, 0:n].astype(np.float32) / n
    rgb = np.stack([xx, yy, (xx + yy) / 2], axis=2)
    path = write_image(tmp_path / f"{kind}.png", rgb, bit_depth=16 if kind == "rgb16" else 8,
                       alpha=xx if kind == "rgba8" else None)
    small = write_image(tmp_path / "small.png", rgb[:8, :8], bit_depth=16 if kind == "rgb16" else 8)
    # glibc returns freed blocks over 1 MiB at once, so the peak counts live memory, not the allocator's cache
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": str(2**20)}
    run = subprocess.run([sys.executable, "-c", _READ_PEAK, str(path), str(small)], capture_output=True, text=True,
                         check=True, env=env)
    assert float(run.stdout) < 1.7  # 8-bit: 15 bytes per pixel read for 12 returned; 16-bit: 18 for 12


def test_the_size_comes_from_the_header(tmp_path):
    from ifan.io import read_size

    assert read_size(write_image(tmp_path / "a.png", np.zeros((30, 50, 3), np.float32))) == (30, 50)
    (tmp_path / "b.jpg").write_bytes(b"not an image")
    with pytest.raises(ImageReadError, match="b.jpg: cannot be opened as an image"):
        read_size(tmp_path / "b.jpg")


# What each EXIF orientation asks a viewer to do with the stored pixels to show them upright
# (written out with numpy, independently of ifan.io).
UPRIGHT = {1: lambda a: a, 2: lambda a: a[:, ::-1], 3: lambda a: a[::-1, ::-1], 4: lambda a: a[::-1],
           5: lambda a: a.transpose(1, 0, 2), 6: lambda a: np.rot90(a, -1), 7: lambda a: np.rot90(a, -1)[::-1],
           8: lambda a: np.rot90(a, 1)}


def corners(bits: int) -> np.ndarray:
    """96 wide, 64 high: red top-left, green top-right, blue bottom-left corner, grey elsewhere."""
    top = 255 if bits == 8 else 65535
    a = np.full((64, 96, 3), top // 3, np.uint8 if bits == 8 else np.uint16)
    a[:8, :8], a[:8, -8:], a[-8:, :8] = (top, 0, 0), (0, top, 0), (0, 0, top)
    return a


def png_with_orientation(path: Path, pixels: np.ndarray, orientation: int) -> Path:
    """The PNG path's input: the same stored pixels with an eXIf chunk saying ``orientation``."""
    exif = PILImage.Exif()
    exif[0x0112] = orientation
    bits = 8 if pixels.dtype == np.uint8 else 16
    return write_image(path, pixels.astype(np.float32) / (2**bits - 1), bit_depth=bits, exif=exif.tobytes())


@pytest.mark.parametrize("bits", [8, 16])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_tiff_orientation_is_applied_once_like_the_png_path(tmp_path, bits, orientation):
    stored = corners(bits)
    tif = tmp_path / "in.tif"
    tif.write_bytes(tiff_bytes(stored, photometric=2, orientation=orientation))
    expected = UPRIGHT[orientation](stored).astype(np.float32) / (2**bits - 1)
    from_png = read_image(png_with_orientation(tmp_path / "in.png", stored, orientation))
    np.testing.assert_array_equal(from_png.rgb, expected)  # the PNG path, known to be right
    img = read_image(tif)
    assert img.bit_depth == bits and img.rgb.shape == expected.shape
    np.testing.assert_array_equal(img.rgb, expected)
    if orientation == 6:  # the case: 64 wide, 96 high, red corner top-right
        assert img.rgb.shape[:2] == (96, 64) and tuple(img.rgb[0, -1]) == (1.0, 0.0, 0.0)
    # the result written like the input: upright pixels and a tag that says so, read back turned once
    for suffix in (".tif", ".png", ".jpg"):
        out = write_like(tmp_path / f"out{suffix}", img.rgb, img)
        with PILImage.open(out) as back:
            assert back.getexif().get(0x0112, 1) == 1
            assert back.size == (expected.shape[1], expected.shape[0])
        again = read_image(out)
        assert again.rgb.shape == expected.shape
        if suffix != ".jpg":
            np.testing.assert_array_equal(again.rgb, expected)


@pytest.mark.parametrize("bits", [8, 16])
def test_a_tiff_with_an_exif_directory_is_turned_once_and_keeps_its_photo_tags(tmp_path, bits):
    """ifan.io.tiff's files (and cameras') carry an EXIF directory beside the orientation: read while the
    file is open, turned once, the layout tags left behind, and written again upright with the rest."""
    from PIL import ExifTags

    from ifan.io.tiff import encode_tiff

    stored = corners(bits)
    exif = PILImage.Exif()
    exif[0x010F] = "TestCam"
    exif[ExifTags.IFD.Exif] = {34855: 800}
    data = encode_tiff(stored, exif=exif.tobytes())
    upright = struct.pack("<HHIHH", 274, 3, 1, 1, 0)  # encode_tiff's own orientation entry: 1
    assert data.count(upright) == 1
    (tmp_path / "in.tif").write_bytes(data.replace(upright, struct.pack("<HHIHH", 274, 3, 1, 6, 0)))
    img = read_image(tmp_path / "in.tif")
    expected = UPRIGHT[6](stored).astype(np.float32) / (2**bits - 1)
    assert img.bit_depth == bits
    np.testing.assert_array_equal(img.rgb, expected)
    got = PILImage.Exif()
    got.load(img.exif)
    assert got[0x010F] == "TestCam" and got.get(0x0112, 1) == 1 and got.get_ifd(ExifTags.IFD.Exif) == {34855: 800}
    assert not {256, 257, 273, 279} & set(got)  # the input's layout does not travel
    for suffix in (".tif", ".png"):
        back = read_image(write_like(tmp_path / f"out{suffix}", img.rgb, img))
        np.testing.assert_array_equal(back.rgb, expected)
        again = PILImage.Exif()
        again.load(back.exif)
        assert again[0x010F] == "TestCam" and again.get_ifd(ExifTags.IFD.Exif)[34855] == 800


def test_grey_and_alpha_with_an_exif_directory_is_written_as_tiff_with_its_tags(tmp_path):
    """An 8-bit grey + alpha photo whose EXIF has an EXIF directory (a camera's), written as TIFF: Pillow
    failed on it ("Error setting from dictionary"); it is written by ifan.io.tiff like the other TIFFs."""
    from PIL import ExifTags

    grey = np.array([[0, 51, 102], [153, 204, 255]], np.uint8)
    alpha = np.array([[255, 0, 128], [64, 32, 16]], np.uint8)
    src = tmp_path / "in.png"
    exif = PILImage.Exif()
    exif[0x010F] = "TestCam"
    exif[ExifTags.IFD.Exif] = {34855: 800}
    PILImage.fromarray(np.stack([grey, alpha], axis=2), mode="LA").save(src, exif=exif.tobytes())
    img = read_image(src)
    assert img.grayscale and img.alpha is not None and img.bit_depth == 8
    back = read_image(write_like(tmp_path / "out.tif", img.rgb, img))
    assert back.grayscale and back.bit_depth == 8
    np.testing.assert_array_equal(back.rgb[:, :, 0], grey / np.float32(255))
    np.testing.assert_array_equal(back.alpha, alpha / np.float32(255))
    got = PILImage.Exif()
    got.load(back.exif)
    assert got[0x010F] == "TestCam" and got.get_ifd(ExifTags.IFD.Exif) == {34855: 800}


def big_exif(orientation: int = 1) -> bytes:
    """70 KB of EXIF: a camera name, an orientation and a 70,000-byte user comment (more than JPEG's 64 KB)."""
    from PIL import ExifTags

    exif = PILImage.Exif()
    exif[0x010F], exif[0x0112] = "TestCam", orientation
    exif.get_ifd(ExifTags.IFD.Exif)[0x9286] = b"ASCII\0\0\0" + b"x" * 70_000
    return exif.tobytes()


@pytest.mark.parametrize("suffix", [".png", ".webp"])
def test_exif_too_large_for_jpeg_is_shrunk_keeping_the_rest(tmp_path, suffix):
    src = tmp_path / f"in{suffix}"
    PILImage.fromarray((gradient() * 255).astype(np.uint8)).save(src, exif=big_exif(), lossless=True)
    img = read_image(src)
    assert len(img.exif) > 65_533
    out = write_like(tmp_path / "out.jpg", img.rgb, img)  # was: "EXIF data is too long"
    with PILImage.open(out) as back:
        exif = back.getexif()
        assert exif[0x010F] == "TestCam" and exif.get(0x0112, 1) == 1
        assert 0x9286 not in exif.get_ifd(0x8769)  # the user comment did not fit
    notes: list[str] = []
    write_like(tmp_path / "out.jpg", img.rgb, img, notes=notes)
    assert len(notes) == 1 and "UserComment" in notes[0] and "JPEG" in notes[0]
    write_like(tmp_path / "out.png", img.rgb, img, notes=notes)  # PNG holds it all, and says nothing
    assert len(notes) == 1 and read_image(tmp_path / "out.png").exif == img.exif
