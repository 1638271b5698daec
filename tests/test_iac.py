"""The IAC op against a slow loop-by-loop reference, gradchecks, and the official bundle."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from ifan.ops.iac import (IAC, adaptive_conv1d, filter_channels, iac, iteration_rows, lean_iac,
                          separable_adaptive_conv, split_filters)

FORMS = ["separable", "official"]


def loop_adaptive_conv1d(x: torch.Tensor, kernel: torch.Tensor, dim: int) -> torch.Tensor:
    """out[b, ch, i, j] = sum_t x[b, ch, clamp(pos + t - k//2)] * kernel[b, ch*k + t, i, j], pixel by pixel."""
    b, c, h, w = x.shape
    k = kernel.shape[1] // c
    rows = []
    for i in range(h):
        cols = []
        for j in range(w):
            acc = torch.zeros(b, c, dtype=x.dtype)
            for t in range(k):
                if dim == 2:
                    src = x[:, :, min(max(i + t - k // 2, 0), h - 1), j]
                else:
                    src = x[:, :, i, min(max(j + t - k // 2, 0), w - 1)]
                acc = acc + src * kernel[:, [ch * k + t for ch in range(c)], i, j]
            cols.append(acc)
        rows.append(torch.stack(cols, dim=-1))
    return torch.stack(rows, dim=-2)


def loop_iac(x, filters, n, k, act_last, form):
    c = x.shape[1]
    block = 2 * c * k
    for i in range(n):
        k1 = filters[:, i * block: i * block + c * k]
        k2 = filters[:, i * block + c * k: (i + 1) * block]
        bias = filters[:, n * block + i * c: n * block + (i + 1) * c]
        x = loop_adaptive_conv1d(x, k1, 2)
        x = loop_adaptive_conv1d(x, k1 if form == "official" else k2, 3) + bias
        if act_last or i < n - 1:
            x = torch.where(x > 0, x, 0.1 * x)
    return x


@pytest.mark.parametrize("k", [1, 3, 5, 7])
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("act_last", [True, False])
def test_iac_matches_loop_reference_forward_and_backward(k, form, act_last):
    n, c = 2, 3
    x = torch.randn(2, c, 5, 6, dtype=torch.float64, requires_grad=True)
    filters = (0.5 * torch.randn(2, n * (2 * c * k + c), 5, 6, dtype=torch.float64)).requires_grad_()
    out = iac(x, filters, n, k, act_last, form)
    ref = loop_iac(x, filters, n, k, act_last, form)
    torch.testing.assert_close(out, ref, atol=1e-12, rtol=1e-12)
    grad = torch.randn_like(out)
    gx, gf = torch.autograd.grad(out, (x, filters), grad)
    rx, rf = torch.autograd.grad(ref, (x, filters), grad)
    torch.testing.assert_close(gx, rx, atol=1e-12, rtol=1e-12)
    torch.testing.assert_close(gf, rf, atol=1e-12, rtol=1e-12)


def test_forms_differ_and_official_ignores_kernel2():
    n, c, k = 2, 4, 3
    x = torch.randn(1, c, 6, 7)
    filters = torch.randn(1, n * (2 * c * k + c), 6, 7)
    assert not torch.allclose(iac(x, filters, n, k, form="separable"), iac(x, filters, n, k, form="official"))
    # kernel2 channels changed: the official form does not see them, the separable one does.
    changed = filters.clone()
    for i in range(n):
        changed[:, i * 2 * c * k + c * k: (i + 1) * 2 * c * k] = torch.randn(1, c * k, 6, 7)
    torch.testing.assert_close(iac(x, changed, n, k, form="official"), iac(x, filters, n, k, form="official"))
    assert not torch.allclose(iac(x, changed, n, k, form="separable"), iac(x, filters, n, k, form="separable"))


@pytest.mark.slow
@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("k", [1, 3, 5])
def test_gradcheck_float64(form, k):
    n, c = 2, 2
    x = torch.randn(1, c, 3, 4, dtype=torch.float64, requires_grad=True)
    filters = (0.5 * torch.randn(1, n * (2 * c * k + c), 3, 4, dtype=torch.float64)).requires_grad_()
    assert torch.autograd.gradcheck(lambda a, f: iac(a, f, n, k, True, form), (x, filters))
    if k == 3:
        assert torch.autograd.gradgradcheck(lambda a, f: iac(a, f, n, k, False, form), (x, filters))


@pytest.mark.parametrize("form", FORMS)
def test_non_contiguous_inputs(form):
    n, c, k = 2, 3, 3
    x = torch.randn(1, c, 7, 6).transpose(2, 3)  # (1, c, 6, 7), non-contiguous
    filters = torch.randn(1, n * (2 * c * k + c), 7, 6).transpose(2, 3)
    assert not x.is_contiguous() and not filters.is_contiguous()
    out = iac(x, filters, n, k, form=form)
    torch.testing.assert_close(out, loop_iac(x.contiguous(), filters.contiguous(), n, k, True, form))
    # channels_last, as the fast CPU path uses
    out_cl = iac(x.contiguous(memory_format=torch.channels_last),
                 filters.contiguous(memory_format=torch.channels_last), n, k, form=form)
    torch.testing.assert_close(out_cl, out)


def test_module_equals_function():
    n, c, k = 3, 2, 5
    x = torch.randn(2, c, 5, 5)
    filters = torch.randn(2, n * (2 * c * k + c), 5, 5)
    module = IAC(n, k, act_last=False, form="official")
    torch.testing.assert_close(module(x, filters), iac(x, filters, n, k, act_last=False, form="official"))
    assert "form='official'" in repr(module)


@pytest.mark.parametrize(
    "key, form, act_last",
    [
        ("iac_act_last_true", "official", True),
        ("iac_act_last_false", "official", False),
        ("iac_corrected", "separable", True),
        ("iac_corrected_act_last_false", "separable", False),
    ],
)
def test_official_bundle_iac(ref_small, key, form, act_last):
    out = iac(ref_small["iac_feat"], ref_small["iac_F"], ref_small["iac_N"], ref_small["iac_k"], act_last, form)
    torch.testing.assert_close(out, ref_small[key], atol=1e-5, rtol=0)


def test_single_pass_and_split_layout():
    c, k = 2, 3
    x = torch.randn(1, c, 4, 4)
    kernel = torch.randn(1, c * k, 4, 4)
    torch.testing.assert_close(adaptive_conv1d(x, kernel, 2), loop_adaptive_conv1d(x, kernel, 2))
    torch.testing.assert_close(adaptive_conv1d(x, kernel, 3), loop_adaptive_conv1d(x, kernel, 3))
    k1s, k2s, biases = split_filters(torch.arange(2 * (2 * c * k + c)).view(1, -1, 1, 1).float(), 2, c, k)
    assert k1s[1].flatten().tolist() == list(range(12, 18))
    assert k2s[0].flatten().tolist() == list(range(6, 12))
    assert biases[1].flatten().tolist() == [26.0, 27.0]
    # separable_adaptive_conv is the two passes
    torch.testing.assert_close(
        separable_adaptive_conv(x, kernel, kernel, "separable"),
        adaptive_conv1d(adaptive_conv1d(x, kernel, 2), kernel, 3),
    )


@pytest.mark.parametrize("form", FORMS)
def test_iteration_rows_are_the_rows_split_filters_cuts(form):
    n, c, k = 3, 2, 5
    filters = torch.arange(filter_channels(n, c, k)).view(1, -1, 1, 1).float()
    k1s, k2s, biases = split_filters(filters, n, c, k)
    for i in range(n):
        rows = [filters[:, start:start + size] for start, size in iteration_rows(i, n, c, k, form)]
        expected = [k1s[i], k2s[i], biases[i]] if form == "separable" else [k1s[i], biases[i]]
        assert len(rows) == len(expected)
        for got, want in zip(rows, expected):
            torch.testing.assert_close(got, want)


@pytest.mark.parametrize("form", FORMS)
@pytest.mark.parametrize("act_last", [True, False])
def test_lean_iac_equals_iac_of_the_whole_head(form, act_last):
    n, c, k, feats = 3, 4, 3, 5
    x, features = torch.randn(2, c, 6, 7), torch.randn(2, feats, 6, 7)
    weight, bias = torch.randn(filter_channels(n, c, k), feats, 1, 1), torch.randn(filter_channels(n, c, k))
    whole = iac(x, F.conv2d(features, weight, bias), n, k, act_last, form)
    torch.testing.assert_close(lean_iac(x, features, weight, bias, n, k, act_last, form), whole, atol=1e-5, rtol=1e-5)
    with pytest.raises(ValueError, match="filter head has"):
        lean_iac(x, features, weight[:-1], bias[:-1], n, k)


def test_bad_arguments_raise_clear_errors():
    x = torch.randn(1, 3, 4, 4)
    with pytest.raises(ValueError, match="n\\*\\(2\\*c\\*k\\+c\\)"):
        iac(x, torch.randn(1, 10, 4, 4), n=2, k=3)
    with pytest.raises(ValueError, match="unknown IAC form"):
        iac(x, torch.randn(1, 2 * 21, 4, 4), n=2, k=3, form="kernel2")
    with pytest.raises(ValueError, match="odd"):
        adaptive_conv1d(x, torch.randn(1, 6, 4, 4), 2)
    with pytest.raises(ValueError, match="does not match"):
        adaptive_conv1d(x, torch.randn(1, 9, 4, 5), 2)
