"""Comparison figures: captioned panels side by side, rows stacked (numpy in, numpy out)."""

from __future__ import annotations

import numpy as np

CAPTION_PX = 18
GAP_PX = 4


def _as_rgb(img: np.ndarray) -> np.ndarray:
    img = np.asarray(img, dtype=np.float32)
    if img.ndim == 2:
        img = img[..., None]
    return np.repeat(img, 3, axis=2) if img.shape[2] == 1 else img[..., :3]


def captioned_row(panels: list[tuple[str, np.ndarray]]) -> np.ndarray:
    """Panels ``(caption, (H, W[, 3]) float in [0, 1])`` side by side, a caption strip above each.

    Returns ``(CAPTION_PX + max H, sum W + gaps, 3)`` float32 on a white background.
    """
    from PIL import Image, ImageDraw

    h = max(p.shape[0] for _, p in panels)
    tiles = []
    for label, img in panels:
        img = _as_rgb(img)
        canvas = np.ones((h + CAPTION_PX, img.shape[1], 3), np.float32)
        canvas[CAPTION_PX:CAPTION_PX + img.shape[0]] = np.clip(img, 0, 1)
        pil = Image.fromarray((canvas * 255).round().astype(np.uint8))
        ImageDraw.Draw(pil).text((4, 3), label, fill=(0, 0, 0))
        tiles += [np.asarray(pil, np.float32) / 255, np.ones((h + CAPTION_PX, GAP_PX, 3), np.float32)]
    return np.concatenate(tiles[:-1], axis=1)


def stack_rows(rows: list[np.ndarray]) -> np.ndarray:
    """Rows of possibly different widths, left-aligned, one above the other, with a gap."""
    w = max(r.shape[1] for r in rows)
    out = []
    for r in rows:
        padded = np.ones((r.shape[0], w, 3), np.float32)
        padded[:, : r.shape[1]] = r
        out += [padded, np.ones((GAP_PX, w, 3), np.float32)]
    return np.concatenate(out[:-1], axis=0)
