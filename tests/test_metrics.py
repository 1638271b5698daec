"""Metrics and protocols against scikit-image and float64 numpy references."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from ifan.evaluate import metrics as M
from ifan.evaluate.metrics import FULL, OFFICIAL, Protocol, mae, psnr, score_image, ssim, to_nchw
from ifan.evaluate.summary import format_score, json_score, summarize

skm = pytest.importorskip("skimage.metrics")


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


def _noisy_pair(shape, seed=0, sigma=0.1):
    rng = _rng(seed)
    a = rng.random(shape)
    b = np.clip(a + sigma * rng.standard_normal(shape), 0, 1)
    return a, b


def _structured_pair(shape, seed=0):
    """Smooth gradients, a checkerboard and a disc: large flat areas and sharp edges."""
    h, w = shape[:2]
    y, x = np.mgrid[0:h, 0:w].astype(np.float64)
    base = 0.3 * x / max(w - 1, 1) + 0.2 * y / max(h - 1, 1)
    base += 0.3 * (((x // 3) + (y // 3)) % 2)
    base += 0.2 * ((x - w / 2) ** 2 + (y - h / 2) ** 2 < (min(h, w) / 3) ** 2)
    if len(shape) == 3:
        base = np.stack([base * (0.6 + 0.2 * c) for c in range(shape[2])], axis=-1)
    rng = _rng(seed)
    other = np.clip(base * 0.9 + 0.05 + 0.02 * rng.standard_normal(base.shape), 0, 1)
    return base, other


def _sk_ssim(a, b):
    return skm.structural_similarity(a, b, data_range=1, channel_axis=-1 if a.ndim == 3 else None)


def _ours_ssim(a, b):
    return float(ssim(to_nchw(a), to_nchw(b))[0])


SIZES = [(7, 7), (7, 12), (8, 8), (13, 29), (64, 96), (127, 65)]


# ------------------------------------------------------------------------------------------- SSIM
@pytest.mark.parametrize("size", SIZES)
@pytest.mark.parametrize("color", [True, False], ids=["rgb", "gray"])
@pytest.mark.parametrize("kind", ["random", "structured"])
def test_ssim_matches_skimage(size, color, kind):
    shape = (*size, 3) if color else size
    a, b = _noisy_pair(shape, seed=sum(size)) if kind == "random" else _structured_pair(shape, seed=sum(size))
    ref = _sk_ssim(a, b)
    assert abs(_ours_ssim(a, b) - ref) < 1e-9
    assert abs(_ours_ssim(b, a) - ref) < 1e-9  # SSIM is symmetric


def test_ssim_matches_skimage_on_a_photo():
    data = pytest.importorskip("skimage.data")
    img = data.astronaut()[100:260, 150:330].astype(np.float64) / 255
    out = np.clip(img + 0.03 * _rng(1).standard_normal(img.shape), 0, 1)
    assert abs(_ours_ssim(out, img) - _sk_ssim(out, img)) < 1e-9


def test_ssim_float32_inputs_close_to_skimage_float32():
    """The official eval passed float32 arrays, which scikit-image (>= 0.19) scores in float32; we
    compute in float64. The difference is float32 rounding."""
    a, b = _noisy_pair((96, 128, 3), seed=3)
    a32, b32 = a.astype(np.float32), b.astype(np.float32)
    ref32 = _sk_ssim(a32, b32)
    assert abs(_ours_ssim(a32, b32) - ref32) < 1e-5
    assert abs(_ours_ssim(a32, b32) - _sk_ssim(a32.astype(np.float64), b32.astype(np.float64))) < 1e-12


def test_ssim_batch_is_per_image():
    pairs = [_noisy_pair((20, 24, 3), seed=s, sigma=0.05 * (s + 1)) for s in range(3)]
    x = torch.cat([to_nchw(a) for a, _ in pairs])
    y = torch.cat([to_nchw(b) for _, b in pairs])
    got = ssim(x, y)
    assert got.shape == (3,) and got.dtype == torch.float64
    for i, (a, b) in enumerate(pairs):
        assert abs(float(got[i]) - _sk_ssim(a, b)) < 1e-9
    assert got[0] > got[1] > got[2]  # more noise, lower SSIM


@pytest.mark.parametrize("value", [0.0, 0.5, 1.0])
def test_ssim_identical_and_constant_images(value):
    const = np.full((16, 16, 3), value)
    assert _ours_ssim(const, const) == pytest.approx(1.0, abs=1e-12)
    a, _ = _noisy_pair((16, 16, 3))
    assert _ours_ssim(a, a) == pytest.approx(1.0, abs=1e-12)
    other = np.full((16, 16, 3), 1.0 - value if value != 0.5 else 0.25)
    got = _ours_ssim(const, other)
    assert math.isfinite(got)
    assert abs(got - _sk_ssim(const, other)) < 1e-9


def test_ssim_rejects_small_or_mismatched_images():
    with pytest.raises(ValueError, match="smaller than the 7x7 window"):
        ssim(torch.rand(1, 3, 6, 10), torch.rand(1, 3, 6, 10))
    with pytest.raises(ValueError, match="shapes differ"):
        ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 9))
    with pytest.raises(ValueError, match="win_size"):
        ssim(torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8), win_size=4)
    with pytest.raises(ValueError, match=r"\(B, C, H, W\)"):
        ssim(torch.rand(3, 8, 8), torch.rand(3, 8, 8))


# ------------------------------------------------------------------------------------- PSNR, MAE
@pytest.mark.parametrize("shape", [(1, 3, 7, 7), (2, 3, 33, 20), (3, 1, 16, 16)])
def test_psnr_mae_match_float64_numpy(shape):
    rng = _rng(5)
    x = rng.random(shape)
    y = np.clip(x + 0.07 * rng.standard_normal(shape), 0, 1)
    got_psnr = psnr(torch.from_numpy(x), torch.from_numpy(y)).numpy()
    got_mae = mae(torch.from_numpy(x), torch.from_numpy(y)).numpy()
    for i in range(shape[0]):
        ref_mse = np.mean((x[i] - y[i]) ** 2)
        assert got_psnr[i] == pytest.approx(10 * np.log10(1.0 / ref_mse), abs=1e-10)
        # MAE as the authors computed it: per channel, then averaged over channels
        ref_mae = np.mean([np.mean(np.abs(x[i, c] - y[i, c])) for c in range(shape[1])])
        assert got_mae[i] == pytest.approx(ref_mae, abs=1e-12)
        hwc = (x[i].transpose(1, 2, 0), y[i].transpose(1, 2, 0))
        assert got_psnr[i] == pytest.approx(skm.peak_signal_noise_ratio(hwc[1], hwc[0], data_range=1), abs=1e-10)


def test_psnr_data_range_and_float32_input():
    x = torch.zeros(1, 3, 8, 8)
    y = torch.full((1, 3, 8, 8), 0.1)  # float32: computed in float64 from the float32 value
    ref = -20 * np.log10(float(np.float32(0.1)))
    assert float(psnr(x, y)) == pytest.approx(ref, abs=1e-10)
    y64 = torch.full((1, 3, 8, 8), 0.1, dtype=torch.float64)
    assert float(psnr(x.double(), y64)) == pytest.approx(20.0, abs=1e-10)
    assert float(psnr(x.double() * 255, y64 * 255, data_range=255)) == pytest.approx(20.0, abs=1e-10)
    assert psnr(x, y).dtype == torch.float64
    with pytest.raises(ValueError, match="data_range"):
        psnr(x, y, data_range=0)


def test_identical_images_give_inf_psnr_never_nan():
    x = torch.rand(2, 3, 9, 9)
    y = x.clone()
    y[1] += 0.01
    got = psnr(x, y)
    assert math.isinf(float(got[0])) and float(got[0]) > 0
    assert math.isfinite(float(got[1]))
    zeros = torch.zeros(1, 3, 8, 8)
    assert float(psnr(zeros, zeros)) == math.inf
    assert float(mae(zeros, zeros)) == 0.0


# ------------------------------------------------------------------------------------- protocols
def test_protocol_definitions():
    assert OFFICIAL.crop_multiple == 8 and OFFICIAL.clip and not OFFICIAL.quantize
    assert FULL.crop_multiple is None and FULL.clip and not FULL.quantize
    assert M.get_protocol("official") is OFFICIAL and M.get_protocol(FULL) is FULL
    with pytest.raises(ValueError, match="unknown protocol"):
        M.get_protocol("paper")
    with pytest.raises(ValueError, match="unknown protocol"):
        Protocol("custom")
    with pytest.raises(ValueError, match="crop_multiple"):
        Protocol("full", crop_multiple=0)


def _reference_scores(out, gt):
    """float64 numpy + scikit-image reference for one HWC pair (already cropped and clipped)."""
    return {
        "psnr": 10 * np.log10(1.0 / np.mean((out - gt) ** 2)),
        "ssim": _sk_ssim(out, gt),
        "mae": np.mean([np.mean(np.abs(out[..., c] - gt[..., c])) for c in range(out.shape[2])]),
    }


def test_score_image_official_protocol_crops_and_clips():
    rng = _rng(7)
    gt = rng.random((70, 45, 3))
    out = gt + 0.2 * rng.standard_normal(gt.shape)  # goes outside [0, 1]: must be clipped
    got = score_image(out.astype(np.float32), gt.astype(np.float32), "official")
    ref = _reference_scores(np.clip(out.astype(np.float32), 0, 1)[:64, :40].astype(np.float64),
                            gt.astype(np.float32)[:64, :40].astype(np.float64))
    for k in ("psnr", "ssim", "mae"):
        assert got[k] == pytest.approx(ref[k], abs=1e-9), k
    assert got["lpips"] is None
    # an output that is already cropped (as the official code returns it) scores the same
    got_cropped = score_image(out.astype(np.float32)[:64, :40], gt.astype(np.float32), "official")
    assert got_cropped == got
    # the full protocol uses every pixel
    full = score_image(out, gt, "full")
    ref_full = _reference_scores(np.clip(out, 0, 1), gt)
    for k in ("psnr", "ssim", "mae"):
        assert full[k] == pytest.approx(ref_full[k], abs=1e-9), k
    assert full["psnr"] != pytest.approx(got["psnr"], abs=1e-6)


def test_score_image_unclipped_and_quantized_protocols():
    rng = _rng(8)
    gt = rng.random((32, 32, 3))
    out = gt + 0.3 * rng.standard_normal(gt.shape)
    raw = score_image(out, gt, Protocol("full", clip=False))
    assert raw["psnr"] == pytest.approx(10 * np.log10(1 / np.mean((out - gt) ** 2)), abs=1e-9)
    q = score_image(out, gt, Protocol("full", quantize=True))
    out_q = np.round(np.clip(out, 0, 1) * 255) / 255
    assert q["mae"] == pytest.approx(np.mean(np.abs(out_q - gt)), abs=1e-12)
    assert q["mae"] != pytest.approx(score_image(out, gt, "full")["mae"], abs=1e-9)


def test_score_image_inputs_numpy_torch_gray():
    rng = _rng(9)
    gt = rng.random((24, 40, 3)).astype(np.float32)
    out = np.clip(gt + 0.05 * rng.standard_normal(gt.shape), 0, 1).astype(np.float32)
    from_numpy = score_image(out, gt)
    from_torch = score_image(torch.from_numpy(out), torch.from_numpy(gt))
    assert from_numpy == from_torch
    gray = score_image(out[..., 0], gt[..., 0], "full")
    assert gray["ssim"] == pytest.approx(_sk_ssim(out[..., 0].astype(np.float64), gt[..., 0].astype(np.float64)),
                                         abs=1e-9)
    same = score_image(gt, gt)
    assert same == {"psnr": math.inf, "ssim": pytest.approx(1.0, abs=1e-12), "mae": 0.0, "lpips": None}


def test_score_image_errors():
    gt = np.zeros((16, 16, 3))
    with pytest.raises(ValueError, match="output is"):
        score_image(np.zeros((16, 12, 3)), gt)
    with pytest.raises(ValueError, match="channel counts"):
        score_image(np.zeros((16, 16, 1)), gt)
    bad = gt.copy()
    bad[3, 3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        score_image(bad, gt)
    with pytest.raises(ValueError, match=r"\(H, W\)"):
        score_image(np.zeros((1, 16, 16, 3)), np.zeros((1, 16, 16, 3)))
    with pytest.raises(ValueError, match="smaller than"):
        score_image(np.zeros((6, 12, 3)), np.zeros((6, 12, 3)), "full")
    with pytest.raises(ValueError, match="smaller than"):
        score_image(np.zeros((7, 20, 3)), np.zeros((7, 20, 3)), "official")  # cropped to 0 x 16
    assert score_image(np.zeros((15, 15, 3)), np.zeros((15, 15, 3)), "official")["ssim"] == 1.0  # 8 x 8

    with pytest.raises(TypeError):
        score_image([[0.0]], gt)


def test_crop_hw():
    x = np.zeros((70, 45, 3))
    assert M.crop_hw(x, 8).shape == (64, 40, 3)
    assert M.crop_hw(x, None) is x
    t = torch.zeros(2, 3, 70, 45)
    assert M.crop_hw(t, 8, "CHW").shape == (2, 3, 64, 40)
    with pytest.raises(ValueError, match="layout"):
        M.crop_hw(t, 8, "NHWC")


# ------------------------------------------------------------------------------ summary, formatting
def test_summarize_copes_with_inf_and_missing():
    rows = [
        {"psnr": math.inf, "ssim": 1.0, "mae": 0.0, "lpips": None},
        {"psnr": 30.0, "ssim": 0.9, "mae": 0.02, "lpips": None},
    ]
    s = summarize(rows)
    assert s["psnr"] == {"mean": math.inf, "count": 2, "infinite": 1}
    assert s["ssim"]["mean"] == pytest.approx(0.95) and s["ssim"]["infinite"] == 0
    assert s["lpips"] == {"mean": None, "count": 0, "infinite": 0}
    finite = summarize(rows[1:])
    assert finite["psnr"]["mean"] == 30.0
    with pytest.raises(ValueError, match="NaN"):
        summarize([{"psnr": math.nan}], keys=["psnr"])
    assert format_score(math.inf) == "inf"
    assert format_score(None) == ""
    assert format_score(31.234567, 2) == "31.23"
    assert json_score(math.inf) == "inf" and json_score(0.5) == 0.5 and json_score(None) is None


def test_image_psnr_takes_one_hwc_pair_as_numpy_or_torch():
    rng = np.random.default_rng(0)
    a = rng.random((9, 7, 3))
    b = np.clip(a + rng.normal(0, 0.05, a.shape), 0, 1)
    expected = 10 * np.log10(1 / np.mean((a - b) ** 2))  # the definition, in float64 numpy
    assert M.image_psnr(b, a) == pytest.approx(expected, abs=1e-10)
    assert M.image_psnr(torch.from_numpy(b), torch.from_numpy(a)) == pytest.approx(expected, abs=1e-10)
    grey = 10 * np.log10(1 / np.mean((a[..., 0] - b[..., 0]) ** 2))
    assert M.image_psnr(b[..., 0], a[..., 0]) == pytest.approx(grey, abs=1e-10)
    assert M.image_psnr(b * 255, a * 255, data_range=255) == pytest.approx(expected, abs=1e-9)
    assert M.image_psnr(a, a) == math.inf
