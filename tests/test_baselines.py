"""Baselines: the input itself, and Wiener deconvolution with an estimated disc radius.

Blurred test images are made independently of the code under test: a hard-edged disc
(``x^2 + y^2 <= r^2``, not the anti-aliased kernel the baseline uses) applied by FFT convolution to a
region larger than the crop, so the scene continues past the image borders as in a real photo; then
optional Gaussian noise and 8-bit quantisation.
"""

from __future__ import annotations

import numpy as np
import pytest

from ifan.evaluate import baselines as B

from helpers import psnr

data = pytest.importorskip("skimage.data")
signal = pytest.importorskip("scipy.signal")
ndimage = pytest.importorskip("scipy.ndimage")

SIZE = 256


def _hard_disc(r: float) -> np.ndarray:
    h = int(np.ceil(r))
    y, x = np.mgrid[-h : h + 1, -h : h + 1]
    k = (x * x + y * y <= r * r).astype(np.float64)
    return k / k.sum()


@pytest.fixture(scope="module")
def photos() -> dict[str, np.ndarray]:
    imgs = {
        "astronaut": data.astronaut(),
        "coffee": data.coffee(),
        "chelsea": data.chelsea(),
        "rocket": data.rocket(),
        "motorcycle": data.stereo_motorcycle()[0],
    }
    return {k: v.astype(np.float64) / 255 for k, v in imgs.items()}


def _centre(img: np.ndarray, margin: int = 0) -> np.ndarray:
    h, w = img.shape[:2]
    y0, x0 = (h - SIZE) // 2, (w - SIZE) // 2
    return img[y0 - margin : y0 + SIZE + margin, x0 - margin : x0 + SIZE + margin]


def _blurred(img: np.ndarray, r: float, noise: float = 0.0, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    k = _hard_disc(r)
    region = _centre(img, k.shape[0] // 2)
    blurred = np.stack([signal.fftconvolve(region[..., c], k, mode="valid") for c in range(3)], axis=-1)
    blurred = blurred + noise * np.random.default_rng(seed).standard_normal(blurred.shape)
    return (np.round(np.clip(blurred, 0, 1) * 255) / 255).astype(np.float32), _centre(img)


# Measured (see the module's report): radius errors <= 0.12 px, gains 1.0-5.6 dB (noisy ones lowest).
CASES = [
    ("astronaut", 3, 0.0, 3.0),
    ("coffee", 5, 0.0, 3.0),
    ("chelsea", 7, 0.0, 2.5),
    ("motorcycle", 10, 0.0, 1.5),
    ("rocket", 4, 0.01, 0.5),
    ("astronaut", 8, 0.01, 1.5),
]


@pytest.mark.parametrize("name,radius,noise,min_gain", CASES)
def test_estimates_radius_and_improves_psnr(photos, name, radius, noise, min_gain):
    blurred, sharp = _blurred(photos[name], radius, noise)
    restored, est = B.wiener_deblur(blurred)
    assert abs(est - radius) <= 1.0, f"estimated {est:.2f} for a disc of radius {radius}"
    gain = psnr(restored, sharp) - psnr(blurred, sharp)
    assert gain >= min_gain, f"PSNR gain {gain:.2f} dB"
    # the border strip improves too (mirror extension, no wrap-around ringing)
    strip = np.zeros(blurred.shape[:2], bool)
    strip[:16], strip[-16:], strip[:, :16], strip[:, -16:] = True, True, True, True
    assert psnr(restored[strip], sharp[strip]) > psnr(blurred[strip], sharp[strip])


def test_given_radius_is_used(photos):
    blurred, sharp = _blurred(photos["coffee"], 6)
    restored, r = B.wiener_deblur(blurred, radius=6.0)
    assert r == 6.0
    assert psnr(restored, sharp) > psnr(blurred, sharp) + 2.0
    # a badly wrong radius does worse than the right one
    wrong, _ = B.wiener_deblur(blurred, radius=2.0)
    assert psnr(wrong, sharp) < psnr(restored, sharp)


@pytest.mark.parametrize("name", ["astronaut", "chelsea", "motorcycle"])
@pytest.mark.parametrize("noise", [0.0, 0.01])
def test_sharp_images_are_left_alone(photos, name, noise):
    sharp = _centre(photos[name])
    x = np.round(np.clip(sharp + noise * np.random.default_rng(1).standard_normal(sharp.shape), 0, 1) * 255) / 255
    x = x.astype(np.float32)
    restored, est = B.wiener_deblur(x)
    assert est == 0.0
    assert np.array_equal(restored, x) and restored is not x


def test_symmetric_boundaries_are_exact():
    """A blur with symmetric ('reflect') boundaries is inverted exactly, borders included: the mirror
    extension models the boundary the same way, and nothing wraps around."""
    rng = np.random.default_rng(3)
    sharp = ndimage.gaussian_filter(rng.random((37, 50, 3)), (1.5, 1.5, 0))
    b3 = np.outer([1, 2, 1], [1, 2, 1]) / 16.0
    kernel = 0.5 * np.pad(np.ones((1, 1)), 1) + 0.5 * b3  # transfer function >= 0.5: invertible
    blurred = np.stack([ndimage.convolve(sharp[..., c], kernel, mode="reflect") for c in range(3)], axis=-1)
    restored = B.wiener_deconvolve(blurred, kernel, lam=0.0, mu=0.0)
    assert np.abs(restored - sharp).max() < 1e-5  # float32 output
    assert np.abs(blurred - sharp).max() > 1e-2


def test_disc_kernel():
    for r in (0.75, 1.0, 2.5, 7.0, 12.3):
        k = B.disc_kernel(r)
        assert k.shape == (2 * int(np.ceil(r)) + 1,) * 2
        assert k.sum() == pytest.approx(1.0, abs=1e-12)
        assert np.allclose(k, k[::-1]) and np.allclose(k, k.T) and (k >= 0).all()
        h = k.shape[0] // 2
        y, x = np.mgrid[-h : h + 1, -h : h + 1]
        if r >= 2:  # second moment of a uniform disc: E[x^2 + y^2] = r^2 / 2 (+ 1/6 from the pixel area)
            assert (k * (x * x + y * y)).sum() == pytest.approx(r * r / 2 + 1 / 6, rel=0.03)
    assert np.array_equal(B.disc_kernel(0.0), np.ones((1, 1)))
    assert np.array_equal(B.disc_kernel(0.5), np.ones((1, 1)))
    with pytest.raises(ValueError):
        B.disc_kernel(-1.0)


@pytest.mark.parametrize("shape", [(5, 5, 3), (17, 23, 3), (61, 47, 3), (100, 90), (64, 64, 1)])
def test_any_shape_float32_in_range_deterministic(shape):
    rng = np.random.default_rng(4)
    img = ndimage.uniform_filter(rng.random(shape), 5).astype(np.float32)
    out1, r1 = B.wiener_deblur(img)
    out2, r2 = B.wiener_deblur(img)
    assert out1.shape == img.shape and out1.dtype == np.float32
    assert np.array_equal(out1, out2) and r1 == r2
    assert out1.min() >= 0 and out1.max() <= 1
    forced, _ = B.wiener_deblur(img, radius=2.0)
    assert forced.shape == img.shape and forced.min() >= 0 and forced.max() <= 1


def test_constant_and_tiny_images():
    const = np.full((40, 40, 3), 0.4, np.float32)
    out, r = B.wiener_deblur(const)
    assert r == 0.0 and np.array_equal(out, const)
    assert B.estimate_defocus_radius(const) == 0.0
    tiny = np.random.default_rng(0).random((8, 9, 3))
    out, r = B.wiener_deblur(tiny)
    assert r == 0.0 and np.array_equal(out, tiny.astype(np.float32))


def test_errors():
    with pytest.raises(TypeError, match="float"):
        B.wiener_deblur(np.zeros((32, 32, 3), np.uint8))
    bad = np.zeros((32, 32, 3))
    bad[1, 1, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        B.wiener_deblur(bad)
    with pytest.raises(ValueError, match="shape"):
        B.wiener_deblur(np.zeros((32, 32, 4)))
    with pytest.raises(ValueError, match="radius"):
        B.wiener_deblur(np.zeros((32, 32, 3)), radius=-2.0)
    with pytest.raises(ValueError, match="odd"):
        B.wiener_deconvolve(np.zeros((32, 32, 3)), np.ones((2, 2)) / 4, lam=1e-3)


def test_registry(photos):
    assert set(B.BASELINES) == {"input", "wiener"}
    img = _blurred(photos["chelsea"], 5)[0]
    same = B.get_baseline("input")(img)
    assert np.array_equal(same, img) and same is not img and same.dtype == np.float32
    restored = B.get_baseline("wiener")(img)
    assert np.array_equal(restored, B.wiener_deblur(img)[0])
    with pytest.raises(ValueError, match="unknown baseline"):
        B.get_baseline("deblurgan")


def test_full_size_photo_radius(photos):
    """A whole 512x512 photo (its speed is benchmarks/bench_baselines.py's, not a test's)."""
    img = photos["astronaut"].astype(np.float32)
    blurred = np.stack([ndimage.convolve(img[..., c], _hard_disc(5), mode="reflect") for c in range(3)], -1)
    restored, r = B.wiener_deblur(blurred)
    assert abs(r - 5) <= 1.0
    assert psnr(restored, img) > psnr(blurred, img) + 1.0
