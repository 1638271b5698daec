"""--strength, --keep-bokeh and --mask: the defocus calibration, the mask, the blend, the API, the command line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from ifan import create_model
from ifan.apps.cli import main
from ifan.inference import Deblurrer
from ifan.inference.blend import (BlendSettings, blend, bokeh_mask, check_strength, mask_from_radius, read_mask,
                                  recompose)
from ifan.inference.calibration import (METADATA_KEY, UNCALIBRATED, DefocusCalibration, calibration_of,
                                        fit_calibration)
from ifan.io import read_image, write_image
from ifan.models.serialization import save_weights, update_metadata
from ifan.models.hub import load_model


def photo(h=40, w=128, seed=0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx / w, yy / h, 0.5 + 0.3 * np.sin(xx / 3.0)], axis=2)
    return (np.clip(base + 0.1 * rng.standard_normal((h, w, 3)), 0, 1) * 255).round().astype(np.uint8)


@pytest.fixture
def deblurrer():
    torch.manual_seed(0)
    return Deblurrer(create_model("ifan", channels=2, iterations=2), device="cpu", precision="fp32")


def planted_defocus(d: Deblurrer, left_px: float = 20.0) -> None:
    """Make the network's defocus map ``left_px`` on the left half of the image and 0 on the right
    (the deblurred image is the model's own)."""
    network = d._network

    def fake(x, views, defocus):
        image, _ = network(x, views, False)
        if not defocus:
            return image, None
        m = torch.zeros(1, 1, *x.shape[-2:])
        m[..., : x.shape[-1] // 2] = left_px
        return image, m

    d._network = fake


# -- calibration --------------------------------------------------------------------------------

def test_calibration_interpolates_clamps_below_and_grows_in_proportion_beyond():
    c = DefocusCalibration((1.0, 2.0, 4.0), (1.0, 3.0, 6.0))
    d = np.array([-0.5, 1.0, 1.5, -3.0, 4.0, 8.0], np.float32)
    np.testing.assert_allclose(c(d), [1.0, 1.0, 2.0, 4.5, 6.0, 12.0], rtol=1e-6)
    np.testing.assert_allclose(c(torch.from_numpy(d)).numpy(), c(d))
    np.testing.assert_allclose(UNCALIBRATED(np.array([0.0, 0.833, 8.33], np.float32)), [0.0, 1.0, 10.0], atol=2e-3)
    assert DefocusCalibration.from_json(c.to_json()) == c
    for bad in ((2.0, 1.0), (0.0, 1.0)):
        with pytest.raises(ValueError):
            DefocusCalibration(bad, (1.0, 2.0))
    with pytest.raises(ValueError):
        DefocusCalibration((1.0, 2.0), (2.0, 1.0))  # not monotone
    with pytest.raises(ValueError, match="invalid defocus calibration"):
        DefocusCalibration.from_json('{"format": 1, "defocus": "x"}')


def test_fit_is_monotone_and_follows_the_medians():
    rng = np.random.default_rng(0)
    truth = rng.uniform(0, 20, 200_000)
    estimate = 0.5 * truth + rng.normal(0, 1.0, truth.size)  # a model that halves the radius, with noise
    fitted = fit_calibration(estimate, truth)
    assert np.all(np.diff(fitted.radius) >= 0) and np.all(np.diff(fitted.defocus) > 0)
    probe = np.array([2.0, 5.0, 8.0], np.float32)
    np.testing.assert_allclose(fitted(probe), 2 * probe, atol=0.6)


def test_calibration_is_stored_in_the_weights_with_the_tensors_unchanged(tmp_path):
    model = create_model("ifan", channels=2, iterations=2)
    path = save_weights(tmp_path / "m.safetensors", model.config, model.state_dict(), source="test")
    before = path.read_bytes()
    assert calibration_of(load_model(path)) is UNCALIBRATED
    c = DefocusCalibration((1.0, 2.0), (2.0, 4.0), source="test fit")
    update_metadata(path, path, {METADATA_KEY: c.to_json()})
    after = path.read_bytes()
    old, new = int.from_bytes(before[:8], "little"), int.from_bytes(after[:8], "little")
    assert after[8 + new:] == before[8 + old:]  # the tensor data, byte for byte
    assert new % 8 == 0
    loaded = load_model(path)
    assert calibration_of(loaded) == c and loaded.weights_metadata["source"] == "test"
    assert Deblurrer(loaded, device="cpu").calibration == c
    for name, value in loaded.state_dict().items():
        torch.testing.assert_close(value, model.state_dict()[name], rtol=0, atol=0)


def test_the_shipped_model_carries_a_measured_calibration():
    c = calibration_of(load_model("ifan-lite"))
    assert c.calibrated and len(c.defocus) >= 4 and "seed 26" in c.source
    assert 0 < c.error["median_abs_px"] < 5


# -- the mask and the blend ---------------------------------------------------------------------

def test_bokeh_mask_keeps_the_blurred_side_with_a_smooth_transition():
    defocus = torch.zeros(1, 1, 96, 160)
    defocus[..., :80] = 20.0
    mask = bokeh_mask(defocus, UNCALIBRATED, keep_bokeh=6.0)[0, 0]
    assert mask[:, :56].max() == 0 and mask[:, 104:].min() == 1  # 3 cells from the edge: fully kept, fully deblurred
    steps = (mask[:, 1:] - mask[:, :-1]).abs().max()
    assert 0 < steps <= 0.08  # no seam: the mask changes by at most 8 % from one pixel to the next
    assert torch.equal(mask, torch.round(mask * 255) / 255)  # steps of 1/255: exact through an 8-bit PNG
    radius = torch.full((1, 1, 12, 20), 6.0)  # at R the mask is half way
    assert mask_from_radius(radius, 6.0, (96, 160)).mean().item() == pytest.approx(0.5, abs=0.01)


def test_blend_is_exact_at_0_and_1_and_clipped_beyond():
    x, y = torch.rand(1, 3, 8, 8), torch.rand(1, 3, 8, 8) * 1.4 - 0.2
    assert torch.equal(blend(x, y, 0.0), x) and torch.equal(blend(x, y, 1.0), y.clamp(0, 1))
    weight = torch.zeros(1, 1, 8, 8)
    weight[..., 4:] = 1.0
    mixed = blend(x, y, weight)
    assert torch.equal(mixed[..., :4], x[..., :4]) and torch.equal(mixed[..., 4:], y.clamp(0, 1)[..., 4:])
    twice = blend(x, y, 2.0)
    assert twice.min() >= 0 and twice.max() <= 1
    torch.testing.assert_close(twice, (2 * y.clamp(0, 1) - x).clamp(0, 1))
    for bad in (-0.1, 2.01, float("nan")):
        with pytest.raises(ValueError, match="strength must be in"):
            check_strength(bad)


def test_deblur_strength_and_keep_bokeh_in_the_api(deblurrer):
    x = photo()
    plain = deblurrer.deblur(x)
    assert np.array_equal(deblurrer.deblur(x, strength=1.0), plain)
    assert np.array_equal(deblurrer.deblur(x, strength=0.0), x)
    planted_defocus(deblurrer)
    kept, defocus, mask = deblurrer.deblur(x, keep_bokeh=6, return_defocus=True, return_mask=True)
    assert mask.shape == x.shape[:2] and mask[:, :24].max() == 0 and mask[:, -24:].min() == 1
    assert np.array_equal(kept[mask == 0], x[mask == 0]) and np.array_equal(kept[mask == 1], plain[mask == 1])
    assert np.array_equal(deblurrer.bokeh_mask(defocus, 6), mask)
    # a stored result recomposed: what deblur gives for that strength and mask, without the network
    sharp = deblurrer.deblur(x.astype(np.float32) / 255)
    for s in (0.5, 1.5):
        np.testing.assert_array_equal(recompose(x.astype(np.float32) / 255, sharp, strength=s, mask=mask),
                                      deblurrer.deblur(x.astype(np.float32) / 255, strength=s, mask=mask))
    # the user's mask, 8 or 16 bits, wins over keep_bokeh
    user = np.zeros(x.shape[:2], np.uint16)
    user[20:] = 65535
    out = deblurrer.deblur(x, keep_bokeh=6, mask=user)
    assert np.array_equal(out[:20], x[:20]) and np.array_equal(out[20:], plain[20:])
    with pytest.raises(ValueError, match="must have the image's size"):
        deblurrer.deblur(x, mask=np.ones((10, 10), np.uint8))
    with pytest.raises(ValueError, match="strength must be in"):
        deblurrer.deblur(x, strength=2.5)


def test_a_mask_or_defocus_map_with_nan_is_refused_like_an_image(deblurrer):
    mask = np.ones((40, 128), np.float32)
    mask[3, 4], mask[5, 6] = np.nan, np.inf
    with pytest.raises(ValueError, match="the mask holds 1 NaN and 1 infinite value;"):
        deblurrer.deblur(photo(), mask=mask)
    with pytest.raises(ValueError, match="the defocus map holds 1 NaN;"):
        deblurrer.bokeh_mask(np.where(np.isnan(mask), np.nan, 0).astype(np.float32), 6)


def test_read_mask_takes_grey_and_refuses_colour(tmp_path):
    grey = np.tile(np.linspace(0, 1, 32, dtype=np.float32), (16, 1))
    np.testing.assert_allclose(read_mask(write_image(tmp_path / "m16.png", grey, bit_depth=16, grayscale=True)),
                               grey, atol=1 / 65535)
    rgb = np.repeat(grey[..., None], 3, axis=2)
    np.testing.assert_allclose(read_mask(write_image(tmp_path / "rgb.png", rgb)), grey, atol=1 / 255)
    rgb[..., 0] = 1 - rgb[..., 0]
    with pytest.raises(ValueError, match="must be grey"):
        read_mask(write_image(tmp_path / "colour.png", rgb))


# -- the command line ---------------------------------------------------------------------------

@pytest.fixture
def calibrated_weights(tmp_path):
    """A tiny model whose calibration puts R = 6 px at the median of its defocus on ``photo()``: a
    mask that keeps some regions and deblurs others."""
    torch.manual_seed(0)
    model = create_model("ifan", channels=2, iterations=2)
    d = np.abs(Deblurrer(model, device="cpu").defocus_map(photo(64, 96)))
    mid = float(np.median(d))
    c = DefocusCalibration((mid / 2, mid, 2 * mid), (0.5, 6.0, 40.0), source="test")
    return save_weights(tmp_path / "cal.safetensors", model.config, model.state_dict(), **{METADATA_KEY: c.to_json()})


def test_cli_keep_bokeh_save_mask_and_mask_round_trip(tmp_path, calibrated_weights, capsys):
    src = write_image(tmp_path / "p.png", photo(64, 96) / 255.0)
    model = ["--model", str(calibrated_weights)]
    assert main(["deblur", str(src), "-o", str(tmp_path / "plain"), *model]) == 0
    assert main(["deblur", str(src), "-o", str(tmp_path / "keep"), *model, "--keep-bokeh", "6", "--save-mask",
                 "-v"]) == 0
    err = capsys.readouterr().err
    assert "keep bokeh beyond 6 px" in err and "p_mask.png" in err and "no defocus calibration" not in err
    mask = read_mask(tmp_path / "keep" / "p_mask.png")
    assert mask.min() == 0 and mask.max() == 1  # this model's calibration keeps some, deblurs some
    inp, plain, kept = (np.round(read_image(p).rgb * 255) for p in
                        (src, tmp_path / "plain" / "p_deblurred.png", tmp_path / "keep" / "p_deblurred.png"))
    assert np.array_equal(kept[mask == 0], inp[mask == 0]) and np.array_equal(kept[mask == 1], plain[mask == 1])
    # the mask written, given back: the same result to the bit
    assert main(["deblur", str(src), "-o", str(tmp_path / "again"), *model, "--mask",
                 str(tmp_path / "keep" / "p_mask.png")]) == 0
    assert np.array_equal(np.round(read_image(tmp_path / "again" / "p_deblurred.png").rgb * 255), kept)
    # strength 0 writes the input
    assert main(["deblur", str(src), "-o", str(tmp_path / "s0"), *model, "--strength", "0"]) == 0
    assert np.array_equal(np.round(read_image(tmp_path / "s0" / "p_deblurred.png").rgb * 255), inp)


def test_cli_refuses_bad_blend_options_up_front(tmp_path, weights, capsys):
    src = write_image(tmp_path / "p.png", photo() / 255.0)
    with pytest.raises(SystemExit):
        main(["deblur", str(src), "--model", weights, "--strength", "2.5"])
    assert "--strength: expected a number from 0 to 2, got 2.5" in capsys.readouterr().err
    assert main(["deblur", str(src), "--model", weights, "--save-mask"]) == 1
    assert "--save-mask writes the mask of --keep-bokeh" in capsys.readouterr().err
    small = write_image(tmp_path / "small.png", np.ones((10, 12), np.float32), grayscale=True)
    assert main(["deblur", str(src), "--model", weights, "--mask", str(small)]) == 1
    err = capsys.readouterr().err
    assert "small.png is 12x10 and the photo 128x40: a mask must have the photo's size" in err
    assert not (tmp_path / "p_deblurred.png").exists()
    # an uncalibrated model says how it takes the radius
    assert main(["deblur", str(src), "--model", weights, "--keep-bokeh", "6"]) == 0
    assert "has no defocus calibration" in capsys.readouterr().err


def test_blend_settings_describe_and_apply_without_a_map():
    s = BlendSettings(keep_bokeh=6)
    with pytest.raises(ValueError, match="needs the defocus map"):
        s.apply(np.zeros((8, 8, 3), np.float32), np.ones((8, 8, 3), np.float32), None, UNCALIBRATED)
    assert "keep bokeh beyond 6 px" in s.describe(UNCALIBRATED) and json.loads(UNCALIBRATED.to_json())["format"] == 1
