"""Scenes: photographs, the real RGB-D pair, camera sampling, procedural layers, determinism."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("skimage")

from ifan.synth.optics import ThinLensCamera  # noqa: E402
from ifan.synth.psf import LEFT_LANDS_LEFT_BEHIND_FOCUS, ApertureProfile  # noqa: E402
from ifan.synth.rendering import render  # noqa: E402
from ifan.synth.scenes import (KINDS, PHOTOS, SynthConfig, build_scene, load_photo,  # noqa: E402
                               load_stereo_motorcycle, rgbd_layers, sample_camera, sample_spec)

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
    assert {s.kind for s in specs} == set(KINDS)
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
    sign = -1.0 if LEFT_LANDS_LEFT_BEHIND_FOCUS else 1.0
    assert np.all(out.coc[behind] > 0) and np.all(np.sign(out.disparity) == sign * np.sign(out.coc))
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
