"""Input and output kinds: numpy arrays, PIL images and tensors to ``(B, 3, H, W)`` float32 and back.

:func:`prepare` turns an image of any supported kind into RGB in [0, 1] (grey is repeated over
RGB, alpha is set aside) and returns how to give a result back in the same kind, shape and dtype:
grey is averaged back, alpha is passed through unchanged, integers are rounded and clipped. A float
image holding NaN or infinity is refused (:func:`refuse_non_finite`): the network would spread them
over the whole result, and ifan does not guess what they stand for.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
from torch import Tensor


IMAGE_MUST = "a float image must be finite, in [0, 1]"


def refuse_non_finite(nan: int, inf: int, what: str = "image", must: str = IMAGE_MUST) -> None:
    """Raise ValueError when an image (or the ``what`` named: a mask, a defocus map) holds ``nan`` NaN and
    ``inf`` infinite values; ``must`` says what is expected of it."""
    if nan or inf:
        found = [f"{nan} NaN"] * bool(nan) + [f"{inf} infinite value{'s' * (inf != 1)}"] * bool(inf)
        raise ValueError(f"the {what} holds {' and '.join(found)}; {must} "
                         "(replace them first, e.g. with numpy.nan_to_num)")


def _check_finite_numpy(x: np.ndarray) -> None:
    with np.errstate(invalid="ignore", over="ignore"):  # inf - inf is NaN: that is the point
        total = x.sum(dtype=np.float64)  # one pass, no copy; counted only when something is off
    if not np.isfinite(total):
        refuse_non_finite(int(np.isnan(x).sum()), int(np.isinf(x).sum()))


def check_finite_tensor(x: Tensor, what: str = "image", must: str = IMAGE_MUST) -> None:
    """:func:`refuse_non_finite` for a tensor (one pass; counted only when something is off)."""
    if not torch.isfinite(x.sum()):
        refuse_non_finite(int(torch.isnan(x).sum()), int(torch.isinf(x).sum()), what, must)


@dataclass
class Prepared:
    """An input made into ``(B, 3, H, W)`` float32 in [0, 1] and how to give the result back."""

    rgb: Tensor
    alpha: Tensor | None
    restore: Callable[[Tensor, Tensor | None], object]
    restore_map: Callable[[Tensor], object]


def _prepare_numpy(x: np.ndarray) -> Prepared:
    if x.ndim not in (2, 3) or (x.ndim == 3 and x.shape[2] not in (1, 2, 3, 4)):
        raise ValueError(f"expected an HWC array with 1-4 channels (or HW grey), got shape {x.shape}")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"empty image of shape {x.shape}")
    dtype, two_d = x.dtype, x.ndim == 2
    if dtype == np.uint8:
        scale = 255.0
    elif dtype == np.uint16:
        scale = 65535.0
    elif np.issubdtype(dtype, np.floating):
        scale = 1.0
        _check_finite_numpy(x)
    else:
        raise ValueError(f"unsupported array dtype {dtype}; use uint8, uint16 or float in [0, 1]")
    arr = x[:, :, None] if two_d else x
    c = arr.shape[2]
    grey = c in (1, 2)
    arr = np.ascontiguousarray(arr)
    data = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
    values = data.float() if scale == 1.0 else data.float().div_(scale)
    color = values[:, :, :1].expand(-1, -1, 3) if grey else values[:, :, :3]
    alpha = values[:, :, -1] if c in (2, 4) else None
    rgb = color.permute(2, 0, 1).unsqueeze(0)  # channels-last strides, no copy for RGB float32

    def restore(image: Tensor, _alpha: Tensor | None) -> np.ndarray:
        hwc = image[0].permute(1, 2, 0)
        if grey:
            hwc = hwc.mean(dim=2, keepdim=True)
        if alpha is not None:
            hwc = torch.cat([hwc, alpha[:, :, None]], dim=2)
        out = hwc.clamp_(0, 1) if scale == 1.0 else hwc.clamp(0, 1).mul_(scale).round_()
        out_np = out.numpy().astype(dtype, copy=False)
        return np.ascontiguousarray(out_np[:, :, 0] if two_d else out_np)

    def restore_map(m: Tensor) -> np.ndarray:
        return m[0, 0].numpy()

    return Prepared(rgb, alpha, restore, restore_map)


def _prepare_pil(img) -> Prepared:
    from PIL import Image as PILImage

    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.clip(np.asarray(img, dtype=np.int64), 0, 65535).astype(np.uint16)
    elif mode == "F":
        arr = np.asarray(img, dtype=np.float32)
    else:
        if mode not in ("L", "LA", "RGB", "RGBA"):
            keep_alpha = mode in ("PA", "La", "RGBa") or "transparency" in img.info
            img = img.convert("RGBA" if keep_alpha else ("L" if mode == "1" else "RGB"))
        arr = np.asarray(img)
    inner = _prepare_numpy(arr)
    out_mode, info = img.mode, dict(img.info)

    def restore(image: Tensor, alpha: Tensor | None):
        out_arr = inner.restore(image, alpha)
        if out_mode == "I":
            out = PILImage.fromarray(out_arr.astype(np.int32), mode="I")
        elif out_mode == "F":
            out = PILImage.fromarray(out_arr.astype(np.float32), mode="F")
        else:
            out = PILImage.fromarray(out_arr)
        out.info.update(info)
        return out

    def restore_map(m: Tensor):
        return PILImage.fromarray(m[0, 0].numpy().astype(np.float32), mode="F")

    return Prepared(inner.rgb, inner.alpha, restore, restore_map)


def _prepare_tensor(x: Tensor) -> Prepared:
    if x.dim() not in (3, 4) or x.shape[-3] not in (1, 2, 3, 4):
        raise ValueError(f"expected a (C, H, W) or (B, C, H, W) tensor with C in 1-4, got {tuple(x.shape)}")
    if x.shape[-1] < 1 or x.shape[-2] < 1:
        raise ValueError(f"empty image of shape {tuple(x.shape)}")
    batched, dtype, device = x.dim() == 4, x.dtype, x.device
    if dtype == torch.uint8:
        scale = 255.0
    elif x.is_floating_point():
        scale = 1.0
        check_finite_tensor(x)
    else:
        raise ValueError(f"unsupported tensor dtype {dtype}; use float in [0, 1] or uint8")
    values = (x if batched else x.unsqueeze(0)).float() / scale
    c = values.shape[1]
    grey = c in (1, 2)
    rgb = values[:, :1].expand(-1, 3, -1, -1) if grey else values[:, :3]
    alpha = values[:, -1:] if c in (2, 4) else None

    def restore(image: Tensor, _alpha: Tensor | None) -> Tensor:
        out = image.clamp(0, 1).to(device)
        if grey:
            out = out.mean(dim=1, keepdim=True)
        if alpha is not None:
            out = torch.cat([out, alpha.to(device)], dim=1)
        out = (out * 255).round_().to(dtype) if scale != 1.0 else out.to(dtype)
        return out if batched else out[0]

    def restore_map(m: Tensor) -> Tensor:
        m = m.to(device)
        return m if batched else m[0]

    return Prepared(rgb, alpha, restore, restore_map)


def prepare(x) -> Prepared:
    """``x`` as a :class:`Prepared`: a numpy array, a PIL image or a tensor (see :meth:`Deblurrer.deblur`).

    Example:
        >>> p = prepare(np.zeros((5, 7), np.uint8))
        >>> tuple(p.rgb.shape), p.restore(p.rgb, p.alpha).shape
        ((1, 3, 5, 7), (5, 7))
    """
    if isinstance(x, Tensor):
        return _prepare_tensor(x)
    if isinstance(x, np.ndarray):
        return _prepare_numpy(x)
    try:
        from PIL import Image as PILImage
    except ImportError:  # pragma: no cover - pillow is a dependency
        PILImage = None
    if PILImage is not None and isinstance(x, PILImage.Image):
        return _prepare_pil(x)
    raise TypeError(f"expected a numpy array, a PIL image or a torch tensor, got {type(x).__name__}")
