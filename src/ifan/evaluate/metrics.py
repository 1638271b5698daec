"""Image-quality metrics, per image, in PyTorch: PSNR, SSIM, MAE (+ LPIPS via :mod:`ifan.evaluate.lpips`).

Two layers:

* functional metrics on tensors, ``(B, C, H, W)`` in, ``(B,)`` out (one value per image), computed in
  float64 (float32 on devices without float64): :func:`psnr`, :func:`ssim`, :func:`mae`;
* :func:`score_image`, which scores one ``(H, W, C)`` output/target pair (numpy or torch) under an
  evaluation :class:`Protocol` and returns plain Python floats.

The ``"official"`` protocol reproduces the IFAN authors' evaluation (codeslake/IFAN ``eval.py``):

* the input (and target) is cropped, top-left kept, to a multiple of 8 in height and width;
* the network output is clipped to ``[0, 1]`` and kept in float (not quantised to 8 bits);
* PSNR with data range 1: ``10 * log10(1 / mean((out - gt) ** 2))`` over all pixels and channels;
* SSIM exactly as ``skimage.metrics.structural_similarity(out, gt, data_range=1, channel_axis=-1)``
  with its defaults: a 7x7 uniform window, sample covariance (``N / (N - 1)``), K1 = 0.01,
  K2 = 0.03, the ``(7 - 1) / 2`` border of the SSIM map dropped before the mean, the mean taken per
  channel and then over channels. Reimplemented here, so scikit-image is not needed at run time;
* MAE: the mean absolute error of each channel, averaged over the channels (= the mean over all values).

The ``"full"`` protocol scores the full-size output (no crop), otherwise the same.

Identical images: the MSE is 0 and :func:`psnr` returns ``+inf`` (not a large finite number, and not
NaN). :mod:`ifan.evaluate.summary` handles it (the mean PSNR is then ``inf`` and the
number of infinite values is reported). SSIM of identical images is 1, MAE 0. Constant images
never produce NaN (the SSIM constants keep every denominator positive).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import Tensor

from ifan.models.ifan import DOWNSCALE

if TYPE_CHECKING:  # pragma: no cover
    from ifan.evaluate.lpips import LPIPS

METRIC_NAMES: tuple[str, ...] = ("psnr", "ssim", "mae", "lpips")

# SSIM constants of Wang et al. 2004, as scikit-image uses them.
SSIM_K1 = 0.01
SSIM_K2 = 0.03
SSIM_WIN_SIZE = 7


# --------------------------------------------------------------------------------------------------
# conversions and checks (the only place where numpy <-> torch and HWC <-> NCHW happen)
# --------------------------------------------------------------------------------------------------
def _compute_dtype(device: torch.device) -> torch.dtype:
    """float64 wherever the device has it (MPS does not)."""
    return torch.float32 if device.type == "mps" else torch.float64


def to_nchw(image: np.ndarray | Tensor, dtype: torch.dtype | None = None) -> Tensor:
    """One image, ``(H, W)`` or ``(H, W, C)`` (numpy or torch, any real dtype), as a ``(1, C, H, W)`` tensor.

    Integer arrays are taken at face value (no rescaling): pass floats in ``[0, 1]``.

    Args:
        image: ``(H, W)`` or ``(H, W, C)``.
        dtype: result dtype; default float64 (float32 on MPS).

    Returns:
        ``(1, C, H, W)`` on the input's device (CPU for numpy).
    """
    t = torch.from_numpy(np.ascontiguousarray(image)) if isinstance(image, np.ndarray) else image
    if not isinstance(t, Tensor):
        raise TypeError(f"expected a numpy array or a torch tensor, got {type(image).__name__}")
    if t.dtype == torch.bool or t.is_complex():
        raise TypeError(f"expected a real-valued image, got dtype {t.dtype}")
    if t.dim() == 2:
        t = t.unsqueeze(-1)
    if t.dim() != 3:
        raise ValueError(f"expected one image of shape (H, W) or (H, W, C), got shape {tuple(t.shape)}")
    dtype = dtype or _compute_dtype(t.device)
    return t.permute(2, 0, 1).unsqueeze(0).to(dtype)


def _check_pair(x: Tensor, y: Tensor, name: str) -> None:
    if not isinstance(x, Tensor) or not isinstance(y, Tensor):
        raise TypeError(f"{name}: expected torch tensors, got {type(x).__name__} and {type(y).__name__}")
    if x.dim() != 4:
        raise ValueError(f"{name}: expected (B, C, H, W) tensors, got shape {tuple(x.shape)}")
    if x.shape != y.shape:
        raise ValueError(f"{name}: shapes differ: {tuple(x.shape)} vs {tuple(y.shape)}")


def _as_compute(x: Tensor) -> Tensor:
    return x.to(_compute_dtype(x.device))


# --------------------------------------------------------------------------------------------------
# functional metrics: (B, C, H, W) -> (B,)
# --------------------------------------------------------------------------------------------------
def mse(x: Tensor, y: Tensor) -> Tensor:
    """Mean squared error per image.

    Args:
        x, y: ``(B, C, H, W)``.

    Returns:
        ``(B,)`` float64 (float32 on MPS).
    """
    _check_pair(x, y, "mse")
    d = _as_compute(x) - _as_compute(y)
    return (d * d).mean(dim=(1, 2, 3))


def psnr(x: Tensor, y: Tensor, data_range: float = 1.0) -> Tensor:
    """Peak signal-to-noise ratio per image, ``10 * log10(data_range**2 / MSE)``, in dB.

    Args:
        x, y: ``(B, C, H, W)``, values in ``[0, data_range]``.
        data_range: the peak value (1 for images in ``[0, 1]``).

    Returns:
        ``(B,)`` float64. ``+inf`` where the two images are identical (MSE = 0).

    Example:
        >>> x = torch.zeros(2, 3, 8, 8); y = x.clone(); y[1] += 0.1
        >>> [round(v, 3) for v in psnr(x, y).tolist()]
        [inf, 20.0]
    """
    if not data_range > 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    err = mse(x, y)
    peak = torch.full_like(err, float(data_range) ** 2)
    out = 10.0 * torch.log10(peak / err)  # err == 0 -> peak / 0 = inf -> inf (never NaN: peak > 0)
    return torch.where(err == 0, torch.full_like(err, math.inf), out)


def image_psnr(output: np.ndarray | Tensor, target: np.ndarray | Tensor, data_range: float = 1.0) -> float:
    """:func:`psnr` of one ``(H, W)`` or ``(H, W, C)`` pair (numpy or torch), in dB: the one place
    where PSNR is taken of images outside the tensor pipeline (benchmarks, scripts).

    Example:
        >>> a = np.zeros((4, 4, 3)); b = a + 0.01
        >>> round(image_psnr(b, a), 6)
        40.0
    """
    return float(psnr(to_nchw(output), to_nchw(target), data_range)[0])


def mae(x: Tensor, y: Tensor) -> Tensor:
    """Mean absolute error per image (the mean over channels of the per-channel MAE).

    Args:
        x, y: ``(B, C, H, W)``.

    Returns:
        ``(B,)`` float64.
    """
    _check_pair(x, y, "mae")
    return (_as_compute(x) - _as_compute(y)).abs().mean(dim=(1, 2, 3))


def _window_mean(x: Tensor, win_size: int) -> Tensor:
    """Mean over every ``win_size x win_size`` window inside ``x`` (``(..., H, W)`` ->
    ``(..., H - win_size + 1, W - win_size + 1)``), separable: rows then columns."""
    rows = x.unfold(-2, win_size, 1).sum(-1)
    return rows.unfold(-1, win_size, 1).sum(-1) / (win_size * win_size)


def ssim(x: Tensor, y: Tensor, data_range: float = 1.0, win_size: int = SSIM_WIN_SIZE) -> Tensor:
    """Mean SSIM per image, equal to scikit-image's ``structural_similarity`` with its defaults.

    Per channel: local means, variances and covariance over every ``win_size x win_size`` window
    that lies inside the image (uniform weights, sample covariance ``N / (N - 1)``), the SSIM map
    ``((2 ux uy + C1)(2 vxy + C2)) / ((ux^2 + uy^2 + C1)(vx + vy + C2))`` with
    ``C1 = (0.01 * data_range)^2`` and ``C2 = (0.03 * data_range)^2``, averaged; then the mean over
    channels. Only windows inside the image are used, which is exactly scikit-image's result after
    it drops the ``(win_size - 1) / 2`` border of its (reflect-padded) map.

    Args:
        x, y: ``(B, C, H, W)``, ``H, W >= win_size``; any C (1 for grayscale, 3 for RGB).
        data_range: the value range (1 for images in ``[0, 1]``).
        win_size: odd window side, at least 3 (default 7).

    Returns:
        ``(B,)`` float64, in ``[-1, 1]``; 1 for identical images (constant ones included).
    """
    _check_pair(x, y, "ssim")
    if not data_range > 0:
        raise ValueError(f"data_range must be positive, got {data_range}")
    if win_size < 3 or win_size % 2 == 0:
        raise ValueError(f"win_size must be odd and >= 3, got {win_size}")
    b, c, h, w = x.shape
    if h < win_size or w < win_size:
        raise ValueError(f"ssim: images of {h}x{w} are smaller than the {win_size}x{win_size} window")
    c1 = (SSIM_K1 * data_range) ** 2
    c2 = (SSIM_K2 * data_range) ** 2
    n = win_size * win_size
    cov_norm = n / (n - 1)
    total = torch.zeros(b, dtype=_compute_dtype(x.device), device=x.device)
    for ch in range(c):  # one channel at a time: bounded memory on large images
        xc = _as_compute(x[:, ch : ch + 1])
        yc = _as_compute(y[:, ch : ch + 1])
        stats = _window_mean(torch.cat([xc, yc, xc * xc, yc * yc, xc * yc], dim=1), win_size)
        ux, uy, uxx, uyy, uxy = stats.unbind(1)
        vx = cov_norm * (uxx - ux * ux)
        vy = cov_norm * (uyy - uy * uy)
        vxy = cov_norm * (uxy - ux * uy)
        num = (2 * ux * uy + c1) * (2 * vxy + c2)
        den = (ux * ux + uy * uy + c1) * (vx + vy + c2)
        total = total + (num / den).mean(dim=(1, 2))
    return total / c


# --------------------------------------------------------------------------------------------------
# protocols
# --------------------------------------------------------------------------------------------------
def crop_hw(x: np.ndarray | Tensor, multiple: int | None, layout: str = "HWC") -> Any:
    """Crop height and width down to a multiple of ``multiple``, keeping the top-left corner.

    This is the official IFAN crop (``refine_image``): ``H - H % m`` rows and ``W - W % m`` columns.

    Args:
        x: an ``(H, W)``/``(H, W, C)`` image (``layout="HWC"``) or a ``(..., H, W)`` tensor
            (``layout="CHW"``).
        multiple: the multiple, or ``None`` for no crop.
        layout: ``"HWC"`` or ``"CHW"`` (anything with H, W last).

    Returns:
        A view of ``x``.
    """
    if multiple is None:
        return x
    if layout == "HWC":
        h, w = x.shape[0], x.shape[1]
        return x[: h - h % multiple, : w - w % multiple]
    if layout == "CHW":
        h, w = x.shape[-2], x.shape[-1]
        return x[..., : h - h % multiple, : w - w % multiple]
    raise ValueError(f"unknown layout {layout!r}; expected 'HWC' or 'CHW'")


# The protocols by name, and what each crops input and target to (a multiple of the network's stride, or nothing).
_PROTOCOL_CROPS: dict[str, int | None] = {"official": DOWNSCALE, "full": None}


@dataclass(frozen=True)
class Protocol:
    """How an output is compared with its target.

    Attributes:
        name: ``"official"`` (the authors' evaluation) or ``"full"`` (the full-size output).
        crop_multiple: crop input and target (top-left kept) to a multiple of this in H and W;
            ``None`` for no crop.
        clip: clip the output to ``[0, 1]`` before scoring.
        quantize: round the output to ``quantize_bits`` levels before scoring (as if it were saved
            to an 8-bit file and read back). The official protocol does not.
        quantize_bits: bit depth used when ``quantize`` is True.
        data_range: the peak value for PSNR and SSIM.
    """

    name: str
    crop_multiple: int | None = None
    clip: bool = True
    quantize: bool = False
    quantize_bits: int = 8
    data_range: float = 1.0

    def __post_init__(self) -> None:
        if self.name not in _PROTOCOL_CROPS:
            raise ValueError(f"unknown protocol {self.name!r}; expected one of {sorted(_PROTOCOL_CROPS)}")
        if self.crop_multiple is not None and (not isinstance(self.crop_multiple, int) or self.crop_multiple < 1):
            raise ValueError(f"crop_multiple must be a positive int or None, got {self.crop_multiple!r}")
        if not 1 <= self.quantize_bits <= 16:
            raise ValueError(f"quantize_bits must be in [1, 16], got {self.quantize_bits}")
        if not self.data_range > 0:
            raise ValueError(f"data_range must be positive, got {self.data_range}")

    def crop(self, image: np.ndarray | Tensor) -> Any:
        """Crop an ``(H, W[, C])`` image as the protocol does (use it on the network input too)."""
        return crop_hw(image, self.crop_multiple, "HWC")

    def prepare_output(self, x: Tensor) -> Tensor:
        """Clip and/or quantise a network output as the protocol says (any shape)."""
        if self.clip:
            x = x.clamp(0.0, self.data_range)
        if self.quantize:
            levels = 2**self.quantize_bits - 1
            x = torch.round(x * (levels / self.data_range)) * (self.data_range / levels)
        return x


PROTOCOLS: dict[str, Protocol] = {name: Protocol(name, crop_multiple=crop) for name, crop in _PROTOCOL_CROPS.items()}
OFFICIAL, FULL = PROTOCOLS["official"], PROTOCOLS["full"]


def get_protocol(protocol: str | Protocol) -> Protocol:
    """A :class:`Protocol` by name (``"official"``, ``"full"``), or the protocol itself."""
    if isinstance(protocol, Protocol):
        return protocol
    try:
        return PROTOCOLS[protocol]
    except (KeyError, TypeError):
        raise ValueError(f"unknown protocol {protocol!r}; expected one of {sorted(PROTOCOLS)}") from None


def score_image(
    output: np.ndarray | Tensor,
    target: np.ndarray | Tensor,
    protocol: str | Protocol = "official",
    lpips: LPIPS | None = None,
) -> dict[str, float | None]:
    """Score one output against its target under ``protocol``.

    The target is cropped as the protocol says. The output may be either the same size as the
    original target (it is then cropped the same way: the ``ifan`` pipeline returns full-size
    images) or already the cropped size (as the official code returns it); anything else is an error.
    The output is then clipped (and quantised) per the protocol; the target is used as is.

    Args:
        output: ``(H, W, C)`` or ``(H, W)`` float image, nominally in ``[0, 1]`` (numpy or torch).
        target: the ground truth, same layout, in ``[0, 1]``.
        protocol: ``"official"``, ``"full"`` or a :class:`Protocol`.
        lpips: an :class:`~ifan.evaluate.lpips.LPIPS` network, or ``None`` to skip LPIPS (its entry
            is then ``None``; see :func:`ifan.evaluate.lpips.load_lpips_or_none`). Grayscale images
            are repeated to 3 channels for LPIPS.

    Returns:
        ``{"psnr": dB (``inf`` when identical), "ssim": float, "mae": float, "lpips": float | None}``.

    Raises:
        ValueError: mismatched shapes, non-finite values, or images too small for SSIM (< 7 px).
    """
    proto = get_protocol(protocol)
    out = to_nchw(output)
    tgt = to_nchw(target).to(out.device)
    if out.shape[1] != tgt.shape[1]:
        raise ValueError(f"channel counts differ: output {out.shape[1]}, target {tgt.shape[1]}")
    tgt_c = crop_hw(tgt, proto.crop_multiple, "CHW")
    if out.shape[-2:] == tgt.shape[-2:]:
        out = crop_hw(out, proto.crop_multiple, "CHW")
    elif out.shape[-2:] != tgt_c.shape[-2:]:
        raise ValueError(
            f"output is {tuple(out.shape[-2:])} but the target is {tuple(tgt.shape[-2:])} "
            f"({tuple(tgt_c.shape[-2:])} after the {proto.name!r} protocol's crop)"
        )
    if min(tgt_c.shape[-2:]) < SSIM_WIN_SIZE:
        raise ValueError(f"images of {tuple(tgt_c.shape[-2:])} (after the {proto.name!r} protocol's crop) are "
                         f"smaller than the {SSIM_WIN_SIZE}x{SSIM_WIN_SIZE} SSIM window")
    for name, t in (("output", out), ("target", tgt_c)):
        if not torch.isfinite(t).all():
            raise ValueError(f"{name} contains NaN or infinite values")
    out = proto.prepare_output(out)
    scores: dict[str, float | None] = {
        "psnr": float(psnr(out, tgt_c, proto.data_range)[0]),
        "ssim": float(ssim(out, tgt_c, proto.data_range)[0]),
        "mae": float(mae(out, tgt_c)[0]),
        "lpips": None,
    }
    if lpips is not None:
        a, b = out, tgt_c
        if a.shape[1] == 1:
            a, b = a.expand(-1, 3, -1, -1), b.expand(-1, 3, -1, -1)
        if a.shape[1] != 3:
            raise ValueError(f"LPIPS needs 1 or 3 channels, got {a.shape[1]}")
        scores["lpips"] = float(lpips(a, b)[0])
    return scores
