"""The camera pipeline after the sensor: tone curve, sharpening, resizing, JPEG; datasets made with it."""

from __future__ import annotations

import math

import numpy as np
import pytest

pytest.importorskip("skimage")

from ifan.data.datasets import open_dataset  # noqa: E402
from ifan.synth.camera import CameraPipeline, develop, jpeg_roundtrip, sample_pipeline, tone_curve, unsharp_mask  # noqa: E402
from ifan.synth.color import linear_to_srgb  # noqa: E402
from ifan.synth.rendering import DualPixelImages  # noqa: E402
from ifan.synth.sampling import SynthConfig  # noqa: E402
from ifan.synth.writer import render_spec, sample_spec_for, write_dataset  # noqa: E402


def _images(h=40, w=60, seed=0) -> DualPixelImages:
    rng = np.random.default_rng(seed)
    views = [rng.random((h, w, 3), dtype=np.float32) for _ in range(3)]
    coc = rng.uniform(-8, 8, (h, w)).astype(np.float32)
    return DualPixelImages(left=views[0], right=views[1], center=0.5 * (views[0] + views[1]), target=views[2],
                           depth=np.ones((h, w), np.float32), coc=coc, disparity=-0.8 * coc)


def test_tone_curve_fixes_black_mid_grey_and_white_and_is_monotonic():
    x = np.linspace(0, 1, 1001, dtype=np.float32)
    for tone in (-0.9, -0.25, 0.3, 0.9):
        y = tone_curve(x, tone)
        np.testing.assert_allclose(y[[0, 500, 1000]], [0.0, 0.5, 1.0], atol=1e-6)
        assert np.all(np.diff(y) > 0)
    assert tone_curve(np.float32(0.25), 0.4) < 0.25 < tone_curve(np.float32(0.25), -0.4)  # more / less contrast


def test_unsharp_mask_keeps_flat_areas_and_steepens_edges():
    x = np.zeros((20, 20, 3), np.float32)
    x[:, 10:] = 0.6
    y = unsharp_mask(x, 1.0, 0.8)
    np.testing.assert_allclose(y[:, :5], 0.0, atol=1e-6)
    np.testing.assert_allclose(y[:, 15:], 0.6, atol=1e-4)
    assert np.all(y[0, 10] > 0.6) and np.all(y[0, 9] == 0.0)  # overshoot on the bright side, clipped at 0 on the dark side


def test_jpeg_roundtrip_is_lossy_and_better_at_higher_quality():
    rng = np.random.default_rng(1)
    import cv2

    grey = np.clip(cv2.GaussianBlur(rng.normal(0.5, 0.3, (64, 64)), (0, 0), 1.5), 0, 1)
    x = (grey[..., None] * np.array([1.0, 0.7, 0.4])).astype(np.float32)  # luminance detail, smooth colour
    err = {q: float(np.abs(jpeg_roundtrip(x, q) - x).mean()) for q in (60, 95)}
    assert err[95] < err[60] and 0 < err[95] < 0.01
    flat = np.broadcast_to(np.array([0.8, 0.2, 0.1], np.float32), (16, 16, 3))
    np.testing.assert_allclose(jpeg_roundtrip(flat, 90), flat, atol=3 / 255)  # channels stay in RGB order


def test_develop_treats_every_view_alike_and_jpegs_only_the_centre():
    images = _images()
    plain = develop(images, CameraPipeline())
    assert plain.encoding == "srgb"
    np.testing.assert_allclose(plain.target, linear_to_srgb(images.target), atol=1e-6)
    cam = CameraPipeline(tone=0.3, sharpen_sigma=1.0, sharpen_amount=0.5, jpeg_quality=80)
    out = develop(images, cam)
    no_jpeg = develop(images, CameraPipeline(tone=0.3, sharpen_sigma=1.0, sharpen_amount=0.5))
    for view in ("left", "right", "target"):  # identical processing but for JPEG
        np.testing.assert_array_equal(getattr(out, view), getattr(no_jpeg, view))
    assert np.abs(out.center - no_jpeg.center).max() > 1e-3
    # blurring on encoded values: the render is not encoded again
    gamma = develop(images, CameraPipeline(), blur_space="gamma")
    np.testing.assert_allclose(gamma.target, images.target, atol=1e-6)
    with pytest.raises(ValueError, match="blur_space"):
        develop(images, CameraPipeline(), blur_space="log")


def test_develop_resizes_images_and_maps_and_scales_blur_to_output_pixels():
    images = _images(h=60, w=90)
    out = develop(images, CameraPipeline(render_scale=1.5, resample="cubic"), out_size=(60, 40))
    assert out.center.shape == out.target.shape == (40, 60, 3) and out.coc.shape == (40, 60)
    assert np.abs(out.coc).max() <= np.abs(images.coc).max() / 1.5 + 1e-5
    ratio = out.disparity / np.where(np.abs(out.coc) > 1e-3, out.coc, np.nan)
    np.testing.assert_allclose(np.nanmedian(ratio), -0.8, rtol=1e-4)  # the maps stay consistent


def test_sampled_pipelines_are_valid_and_vary():
    pipes = [sample_pipeline(np.random.default_rng(i)) for i in range(300)]
    assert 0.5 < np.mean([p.jpeg_quality > 0 for p in pipes]) < 0.7
    assert all(p.jpeg_quality == 0 or 60 <= p.jpeg_quality <= 98 for p in pipes)
    assert 0.25 < np.mean([p.render_scale > 1 for p in pipes]) < 0.45
    with pytest.raises(ValueError):
        CameraPipeline(render_scale=0.5)
    with pytest.raises(ValueError):
        CameraPipeline(tone=1.0)


def test_a_mixture_dataset_writes_developed_images_at_the_output_size(tmp_path):
    config = SynthConfig.mixture(width=64, height=48, max_blur=8.0)
    write_dataset(tmp_path, {"train": 6}, config, seed=5, progress=False)
    data = open_dataset("dpdd", tmp_path, "train")
    assert len(data) == 6 and all(item["c"].shape == (3, 48, 64) for item in data)
    for i in range(6):
        spec = sample_spec_for(5, "train", i, config)
        rendered = render_spec(spec)
        assert rendered.center.shape == (48, 64, 3)
        expected_encoding = "linear" if spec.pipeline is None and spec.blur_space == "linear" else "srgb"
        assert rendered.encoding == expected_encoding
        if expected_encoding == "srgb":  # written as developed, to 8-bit rounding
            stored = data[i]["gt"].numpy().transpose(1, 2, 0)
            assert np.abs(stored - rendered.target).max() <= 0.5 / 255 + 1e-6
    assert math.isfinite(float(np.load(tmp_path / "train_meta" / "000000.npz")["coc"].max()))


def test_a_soft_lens_changes_no_other_draw_of_a_sample():
    """``soft_lens_p`` draws last: a dataset with it has the same scenes as one without (a controlled
    comparison), with a fraction ``soft_lens_p`` of them softened by 0.3 to 1 output px."""
    from dataclasses import replace

    base = SynthConfig.mixture(width=64, height=48, max_blur=8.0)
    soft = replace(base, soft_lens_p=0.5)
    specs = [(sample_spec_for(3, "train", i, base), sample_spec_for(3, "train", i, soft)) for i in range(200)]
    assert all(replace(b, lens_sigma=0.0) == a for a, b in specs)
    sigmas = np.array([b.lens_sigma / (b.pipeline.render_scale if b.pipeline else 1.0) for _, b in specs])
    assert 0.4 < np.mean(sigmas > 0) < 0.6 and np.all((sigmas == 0) | ((sigmas >= 0.3) & (sigmas <= 1.0)))
    a, b = next((a, b) for a, b in specs if b.lens_sigma > 0)
    sharp, softened = render_spec(a), render_spec(b)
    edges = [float(np.abs(np.diff(x.target, axis=1)).mean()) for x in (sharp, softened)]
    assert edges[1] < 0.9 * edges[0]  # the target is softer too: softness in focus is not defocus
    np.testing.assert_array_equal(sharp.coc, softened.coc)
    with pytest.raises(ValueError, match="soft_lens_p"):
        SynthConfig(soft_lens_p=1.5)
