"""LPIPS (AlexNet, v0.1): the network against an independent float64 re-computation, with random
weights saved to temporary files in the layouts users will have (torchvision AlexNet + lpips heads)."""

from __future__ import annotations

import math
import pickle
import warnings

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from ifan.evaluate import lpips as L
from ifan.evaluate.metrics import score_image

# Independent statement of the published constants (LPIPS v0.1 ScalingLayer).
SHIFT = [-0.030, -0.088, -0.188]
SCALE = [0.458, 0.448, 0.450]
# torchvision AlexNet features: (index, cin, cout, kernel, stride, padding)
CONVS = [(0, 3, 64, 11, 4, 2), (3, 64, 192, 5, 1, 2), (6, 192, 384, 3, 1, 1), (8, 384, 256, 3, 1, 1),
         (10, 256, 256, 3, 1, 1)]


def random_weights(seed: int = 0) -> tuple[dict[str, torch.Tensor], dict[str, torch.Tensor]]:
    """(trunk in torchvision's layout incl. classifier, heads in the lpips layout), random, He-scaled."""
    g = torch.Generator().manual_seed(seed)
    trunk = {}
    for idx, cin, cout, k, _, _ in CONVS:
        trunk[f"features.{idx}.weight"] = torch.randn(cout, cin, k, k, generator=g) * math.sqrt(2 / (cin * k * k))
        trunk[f"features.{idx}.bias"] = 0.1 * torch.randn(cout, generator=g)
    trunk["classifier.1.weight"] = torch.randn(8, 4, generator=g)  # torchvision's file has a classifier
    heads = {f"lin{i}.model.1.weight": torch.rand(1, c, 1, 1, generator=g)
             for i, c in enumerate([64, 192, 384, 256, 256])}
    return trunk, heads


def reference_lpips(x: torch.Tensor, y: torch.Tensor, trunk, heads) -> torch.Tensor:
    """Straightforward float64 LPIPS: [0,1] -> [-1,1], scaling, conv/relu/maxpool, unit-normalise,
    squared difference, weighted channel sum, spatial mean, sum over layers. Returns (B,)."""
    def feats(img):
        h = (img.double() * 2 - 1 - torch.tensor(SHIFT, dtype=torch.float64).view(1, 3, 1, 1)) \
            / torch.tensor(SCALE, dtype=torch.float64).view(1, 3, 1, 1)
        out = []
        for idx, _, _, _, stride, pad in CONVS:
            if idx in (3, 6):
                h = F.max_pool2d(h, kernel_size=3, stride=2)
            h = torch.relu(F.conv2d(h, trunk[f"features.{idx}.weight"].double(),
                                    trunk[f"features.{idx}.bias"].double(), stride=stride, padding=pad))
            out.append(h)
        return out

    total = torch.zeros(x.shape[0], dtype=torch.float64)
    for i, (a, b) in enumerate(zip(feats(x), feats(y))):
        a = a / (a.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        b = b / (b.pow(2).sum(1, keepdim=True).sqrt() + 1e-10)
        w = heads[f"lin{i}.model.1.weight"].double().view(1, -1, 1, 1)
        total += ((a - b) ** 2 * w).sum(1).mean(dim=(1, 2))
    return total


@pytest.fixture(scope="module")
def weights():
    return random_weights(0)


@pytest.fixture(scope="module")
def files(tmp_path_factory, weights):
    """The same random weights as one safetensors file and as two .pth files."""
    from safetensors.torch import save_file

    trunk, heads = weights
    d = tmp_path_factory.mktemp("lpips")
    one = d / "lpips_alex.safetensors"
    save_file({k: v.contiguous() for k, v in {**trunk, **heads}.items() if not k.startswith("classifier")}, one)
    torch.save(trunk, d / "alexnet.pth")
    torch.save(heads, d / "alex.pth")
    return {"one": one, "trunk": d / "alexnet.pth", "heads": d / "alex.pth", "dir": d}


@pytest.fixture(scope="module")
def images():
    g = torch.Generator().manual_seed(1)
    x = torch.rand(3, 3, 64, 80, generator=g)
    y = (x + 0.15 * torch.randn(x.shape, generator=g)).clamp(0, 1)
    return x, y


def test_network_matches_reference_float64(files, weights, images):
    x, y = images
    net = L.load_lpips(files["one"], dtype=torch.float64)
    got = net(x, y)
    ref = reference_lpips(x, y, *weights)
    assert got.shape == (3,)
    torch.testing.assert_close(got, ref, rtol=1e-10, atol=1e-12)


def test_network_matches_reference_float32_from_two_files(files, weights, images):
    x, y = images
    net = L.load_lpips([files["trunk"], files["heads"]])
    got = net(x, y)
    assert got.dtype == torch.float32
    torch.testing.assert_close(got.double(), reference_lpips(x, y, *weights), rtol=1e-5, atol=1e-6)


def test_input_scaling(files, weights, images):
    x, y = images
    net = L.load_lpips(files["one"], dtype=torch.float64)
    assert list(L.LPIPS_SHIFT) == SHIFT and list(L.LPIPS_SCALE) == SCALE
    sym = net(x.double() * 2 - 1, y.double() * 2 - 1, input_range="symmetric")
    torch.testing.assert_close(sym, net(x, y), rtol=1e-12, atol=1e-14)
    # feeding [0,1] images as if they were [-1,1] gives a different (wrong) value: the mapping matters
    assert not torch.allclose(net(x, y, input_range="symmetric"), net(x, y), rtol=1e-3)
    with pytest.raises(ValueError, match="input_range"):
        net(x, y, input_range="0-255")


def test_identity_symmetry_and_order(files, images):
    x, y = images
    net = L.load_lpips(files["one"])
    assert torch.equal(net(x, x), torch.zeros(3))
    torch.testing.assert_close(net(x, y), net(y, x), rtol=1e-6, atol=1e-7)
    assert (net(x, y) > 0).all()
    g = torch.Generator().manual_seed(2)
    noise = torch.randn(x.shape, generator=g)
    small, large = net(x, (x + 0.02 * noise).clamp(0, 1)), net(x, (x + 0.3 * noise).clamp(0, 1))
    assert (small < large).all()


def test_size_limits(files):
    net = L.load_lpips(files["one"])
    assert net(torch.rand(1, 3, 31, 40), torch.rand(1, 3, 31, 40)).shape == (1,)
    with pytest.raises(ValueError, match="at least 31x31"):
        net(torch.rand(1, 3, 30, 40), torch.rand(1, 3, 30, 40))
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        net(torch.rand(1, 1, 40, 40), torch.rand(1, 1, 40, 40))


def test_environment_variable_and_missing_weights(files, monkeypatch, images):
    x, y = images
    monkeypatch.setenv(L.ENV_VAR, f"{files['trunk']}{L.os.pathsep}{files['heads']}")
    from_env = L.load_lpips()
    torch.testing.assert_close(from_env(x, y), L.load_lpips(files["one"])(x, y))
    monkeypatch.delenv(L.ENV_VAR)
    with pytest.raises(L.LPIPSWeightsNotFound) as err:
        L.load_lpips()
    msg = str(err.value)
    assert L.ENV_VAR in msg and "alexnet-owt-7be5be79" in msg and "v0.1" in msg
    net, note = L.load_lpips_or_none()
    assert net is None and "LPIPS not computed" in note and L.ENV_VAR in note
    with pytest.raises(L.LPIPSWeightsNotFound, match="not found"):
        L.load_lpips(files["dir"] / "nope.safetensors")
    net, note = L.load_lpips_or_none(files["one"])
    assert net is not None and note is None


def test_wrong_files_are_refused(files, weights, tmp_path):
    trunk, heads = weights
    with pytest.raises(L.LPIPSWeightsError, match="heads are missing"):
        L.load_lpips(files["trunk"])
    with pytest.raises(L.LPIPSWeightsError, match="trunk is missing"):
        L.load_lpips(files["heads"])
    bad_shape = dict(heads)
    bad_shape["lin2.model.1.weight"] = torch.rand(1, 100, 1, 1)
    torch.save(bad_shape, tmp_path / "bad.pth")
    with pytest.raises(L.LPIPSWeightsError, match="shape mismatches"):
        L.load_lpips([files["trunk"], tmp_path / "bad.pth"])
    torch.save({**heads, "vgg.0.weight": torch.rand(2)}, tmp_path / "extra.pth")
    with pytest.raises(L.LPIPSWeightsError, match="unexpected keys"):
        L.load_lpips([files["trunk"], tmp_path / "extra.pth"])
    # the same key twice with different values
    other = {k: v + 1 for k, v in heads.items()}
    torch.save(other, tmp_path / "other.pth")
    with pytest.raises(L.LPIPSWeightsError, match="different values"):
        L.load_lpips([files["trunk"], files["heads"], tmp_path / "other.pth"])
    (tmp_path / "junk.safetensors").write_bytes(b"not a safetensors file")
    with pytest.raises(L.LPIPSWeightsError, match="safetensors"):
        L.load_lpips(tmp_path / "junk.safetensors")


class _Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_pickled_code_is_never_run(tmp_path):
    with open(tmp_path / "evil.pth", "wb") as fh:
        pickle.dump({"features.0.weight": _Payload()}, fh, protocol=2)
    with pytest.raises(L.LPIPSWeightsError, match="the Python object print, refused for safety") as err:
        L.load_lpips(tmp_path / "evil.pth")
    assert "weights_only=False" not in str(err.value) and "\n" not in str(err.value)


def test_full_lpips_state_dict_layout(weights, tmp_path, images):
    """A saved ``lpips.LPIPS(net='alex').state_dict()``: net.sliceS.N.*, lin*, lins.*, scaling_layer.*"""
    trunk, heads = weights
    slice_of = {0: 1, 3: 2, 6: 3, 8: 4, 10: 5}
    state = {f"net.slice{slice_of[i]}.{i}.{p}": trunk[f"features.{i}.{p}"]
             for i in slice_of for p in ("weight", "bias")}
    state.update(heads)
    state.update({f"lins.{i}.model.1.weight": heads[f"lin{i}.model.1.weight"] for i in range(5)})
    state["scaling_layer.shift"] = torch.tensor(SHIFT).view(1, 3, 1, 1)
    state["scaling_layer.scale"] = torch.tensor(SCALE).view(1, 3, 1, 1)
    torch.save(state, tmp_path / "full.pth")
    x, y = images
    torch.testing.assert_close(L.load_lpips(tmp_path / "full.pth", dtype=torch.float64)(x, y),
                               reference_lpips(x, y, trunk, heads), rtol=1e-10, atol=1e-12)
    state["scaling_layer.shift"] = torch.zeros(1, 3, 1, 1)
    torch.save(state, tmp_path / "full_bad.pth")
    with pytest.raises(L.LPIPSWeightsError, match="constant"):
        L.load_lpips(tmp_path / "full_bad.pth")


def test_pack_round_trip_and_cli(files, tmp_path, images, capsys):
    x, y = images
    dst = L.pack_lpips_weights([files["trunk"], files["heads"]], tmp_path / "packed.safetensors")
    from safetensors import safe_open

    with safe_open(str(dst), framework="pt") as f:  # the published layout (CONVS above), ifan's format tag
        published = {f"features.{i}.weight": (cout, cin, k, k) for i, cin, cout, k, _, _ in CONVS}
        published.update({f"features.{i}.bias": (cout,) for i, _, cout, _, _, _ in CONVS})
        published.update({f"lin{i}.model.1.weight": (1, cout, 1, 1) for i, (_, _, cout, _, _, _) in enumerate(CONVS)})
        assert {key: tuple(f.get_slice(key).get_shape()) for key in f.keys()} == published
        assert f.metadata()["format"] == "ifan-lpips/1" and f.metadata()["net"] == "alex"
        assert f.metadata()["version"] == "0.1"
    torch.testing.assert_close(L.load_lpips(dst)(x, y), L.load_lpips(files["one"])(x, y), rtol=0, atol=0)
    from ifan.apps.cli import main

    assert main(["lpips", "pack", str(files["trunk"]), str(files["heads"]), "-o", str(tmp_path / "cli.safetensors")]) == 0
    assert main(["lpips", "check", str(tmp_path / "cli.safetensors")]) == 0
    assert main(["lpips", "check", str(files["trunk"])]) == 1
    assert "heads are missing" in capsys.readouterr().err


def test_negative_heads_warn(files, weights, tmp_path):
    trunk, heads = weights
    neg = {k: v - 0.5 for k, v in heads.items()}
    torch.save({**trunk, **neg}, tmp_path / "neg.pth")
    with pytest.warns(UserWarning, match="negative"):
        L.load_lpips(tmp_path / "neg.pth")
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # non-negative heads (as trained): no warning
        L.load_lpips(files["one"])


def test_score_image_uses_lpips(files, images):
    x, y = images
    net = L.load_lpips(files["one"])
    out = y[0].permute(1, 2, 0).numpy()
    gt = x[0].permute(1, 2, 0).numpy()
    s = score_image(out, gt, "official", lpips=net)
    expected = float(net(torch.from_numpy(out).permute(2, 0, 1)[None], torch.from_numpy(gt).permute(2, 0, 1)[None])[0])
    assert s["lpips"] == pytest.approx(expected, rel=1e-6)
    gray = score_image(out[..., 0], gt[..., 0], "full", lpips=net)
    g3 = lambda a: torch.from_numpy(np.repeat(a[..., :1], 3, axis=2)).permute(2, 0, 1)[None]  # noqa: E731
    assert gray["lpips"] == pytest.approx(float(net(g3(out), g3(gt))[0]), rel=1e-6)
    assert score_image(gt, gt, lpips=net)["lpips"] == 0.0
