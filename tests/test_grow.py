"""Growing a trained IFAN wider keeps its function (ifan.models.grow)."""

import pytest
import torch

from ifan.models.grow import widen
from ifan.models.ifan import IFAN, IFANConfig


def _trained_like(config: IFANConfig) -> IFAN:
    """A model whose weights are all non-zero and unlike the init (so that nothing matches by chance)."""
    torch.manual_seed(3)
    model = IFAN(config)
    model.init_weights()
    with torch.no_grad():
        for p in model.parameters():
            p.add_(0.05 * torch.randn_like(p))
    return model.eval()


@pytest.mark.parametrize("form", ["separable", "official"])
def test_widened_model_computes_the_same_image_and_disparity(form):
    config = IFANConfig(channels=4, iterations=3, reblur_iterations=2, iac_form=form)
    old = _trained_like(config)
    new_config, state = widen(old.state_dict(), config, channels=6)
    assert new_config.channels == 6 and new_config.iterations == 3 and new_config.iac_form == form
    new = IFAN(new_config).eval()
    new.load_state_dict(state)  # strict: every tensor has the wide shape
    old, new = old.double(), new.double()  # float64: only the order of sums differs, so rounding is tiny
    x = torch.rand(2, 3, 40, 56, dtype=torch.float64)
    with torch.no_grad():
        a, b = old(x, aux=True), new(x, aux=True)
    torch.testing.assert_close(b.image, a.image, rtol=0, atol=1e-10)
    torch.testing.assert_close(b.disparity, a.disparity, rtol=0, atol=1e-10)
    assert (b.image - x).abs().max() > 1e-3  # the model does something, so equality means something


def test_new_channels_get_gradient_through_their_zero_weights():
    config = IFANConfig(channels=4, iterations=2, reblur_iterations=2)
    old = _trained_like(config)
    new_config, state = widen(old.state_dict(), config, channels=6)
    new = IFAN(new_config)
    new.load_state_dict(state)
    out_w = new.reconstructor.out[0].weight  # (3, 6, 3, 3): reads 4 old and 2 new channels
    assert torch.all(out_w[:, 4:] == 0) and torch.any(out_w[:, :4] != 0)
    new(torch.rand(1, 3, 32, 32)).image.square().mean().backward()
    assert out_w.grad[:, 4:].abs().sum() > 0


def test_widen_refuses_a_width_that_does_not_grow():
    config = IFANConfig(channels=4, iterations=2, reblur_iterations=2)
    with pytest.raises(ValueError, match="must exceed the old one"):
        widen(IFAN(config).state_dict(), config, channels=4)


def test_grow_command_writes_loadable_weights_and_keeps_an_existing_file(tmp_path, capsys):
    from ifan.apps.cli import main
    from ifan.models.serialization import save_weights
    from ifan.models.hub import load_model

    config = IFANConfig(channels=4, iterations=2, reblur_iterations=2)
    src = tmp_path / "small.safetensors"
    save_weights(src, config, _trained_like(config).state_dict(), source="test")
    out = tmp_path / "wide.safetensors"
    assert main(["grow", str(src), "--channels", "6", "-o", str(out)]) == 0
    grown = load_model(out)
    assert grown.config.channels == 6 and grown.config.iterations == 2
    before = out.read_bytes()
    assert main(["grow", str(src), "--channels", "8", "-o", str(out)]) == 1
    assert "exists; add --overwrite" in capsys.readouterr().err
    assert out.read_bytes() == before
