"""A figure of rendered samples: C, L, R, the target, an L/R anaglyph and the signed blur map."""

from __future__ import annotations

from dataclasses import replace

import cv2
import numpy as np

from ifan.synth.color import linear_to_srgb
from ifan.synth.sampling import KINDS, SynthConfig, sample_spec
from ifan.synth.writer import render_spec

COLUMNS = ("C (input)", "L view", "R view", "target (all in focus)", "L/R anaglyph", "signed blur radius")


def coc_colours(coc: np.ndarray, max_abs: float) -> np.ndarray:
    """Signed blur radius as colours: blue in front of the focus plane, white on it, red behind.

    Returns ``(H, W, 3)`` float32 sRGB in [0, 1].
    """
    t = np.clip(coc / max(max_abs, 1e-6), -1.0, 1.0)[..., None]
    white = np.ones(3, np.float32)
    behind, front = np.array([0.85, 0.15, 0.1], np.float32), np.array([0.1, 0.3, 0.9], np.float32)
    return np.where(t >= 0, white + t * (behind - white), white - t * (front - white)).astype(np.float32)


def anaglyph(left: np.ndarray, right: np.ndarray, encoding: str = "linear") -> np.ndarray:
    """Red from L, green and blue from R (sRGB): colour fringes show the L-R disparity."""
    if encoding == "linear":
        left, right = linear_to_srgb(left), linear_to_srgb(right)
    grey_l, grey_r = left.mean(axis=2), right.mean(axis=2)
    return np.stack([grey_l, grey_r, grey_r], axis=2)


def _text_strip(width: int, text: str, height: int = 22) -> np.ndarray:
    strip = np.full((height, width, 3), 255, np.uint8)
    cv2.putText(strip, text, (6, height - 7), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    return strip


def preview_figure(config: SynthConfig = SynthConfig(width=320, height=240), seed: int = 0, rows: int = 3,
                   min_blur_fraction: float = 0.6) -> np.ndarray:
    """Render ``rows`` samples (cycling through the scene kinds) into one figure.

    Each row is a scene focused inside its depth range (blur of both signs) whose largest blur
    reaches at least ``min_blur_fraction * config.max_blur`` (the first of up to 50 draws that
    does), so the figure shows strong defocus on both sides of the focus plane.

    Returns:
        ``(H, W, 3)`` uint8 RGB image.
    """
    header = np.full((24, config.width * len(COLUMNS), 3), 255, np.uint8)
    for c, name in enumerate(COLUMNS):
        cv2.putText(header, name, (c * config.width + 6, 18), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
    lines = [header]
    kinds = [k for k in KINDS if dict(config.kinds).get(k, 0) > 0]
    for i in range(rows):
        kind = kinds[i % len(kinds)]
        sub = replace(config, kinds=((kind, 1.0),))
        for j in range(50):
            spec = sample_spec(np.random.default_rng(np.random.SeedSequence([seed, i, j])), sub)
            if spec.max_abs_coc >= min_blur_fraction * config.max_blur and 0.0 < spec.focus < 1.0:
                break
        out = render_spec(spec)
        m = max(float(np.abs(out.coc).max()), 1e-3)
        show = linear_to_srgb if out.encoding == "linear" else (lambda x: x)
        panels = [show(out.center), show(out.left), show(out.right), show(out.target),
                  anaglyph(out.left, out.right, out.encoding), coc_colours(out.coc, m)]
        row = np.concatenate([np.round(p * 255).astype(np.uint8) for p in panels], axis=1)
        cam = spec.camera
        lines.append(row)
        lines.append(_text_strip(row.shape[1], (
            f"{kind} scene: f = {cam.focal_length_mm:.0f} mm, f/{cam.f_number:.1f}, focused at "
            f"{cam.focus_distance_m:.2f} m; blur radius {out.coc.min():+.1f} to {out.coc.max():+.1f} px "
            f"(map: blue in front of the focus plane, white on it, red behind)")))
    return np.concatenate(lines, axis=0)
