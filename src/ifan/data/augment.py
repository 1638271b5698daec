"""The paper's training augmentations, applied with the same random draws to every view.

A sample is a dict of HWC arrays (float32 in [0, 1], or 8/16-bit integers, converted only inside
the crop's window) keyed by :data:`ifan.data.datasets.VIEWS` (``c``, ``gt``, and optionally ``l``,
``r``), and optionally the true ``disparity`` (``(H, W, 1)``,
px; ``ifan synth`` data), which follows the geometric steps only (resized values scale with the
image; a horizontal flip keeps its sign, since mirroring the scene also swaps L and R). In the
official order:

1. noise (p 0.05): one zero-mean Gaussian field, sigma uniform in [sqrt(0.001), sqrt(0.005)],
   added to every view, the target included (as the official loader does), then clipped;
2. grayscale (p 0.3): the official conversion (Rec. 709 luma of the stored values, then the
   sRGB transfer curve), identical on every view;
3. downscale (p 0.5): area resampling by a factor uniform in [0.7, 1] (never below the crop);
4. a random crop (256 x 256 in the paper), the same window in every view;
5. optional flips: a horizontal flip mirrors every view and swaps L and R (the left view of a
   mirrored scene is the mirrored right view); a vertical flip keeps them.

All randomness comes from the ``numpy.random.Generator`` passed in, so a sample is a pure
function of its seed (training resumes bit for bit).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import cv2
import numpy as np

from ifan.io import to_unit_float


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of the augmentations (defaults: the paper's)."""

    noise_p: float = 0.05
    noise_min_var: float = 0.001
    noise_max_var: float = 0.005
    noise_on_target: bool = True
    gray_p: float = 0.3
    scale_p: float = 0.5
    scale_min: float = 0.7
    flip_h_p: float = 0.0
    flip_v_p: float = 0.0

    def __post_init__(self) -> None:
        for name in ("noise_p", "gray_p", "scale_p", "flip_h_p", "flip_v_p"):
            value = getattr(self, name)
            if not 0.0 <= value <= 1.0:
                raise ValueError(f"augment.{name} must be a probability in [0, 1], got {value}")
        if not 0.0 < self.scale_min <= 1.0:
            raise ValueError(f"augment.scale_min must be in (0, 1], got {self.scale_min}")
        if not 0.0 <= self.noise_min_var <= self.noise_max_var:
            raise ValueError("augment.noise_min_var must be in [0, noise_max_var]")


def official_gray(img: np.ndarray) -> np.ndarray:
    """The official grayscale: ``Y = 0.2126 R + 0.7152 G + 0.07228 B``, then the sRGB encoding
    curve applied to ``Y``; returned on three channels. ``(H, W, 3) -> (H, W, 3)``."""
    y = 0.2126 * img[..., 0] + 0.7152 * img[..., 1] + 0.07228 * img[..., 2]
    encoded = np.where(y <= 0.0031308, 12.92 * y, 1.055 * np.power(np.maximum(y, 0.0031308), 1 / 2.4) - 0.055)
    return np.repeat(encoded[..., None], 3, axis=-1).astype(img.dtype)


def augment(views: dict[str, np.ndarray], rng: np.random.Generator, cfg: AugmentConfig,
            crop: int | None) -> dict[str, np.ndarray]:
    """Apply the augmentations to a dict of same-size HWC views; returns float32 views in [0, 1].

    Args:
        views: ``{"c", "gt", ["l", "r"]}`` ``(H, W, 3)``, float32 in [0, 1] or 8/16-bit integers
            (converted only inside the crop's window), and optionally ``"disparity"``.
        rng: the sample's random generator.
        cfg: probabilities and ranges.
        crop: side of the square random crop, or None for no crop.

    Every draw is made first; the pixel work is then done on the source window that the crop
    covers (plus a pixel of margin for the resampling), not on the whole image.
    """
    out = {k: v for k, v in views.items() if k != "disparity"}
    disparity = views.get("disparity")
    h, w = next(iter(out.values())).shape[:2]
    if crop is not None and (h < crop or w < crop):
        raise ValueError(f"image of {w}x{h} is smaller than the {crop}x{crop} training crop")
    sigma = float(np.sqrt(rng.uniform(cfg.noise_min_var, cfg.noise_max_var))) if rng.random() < cfg.noise_p \
        else None
    gray = rng.random() < cfg.gray_p
    nh, nw = h, w  # the size of the whole image after the downscale
    if rng.random() < cfg.scale_p:
        lowest = cfg.scale_min if crop is None else max(cfg.scale_min, crop / min(h, w))
        scale = rng.uniform(lowest, 1.0) if lowest < 1.0 else 1.0
        nh, nw = max(int(h * scale), crop or 1), max(int(w * scale), crop or 1)
    top = left = 0
    if crop is not None:
        top, left = int(rng.integers(0, nh - crop + 1)), int(rng.integers(0, nw - crop + 1))
    flip_h, flip_v = rng.random() < cfg.flip_h_p, rng.random() < cfg.flip_v_p

    # the source window behind the crop: rows y0:y0+wh map onto rows top:top+crop of the downscaled image
    (y0, wh, oh), (x0, ww, ow) = (_window(top, crop or nh, nh, h), _window(left, crop or nw, nw, w))
    out = {k: to_unit_float(v[y0:y0 + wh, x0:x0 + ww]) for k, v in out.items()}
    if disparity is not None:
        disparity = disparity[y0:y0 + wh, x0:x0 + ww]
    if sigma is not None:
        noise = rng.normal(0.0, sigma, size=(wh, ww, 3)).astype(np.float32)
        for k in out:
            if k != "gt" or cfg.noise_on_target:
                out[k] = np.clip(out[k] + noise, 0.0, 1.0)
    if gray:
        out = {k: official_gray(v) for k, v in out.items()}
    if (oh, ow) != (wh, ww):
        out = {k: cv2.resize(v, (ow, oh), interpolation=cv2.INTER_AREA) for k, v in out.items()}
        if disparity is not None:
            disparity = cv2.resize(disparity, (ow, oh), interpolation=cv2.INTER_AREA)[..., None] * (ow / ww)
    if disparity is not None:
        out["disparity"] = disparity
    if crop is not None:
        out = {k: v[:crop, :crop] for k, v in out.items()}
    if flip_h:
        out = {k: v[:, ::-1] for k, v in out.items()}
        if "l" in out and "r" in out:
            out["l"], out["r"] = out["r"], out["l"]
    if flip_v:
        out = {k: v[::-1] for k, v in out.items()}
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}


def _window(start: int, length: int, scaled: int, full: int) -> tuple[int, int, int]:
    """Source window ``(offset, size, resized size)`` of ``length`` samples from ``start`` of an axis of
    ``full`` samples downscaled to ``scaled``. The resized window starts at ``start`` (to within one
    sample) and holds at least ``length`` samples."""
    if scaled == full:
        return start, length, length
    factor = scaled / full
    size = min(full, math.ceil(length / factor) + 1)
    offset = min(int(start / factor), full - size)
    return offset, size, max(length, math.ceil(size * factor))
