"""The FAC model variant and the plain-convolution control: lean paths, configs on disk, training."""

from __future__ import annotations

import json

import pytest
import torch

from ifan import IFANConfig, create_model, load_model
from ifan.models.ifan import IFAN, adaptive_macs, equal_flops_conv_layers
from ifan.models.reblur import ReblurNet
from ifan.models.serialization import save_weights
from ifan.ops import fac
from ifan.train.config import ConfigError, load_config
from ifan.train.trainer import train

from helpers import make_dpdd


@pytest.mark.parametrize("layer", ["fac", "conv"])
def test_lean_path_equals_the_full_filter_path(layer):
    model = IFAN(IFANConfig(channels=4, iterations=2, reblur_iterations=2, adaptive_layer=layer, fac_size=5,
                            conv_layers=3)).eval().double()
    x = torch.rand(1, 3, 40, 48, dtype=torch.float64)
    with torch.no_grad():
        lean = model(x)
        full = model(x, aux=True)
    torch.testing.assert_close(lean.image, full.image, atol=1e-12, rtol=0)


def test_fac_model_applies_fac_to_the_extractor_features():
    """The network's adaptive layer is exactly ops.fac on f_C with the head's filters."""
    model = IFAN(IFANConfig(channels=2, iterations=2, reblur_iterations=2, adaptive_layer="fac", fac_size=3)).double()
    x = torch.rand(1, 3, 32, 32, dtype=torch.float64)
    *_, f_c = model.feature_extractor(x)
    encoded, disparity = model.estimate_disparity(x)
    feats = model.filter_features(encoded, disparity)
    deblurred, filters = model.adapt(f_c, feats, keep_filters=True)
    assert filters.shape == (1, 8 * 9, 4, 4)
    torch.testing.assert_close(deblurred, fac(f_c, filters.unflatten(1, (8, 9))), atol=0, rtol=0)


def test_variant_names_and_their_numbers():
    lite_fac, conv = create_model("ifan-lite-fac").config, create_model("ifan-lite-conv").config
    assert (lite_fac.adaptive_layer, lite_fac.fac_size, lite_fac.receptive_field) == ("fac", 17, 17)
    assert create_model("ifan-lite").config.receptive_field == 17  # N (Fs - 1) + 1 = 8 * 2 + 1
    assert lite_fac.filter_channels == 64 * 17 * 17
    assert conv.conv_layers == equal_flops_conv_layers(create_model("ifan-lite").config) == 5
    ratio = adaptive_macs(conv) / adaptive_macs(create_model("ifan-lite").config)
    assert 0.9 < ratio < 1.1
    model = create_model("ifan-lite-conv")
    with pytest.raises(ValueError, match="no filter head"):
        _ = model.filter_head


def test_configs_compare_by_what_they_build_and_iac_configs_read_as_before():
    # sizes a layer does not use are reset: equal networks have equal configs
    assert IFANConfig(fac_size=9) == IFANConfig()
    assert IFANConfig(adaptive_layer="fac", fac_size=9) != IFANConfig(adaptive_layer="fac", fac_size=11)
    # an IAC config writes exactly the keys it wrote before the variants existed
    assert set(IFANConfig().to_dict()) == {"channels", "iterations", "filter_size", "kernel_size", "res_units",
                                           "dual_pixel_input", "iac_form", "reblur_iterations",
                                           "reblur_filter_size"}
    assert IFANConfig.from_dict(IFANConfig().to_dict()) == IFANConfig()
    with pytest.raises(ValueError, match="adaptive_layer must be one of"):
        IFANConfig(adaptive_layer="dense")
    with pytest.raises(ValueError, match="fac_size must be odd"):
        IFANConfig(adaptive_layer="fac", fac_size=4)


@pytest.mark.parametrize("layer", ["fac", "conv"])
def test_variant_weights_round_trip(tmp_path, layer):
    model = create_model("ifan-lite-fac" if layer == "fac" else "ifan-lite-conv", channels=2, fac_size=5)
    path = save_weights(tmp_path / "w.safetensors", model.config, model.state_dict())
    loaded = load_model(path)
    assert loaded.config == model.config
    for k, v in model.state_dict().items():
        assert torch.equal(loaded.state_dict()[k], v)


def test_a_weights_file_without_the_new_fields_loads_as_iac(tmp_path):
    from safetensors.torch import save_file

    model = create_model("ifan", channels=2, iterations=2, reblur_iterations=2)
    old_config = {"channels": 2, "iterations": 2, "filter_size": 3, "kernel_size": 3, "res_units": 2,
                  "dual_pixel_input": False, "iac_form": "separable", "reblur_iterations": 2,
                  "reblur_filter_size": 3}  # what ifan wrote before the variants
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(tmp_path / "old.safetensors"),
              metadata={"format": "ifan-weights/1", "config": json.dumps(old_config)})
    loaded = load_model(tmp_path / "old.safetensors")
    assert loaded.config.adaptive_layer == "iac" and loaded.config == model.config


def test_the_reblurring_loss_is_refused_for_models_without_iac_filters():
    with pytest.raises(ConfigError, match="losses.reblur needs IAC filters.*'fac'.*set losses.reblur: 0"):
        load_config(None, ["model=ifan-lite-fac"])  # the default recipe has losses.reblur 1
    with pytest.raises(ConfigError, match="'conv'"):
        load_config(None, ["model=ifan-lite", "model_overrides.adaptive_layer=conv"])
    assert load_config(None, ["model=ifan-lite-fac", "losses.reblur=0"]).model == "ifan-lite-fac"
    with pytest.raises(ValueError, match="ReblurNet turns IAC's deblurring filters"):
        ReblurNet(IFANConfig(adaptive_layer="fac"))


@pytest.mark.parametrize("model", ["ifan-lite-fac", "ifan-lite-conv"])
def test_ifan_train_trains_the_variants(tmp_path, model):
    root = tmp_path / "data"
    make_dpdd(root, "train", names=("a", "b"), size=(40, 48))
    make_dpdd(root, "val", names=("v",), size=(40, 48), seed=1)
    cfg = load_config(None, [f"model={model}", "model_overrides.channels=2", "model_overrides.fac_size=5",
                             f"data.root={root}", "data.val_count=1", "data.val_crop=32", "train.steps=3",
                             "train.batch_size=2", "train.patch_size=32", "train.lr=1e-3", "losses.reblur=0",
                             "log.val_every=3", "log.progress=false", "log.tensorboard=false"])
    result = train(cfg, tmp_path / "run", device="cpu")
    assert result.finished and result.step == 3
    trained = load_model(tmp_path / "run" / "model.safetensors")
    assert trained.config == result.model.config and trained.config.adaptive_layer == model.split("-")[-1]
    start = create_model(model, channels=2, fac_size=5)
    moved = [k for k, v in trained.state_dict().items() if not torch.equal(v, start.state_dict()[k])]
    assert moved  # the weights changed
