"""Physics of the rendered images: focus, PSF size, disparity, C vs L/R, light, occlusion."""

from __future__ import annotations

import math

import cv2
import numpy as np
import pytest

from ifan.synth.psf import ApertureProfile, center_kernel, dual_pixel_kernels
from ifan.synth.raytrace import render_reference
from ifan.synth.rendering import Layer, Scene, SensorNoise, composite_sharp, render
from ifan.synth.optics import ThinLensCamera

CAM = ThinLensCamera(focal_length_mm=50.0, f_number=2.0, focus_distance_m=2.0, pixel_pitch_um=10.0)
UNIFORM = ApertureProfile(edge=0.0, falloff=0.0, split=0.0)
# x_L - x_R of a point under the uniform split disc, worked by hand: the two half discs' centroids are
# 2 * 4 |r| / (3 pi) apart, the left view's on the left behind the focus plane (r > 0): -0.8488 r.
HAND_DISPARITY_PER_COC = -8 / (3 * math.pi)


def texture(rng: np.random.Generator, h: int, w: int, sigma: float = 1.0) -> np.ndarray:
    return cv2.GaussianBlur(rng.random((h, w, 3)).astype(np.float32), (0, 0), sigma)


def layer(rgb: np.ndarray, coc: float | np.ndarray, alpha: np.ndarray | None = None) -> Layer:
    h, w = rgb.shape[:2]
    depth = np.broadcast_to(CAM.depth_from_coc(coc), (h, w)).astype(np.float32)
    return Layer(rgb.astype(np.float32), np.ones((h, w), np.float32) if alpha is None else alpha, depth)


def disc(h: int, w: int, cy: float, cx: float, radius: float) -> np.ndarray:
    yy, xx = np.mgrid[:h, :w]
    return np.clip(radius + 0.5 - np.hypot(yy - cy, xx - cx), 0.0, 1.0).astype(np.float32)


def test_in_focus_plane_comes_out_unchanged():
    rng = np.random.default_rng(0)
    tex, fg = texture(rng, 72, 80), texture(rng, 72, 80)
    scene = Scene([layer(tex, 0.0), layer(fg, 0.0, disc(72, 80, 30, 40, 15.3))], pad=8)
    out = render(scene, CAM, ApertureProfile())
    sharp = composite_sharp(scene)[8:-8, 8:-8]
    for image in (out.left, out.right, out.center, out.target):
        np.testing.assert_allclose(image, sharp, atol=1e-6)
    np.testing.assert_allclose(out.coc, 0.0, atol=1e-4)
    np.testing.assert_allclose(out.disparity, 0.0, atol=1e-4)


def test_the_image_of_a_point_is_the_psf_and_its_size_grows_with_inverse_depth_offset():
    pad = 20
    size = 2 * pad + 61  # canvas: a 61 x 61 image, the point in its middle
    offsets, radii = [], []
    for coc in (-18.0, -9.5, -3.0, 2.0, 7.5, 16.0):
        point = np.zeros((size, size, 3), np.float32)
        point[size // 2, size // 2] = 1.0
        alpha = np.zeros((size, size), np.float32)
        alpha[size // 2, size // 2] = 1.0
        scene = Scene([layer(np.zeros_like(point), 0.0), layer(point, coc, alpha)], pad=pad)
        out = render(scene, CAM, UNIFORM)
        c = out.center[..., 0].astype(np.float64)
        # the rendered image is the centre kernel itself
        k = center_kernel(coc, UNIFORM)
        half, mid = k.shape[0] // 2, size // 2 - pad
        np.testing.assert_allclose(c[mid - half:mid + half + 1, mid - half:mid + half + 1], k, atol=1e-5)
        assert c.sum() == pytest.approx(1.0, abs=1e-4)
        # its size (from the second moment: E[rho^2] = r^2/2 + 1/3 px^2 for the tent) is |coc|
        yy, xx = np.mgrid[:c.shape[0], :c.shape[1]] - mid
        r_measured = math.sqrt(2 * ((c * (xx ** 2 + yy ** 2)).sum() - 1 / 3))
        assert r_measured == pytest.approx(abs(coc), rel=0.02)
        # L and R are shifted by the disparity of the map at the point: left of it behind the focus plane
        lx = (out.left[..., 0] * xx).sum() / out.left[..., 0].sum()
        rx = (out.right[..., 0] * xx).sum() / out.right[..., 0].sum()
        assert lx - rx == pytest.approx(float(out.disparity[mid, mid]), abs=0.01)
        assert lx - rx == pytest.approx(HAND_DISPARITY_PER_COC * coc, rel=0.01, abs=0.02)
        assert (lx - rx < 0) == (coc > 0)
        depth = float(out.depth[mid, mid])
        offsets.append(abs(1 / depth - 1 / CAM.focus_distance_m))
        radii.append(r_measured)
    slope = np.polyfit(offsets, radii, 1)
    assert slope[0] == pytest.approx(CAM.radius_at_infinity_px * CAM.focus_distance_m, rel=0.02)
    assert abs(slope[1]) < 0.2


def _block_match(a: np.ndarray, b: np.ndarray, max_d: int = 12) -> float:
    """Shift d (sub-pixel) minimising the SSD between a(x) and b(x - d), i.e. x_a - x_b."""
    ds = np.arange(-max_d, max_d + 1)
    errs = np.array([((a[:, max_d:-max_d] - b[:, max_d - d:b.shape[1] - max_d - d]) ** 2).mean() for d in ds])
    i = int(np.clip(errs.argmin(), 1, len(ds) - 2))
    e0, e1, e2 = errs[i - 1:i + 2]
    return float(ds[i] + 0.5 * (e0 - e2) / (e0 - 2 * e1 + e2))


def test_disparity_measured_by_block_matching_agrees_with_the_map():
    # a textured plane slanted through the focus plane: blur from -9 px (top, near) to +9 px (bottom, far)
    rng = np.random.default_rng(1)
    h, w, pad = 160, 128, 16
    tex = texture(rng, h + 2 * pad, w + 2 * pad)
    rows = np.arange(h + 2 * pad, dtype=np.float32)[:, None] - pad
    coc = np.broadcast_to(-9.0 + 18.0 * rows / (h - 1), tex.shape[:2])
    out = render(Scene([layer(tex, coc)], pad=pad), CAM, ApertureProfile())
    left, right = out.left.mean(axis=2), out.right.mean(axis=2)
    for y0 in range(8, h - 24, 16):
        band = slice(y0, y0 + 16)
        measured = _block_match(left[band, 16:-16], right[band, 16:-16])
        expected = float(out.disparity[band].mean())
        assert measured == pytest.approx(expected, abs=0.1 * abs(expected) + 0.15), (y0, measured, expected)
        if abs(expected) > 0.5:  # the top of the plane is in front of the focus plane: x_L > x_R there
            in_front = out.coc[band].mean() < 0
            assert np.sign(measured) == np.sign(expected) == (1.0 if in_front else -1.0)
            assert in_front == (y0 < h / 2)


def test_center_is_the_mean_of_the_views_with_and_without_noise():
    rng = np.random.default_rng(2)
    tex = 0.25 + 0.0 * texture(rng, 64, 64)
    scene = Scene([layer(tex, 0.0)], pad=4)
    clean = render(scene, CAM)
    noise = SensorNoise(full_well_e=2000.0, read_noise_e=4.0)
    noisy = render(scene, CAM, noise=noise, rng=np.random.default_rng(3))
    for out in (clean, noisy):
        np.testing.assert_array_equal(out.center, (0.5 * (out.left + out.right)).astype(np.float32))
    # shot + read noise of one photodiode (half the pixel's electrons)
    per_diode = noise.full_well_e / 2
    expected_var = 0.25 / per_diode + (noise.read_noise_e / per_diode) ** 2
    assert np.var(noisy.left - clean.left) == pytest.approx(expected_var, rel=0.1)
    assert np.var(noisy.center - clean.center) == pytest.approx(expected_var / 2, rel=0.1)
    with pytest.raises(ValueError, match="rng"):
        render(scene, CAM, noise=noise)
    np.testing.assert_array_equal(noisy.target, clean.target)  # by default the target stays clean


def test_noise_on_target_gives_the_target_the_inputs_noise_field():
    rng = np.random.default_rng(4)
    tex = np.float32(0.02) + np.float32(0.3) * texture(rng, 64, 64)  # dark values: clipping at 0 matters
    noise = SensorNoise(full_well_e=800.0, read_noise_e=5.0, on_target=True)
    sharp = render(Scene([layer(tex, 0.0)], pad=4), CAM, noise=noise, rng=np.random.default_rng(5))
    np.testing.assert_allclose(sharp.target, sharp.center, atol=1e-6)  # in focus, the pair differs by nothing
    blurred = render(Scene([layer(tex, 5.0)], pad=8), CAM, noise=noise, rng=np.random.default_rng(5))
    clean = render(Scene([layer(tex, 5.0)], pad=8), CAM)
    field = blurred.center - clean.center  # the noise C got ...
    inside = (clean.center > 0.05) & (clean.target > 0.05)  # (away from clipping)
    np.testing.assert_allclose((blurred.target - clean.target)[inside], field[inside], atol=1e-5)  # ... the target too


def test_a_lens_soft_in_focus_spreads_a_point_into_a_gaussian_on_every_image_before_the_noise():
    pad, size, sigma = 12, 41, 0.8
    point = np.zeros((size + 2 * pad, size + 2 * pad, 3), np.float32)
    point[pad + size // 2, pad + size // 2] = 1.0
    scene = Scene([layer(point, 0.0)], pad=pad)
    out = render(scene, CAM, lens_sigma=sigma)
    yy, xx = np.mgrid[:size, :size] - size // 2
    for image in (out.left, out.right, out.center, out.target):  # in focus: every image is the lens's spot
        spot = image[..., 0].astype(np.float64)
        assert spot.sum() == pytest.approx(1.0, rel=1e-4)  # light is kept
        assert math.sqrt((spot * xx ** 2).sum() / spot.sum()) == pytest.approx(sigma, rel=0.03)
        assert math.sqrt((spot * yy ** 2).sum() / spot.sum()) == pytest.approx(sigma, rel=0.03)
    # the noise comes after the lens: as strong and as fine-grained (uncorrelated) as without softness
    flat = Scene([layer(np.full((64, 64, 3), 0.3, np.float32), 0.0)], pad=4)
    noise = SensorNoise(full_well_e=2000.0, read_noise_e=4.0)
    for s in (0.0, 1.0):
        grain = render(flat, CAM, noise=noise, rng=np.random.default_rng(7), lens_sigma=s).center - np.float32(0.3)
        neighbours = np.corrcoef(grain[:, :-1].ravel(), grain[:, 1:].ravel())[0, 1]
        assert abs(neighbours) < 0.05  # blurred noise would correlate at about 0.5
        assert np.var(grain) == pytest.approx((0.3 / 1000 + (4.0 / 1000) ** 2) / 2, rel=0.1)  # C: half a diode's


def test_blurring_conserves_light():
    rng = np.random.default_rng(4)
    h = w = 96
    fg = texture(rng, h, w)
    scene = Scene([layer(np.zeros((h, w, 3), np.float32), 0.0), layer(fg, 7.0, disc(h, w, 48, 48, 14.0))], pad=0)
    out = render(scene, CAM)
    for view in (out.left, out.right, out.center):
        assert view.sum() == pytest.approx(out.target.sum(), rel=1e-4)


def _two_layer_scene(rng, coc_back: float, coc_front: float, size: int = 64, pad: int = 12):
    n = size + 2 * pad
    back, front = texture(rng, n, n), texture(rng, n, n) * np.float32(0.5) + np.float32(0.5)
    alpha = disc(n, n, n / 2, n / 2, 16.0)
    return back, front, alpha, Scene([layer(back, coc_back), layer(front, coc_front, alpha)], pad=pad)


def test_sharp_foreground_over_blurred_background_has_no_halo():
    rng = np.random.default_rng(5)
    back, front, alpha, scene = _two_layer_scene(rng, coc_back=8.0, coc_front=0.0)
    p = scene.pad
    out = render(scene, CAM)
    back_only = render(Scene([layer(back, 8.0)], pad=p), CAM)
    a = alpha[p:-p, p:-p]
    outside, inside = a == 0, a == 1
    # beside the foreground: exactly the blurred background (its hidden part is known), no dark rim
    np.testing.assert_allclose(out.center[outside], back_only.center[outside], atol=1e-5)
    np.testing.assert_allclose(out.center[inside], front[p:-p, p:-p][inside], atol=1e-5)
    # a 2.5-D renderer that blurs the background with a hole under the foreground darkens the rim:
    # the check above would catch it
    holed = Scene([Layer(back, 1.0 - alpha, scene.layers[0].depth), scene.layers[1]], pad=p)
    naive = render(holed, CAM)
    rim = outside & (cv2.dilate((a > 0).astype(np.uint8), np.ones((7, 7), np.uint8)) > 0)
    assert (back_only.center[rim] - naive.center[rim]).mean() > 0.05


def test_blurred_foreground_spills_over_sharp_background():
    rng = np.random.default_rng(6)
    r_front = 6.0
    back, front, alpha, scene = _two_layer_scene(rng, coc_back=0.0, coc_front=-r_front)
    p = scene.pad
    out = render(scene, CAM, UNIFORM)
    a = alpha[p:-p, p:-p]
    dist = cv2.distanceTransform((a == 0).astype(np.uint8), cv2.DIST_L2, 5)  # px outside the disc's edge
    changed = np.abs(out.center - back[p:-p, p:-p]).max(axis=2)
    assert changed[(dist > 0) & (dist < r_front / 2)].min() > 1e-3  # the blurred foreground covers them
    np.testing.assert_allclose(changed[dist > r_front + 1.5], 0.0, atol=1e-5)  # beyond its blur: untouched
    # the spill is the foreground's alpha blurred by its own kernel (over-compositing), view by view
    for view, kernel in zip((out.left, out.right), dual_pixel_kernels(-r_front, UNIFORM)):
        cover = cv2.filter2D(alpha, -1, kernel[::-1, ::-1].copy(), borderType=cv2.BORDER_CONSTANT)[p:-p, p:-p]
        premult = cv2.filter2D(front * alpha[..., None], -1, kernel[::-1, ::-1].copy(),
                               borderType=cv2.BORDER_CONSTANT)[p:-p, p:-p]
        expected = back[p:-p, p:-p] * (1 - cover[..., None]) + premult
        np.testing.assert_allclose(view, expected, atol=1e-4)


def _reference_error(scene: Scene, profile: ApertureProfile = ApertureProfile(),
                     samples_per_px: float = 2.0) -> tuple[float, float]:
    fast = render(scene, CAM, profile)
    ref = render_reference(scene, CAM, profile, samples_per_px=samples_per_px)
    np.testing.assert_allclose(ref.center, 0.5 * (ref.left + ref.right), atol=1e-6)
    err = np.abs(np.concatenate([fast.left - ref.left, fast.right - ref.right]))
    return float(err.max()), float(err.mean())


@pytest.mark.parametrize("coc_back, coc_front", [(4.0, 0.0), (0.0, -4.0), (-3.0, 0.0), (0.0, 2.5)])
def test_matches_brute_force_ray_tracing_when_one_layer_is_sharp(coc_back, coc_front):
    # with one layer in focus, over-compositing of blurred layers is exact
    rng = np.random.default_rng(7)
    *_, scene = _two_layer_scene(rng, coc_back, coc_front, size=24, pad=6)
    max_err, _ = _reference_error(scene)
    assert max_err < 0.005  # measured 0.0005 to 0.0015 (aperture sampling of the reference)


def test_matches_brute_force_ray_tracing_on_a_layered_scene():
    # slanted background through the focus plane, two blurred shapes (one each side of focus):
    # the layered renderer's only approximation left is treating a blurred occluder's coverage as
    # independent of where the light crossed the aperture
    rng = np.random.default_rng(8)
    n, pad = 40, 6
    cols = np.arange(n, dtype=np.float32)[None, :]
    slanted = np.broadcast_to(-2.5 + 6.0 * cols / (n - 1), (n, n))
    scene = Scene([layer(texture(rng, n, n), slanted),
                   layer(texture(rng, n, n), 2.0, disc(n, n, 14, 15, 7.5)),
                   layer(texture(rng, n, n), -3.0, disc(n, n, 25, 24, 6.5))], pad=pad)
    max_err, mean_err = _reference_error(scene)
    assert mean_err < 0.006  # measured 0.0029
    assert max_err < 0.06  # measured 0.035, at the edges where both layers are blurred


def test_rendering_is_deterministic():
    rng = np.random.default_rng(9)
    *_, scene = _two_layer_scene(rng, 5.0, -3.0)
    a, b = render(scene, CAM), render(scene, CAM)
    for name in ("left", "right", "center", "target", "depth", "coc", "disparity"):
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name))


def test_layers_must_agree_in_shape():
    with pytest.raises(ValueError, match="disagree"):
        Layer(np.zeros((4, 5, 3), np.float32), np.ones((4, 4), np.float32), np.ones((4, 4), np.float32))


NEW_FAMILY_PROFILES = [
    ApertureProfile(edge=0.05, falloff=0.1, split=0.1, blades=6, rotation=0.4),  # hexagon, not axis-aligned
    ApertureProfile(edge=0.05, falloff=-0.6, split=0.1),  # bright rim
    ApertureProfile(edge=0.5, falloff=0.8, split=0.1),  # soft centre
    ApertureProfile(edge=0.3, falloff=0.2, split=0.1, gauss=0.9),  # near-Gaussian
    ApertureProfile(edge=0.05, falloff=0.1, split=0.1, cateye=0.7, cateye_angle=0.5),  # cat's eye, oblique
]


@pytest.mark.parametrize("profile", NEW_FAMILY_PROFILES)
@pytest.mark.parametrize("coc_back, coc_front", [(4.0, 0.0), (0.0, -3.5)])
def test_every_psf_family_matches_brute_force_ray_tracing(profile, coc_back, coc_front):
    # the FFT renderer (both spectra where R is not L mirrored) against rays through the aperture itself
    rng = np.random.default_rng(9)
    *_, scene = _two_layer_scene(rng, coc_back, coc_front, size=24, pad=8)
    max_err, _ = _reference_error(scene, profile, samples_per_px=4.0)
    assert max_err < 0.003  # measured up to 0.0008 (the reference's aperture sampling; 5e-5 at 8 per px)
