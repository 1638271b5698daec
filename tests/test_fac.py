"""The FAC op against a pixel-by-pixel float64 reference, gradchecks, the lean head path, bad shapes."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ifan.ops import FAC, fac, lean_fac
from ifan.ops.fac import fac_channels


def loop_fac(x: torch.Tensor, filters: torch.Tensor) -> torch.Tensor:
    """The issue's formula, pixel by pixel: zero outside the map, taps row-major (ky*k + kx)."""
    b, c, h, w = x.shape
    k = int(round(filters.shape[2] ** 0.5))
    out = torch.zeros_like(x)
    for y in range(h):
        for xx in range(w):
            for ky in range(k):
                for kx in range(k):
                    sy, sx = y + ky - k // 2, xx + kx - k // 2
                    if 0 <= sy < h and 0 <= sx < w:
                        out[:, :, y, xx] += filters[:, :, ky * k + kx, y, xx] * x[:, :, sy, sx]
    return out


@pytest.mark.parametrize("k", [1, 3, 5, 7])
def test_fac_matches_loop_reference_forward_and_backward(k):
    x = torch.randn(2, 3, 5, 6, dtype=torch.float64, requires_grad=True)
    filters = torch.randn(2, 3, k * k, 5, 6, dtype=torch.float64, requires_grad=True)
    out = fac(x, filters)
    ref = loop_fac(x, filters)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=1e-12)
    grad = torch.randn_like(out)
    got = torch.autograd.grad(out, (x, filters), grad)
    want = torch.autograd.grad(ref, (x, filters), grad)
    for g, r in zip(got, want):
        torch.testing.assert_close(g, r, atol=1e-12, rtol=1e-12)


def test_fac_filter_larger_than_the_map():
    """k = 7 on a 3 x 4 map: most taps fall outside and must contribute nothing."""
    x = torch.randn(1, 2, 3, 4, dtype=torch.float64)
    filters = torch.randn(1, 2, 49, 3, 4, dtype=torch.float64)
    torch.testing.assert_close(fac(x, filters), loop_fac(x, filters), atol=1e-12, rtol=1e-12)


def test_fac_is_a_shift_for_a_one_hot_filter():
    """A filter whose only tap is (ky, kx) reads x at (y + ky - k//2, x + kx - k//2), zero outside."""
    x = torch.arange(2 * 4 * 5, dtype=torch.float64).view(1, 2, 4, 5)
    filters = torch.zeros(1, 2, 9, 4, 5, dtype=torch.float64)
    filters[:, :, 0 * 3 + 2] = 1.0  # ky = 0 (one row up), kx = 2 (one column right)
    expected = torch.zeros_like(x)
    expected[:, :, 1:, :-1] = x[:, :, :-1, 1:]
    torch.testing.assert_close(fac(x, filters), expected, atol=0, rtol=0)


@pytest.mark.parametrize("k", [1, 3])
def test_gradcheck_both_inputs(k):
    x = torch.randn(1, 2, 4, 3, dtype=torch.float64, requires_grad=True)
    filters = torch.randn(1, 2, k * k, 4, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(fac, (x, filters))


def test_non_contiguous_inputs():
    x = torch.randn(2, 5, 6, 3, dtype=torch.float64).permute(0, 3, 1, 2)  # (2, 3, 5, 6), channels last
    filters = torch.randn(2, 5, 6, 3, 9, dtype=torch.float64).permute(0, 3, 4, 1, 2)
    assert not x.is_contiguous() and not filters.is_contiguous()
    torch.testing.assert_close(fac(x, filters), loop_fac(x.contiguous(), filters.contiguous()),
                               atol=1e-12, rtol=1e-12)


def test_bfloat16_is_summed_in_float32():
    """289 taps in bfloat16: the result is the float64 sum of the same bf16 values, rounded once."""
    x = torch.randn(1, 4, 8, 8).bfloat16()
    filters = (torch.randn(1, 4, 17 * 17, 8, 8) / 17).bfloat16()
    out = fac(x, filters)
    assert out.dtype == torch.bfloat16
    exact = fac(x.double(), filters.double())
    torch.testing.assert_close(out.double(), exact.to(torch.bfloat16).double(), atol=0, rtol=2 ** -7)


def test_module_equals_function_and_takes_flat_filters():
    x = torch.randn(2, 3, 6, 5)
    filters = torch.randn(2, 3, 25, 6, 5)
    module = FAC(5)
    assert torch.equal(module(x, filters), fac(x, filters))
    # the flattened layout (B, C*k*k, H, W): index c*k*k + tap
    assert torch.equal(module(x, filters.flatten(1, 2)), fac(x, filters))
    assert "k=5" in repr(module)


@pytest.mark.parametrize("group", [None, 1, 4, 25])
def test_lean_fac_equals_fac_of_the_whole_head(group):
    c, k, feat = 3, 5, 4
    x = torch.randn(2, c, 6, 7, dtype=torch.float64, requires_grad=True)
    features = torch.randn(2, feat, 6, 7, dtype=torch.float64)
    weight = torch.randn(fac_channels(c, k), feat, 1, 1, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(fac_channels(c, k), dtype=torch.float64)
    filters = F.conv2d(features, weight, bias).unflatten(1, (c, k * k))
    want = fac(x, filters)
    got = lean_fac(x, features, weight, bias, k, taps_per_group=group)
    torch.testing.assert_close(got, want, atol=1e-12, rtol=1e-12)
    grad = torch.randn_like(want)
    for g, r in zip(torch.autograd.grad(got, (x, weight), grad), torch.autograd.grad(want, (x, weight), grad)):
        torch.testing.assert_close(g, r, atol=1e-11, rtol=1e-11)


@pytest.mark.parametrize(("x_shape", "f_shape", "message"), [
    ((2, 3, 5, 6), (2, 3, 8, 5, 6), "8 taps per pixel"),        # not a square
    ((2, 3, 5, 6), (2, 3, 4, 5, 6), "4 taps per pixel"),        # even k
    ((2, 3, 5, 6), (2, 4, 9, 5, 6), "do not match x"),          # channels
    ((2, 3, 5, 6), (1, 3, 9, 5, 6), "do not match x"),          # batch
    ((2, 3, 5, 6), (2, 3, 9, 5, 7), "do not match x"),          # width
    ((2, 3, 5, 6), (2, 27, 5, 6), "filters must be (B, C, k*k, H, W)"),
    ((3, 5, 6), (2, 3, 9, 5, 6), "x must be (B, C, H, W)"),
])
def test_bad_shapes_raise_clear_errors(x_shape, f_shape, message):
    with pytest.raises(ValueError, match=message.replace("(", r"\(").replace(")", r"\)").replace("*", r"\*")):
        fac(torch.randn(x_shape), torch.randn(f_shape))


def test_module_and_lean_refuse_wrong_sizes():
    with pytest.raises(ValueError, match="positive odd integer"):
        FAC(4)
    with pytest.raises(ValueError, match="needs C\\*k\\*k = 27"):
        FAC(3)(torch.randn(1, 3, 4, 4), torch.randn(1, 26, 4, 4))
    with pytest.raises(ValueError, match="k=5 needs 25"):
        FAC(5)(torch.randn(1, 3, 4, 4), torch.randn(1, 3, 9, 4, 4))
    with pytest.raises(ValueError, match="c\\*k\\*k = 27"):
        lean_fac(torch.randn(1, 3, 4, 4), torch.randn(1, 2, 4, 4), torch.randn(26, 2, 1, 1), None, 3)
    with pytest.raises(ValueError, match="odd"):
        lean_fac(torch.randn(1, 3, 4, 4), torch.randn(1, 2, 4, 4), torch.randn(48, 2, 1, 1), None, 4)


def test_lean_fac_under_bfloat16_autocast_follows_the_float64_result():
    """The bfloat16 path (channels-last taps, float32 sum) stays within bfloat16 rounding of float64."""
    c, k, feat = 4, 5, 6
    x = torch.randn(1, c, 9, 11).contiguous(memory_format=torch.channels_last)
    features = torch.randn(1, feat, 9, 11).contiguous(memory_format=torch.channels_last)
    weight = torch.randn(fac_channels(c, k), feat, 1, 1) / feat
    bias = torch.randn(fac_channels(c, k)) / 10
    x = x.bfloat16()  # in the network, the extractor's features come out of autocast in bfloat16
    exact = lean_fac(x.double(), features.double(), weight.double(), bias.double(), k)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        got = lean_fac(x, features, weight, bias, k)
    assert got.dtype == torch.bfloat16
    assert ((got.double() - exact).norm() / exact.norm()).item() < 2e-2
