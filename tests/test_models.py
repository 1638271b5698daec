"""Every named configuration builds, runs and trains; the lean inference path equals the plain one."""

from __future__ import annotations

from dataclasses import replace

import pytest
import torch

from ifan import IFANConfig, create_model, list_models
from ifan.models.reblur import ReblurNet
from ifan.train.losses import LossWeights, ifan_losses


def tiny(name: str, **overrides):
    """A named config at tiny width (same structure: N, dual input, IAC form)."""
    return create_model(name, **{"channels": 2, **overrides})


@pytest.mark.parametrize("name", list_models())
def test_every_config_forward_and_all_parameters_get_gradients(name):
    model = tiny(name, iterations=2, reblur_iterations=2)
    iac = model.config.adaptive_layer == "iac"
    reblur = ReblurNet(model.config) if iac else None  # the reblurring network reads IAC filters only
    c, r, l, gt = (torch.rand(2, 3, 16, 24) for _ in range(4))
    out = model(c, r, l, aux=True)
    assert out.image.shape == (2, 3, 16, 24)
    assert out.disparity.shape == out.disparity_right.shape == (2, 1, 2, 3)
    if model.config.adaptive_layer == "conv":
        assert out.filters is None
    else:
        assert out.filters.shape == (2, model.config.filter_channels, 2, 3)
    assert torch.isfinite(out.image).all()
    ifan_losses(out, gt, c, r, l, reblur, LossWeights(reblur=1.0 if iac else 0.0))["total"].backward()
    for n, p in [*model.named_parameters(), *(reblur.named_parameters() if reblur else [])]:
        assert p.grad is not None and torch.isfinite(p.grad).all(), f"no gradient for {n}"
        assert p.grad.abs().sum() > 0, f"zero gradient for {n}"


@pytest.mark.parametrize("name", list_models())
def test_named_configs_keep_their_structure(name):
    config = create_model(name, channels=2).config
    expected_n = {"ifan-n8": 8, "ifan-n26": 26, "ifan-n35": 35, "ifan-n44": 44}.get(name, 8 if "lite" in name else 17)
    assert config.iterations == expected_n
    # RBF_num as the authors' configs set it (configs/config_IFAN_*.py): 9 for N = 26, 17 for N = 35 and 44
    assert config.reblur_iterations == {"ifan-n26": 9, "ifan-n35": 17, "ifan-n44": 17}.get(name, expected_n)
    assert config.dual_pixel_input == (name == "ifan-dual")
    assert config.iac_form == "separable"


def test_parameter_counts_of_the_default_config():
    config = IFANConfig()
    assert config.filter_channels == 15232
    model = create_model("ifan")
    assert sum(p.numel() for p in model.parameters()) == 10_476_996
    assert sum(p.numel() for p in ReblurNet(config).parameters()) == 19_139_685


@pytest.mark.parametrize("form", ["separable", "official"])
def test_lean_iac_equals_full_filter_tensor(form):
    model = tiny("ifan", channels=4, iterations=3, iac_form=form).eval()
    x = torch.rand(1, 3, 32, 40)
    with torch.no_grad():
        lean = model(x)
        full = model(x, aux=True)  # builds the whole filter tensor
        torch.testing.assert_close(lean.image, full.image, atol=1e-5, rtol=0)
        torch.testing.assert_close(lean.disparity, full.disparity, atol=0, rtol=0)


def test_official_form_lean_path_never_uses_kernel2():
    model = tiny("ifan", iterations=2, iac_form="official").eval()
    x = torch.rand(1, 3, 16, 16)
    with torch.no_grad():
        before = model(x).image
        c, k = model.config.feature_channels, model.config.filter_size
        for i in range(2):
            model.filter_head.weight[i * 2 * c * k + c * k:(i + 1) * 2 * c * k] = 5.0
        torch.testing.assert_close(model(x).image, before, atol=0, rtol=0)


def test_dual_pixel_variant_needs_views():
    model = tiny("ifan-dual", iterations=2).eval()
    x = torch.rand(1, 3, 16, 16)
    with pytest.raises(ValueError, match="right is required"):
        model(x)
    out = model(x, torch.rand(1, 3, 16, 16), torch.rand(1, 3, 16, 16))
    assert out.image.shape == x.shape


def test_input_validation():
    model = tiny("ifan", iterations=2).eval()
    with pytest.raises(ValueError, match="multiples of 8"):
        model(torch.rand(1, 3, 20, 16))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        model(torch.rand(1, 4, 16, 16))
    with pytest.raises(ValueError, match="unknown model 'ifan-xl'"):
        create_model("ifan-xl")
    with pytest.raises(ValueError, match="invalid override"):
        create_model("ifan", width=3)
    with pytest.raises(ValueError, match="must be odd"):
        create_model("ifan", filter_size=4)
    with pytest.raises(ValueError, match="iac_form"):
        replace(IFANConfig(), iac_form="kernel2")
