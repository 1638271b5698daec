"""Filter Adaptive Convolution (FAC): a dense ``k x k`` filter per pixel and per channel.

The layer of STFAN (Zhou et al., ICCV 2019) and the baseline that IFAN's IAC is measured against
(its Table 5 replaces IAC with it). For features ``x`` of ``(B, C, H, W)`` and filters of
``(B, C, k*k, H, W)``, taps in row-major order ``t = ky*k + kx``::

    out[b, c, y, x] = sum over ky, kx of filters[b, c, ky*k + kx, y, x] * x[b, c, y + ky - k//2, x + kx - k//2]

with zero padding (positions outside the map contribute nothing). A filter tensor flattened to
``(B, C*k*k, H, W)`` has the index ``c*k*k + t``, STFAN's layout.

The implementation is a sum over the ``k*k`` shifted views of the zero-padded input, each times
one tap slice of the filters (:func:`torch.Tensor.unbind`: views, so the backward pass writes one
gradient buffer for the filters). Nothing of ``k*k`` times the feature map is allocated (an
``unfold`` would hold ``(B, C*k*k, H, W)``); the filters themselves are that size, which is FAC's
cost. :func:`lean_fac` applies a 1x1 filter head one group of taps at a time, so at inference the
whole filter tensor never exists either.
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def fac_channels(c: int, k: int) -> int:
    """Channels of a flattened FAC filter tensor for ``c`` feature channels and a ``k x k`` filter.

    Example:
        >>> fac_channels(64, 17)
        18496
    """
    return c * k * k


def _kernel_size(filters: Tensor, x: Tensor) -> int:
    if x.dim() != 4:
        raise ValueError(f"fac: x must be (B, C, H, W), got shape {tuple(x.shape)}")
    if filters.dim() != 5:
        raise ValueError(f"fac: filters must be (B, C, k*k, H, W), got shape {tuple(filters.shape)}")
    b, c, h, w = x.shape
    taps = filters.shape[2]
    k = math.isqrt(taps)
    if k * k != taps or k % 2 == 0:
        raise ValueError(f"fac: filters hold {taps} taps per pixel; expected k*k for an odd k (9, 25, 49, ...)")
    if (filters.shape[0], filters.shape[1], *filters.shape[3:]) != (b, c, h, w):
        raise ValueError(f"fac: filters {tuple(filters.shape)} do not match x {tuple(x.shape)}; "
                         f"expected ({b}, {c}, {taps}, {h}, {w})")
    return k


def _shifted_sum(padded: Tensor, taps: list[Tensor] | tuple[Tensor, ...], k: int, first: int, h: int, w: int,
                 out: Tensor | None) -> Tensor:
    """``out + sum_i padded[..., ky:ky+h, kx:kx+w] * taps[i]`` for taps ``first, first+1, ...``.

    The sum is held in float32 (or float64) whatever the inputs: in bfloat16 a sum of 289 taps
    (k = 17) would lose about 1.5 % of its value to rounding, a convolution's accumulator does not."""
    for i, tap in enumerate(taps, start=first):
        ky, kx = divmod(i, k)
        view = padded[..., ky:ky + h, kx:kx + w]
        if out is None:
            out = view.to(torch.promote_types(view.dtype, torch.float32)) * tap
        else:
            out = torch.addcmul(out, view, tap)
    return out


class _ShiftSumFAC(torch.autograd.Function):
    """FAC with a hand-written backward: both gradients are sums over the ``k*k`` taps again, written
    into one buffer each (autograd's own backward of the shift-sum allocates a zero-filled padded
    map per tap, which made it 2-3x slower at k = 17)."""

    @staticmethod
    def forward(ctx, x: Tensor, filters: Tensor) -> Tensor:
        k = math.isqrt(filters.shape[2])
        h, w = x.shape[-2:]
        p = k // 2
        filters = filters.contiguous()  # one (H, W) plane per tap: a channels-last head output is strided by k*k
        padded = F.pad(x, (p, p, p, p)) if p else x
        ctx.save_for_backward(x, filters)
        out = _shifted_sum(padded, filters.unbind(2), k, 0, h, w, None)
        return out.to(torch.result_type(x, filters))

    @staticmethod
    @torch.autograd.function.once_differentiable
    def backward(ctx, grad: Tensor) -> tuple[Tensor | None, Tensor | None]:
        x, filters = ctx.saved_tensors
        k = math.isqrt(filters.shape[2])
        h, w = x.shape[-2:]
        p = k // 2
        grad_x = grad_f = None
        if ctx.needs_input_grad[1]:  # d out / d filters[t] = the input shifted by tap t
            padded = F.pad(x, (p, p, p, p)) if p else x
            grad_f = torch.empty_like(filters)
            for t in range(k * k):
                ky, kx = divmod(t, k)
                torch.mul(grad, padded[..., ky:ky + h, kx:kx + w], out=grad_f[:, :, t])
        if ctx.needs_input_grad[0]:  # d out / d x: each tap's filter, shifted back, summed in float32
            acc = torch.zeros((*x.shape[:2], h + 2 * p, w + 2 * p), dtype=torch.promote_types(x.dtype, torch.float32),
                              device=x.device)
            for t in range(k * k):
                ky, kx = divmod(t, k)
                acc[..., ky:ky + h, kx:kx + w].addcmul_(grad, filters[:, :, t])
            grad_x = acc[..., p:p + h, p:p + w].to(x.dtype)
        return grad_x, grad_f


def fac(x: Tensor, filters: Tensor) -> Tensor:
    """Filter adaptive convolution (module docstring): per-pixel, per-channel dense filters.

    Args:
        x: features ``(B, C, H, W)``.
        filters: ``(B, C, k*k, H, W)``, ``k`` odd, taps row-major (``ky*k + kx``).

    Returns:
        ``(B, C, H, W)``, in the dtype of ``x * filters`` (summed in float32 at least).

    Raises:
        ValueError: a shape that does not fit (named in the message).

    Example:
        >>> x = torch.randn(1, 2, 5, 5)
        >>> identity = torch.zeros(1, 2, 9, 5, 5)
        >>> identity[:, :, 4] = 1  # the centre tap of a 3 x 3 filter
        >>> torch.equal(fac(x, identity), x)
        True
    """
    _kernel_size(filters, x)
    return _ShiftSumFAC.apply(x, filters)


def _reduced_precision(t: Tensor) -> bool:
    """Whether a convolution of ``t`` runs in bfloat16/float16 (its dtype, or autocast)."""
    low = (torch.bfloat16, torch.float16)
    kind = t.device.type
    return t.dtype in low or (torch.is_autocast_enabled(kind) and torch.get_autocast_dtype(kind) in low)


def lean_fac(x: Tensor, features: Tensor, head_weight: Tensor, head_bias: Tensor | None, k: int,
             taps_per_group: int | None = None) -> Tensor:
    """FAC whose filters come from a 1x1 convolution head, applied a group of taps at a time.

    Equal to ``fac(x, conv2d(features, head_weight, head_bias).unflatten(1, (C, k*k)))``, but
    only ``taps_per_group`` taps of the filters exist at once (default ``k``: one row of the
    filter), so the peak is ``C * taps_per_group`` channels instead of ``C * k * k``.

    Args:
        x: features ``(B, C, H, W)``.
        features: the head's input ``(B, F, H, W)``.
        head_weight, head_bias: the 1x1 head, ``(C*k*k, F, 1, 1)`` and ``(C*k*k,)`` (or None);
            output channel ``c*k*k + t`` is tap ``t`` of channel ``c``.
        k: the odd filter size.

    Returns:
        ``(B, C, H, W)``.
    """
    b, c, h, w = x.shape
    if k % 2 == 0 or k < 1:
        raise ValueError(f"lean_fac: k must be odd and positive, got {k}")
    if head_weight.shape[0] != fac_channels(c, k):
        raise ValueError(f"lean_fac: the filter head has {head_weight.shape[0]} outputs; c={c}, k={k} needs "
                         f"c*k*k = {fac_channels(c, k)}")
    group = taps_per_group or k
    weight = head_weight.unflatten(0, (c, k * k))  # (C, k*k, F, 1, 1): views
    bias = head_bias.unflatten(0, (c, k * k)) if head_bias is not None else None
    p = k // 2
    # the sum is held in float32: upcast the (small) input once, not each of the k*k products
    padded = F.pad(x, (p, p, p, p)).to(torch.promote_types(x.dtype, torch.float32))
    if not _reduced_precision(features):
        # NCHW head outputs (each tap an (H, W) plane) are faster in float32; a bfloat16 convolution
        # into NCHW is not (oneDNN: 13x slower than channels last at 1280 x 720), so there the taps stay strided
        features = features.contiguous()
    out, dtype = None, x.dtype
    for first in range(0, k * k, group):
        n = min(group, k * k - first)
        w_g = weight[:, first:first + n].flatten(0, 1)  # (C*n, F, 1, 1), index c*n + j
        b_g = bias[:, first:first + n].flatten() if bias is not None else None
        taps = F.conv2d(features, w_g, b_g).unflatten(1, (c, n)).unbind(2)
        dtype = torch.result_type(x, taps[0])
        out = _shifted_sum(padded, taps, k, first, h, w, out)
    return out.to(dtype)


class FAC(nn.Module):
    """Module wrapper of :func:`fac` (no parameters).

    Shape:
        - x: ``(B, C, H, W)``; filters: ``(B, C, k*k, H, W)`` or flattened ``(B, C*k*k, H, W)``;
          output ``(B, C, H, W)``.
    """

    def __init__(self, k: int) -> None:
        super().__init__()
        if not isinstance(k, int) or k < 1 or k % 2 == 0:
            raise ValueError(f"FAC: k must be a positive odd integer, got {k!r}")
        self.k = k

    def forward(self, x: Tensor, filters: Tensor) -> Tensor:
        if filters.dim() == 4:
            if filters.shape[1] != fac_channels(x.shape[1], self.k):
                raise ValueError(f"FAC: flattened filters have {filters.shape[1]} channels; "
                                 f"C={x.shape[1]}, k={self.k} needs C*k*k = {fac_channels(x.shape[1], self.k)}")
            filters = filters.unflatten(1, (x.shape[1], self.k * self.k))
        if filters.dim() == 5 and filters.shape[2] != self.k * self.k:
            raise ValueError(f"FAC: filters hold {filters.shape[2]} taps; k={self.k} needs {self.k * self.k}")
        return fac(x, filters)

    def extra_repr(self) -> str:
        return f"k={self.k}"
