"""Scenes: photographs, the real RGB-D pair, camera sampling, procedural layers, determinism."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

pytest.importorskip("skimage")

from ifan.synth.optics import ThinLensCamera  # noqa: E402
from ifan.synth.psf import ApertureProfile  # noqa: E402
from ifan.synth.rendering import render  # noqa: E402
from ifan.synth.assets import PHOTOS, load_photo, load_stereo_motorcycle  # noqa: E402
from ifan.synth.sampling import KINDS, SynthConfig, sample_camera, sample_spec  # noqa: E402
from ifan.synth.rgbd import rgbd_layers  # noqa: E402
from ifan.synth.scenes import build_scene  # noqa: E402

# The Middlebury 2014 "Motorcycle" calibration as published (calib.txt: cam0 focal length 3979.911 px,
# doffs 124.343 px, baseline 193.001 mm), at scikit-image's resolution (downsampled by 4).
MIDDLEBURY_FOCAL_PX, MIDDLEBURY_DOFFS_PX, MIDDLEBURY_BASELINE_M = 3979.911 / 4, 124.343 / 4, 0.193001


def test_every_photo_loads_offline_as_linear_rgb_with_a_licence():
    for name, info in PHOTOS.items():
        image = load_photo(name)
        assert image.ndim == 3 and image.shape[2] == 3 and image.dtype == np.float32
        assert 0.0 <= image.min() and image.max() <= 1.0 and image.std() > 0.02
        assert info.licence and info.source
        assert info.grey == bool(np.all(image[..., 0] == image[..., 1]) and np.all(image[..., 1] == image[..., 2]))
    with pytest.raises(ValueError, match="unknown photo"):
        load_photo("lena")


def test_motorcycle_depth_comes_from_its_ground_truth_disparity():
    import skimage.data

    _, _, disp = skimage.data.stereo_motorcycle()
    disp = np.asarray(disp, np.float64)
    rgb, depth = load_stereo_motorcycle()
    assert rgb.shape[:2] == depth.shape == disp.shape[:2]
    assert np.all(np.isfinite(depth)) and depth.min() > 0
    valid = np.isfinite(disp)
    expected = MIDDLEBURY_FOCAL_PX * MIDDLEBURY_BASELINE_M / (disp[valid] + MIDDLEBURY_DOFFS_PX)
    np.testing.assert_allclose(depth[valid], expected, rtol=1e-4)
    assert 1.5 < depth.min() < depth.max() < 8.0  # a garage scene, metres
    # holes (occlusions) take the farther side, not the nearer one
    rows, cols = np.nonzero(~valid)
    assert np.median(depth[rows, cols]) >= np.median(depth[valid])


@pytest.mark.parametrize("focus", [0.0, 0.3, 1.0])
@pytest.mark.parametrize("target", [0.5, 6.0, 20.0])
def test_sampled_camera_reaches_the_requested_blur(focus, target):
    rng = np.random.default_rng(0)
    inv_far, inv_near = 1 / 12.0, 1 / 0.8
    cam = sample_camera(rng, 512, inv_far, inv_near, focus, target)
    assert isinstance(cam, ThinLensCamera) and 1.0 <= cam.f_number <= 32.0 and 14.0 <= cam.focal_length_mm <= 400.0
    coc = cam.coc_radius_px(np.array([1 / inv_far, 1 / inv_near]))
    assert np.abs(coc).max() == pytest.approx(target, rel=1e-3)
    assert cam.focus_distance_m == pytest.approx(1 / (inv_far + focus * (inv_near - inv_far)), rel=1e-6)


def test_specs_cover_blur_radii_from_zero_to_the_maximum_and_every_kind():
    config = SynthConfig(width=128, height=96, max_blur=20.0)
    specs = [sample_spec(np.random.default_rng([1, i]), config) for i in range(300)]
    largest = np.array([s.max_abs_coc for s in specs])
    assert largest.max() <= 20.0 * 1.001 and largest.min() < 1.0 and np.quantile(largest, 0.9) > 15.0
    assert {s.kind for s in specs} == {k for k, _ in config.kinds}
    assert any(s.focus == 0.0 for s in specs) and any(s.focus == 1.0 for s in specs)
    assert all(s.pad >= int(np.ceil(s.max_abs_coc)) for s in specs)


@pytest.mark.parametrize("kind", KINDS)
def test_scenes_are_deterministic_and_render_to_consistent_maps(kind):
    config = SynthConfig(width=96, height=64, max_blur=8.0, kinds=((kind, 1.0),))
    spec = sample_spec(np.random.default_rng(5), config)
    assert spec == sample_spec(np.random.default_rng(5), config)
    a, b = build_scene(spec), build_scene(spec)
    assert len(a.layers) == len(b.layers) >= 1 and a.image_shape == (64, 96)
    for la, lb in zip(a.layers, b.layers):
        np.testing.assert_array_equal(la.rgb, lb.rgb)
        np.testing.assert_array_equal(la.alpha, lb.alpha)
    out = render(a, spec.camera, spec.profile)
    assert out.center.shape == out.target.shape == (64, 96, 3)
    assert out.depth.shape == out.coc.shape == out.disparity.shape == (64, 96)
    # maps agree with the optics: blur from depth, > 0 exactly where the point lies behind the focus plane
    np.testing.assert_allclose(out.coc, spec.camera.coc_radius_px(out.depth), atol=1e-5)
    behind = out.depth > spec.camera.focus_distance_m * 1.0001
    # behind the focus plane the left view lands left: x_L - x_R < 0 (and > 0 in front)
    assert np.all(out.coc[behind] > 0) and np.all(np.sign(out.disparity) == -np.sign(out.coc))
    assert np.abs(out.coc).max() <= spec.max_abs_coc * 1.05 + 0.05


@pytest.mark.parametrize("kind", ["layers", "planes"])
def test_procedural_layers_are_ordered_far_to_near_without_piercing(kind):
    config = SynthConfig(width=96, height=96, kinds=((kind, 1.0),))
    for i in range(8):
        scene = build_scene(sample_spec(np.random.default_rng([2, i]), config))
        spans = [(float(layer.depth[layer.alpha > 0].min()), float(layer.depth[layer.alpha > 0].max()))
                 for layer in scene.layers]
        for (far_min, _), (_, near_max) in zip(spans, spans[1:]):
            assert near_max <= far_min  # each layer lies in front of the one before it (or on its plane)
        assert scene.layers[0].alpha.min() == 1.0  # an opaque background


def test_rgbd_slabs_fill_the_hidden_background_so_a_sharp_foreground_has_no_halo():
    cam = ThinLensCamera(50.0, 2.0, 1.0, 20.0)  # focus at 1 m
    n, pad = 96, 16
    rgb = np.empty((n, n, 3), np.float32)
    rgb[:] = (0.6, 0.3, 0.1)  # background colour
    depth = np.full((n, n), float(cam.depth_from_coc(10.0)), np.float32)
    fg = np.zeros((n, n), bool)
    fg[30:66, 30:66] = True
    rgb[fg] = (0.05, 0.05, 0.4)
    depth[fg] = 1.0  # in focus
    layers = rgbd_layers(rgb, depth, cam, ApertureProfile())
    assert len(layers) == 2
    far, near = layers
    assert np.all(far.alpha[fg][:5] == 1.0)  # the background continues behind the foreground's edge
    np.testing.assert_allclose(far.rgb[33, 33], (0.6, 0.3, 0.1), atol=1e-5)
    from ifan.synth.rendering import Scene

    out = render(Scene(layers, pad=pad), cam)
    ring = np.zeros((n - 2 * pad, n - 2 * pad), bool)
    ring[10:54, 10:54] = True
    ring[14:50, 14:50] = False  # the 4-px ring around the sharp foreground square
    np.testing.assert_allclose(out.center[ring], np.broadcast_to((0.6, 0.3, 0.1), out.center[ring].shape), atol=2e-3)


def test_invalid_configs_are_refused():
    with pytest.raises(ValueError):
        SynthConfig(width=4)
    with pytest.raises(ValueError):
        SynthConfig(kinds=(("mountains", 1.0),))


# ---- ifan 0.2: the documented mixture, portraits, night scenes, rich content, gamma-space blur ---------

from ifan.synth.assets import CONTENTS, dead_leaves, text_texture, texture  # noqa: E402
from ifan.synth.color import linear_to_srgb_extended  # noqa: E402


def test_a_config_without_the_new_options_draws_exactly_as_ifan_0_1():
    # the new options draw random numbers only when switched on: same specs, same scenes
    config = SynthConfig(width=96, height=64, max_blur=8.0)
    spec = sample_spec(np.random.default_rng(21), config)
    assert spec.content == "classic" and spec.blur_space == "linear" and spec.pipeline is None
    assert spec.profile.blades == 0 and spec.profile.cateye == 0 and spec.profile.gauss == 0
    assert spec.out_size is None


def test_the_mixture_draws_every_family_kind_and_option_in_its_documented_proportions():
    config = SynthConfig.mixture(width=128, height=96)
    specs = [sample_spec(np.random.default_rng([4, i]), config) for i in range(1500)]
    kinds = {k: np.mean([s.kind == k for s in specs]) for k, _ in config.kinds}
    for k, w in config.kinds:
        assert kinds[k] == pytest.approx(w, abs=0.04)
    fam = {"polygon": np.mean([s.profile.blades > 0 for s in specs]),
           "gaussian": np.mean([s.profile.gauss > 0 for s in specs])}
    assert fam["polygon"] == pytest.approx(0.2, abs=0.03) and fam["gaussian"] == pytest.approx(0.2, abs=0.03)
    assert np.mean([s.profile.cateye > 0 for s in specs]) == pytest.approx(0.25 * 0.8, abs=0.03)
    assert np.mean([s.blur_space == "gamma" for s in specs]) == pytest.approx(0.35, abs=0.04)
    assert np.mean([s.pipeline is not None for s in specs]) == pytest.approx(0.8, abs=0.03)
    assert np.mean([s.max_abs_coc < 0.6 * (s.out_size[0] / 128 if s.out_size else 1) + 1e-6 for s in specs]) > 0.05
    rendered_larger = [s for s in specs if s.out_size is not None]
    assert rendered_larger and all(s.out_size == (128, 96) and s.width > 128 for s in rendered_larger)


@pytest.mark.parametrize("kind", ["portrait", "night"])
def test_subject_scenes_put_a_sharp_subject_before_a_blurred_background(kind):
    import cv2

    config = SynthConfig(width=128, height=128, max_blur=12.0, kinds=((kind, 1.0),), content="rich")
    found = 0
    for i in range(40):
        spec = sample_spec(np.random.default_rng([6, i]), config)
        if spec.focus < 0.6 or spec.max_abs_coc < 6:
            continue
        scene = build_scene(spec)
        in_focus = [k for k, layer in enumerate(scene.layers)
                    if k > 0 and abs(1 / float(layer.depth.max()) - spec.inv_depth(spec.focus)) < 1e-6]
        if not in_focus or in_focus[-1] != len(scene.layers) - 1:  # nothing (blurred) in front of the subject
            continue
        k = in_focus[-1]
        p = scene.pad
        solid = scene.layers[k].alpha == 1.0
        inside = cv2.erode(solid.astype(np.uint8), np.ones((7, 7), np.uint8)).astype(bool)[p:-p, p:-p]
        if inside.sum() < 50:
            continue
        out = render(scene, spec.camera, spec.profile)
        np.testing.assert_allclose(out.center[inside], out.target[inside], atol=1e-4)  # the subject is in focus
        assert np.abs(out.coc).max() > 5  # and something else is not
        found += 1
    assert found >= 3


def test_night_scenes_hold_point_lights_far_above_white():
    config = SynthConfig(width=128, height=128, kinds=(("night", 1.0),))
    peaks = [max(float(layer.rgb.max()) for layer in build_scene(sample_spec(np.random.default_rng([8, i]),
                                                                             config)).layers) for i in range(6)]
    assert min(peaks) > 1.5  # they saturate into bokeh discs once blurred


def test_rich_textures_include_dead_leaves_and_text():
    rng = np.random.default_rng(0)
    leaves = dead_leaves(rng, 128, 128)
    assert leaves.shape == (128, 128, 3) and leaves.dtype == np.float32 and 0 <= leaves.min() <= leaves.max() <= 1
    # scale invariance: the power spectrum falls off roughly as 1/f^2
    grey = leaves.mean(axis=2) - leaves.mean()
    power = np.abs(np.fft.fft2(grey)) ** 2
    f = np.hypot(*np.meshgrid(np.fft.fftfreq(128), np.fft.fftfreq(128)))
    band = [power[(f > lo) & (f < 2 * lo)].mean() for lo in (0.02, 0.04, 0.08, 0.16)]
    slopes = np.diff(np.log2(band))
    assert -3.2 < slopes.mean() < -1.2
    text = text_texture(rng, 96, 160)
    assert len(np.unique(np.round(text.mean(axis=2), 3))) > 10  # anti-aliased strokes, not two flat colours
    identity = lambda src, h, w: src[:h, :w]  # noqa: E731
    for content in CONTENTS:
        assert texture(rng, 64, 64, identity, content).shape == (64, 64, 3)
    with pytest.raises(ValueError, match="unknown content"):
        texture(rng, 8, 8, identity, "fancy")


def test_gamma_space_scenes_hold_encoded_colours():
    config = SynthConfig(width=96, height=64, gamma_blur_p=1.0)
    spec = sample_spec(np.random.default_rng(3), config)
    assert spec.blur_space == "gamma"
    linear = build_scene(replace(spec, blur_space="linear"))
    encoded = build_scene(spec)
    for a, b in zip(linear.layers, encoded.layers):
        np.testing.assert_allclose(b.rgb, linear_to_srgb_extended(a.rgb), atol=1e-6)
    assert linear_to_srgb_extended(np.float32(4.0)) > 1.0  # highlights stay above white
