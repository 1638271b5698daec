"""Deblurrer: input kinds, any size, the memory plan, tiling agreement, defocus map, precision policy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from PIL import Image as PILImage

from ifan import create_model, inference
from ifan.inference import (
    Deblurrer,
    MemoryBudgetError,
    MemoryModel,
    blend_weights,
    colorize_defocus,
    encode_defocus_16bit,
    memory_model,
    parse_size,
    plan_tiles,
    resolve_precision,
)
from ifan.models.padding import run_any_size
from ifan.models.serialization import save_weights


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("ifan", channels=4, iterations=2).eval()


@pytest.fixture(scope="module")
def deblurrer(model):
    return Deblurrer(model, device="cpu")


def reference(model, rgb: np.ndarray) -> np.ndarray:
    """The plain model call on the padded image, cropped and clipped (float64 numpy HWC)."""
    x = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32)).permute(2, 0, 1)[None]
    with torch.no_grad():
        out = run_any_size(model.to(memory_format=torch.contiguous_format), x)
    return out.image.clamp(0, 1)[0].permute(1, 2, 0).double().numpy()


def psnr(a, b) -> float:
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)


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


@pytest.mark.parametrize("size", [(1, 1), (1, 9), (7, 3), (37, 53), (8, 8)])
def test_any_size(deblurrer, size):
    out = deblurrer.deblur(np.full((*size, 3), 0.5, np.float32))
    assert out.shape == (*size, 3) and np.isfinite(out).all()


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
    with pytest.raises(ValueError, match="dual-pixel"):
        Deblurrer(create_model("ifan-dual", channels=2, iterations=2), device="cpu")


# --- from_pretrained ---------------------------------------------------------------------------


def test_from_pretrained_loads_a_weights_file(tmp_path, model):
    path = save_weights(tmp_path / "tiny.safetensors", model.config, model.state_dict())
    loaded = Deblurrer.from_pretrained(path, device="cpu")
    rgb = photo()
    np.testing.assert_allclose(loaded.deblur(rgb), reference(model, rgb), atol=2e-6)
    assert Deblurrer.from_pretrained(model, device="cpu").model is model
    with pytest.raises(FileNotFoundError, match="neither a model name"):
        Deblurrer.from_pretrained(tmp_path / "missing.safetensors", device="cpu")


# --- memory plan and tiling --------------------------------------------------------------------


def test_plan_is_whole_when_it_fits_and_tiles_when_not():
    mem = MemoryModel(fixed=10 * 2**20, per_pixel=1000.0)
    whole = plan_tiles(1000, 1500, budget=None, memory=mem)
    assert not whole.tiled and whole.tile == (1000, 1504) and whole.padded == (1000, 1504)
    assert not plan_tiles(1000, 1500, budget=2 * 2**30, memory=mem).tiled
    budget = 600 * 2**20
    plan = plan_tiles(4000, 6000, budget=budget, memory=mem, overlap=64, defocus=True)
    assert plan.tiled and plan.estimate <= budget < plan.whole_estimate
    th, tw = plan.tile
    assert th % 8 == 0 and tw % 8 == 0
    for starts, length, extent in ((plan.rows, th, 4000), (plan.cols, tw, 6000)):
        assert starts[0] == 0 and starts[-1] + length == extent
        assert all(s % 8 == 0 for s in starts)
        assert all(b - a <= length - 64 for a, b in zip(starts, starts[1:]))  # overlap >= 64
    text = str(plan)
    assert "tiles:" in text and f"{tw}x{th}" in text
    with pytest.raises(MemoryBudgetError, match="too small"):
        plan_tiles(4000, 6000, budget=50 * 2**20, memory=mem)


def test_plan_prefers_the_least_total_tile_area():
    mem = MemoryModel(fixed=0, per_pixel=1.0)
    plan = plan_tiles(1000, 1000, budget=700 * 1000 + 4 * 1000 * 1000 * 3, memory=mem, overlap=32)
    th, tw = plan.tile
    area = plan.num_tiles * th * tw
    # every grid that fits covers at least as much area
    for nh in range(1, 6):
        for nw in range(1, 6):
            lh = min(1000, -(-((1000 + (nh - 1) * 32) // nh + 7) // 8) * 8)
            lw = min(1000, -(-((1000 + (nw - 1) * 32) // nw + 7) // 8) * 8)
            if nh * nw > 1 and lh * lw <= 700 * 1000:
                assert area <= nh * lh * nw * lw


def test_forced_tile_size_and_odd_sizes():
    plan = plan_tiles(97, 61, None, tile=48, overlap=16)
    assert plan.padded == (104, 64) and plan.tiled
    assert max(plan.tile) <= 48 and plan.rows[-1] + plan.tile[0] == 104 and plan.cols[-1] + plan.tile[1] == 64
    small = plan_tiles(20, 30, None, tile=48, overlap=16)
    assert not small.tiled and small.tile == (24, 32)


def test_blend_weights_sum_to_one():
    starts, length, extent = (0, 40, 80), 56, 136
    w = blend_weights(starts, length, extent, margin=0.25)
    total = torch.zeros(extent, dtype=torch.float64)
    for i, s in enumerate(starts):
        total[s:s + length] += w[i].double()
    torch.testing.assert_close(total, torch.ones(extent, dtype=torch.float64), atol=1e-6, rtol=0)
    # the first quarter of the overlap at a tile's leading edge carries no weight, its far side all of it
    assert float(w[1, :4].abs().max()) == 0.0 and float(w[1, 16:24].min()) == pytest.approx(1.0)
    assert torch.all(w[:, 1:] >= 0)


def test_tiled_run_agrees_with_the_whole_image(model):
    rgb = photo(96, 96, seed=3)
    whole = Deblurrer(model, device="cpu")
    tiled = Deblurrer(model, device="cpu", tile_size=48, overlap=16)
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
    out = Deblurrer(model, device="cpu", tile_size=32, overlap=8).deblur(rgb)
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


def test_defocus_rendering():
    d = np.array([[0.0, -1.0], [2.0, 4.0]], np.float32)
    rgb, vmax = colorize_defocus(d, vmax=4.0)
    assert rgb.shape == (2, 2, 3) and vmax == 4.0
    lum = rgb.mean(axis=2)
    assert lum[0, 0] < lum[0, 1] < lum[1, 0] < lum[1, 1]  # brighter = more defocus, sign ignored
    enc = encode_defocus_16bit(np.array([0.0, -1.5, 3.25]))
    np.testing.assert_array_equal((enc.astype(np.float64) - 32768) / 256, [0.0, -1.5, 3.25])


# --- sizes and precision -----------------------------------------------------------------------


def test_parse_size():
    assert parse_size("4G") == parse_size("4GiB") == 4 * 2**30
    assert parse_size("4GB") == 4 * 10**9
    assert parse_size("512m") == 512 * 2**20 and parse_size("1.5K") == 1536 and parse_size("100") == 100
    for bad in ("", "4X", "-1G", "0"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_precision_policy(monkeypatch):
    cpu = torch.device("cpu")
    assert resolve_precision("fp32", cpu) is None
    with pytest.raises(ValueError, match="needs a CUDA device"):
        resolve_precision("fp16", cpu)
    with pytest.raises(ValueError, match="unknown precision"):
        resolve_precision("int8", cpu)
    monkeypatch.setattr("ifan.inference.cpu_has_native_bf16", lambda: False)
    assert resolve_precision("auto", cpu) is None  # no bf16 where the CPU would emulate it
    with pytest.warns(RuntimeWarning, match="emulated"):
        assert resolve_precision("bf16", cpu) is torch.bfloat16
    monkeypatch.setattr("ifan.inference.cpu_has_native_bf16", lambda: True)
    assert resolve_precision("auto", cpu) is torch.bfloat16
    assert resolve_precision("auto", torch.device("cuda")) is torch.float16


def test_memory_model_grows_with_width_and_size():
    small = memory_model(create_model("ifan", channels=8).config)
    large = memory_model(create_model("ifan", channels=32).config)
    assert large.per_pixel > small.per_pixel
    assert large.estimate(720, 1280) > large.estimate(360, 640) > 0


def test_channels_last_and_nchw_agree(model):
    rgb = photo()
    a = Deblurrer(model, device="cpu", channels_last=True).deblur(rgb)
    b = Deblurrer(model, device="cpu", channels_last=False).deblur(rgb)
    np.testing.assert_allclose(a, b, atol=1e-5)


# --- CUDA --------------------------------------------------------------------------------------


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
@pytest.mark.parametrize("precision, min_psnr", [("fp32", 60.0), ("fp16", 35.0)])
def test_cuda_matches_cpu(precision, min_psnr):
    torch.manual_seed(0)
    model = create_model("ifan", channels=4, iterations=2).eval()
    rgb = photo(96, 96)
    cpu = Deblurrer(model, device="cpu").deblur(rgb)
    model_gpu = create_model("ifan", channels=4, iterations=2)
    model_gpu.load_state_dict(model.state_dict())
    gpu = Deblurrer(model_gpu, device="cuda", precision=precision)
    out = gpu.deblur(rgb)
    assert out.shape == rgb.shape and psnr(out, cpu) > min_psnr
    tiled = Deblurrer(model_gpu, device="cuda", precision=precision, tile_size=48, overlap=16).deblur(rgb)
    assert psnr(tiled, out) > min_psnr - 10
    t = gpu.deblur(torch.from_numpy(rgb).permute(2, 0, 1).cuda())
    assert t.is_cuda and t.shape == (3, 96, 96)


# --- CPU allocation ----------------------------------------------------------------------------


_HEAP_PROBE = """
import resource, torch
from ifan import inference

def faults_of_second_allocation():
    torch.empty(20 * 2**20).fill_(1.0)  # 80 MiB, touched, freed (larger: an aligned 64 MiB block fits in it)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(16 * 2**20).fill_(2.0)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

torch.set_num_threads(1)
counts = [faults_of_second_allocation()]
with inference.heap_allocation():
    with inference.heap_allocation():  # nested users share one setting
        counts.append(faults_of_second_allocation())
    counts.append(inference._heap_users)
counts.append(inference._heap_users)
counts.append(faults_of_second_allocation())
print(*counts)
"""


@pytest.mark.skipif(inference._LIBC is None, reason="glibc only")
def test_heap_allocation_reuses_freed_blocks_without_page_faults():
    # in a fresh process: how glibc serves a block depends on the allocation history
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "PYTHONPATH": str(Path(inference.__file__).parents[1])}
    out = subprocess.run([sys.executable, "-c", _HEAP_PROBE], capture_output=True, text=True, env=env, check=True)
    before, inside, users_inner, users_after, after = (int(v) for v in out.stdout.split())
    pages = 64 * 2**20 // 4096
    assert before > pages // 2  # glibc's default: a fresh mmap, faulted in again
    assert inside < pages // 10  # heap mode: the freed block is reused as it is
    assert (users_inner, users_after) == (1, 0)
    assert after > pages // 2  # defaults restored


def test_plan_takes_the_heap_mode_where_it_fits():
    mem = MemoryModel(fixed=0, per_pixel=100.0)
    whole = mem.estimate(1000, 1000)
    roomy = plan_tiles(1000, 1000, budget=2 * whole, memory=mem, heap_factor=1.75)
    assert roomy.heap and not roomy.tiled and roomy.estimate == int(1.75 * whole)
    # fits whole without the heap mode only: tiling in heap mode would run on > 1.25 x the pixels
    tight = plan_tiles(1000, 1000, budget=int(1.1 * whole), memory=mem, heap_factor=1.75, overlap=128)
    assert not tight.heap and not tight.tiled
    assert "C library's default" in str(tight) and "heap" in str(roomy)
    big = plan_tiles(4000, 6000, budget=600 * 2**20, memory=mem, heap_factor=1.75, overlap=64)
    assert big.heap and big.tiled and big.estimate <= 600 * 2**20
    assert not plan_tiles(1000, 1000, budget=None, memory=mem).heap  # not offered: never taken
    # heap forwards stay within the calibrated size: a large image is tiled for it, even without a budget
    huge = plan_tiles(4000, 6000, budget=None, memory=mem, heap_factor=1.75)
    assert huge.heap and huge.tiled and huge.tile[0] * huge.tile[1] <= inference.HEAP_MAX_PIXELS
    assert huge.area <= 1.25 * 4000 * 6000
