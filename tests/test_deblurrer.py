"""Deblurrer: input kinds, any size, tiled runs agreeing with whole ones, the defocus map."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from helpers import psnr
from PIL import Image as PILImage

from ifan import create_model
from ifan.inference import Deblurrer, MemoryBudgetError
from ifan.models.serialization import save_weights


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("ifan", channels=4, iterations=2).eval()


@pytest.fixture(scope="module")
def deblurrer(model):
    return Deblurrer(model, device="cpu", precision="fp32")


def reference(model, rgb: np.ndarray) -> np.ndarray:
    """The plain model call on the image reflection-padded to a multiple of 8, cropped back and
    clipped (float64 numpy HWC)."""
    x = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None]
    h, w = x.shape[-2:]
    x = F.pad(x, (0, -w % 8, 0, -h % 8), mode="reflect")
    with torch.no_grad():
        out = model.to(memory_format=torch.contiguous_format)(x).image[..., :h, :w]
    return out.clamp(0, 1)[0].permute(1, 2, 0).double().numpy()


def photo(h=40, w=56, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w] / max(h, w)
    base = np.stack([np.sin(6 * xx + c) * np.cos(4 * yy - c) for c in range(3)], axis=2) * 0.4 + 0.5
    return np.clip(base + 0.05 * rng.standard_normal((h, w, 3)), 0, 1).astype(np.float32)


# --- input kinds -------------------------------------------------------------------------------


def test_float_array_equals_the_plain_model_call(model, deblurrer):
    rgb = photo(37, 53)
    out = deblurrer.deblur(rgb)
    assert out.shape == (37, 53, 3) and out.dtype == np.float32
    np.testing.assert_allclose(out, reference(model, rgb), atol=2e-6, rtol=0)


@pytest.mark.parametrize("dtype, scale", [(np.uint8, 255), (np.uint16, 65535)])
def test_integer_arrays_keep_their_dtype_and_scale(model, deblurrer, dtype, scale):
    rgb = photo()
    ints = np.round(rgb * scale).astype(dtype)
    out = deblurrer.deblur(ints)
    assert out.dtype == dtype and out.shape == ints.shape
    expected = np.round(reference(model, ints.astype(np.float32) / scale) * scale)
    assert np.abs(out.astype(np.int64) - expected).max() <= 1


def test_grey_and_alpha_arrays(model, deblurrer):
    rgb = photo()
    grey = rgb.mean(axis=2)
    out = deblurrer.deblur(grey)
    assert out.shape == grey.shape
    expected = reference(model, np.repeat(grey[:, :, None], 3, axis=2)).mean(axis=2)
    np.testing.assert_allclose(out, expected, atol=2e-6)
    assert deblurrer.deblur(grey[:, :, None]).shape == (40, 56, 1)
    alpha = np.linspace(0, 1, 40 * 56, dtype=np.float32).reshape(40, 56)
    rgba = np.concatenate([rgb, alpha[:, :, None]], axis=2)
    out = deblurrer.deblur(rgba)
    assert out.shape == (40, 56, 4)
    np.testing.assert_array_equal(out[:, :, 3], alpha)  # alpha bypasses the network
    np.testing.assert_allclose(out[:, :, :3], reference(model, rgb), atol=2e-6)
    la = np.stack([np.round(grey * 255), np.round(alpha * 255)], axis=2).astype(np.uint8)
    out = deblurrer.deblur(la)
    assert out.shape == la.shape and out.dtype == np.uint8
    np.testing.assert_array_equal(out[:, :, 1], la[:, :, 1])


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "I;16"])
def test_pil_images_come_back_in_their_mode(deblurrer, mode):
    rgb8 = (photo() * 255).astype(np.uint8)
    if mode == "I;16":
        img = PILImage.fromarray((rgb8[:, :, 0].astype(np.uint16) * 257))
    else:
        img = PILImage.fromarray(rgb8).convert(mode)
    img.info["icc_profile"] = b"fake-profile"
    out = deblurrer.deblur(img)
    assert isinstance(out, PILImage.Image)
    assert out.mode == img.mode and out.size == img.size
    assert out.info.get("icc_profile") == b"fake-profile"
    if mode == "RGBA":
        np.testing.assert_array_equal(np.asarray(out)[:, :, 3], np.asarray(img)[:, :, 3])


def test_tensors_keep_shape_dtype_and_batch(model, deblurrer):
    rgb = photo()
    x = torch.from_numpy(rgb).permute(2, 0, 1).contiguous()
    out = deblurrer.deblur(x)
    assert out.shape == x.shape and out.dtype == torch.float32
    np.testing.assert_allclose(out.permute(1, 2, 0).numpy(), reference(model, rgb), atol=2e-6)
    batch = torch.stack([x, x.flip(-1)]).double()
    out = deblurrer.deblur(batch)
    assert out.shape == batch.shape and out.dtype == torch.float64
    np.testing.assert_allclose(out[1].permute(1, 2, 0).numpy(), reference(model, rgb[:, ::-1]), atol=2e-6)
    u8 = (x * 255).round().to(torch.uint8)
    assert deblurrer.deblur(u8).dtype == torch.uint8
    assert deblurrer.deblur(x[:1]).shape == (1, 40, 56)  # grey (1, H, W)


@pytest.mark.parametrize("size", [(1, 1), (1, 9), (7, 3), (37, 53), (8, 8), (9, 17), (64, 3)])
def test_any_size(deblurrer, size):
    out = deblurrer.deblur(np.full((*size, 3), 0.5, np.float32))
    assert out.shape == (*size, 3) and np.isfinite(out).all()
    res = deblurrer.run(torch.rand(1, 3, *size), defocus=True)
    assert res.image.shape == (1, 3, *size) and res.defocus.shape == (1, 1, *size)


def test_dual_pixel_views_are_tiled_like_the_image():
    model = create_model("ifan-dual", channels=4, iterations=2).eval()
    c, right, left = (torch.rand(1, 3, 64, 48, generator=torch.Generator().manual_seed(i)) for i in range(3))
    with torch.no_grad():
        expected = model(c, right, left).image
    whole = Deblurrer(model, device="cpu", precision="fp32", channels_last=False)
    torch.testing.assert_close(whole.run(c, right=right, left=left).image, expected, atol=2e-6, rtol=0)
    tiled = Deblurrer(model, device="cpu", precision="fp32", tile_size=40, overlap=16).run(c, right=right, left=left)
    assert tiled.plan.tiled and psnr(tiled.image.numpy(), expected.numpy()) > 40
    with pytest.raises(ValueError, match="both be given"):
        whole.run(c, right=right)


def test_bad_inputs_raise_clear_errors(deblurrer, model):
    with pytest.raises(ValueError, match="empty image"):
        deblurrer.deblur(np.zeros((0, 5, 3), np.float32))
    with pytest.raises(ValueError, match="1-4 channels"):
        deblurrer.deblur(np.zeros((5, 5, 7), np.float32))
    with pytest.raises(ValueError, match="unsupported array dtype"):
        deblurrer.deblur(np.zeros((5, 5, 3), np.int32))
    with pytest.raises(TypeError, match="numpy array, a PIL image or a torch tensor"):
        deblurrer.deblur([[0.5]])
    with pytest.raises(TypeError, match="IFAN model"):
        Deblurrer(torch.nn.Conv2d(3, 3, 1), device="cpu")
    dual = Deblurrer(create_model("ifan-dual", channels=2, iterations=2), device="cpu")
    with pytest.raises(ValueError, match="needs the right and left views"):
        dual.deblur(np.zeros((8, 8, 3), np.float32))
    with pytest.raises(ValueError, match="takes no dual-pixel views"):
        deblurrer.run(torch.zeros(1, 3, 8, 8), right=torch.zeros(1, 3, 8, 8), left=torch.zeros(1, 3, 8, 8))


# --- from_pretrained ---------------------------------------------------------------------------


def test_from_pretrained_loads_a_weights_file(tmp_path, model):
    path = save_weights(tmp_path / "tiny.safetensors", model.config, model.state_dict())
    loaded = Deblurrer.from_pretrained(path, device="cpu", precision="fp32")
    rgb = photo()
    np.testing.assert_allclose(loaded.deblur(rgb), reference(model, rgb), atol=2e-6)
    assert Deblurrer.from_pretrained(model, device="cpu").model is model
    with pytest.raises(FileNotFoundError, match="neither a model name"):
        Deblurrer.from_pretrained(tmp_path / "missing.safetensors", device="cpu")


# --- tiled runs and the budget -----------------------------------------------------------------


def test_tiled_run_agrees_with_the_whole_image(model):
    rgb = photo(96, 96, seed=3)
    whole = Deblurrer(model, device="cpu", precision="fp32")
    tiled = Deblurrer(model, device="cpu", precision="fp32", tile_size=48, overlap=16)
    plan = tiled.plan(96, 96)
    assert plan.tiled and plan.num_tiles == 9
    calls = []
    a, map_a = whole.deblur(rgb, return_defocus=True)
    b, map_b = tiled.deblur(rgb, return_defocus=True, progress=lambda done, total: calls.append((done, total)))
    assert calls[-1] == (9, 9) and len(calls) == 9
    value = psnr(a, b)
    print(f"tiled (48 px, overlap 16) vs whole, 96x96, ch4 N2: PSNR {value:.1f} dB")
    assert value > 50
    # the defocus map is blended with the same weights: where one tile alone covers a pixel
    # (weight 1), the map is that tile's own map
    tile_map = whole.defocus_map(rgb[:48, :48])
    np.testing.assert_allclose(map_b[:20, :20], tile_map[:20, :20], atol=1e-6)
    assert map_b.shape == map_a.shape == (96, 96)


def test_tiled_run_with_odd_size_fills_every_pixel(model):
    rgb = photo(70, 45, seed=4)
    out = Deblurrer(model, device="cpu", precision="fp32", tile_size=32, overlap=8).deblur(rgb)
    ref = reference(model, rgb)
    assert out.shape == rgb.shape and psnr(out, ref) > 40


def test_budget_drives_the_plan(model):
    d = Deblurrer(model, device="cpu", max_memory="64T", cpu_heap=False)
    assert not d.plan(4000, 6000).tiled
    assert not d.plan(400, 600).heap
    room = d.budget()
    assert room is not None and 0 < room < 64 * 2**40  # what the process holds now is taken off
    small = Deblurrer(model, device="cpu", max_memory="1M")
    with pytest.raises(MemoryBudgetError, match="already uses"):
        small.plan(100, 100)


def test_a_batch_and_a_reserve_take_their_share_of_the_budget(model, monkeypatch):
    d = Deblurrer(model, device="cpu", cpu_heap=False)
    whole = d.memory.estimate(1024, 1024)
    monkeypatch.setattr(d, "budget", lambda: int(1.3 * whole))
    assert not d.plan(1024, 1024).tiled
    assert d.plan(1024, 1024, batch=2).tiled and d.plan(1024, 1024, reserve=whole // 2).tiled
    with pytest.raises(ValueError, match="runs whole"):
        d.run(torch.zeros(2, 3, 1024, 1024), plan=d.plan(1024, 1024, batch=2))


def test_a_batch_of_same_size_images_gives_what_they_give_one_by_one(deblurrer):
    images = [photo(24, 32, seed) for seed in range(3)] + [(photo(24, 32, 3)[:, :, 0] * 255).astype(np.uint8)]
    for x, out in zip(images, deblurrer.deblur_batch(images)):
        one = deblurrer.deblur(x)  # each comes back in its own kind: float RGB, uint8 grey
        assert out.dtype == one.dtype and out.shape == one.shape
        assert np.abs(out.astype(np.float64) - one).max() <= (1 if out.dtype == np.uint8 else 1e-5)
    (image, dmap), _ = deblurrer.deblur_batch(images[:2], return_defocus=True)
    assert np.allclose(dmap, deblurrer.defocus_map(images[0]), atol=1e-5) and image.shape == (24, 32, 3)
    with pytest.raises(ValueError, match="one size"):
        deblurrer.deblur_batch([photo(24, 32), photo(32, 24)])


# --- defocus map -------------------------------------------------------------------------------


def test_defocus_map_is_the_upsampled_disparity_in_pixels(model, deblurrer):
    rgb = photo(40, 56)
    dmap = deblurrer.defocus_map(rgb)
    assert dmap.shape == (40, 56) and dmap.dtype == np.float32
    x = torch.from_numpy(rgb).permute(2, 0, 1)[None].contiguous()
    with torch.no_grad():
        disp = model(x).disparity
    expected = F.interpolate(disp, size=(40, 56), mode="bilinear", align_corners=False)[0, 0] * 8
    np.testing.assert_allclose(dmap, expected.numpy(), atol=1e-5)
    t = deblurrer.defocus_map(torch.from_numpy(rgb).permute(2, 0, 1))
    assert t.shape == (1, 40, 56)
    pil = deblurrer.defocus_map(PILImage.fromarray((rgb * 255).astype(np.uint8)))
    assert pil.mode == "F" and pil.size == (56, 40)


def test_channels_last_and_nchw_agree(model):
    rgb = photo()
    a = Deblurrer(model, device="cpu", precision="fp32", channels_last=True).deblur(rgb)
    b = Deblurrer(model, device="cpu", precision="fp32", channels_last=False).deblur(rgb)
    np.testing.assert_allclose(a, b, atol=1e-5)


# --- CUDA --------------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision, min_psnr", [("fp32", 60.0), ("fp16", 35.0)])
def test_cuda_matches_cpu(precision, min_psnr):
    torch.manual_seed(0)
    model = create_model("ifan", channels=4, iterations=2).eval()
    rgb = photo(96, 96)
    cpu = Deblurrer(model, device="cpu", precision="fp32").deblur(rgb)
    model_gpu = create_model("ifan", channels=4, iterations=2)
    model_gpu.load_state_dict(model.state_dict())
    gpu = Deblurrer(model_gpu, device="cuda", precision=precision)
    out = gpu.deblur(rgb)
    assert out.shape == rgb.shape and psnr(out, cpu) > min_psnr
    tiled = Deblurrer(model_gpu, device="cuda", precision=precision, tile_size=48, overlap=16).deblur(rgb)
    assert psnr(tiled, out) > min_psnr - 10
    t = gpu.deblur(torch.from_numpy(rgb).permute(2, 0, 1).cuda())
    assert t.is_cuda and t.shape == (3, 96, 96)
