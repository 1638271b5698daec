"""Running IFAN on any image size: reflection padding to a multiple of 8, or the official crop."""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from ifan.models.ifan import DOWNSCALE, IFAN, IFANOutput

MULTIPLE = DOWNSCALE


def pad_to_multiple(x: Tensor, multiple: int = MULTIPLE) -> tuple[Tensor, tuple[int, int]]:
    """Pad ``(B, C, H, W)`` at the bottom and right to multiples of ``multiple`` by reflection.

    Reflection needs the pad to be smaller than the side; it is applied in steps when the
    image is small, and a side of 1 pixel is replicated. Returns the padded tensor and the
    original ``(H, W)``.
    """
    h, w = x.shape[-2:]
    if h < 1 or w < 1:
        raise ValueError(f"cannot pad an empty image of size {h}x{w}")
    target_h, target_w = -(-h // multiple) * multiple, -(-w // multiple) * multiple
    while x.shape[-2] < target_h or x.shape[-1] < target_w:
        cur_h, cur_w = x.shape[-2:]
        ph, pw = min(target_h - cur_h, cur_h - 1), min(target_w - cur_w, cur_w - 1)
        if (cur_h < target_h and cur_h == 1) or (cur_w < target_w and cur_w == 1):
            x = F.pad(x, (0, target_w - cur_w, 0, target_h - cur_h), mode="replicate")
        else:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect")
    return x, (h, w)


def official_crop(x: Tensor, multiple: int = MULTIPLE) -> Tensor:
    """The official evaluation's crop: keep the top-left ``H - H % 8`` x ``W - W % 8``."""
    h, w = x.shape[-2:]
    if h < multiple or w < multiple:
        raise ValueError(f"the official crop needs at least {multiple}x{multiple} pixels, got {h}x{w}")
    return x[..., : h - h % multiple, : w - w % multiple]


def run_any_size(model: IFAN, image: Tensor, right: Tensor | None = None, left: Tensor | None = None,
                 crop: bool = False) -> IFANOutput:
    """Run ``model`` on any ``H x W`` (>= 1 pixel each).

    Args:
        image: ``(B, 3, H, W)`` in [0, 1].
        right, left: DP views for the dual-pixel variant (same size).
        crop: reproduce the official protocol instead: crop to a multiple of 8 and return the
            smaller output.

    Returns:
        :class:`IFANOutput` whose ``image`` has the input's exact size (or the cropped size)
        and whose ``disparity`` is that of the padded (or cropped) input at 1/8.
    """
    if crop:
        prepare = official_crop
    else:
        def prepare(v: Tensor) -> Tensor:
            return pad_to_multiple(v)[0]
    right, left = (None if v is None else prepare(v) for v in (right, left))
    out = model(prepare(image), right=right, left=left)
    if not crop:
        out.image = out.image[..., : image.shape[-2], : image.shape[-1]]
    return out
