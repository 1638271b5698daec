"""Iterative Adaptive Convolution (IAC): spatially varying separable 1-D filters.

Layout of a filter tensor ``F`` for ``n`` iterations on ``c`` channels with kernel size ``k``
(the official code's layout, kept so its checkpoints load unchanged)::

    F = [kernel block 0, ..., kernel block n-1, bias 0, ..., bias n-1]
    kernel block i = [kernel1: c*k channels, kernel2: c*k channels]   (index = ch * k + tap)
    bias i         = c channels

so ``F`` has ``n * (2*c*k + c)`` channels (:func:`filter_channels`). This module owns that
layout: :func:`split_filters` cuts a whole tensor, :func:`iteration_rows` gives the channels of
one iteration (what :func:`lean_iac` computes from a 1x1 head, one iteration at a time). Each
iteration filters vertically with kernel1
(replicate padding top/bottom), then horizontally with kernel2 (replicate padding
left/right), adds its bias and applies leaky ReLU 0.1 (except after the last iteration when
``act_last`` is False).

Two forms:

* ``"separable"`` (the paper's): kernel2 in the horizontal pass. Default for new training.
* ``"official"``: kernel1 in both passes, as codeslake/IFAN computes it (its ``SAC`` reads
  kernel1 twice); the authors' released weights were trained this way.

The implementation is a sum over ``k`` shifted views of the padded input, each multiplied
by one tap of the kernel: nothing of ``k`` times the feature map is ever allocated (the
official code unfolds the input, which holds ``k`` copies).
"""

from __future__ import annotations

from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

IACForm = Literal["separable", "official"]
IAC_FORMS: frozenset[str] = frozenset({"separable", "official"})
LEAKY_SLOPE = 0.1


def _check_form(form: str) -> None:
    if form not in IAC_FORMS:
        raise ValueError(f"unknown IAC form {form!r}; expected one of {sorted(IAC_FORMS)}")


def _replicate_pad(x: Tensor, pad: int, dim: int) -> Tensor:
    """Replicate-pad ``x`` by ``pad`` on both ends of ``dim`` (cat-based: compile- and ONNX-friendly)."""
    if pad == 0:
        return x
    first = x.narrow(dim, 0, 1)
    last = x.narrow(dim, x.shape[dim] - 1, 1)
    shape = list(x.shape)
    shape[dim] = pad
    return torch.cat([first.expand(shape), x, last.expand(shape)], dim=dim)


def adaptive_conv1d(x: Tensor, kernel: Tensor, dim: int) -> Tensor:
    """Spatially varying 1-D convolution along ``dim`` (2 = vertical, 3 = horizontal).

    Args:
        x: features, ``(B, C, H, W)``.
        kernel: per-pixel, per-channel taps, ``(B, C*k, H, W)`` with index ``ch * k + tap``;
            ``k`` odd. Tap ``t`` weighs the input at offset ``t - k//2`` along ``dim``.
        dim: 2 (along H) or 3 (along W).

    Returns:
        ``(B, C, H, W)``; the input is replicate-padded along ``dim``.
    """
    b, c, h, w = x.shape
    if kernel.shape[1] % c:
        raise ValueError(f"kernel has {kernel.shape[1]} channels, not a multiple of the {c} feature channels")
    k = kernel.shape[1] // c
    if k % 2 == 0:
        raise ValueError(f"kernel size must be odd, got {k}")
    if kernel.shape[0] != b or kernel.shape[2:] != x.shape[2:]:
        raise ValueError(f"kernel shape {tuple(kernel.shape)} does not match features {tuple(x.shape)}")
    padded = _replicate_pad(x, k // 2, dim)
    taps = kernel.unflatten(1, (c, k)).unbind(2)
    size = x.shape[dim]
    out = padded.narrow(dim, 0, size) * taps[0]
    for t in range(1, k):
        out = out + padded.narrow(dim, t, size) * taps[t]
    return out


def separable_adaptive_conv(x: Tensor, kernel1: Tensor, kernel2: Tensor, form: IACForm = "separable") -> Tensor:
    """One separable adaptive convolution: vertical pass with ``kernel1``, then horizontal.

    Args:
        x: ``(B, C, H, W)``.
        kernel1, kernel2: ``(B, C*k, H, W)`` each.
        form: ``"separable"`` uses ``kernel2`` horizontally; ``"official"`` reuses ``kernel1``.
    """
    _check_form(form)
    y = adaptive_conv1d(x, kernel1, dim=2)
    return adaptive_conv1d(y, kernel1 if form == "official" else kernel2, dim=3)


def filter_channels(n: int, c: int, k: int) -> int:
    """Channels of the filter tensor of ``n`` iterations on ``c`` feature channels, kernel size ``k``.

    Example:
        >>> filter_channels(17, 128, 3)  # the paper's model
        15232
    """
    return n * (2 * c * k + c)


def iteration_rows(i: int, n: int, c: int, k: int, form: IACForm = "separable") -> list[tuple[int, int]]:
    """``(start, size)`` of the channels iteration ``i`` reads: kernel1, kernel2, bias.

    Under the ``"official"`` form kernel2 is never read, so only kernel1 and the bias are listed.

    Example:
        >>> iteration_rows(1, n=2, c=4, k=3)
        [(24, 12), (36, 12), (52, 4)]
    """
    _check_form(form)
    block = 2 * c * k
    kernels = [(i * block, c * k), (i * block + c * k, c * k)] if form == "separable" else [(i * block, c * k)]
    return [*kernels, (n * block + i * c, c)]


def split_filters(filters: Tensor, n: int, c: int, k: int) -> tuple[list[Tensor], list[Tensor], list[Tensor]]:
    """Split an IAC filter tensor into per-iteration ``kernel1``, ``kernel2`` and ``bias`` views.

    Args:
        filters: ``(B, n*(2*c*k + c), H, W)``.

    Returns:
        Three lists of length ``n`` holding ``(B, c*k, H, W)``, ``(B, c*k, H, W)`` and ``(B, c, H, W)``.
    """
    expected = filter_channels(n, c, k)
    if filters.shape[1] != expected:
        raise ValueError(
            f"IAC filters have {filters.shape[1]} channels; n={n}, c={c}, k={k} needs n*(2*c*k+c)={expected}"
        )
    # torch.split (not indexing) so that backward writes one gradient buffer, not n zero-filled ones.
    kernels, biases = torch.split(filters, [n * 2 * c * k, n * c], dim=1)
    pairs = [torch.split(block, c * k, dim=1) for block in torch.split(kernels, 2 * c * k, dim=1)]
    return [p[0] for p in pairs], [p[1] for p in pairs], list(torch.split(biases, c, dim=1))


def iac_step(x: Tensor, kernel1: Tensor, kernel2: Tensor, bias: Tensor, act: bool, form: IACForm) -> Tensor:
    """One IAC iteration: separable adaptive conv + bias (+ leaky ReLU 0.1 when ``act``)."""
    y = separable_adaptive_conv(x, kernel1, kernel2, form) + bias
    return F.leaky_relu(y, LEAKY_SLOPE) if act else y


def iac(
    x: Tensor, filters: Tensor, n: int, k: int, act_last: bool = True, form: IACForm = "separable"
) -> Tensor:
    """Iterative adaptive convolution: ``n`` iterations of :func:`iac_step`.

    Args:
        x: features ``(B, C, H, W)``.
        filters: ``(B, n*(2*C*k + C), H, W)`` in the layout described in the module docstring.
        n: number of iterations.
        k: odd 1-D kernel size.
        act_last: apply the leaky ReLU after the last iteration too.
        form: ``"separable"`` (paper) or ``"official"`` (kernel1 in both passes).

    Returns:
        ``(B, C, H, W)``.

    Example:
        >>> x = torch.randn(1, 4, 8, 8)
        >>> f = torch.randn(1, 2 * (2 * 4 * 3 + 4), 8, 8)
        >>> iac(x, f, n=2, k=3).shape
        torch.Size([1, 4, 8, 8])
    """
    _check_form(form)
    if x.dim() != 4 or filters.dim() != 4:
        raise ValueError(f"expected 4-D (B, C, H, W) tensors, got {tuple(x.shape)} and {tuple(filters.shape)}")
    k1s, k2s, biases = split_filters(filters, n, x.shape[1], k)
    for i in range(n):
        x = iac_step(x, k1s[i], k2s[i], biases[i], act=act_last or i < n - 1, form=form)
    return x


def lean_iac(x: Tensor, features: Tensor, head_weight: Tensor, head_bias: Tensor, n: int, k: int,
             act_last: bool = True, form: IACForm = "separable") -> Tensor:
    """IAC whose filters come from a 1x1 convolution head applied one iteration at a time.

    Equal to ``iac(x, conv2d(features, head_weight, head_bias), n, k, act_last, form)``, but
    the whole filter tensor (``filter_channels(n, C, k)`` channels) never exists: each
    iteration computes only its own rows of the head (:func:`iteration_rows`).

    Args:
        x: features ``(B, C, H, W)``.
        features: the head's input ``(B, F, H, W)``.
        head_weight, head_bias: the 1x1 head, ``(filter_channels(n, C, k), F, 1, 1)`` and ``(filter_channels(n, C, k),)``.
        n, k, act_last, form: as for :func:`iac`.

    Returns:
        ``(B, C, H, W)``.
    """
    c = x.shape[1]
    if head_weight.shape[0] != filter_channels(n, c, k):
        raise ValueError(f"the filter head has {head_weight.shape[0]} outputs; n={n}, c={c}, k={k} needs "
                         f"{filter_channels(n, c, k)}")
    for i in range(n):
        rows = iteration_rows(i, n, c, k, form)
        sizes = [size for _, size in rows]
        weight = torch.cat([head_weight.narrow(0, start, size) for start, size in rows])
        bias = torch.cat([head_bias.narrow(0, start, size) for start, size in rows])
        parts = torch.split(F.conv2d(features, weight, bias), sizes, dim=1)
        kernel1, kernel2 = parts[0], parts[1 if form == "separable" else 0]
        x = iac_step(x, kernel1, kernel2, parts[-1], act=act_last or i < n - 1, form=form)
    return x


class IAC(nn.Module):
    """Module wrapper of :func:`iac` (no parameters).

    Shape:
        - x: ``(B, C, H, W)``; filters: ``(B, n*(2*C*k + C), H, W)``; output: ``(B, C, H, W)``.
    """

    def __init__(self, n: int, k: int, act_last: bool = True, form: IACForm = "separable") -> None:
        super().__init__()
        _check_form(form)
        self.n, self.k, self.act_last, self.form = n, k, act_last, form

    def forward(self, x: Tensor, filters: Tensor) -> Tensor:
        return iac(x, filters, self.n, self.k, self.act_last, self.form)

    def extra_repr(self) -> str:
        return f"n={self.n}, k={self.k}, act_last={self.act_last}, form={self.form!r}"
