"""The paper's training augmentations, applied with the same random draws to every view.

A sample is a dict of float32 HWC arrays in [0, 1] keyed by :data:`ifan.data.datasets.VIEWS`
(``c``, ``gt``, and optionally ``l``, ``r``). In the official order:

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

from dataclasses import dataclass

import cv2
import numpy as np


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
    """Apply the augmentations to a dict of same-size HWC float views; returns a new dict.

    Args:
        views: ``{"c", "gt", ["l", "r"]}`` float32 ``(H, W, 3)`` in [0, 1].
        rng: the sample's random generator.
        cfg: probabilities and ranges.
        crop: side of the square random crop, or None for no crop.
    """
    out = {k: v for k, v in views.items()}
    h, w = next(iter(out.values())).shape[:2]
    if crop is not None and (h < crop or w < crop):
        raise ValueError(f"image of {w}x{h} is smaller than the {crop}x{crop} training crop")
    if rng.random() < cfg.noise_p:
        sigma = float(np.sqrt(rng.uniform(cfg.noise_min_var, cfg.noise_max_var)))
        noise = rng.normal(0.0, sigma, size=(h, w, 3)).astype(np.float32)
        for k in out:
            if k != "gt" or cfg.noise_on_target:
                out[k] = np.clip(out[k] + noise, 0.0, 1.0)
    if rng.random() < cfg.gray_p:
        out = {k: official_gray(v) for k, v in out.items()}
    if rng.random() < cfg.scale_p:
        lowest = cfg.scale_min if crop is None else max(cfg.scale_min, crop / min(h, w))
        scale = rng.uniform(lowest, 1.0) if lowest < 1.0 else 1.0
        nh, nw = max(int(h * scale), crop or 1), max(int(w * scale), crop or 1)
        if (nh, nw) != (h, w):
            out = {k: cv2.resize(v, (nw, nh), interpolation=cv2.INTER_AREA) for k, v in out.items()}
            h, w = nh, nw
    if crop is not None:
        top, left = int(rng.integers(0, h - crop + 1)), int(rng.integers(0, w - crop + 1))
        out = {k: v[top:top + crop, left:left + crop] for k, v in out.items()}
    if rng.random() < cfg.flip_h_p:
        out = {k: v[:, ::-1] for k, v in out.items()}
        if "l" in out and "r" in out:
            out["l"], out["r"] = out["r"], out["l"]
    if rng.random() < cfg.flip_v_p:
        out = {k: v[::-1] for k, v in out.items()}
    return {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in out.items()}
