"""Every picture the package draws: defocus maps, comparison figures, training curves (numpy in, numpy out).

* Defocus maps: :func:`colorize_defocus` (``|defocus|`` on a sequential colour ramp: dark in
  focus, bright most blurred), :func:`encode_defocus_16bit` and :func:`save_defocus` (colour PNG,
  float32 ``.npy`` or fixed-point 16-bit PNG).
* Comparison figures: :func:`captioned_row`, :func:`stack_rows`, :func:`comparison_figure` (what
  ``ifan demo`` writes) and :func:`most_defocused_box` (where a 100 % crop shows the most).
* Training curves: :func:`curves_figure` from the rows of a run's ``metrics.jsonl``.

Images are float32 ``(H, W, 3)`` in [0, 1] unless said otherwise; drawing uses Pillow only.
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from ifan.fileutil import atomic_write, shown
from ifan.io import ImageWriteError, write_image

# ----------------------------------------------------------------------------------------------
# Defocus maps
# ----------------------------------------------------------------------------------------------

# A sequential colour ramp (dark blue -> purple -> orange -> light yellow), anchors chosen for
# increasing lightness; in focus = dark, strongly defocused = bright.
_RAMP = np.array([[0.02, 0.02, 0.10], [0.25, 0.05, 0.45], [0.62, 0.15, 0.45], [0.92, 0.42, 0.20],
                  [0.99, 0.80, 0.35], [0.99, 0.99, 0.80]], dtype=np.float32)


def colorize_defocus(defocus: np.ndarray, vmax: float | None = None) -> tuple[np.ndarray, float]:
    """Render ``|defocus|`` with a sequential colour ramp: ``(H, W, 3)`` float32 in [0, 1].

    Args:
        defocus: ``(H, W)`` signed disparity in pixels.
        vmax: the magnitude mapped to the brightest colour (default: the 99th percentile, at least 1e-6).

    Returns:
        The colour image and the ``vmax`` used.

    Example:
        >>> rgb, vmax = colorize_defocus(np.array([[0.0, -2.0], [1.0, 4.0]]), vmax=4.0)
        >>> rgb.shape, vmax, bool(rgb[1, 1].mean() > rgb[0, 0].mean())
        ((2, 2, 3), 4.0, True)
    """
    mag = np.abs(np.asarray(defocus, dtype=np.float32))
    if vmax is None:
        vmax = float(np.percentile(mag, 99)) if mag.size else 1.0
    vmax = max(vmax, 1e-6)
    t = np.clip(mag / vmax, 0, 1) * (len(_RAMP) - 1)
    i = np.minimum(t.astype(np.int64), len(_RAMP) - 2)
    f = (t - i)[..., None]
    return (_RAMP[i] * (1 - f) + _RAMP[i + 1] * f).astype(np.float32), vmax


def encode_defocus_16bit(defocus: np.ndarray) -> np.ndarray:
    """Fixed-point uint16 of the signed disparity: ``value = 32768 + 256 * d`` (``d`` in +-128 px,
    1/256 px steps); read back with ``d = (value - 32768) / 256``."""
    return np.clip(np.round(32768 + 256 * np.asarray(defocus, dtype=np.float64)), 0, 65535).astype(np.uint16)


def save_defocus(path: str | os.PathLike, defocus: np.ndarray, kind: str = "color") -> Path:
    """Write a defocus map atomically: ``"color"`` (8-bit PNG), ``"npy"`` (float32) or ``"png16"``
    (16-bit grey PNG, see :func:`encode_defocus_16bit`)."""
    if kind == "color":
        rgb, _ = colorize_defocus(defocus)
        return write_image(path, rgb, bit_depth=8)
    if kind == "npy":
        try:
            return atomic_write(path, lambda f: np.save(f, np.asarray(defocus, dtype=np.float32)))
        except OSError as err:
            raise ImageWriteError(f"{shown(path)}: cannot write ({err.strerror or err})") from err
    if kind == "png16":
        grey = encode_defocus_16bit(defocus).astype(np.float32) / 65535.0
        return write_image(path, grey, bit_depth=16, grayscale=True)
    raise ValueError(f"unknown defocus map kind {kind!r}; expected color, npy or png16")


# ----------------------------------------------------------------------------------------------
# Comparison figures
# ----------------------------------------------------------------------------------------------

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


def most_defocused_box(defocus: np.ndarray, size: int) -> tuple[int, int]:
    """Top-left of the ``size`` x ``size`` window with the largest mean |defocus| (where deblurring shows)."""
    h, w = defocus.shape
    size = min(size, h, w)
    mag = np.abs(defocus).astype(np.float64)
    integral = np.pad(mag.cumsum(0).cumsum(1), ((1, 0), (1, 0)))
    sums = integral[size:, size:] - integral[:-size, size:] - integral[size:, :-size] + integral[:-size, :-size]
    y, x = np.unravel_index(int(np.argmax(sums)), sums.shape)
    return int(y), int(x)


def comparison_figure(blurry: np.ndarray, deblurred: np.ndarray, defocus_rgb: np.ndarray,
                      crop_box: tuple[int, int, int], sharp: np.ndarray | None = None) -> np.ndarray:
    """Rows: [blurry | deblurred | defocus map] and [100 % crops]; all ``(H, W, 3)`` float in [0, 1].

    ``crop_box`` is ``(top, left, size)``.
    """
    top, left, size = crop_box
    window = (slice(top, top + size), slice(left, left + size))
    crops = [("blurry (100% crop)", blurry[window]), ("deblurred (100% crop)", deblurred[window])]
    if sharp is not None:
        crops.append(("sharp reference (100% crop)", sharp[window]))
    first = captioned_row([("blurry input", blurry), ("deblurred", deblurred), ("estimated defocus", defocus_rgb)])
    return stack_rows([first, captioned_row(crops)])


# ----------------------------------------------------------------------------------------------
# Training curves
# ----------------------------------------------------------------------------------------------

PANEL_W, PANEL_H = 560, 300
SMOOTH = 5
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 64, 16, 36, 40
COLOURS = {"psnr": (200, 40, 40), "psnr_input": (120, 120, 120), "image": (30, 90, 200), "dme": (40, 150, 60),
           "reblur": (220, 140, 0), "lr": (150, 60, 170)}


def nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
    """About ``count`` round values (steps of 1, 2, 2.5 or 5 times a power of ten) within ``[lo, hi]``."""
    span = hi - lo if hi > lo else 1.0
    raw = span / count
    step = 10 ** math.floor(math.log10(raw))
    for mult in (1, 2, 2.5, 5, 10):
        if raw <= mult * step:
            step *= mult
            break
    first = math.ceil(lo / step) * step
    return [first + i * step for i in range(int((hi - first) / step + 1e-9) + 1)]


def _panel(title: str, series: dict[str, tuple[list[float], list[float]]], x_max: float, log_y: bool,
           y_label: str, secondary: tuple[str, list[float], list[float]] | None = None) -> np.ndarray:
    """One chart, ``(PANEL_H, PANEL_W, 3)`` uint8: lines of ``series`` (name -> (x, y)) with a legend."""
    img = Image.new("RGB", (PANEL_W, PANEL_H), "white")
    draw = ImageDraw.Draw(img)
    x0, x1, y0, y1 = MARGIN_L, PANEL_W - MARGIN_R, PANEL_H - MARGIN_B, MARGIN_T
    ys = [v for _, vals in series.values() for v in vals if v > 0 or not log_y]
    tf = (lambda v: math.log10(v)) if log_y else (lambda v: v)
    lo, hi = tf(min(ys)), tf(max(ys))
    pad = 0.05 * (hi - lo or 1.0)
    lo, hi = lo - pad, hi + pad

    def px(x: float, y: float) -> tuple[float, float]:
        return x0 + (x1 - x0) * x / x_max, y0 - (y0 - y1) * (tf(y) - lo) / (hi - lo)

    draw.rectangle([x0, y1, x1, y0], outline=(0, 0, 0))
    for t in nice_ticks(0, x_max):
        gx = x0 + (x1 - x0) * t / x_max
        draw.line([gx, y0, gx, y0 + 4], fill=(0, 0, 0))
        draw.text((gx - 12, y0 + 6), f"{t:g}", fill=(0, 0, 0))
    for t in nice_ticks(lo, hi):
        gy = y0 - (y0 - y1) * (t - lo) / (hi - lo)
        draw.line([x0 - 4, gy, x1, gy], fill=(225, 225, 225))
        label = f"{10 ** t:.0e}" if log_y else f"{t:g}"
        draw.text((4, gy - 6), label, fill=(0, 0, 0))
    draw.text((x0, 4), title, fill=(0, 0, 0))
    draw.text(((x0 + x1) // 2 - 12, PANEL_H - 16), "step", fill=(0, 0, 0))
    draw.text((x0 - 8 - draw.textlength(y_label), 4), y_label, fill=(0, 0, 0))
    legend_x = x0
    for name, (xs, vals) in series.items():
        pts = [px(x, v) for x, v in zip(xs, vals) if v > 0 or not log_y]
        colour = COLOURS.get(name, (0, 0, 0))
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=2)
        for p in pts if len(pts) < 40 else []:
            draw.ellipse([p[0] - 2, p[1] - 2, p[0] + 2, p[1] + 2], fill=colour)
        draw.text((legend_x, 19), name, fill=colour)
        legend_x += 12 + draw.textlength(name)
    if secondary is not None:
        name, xs, vals = secondary
        top = max(vals) or 1.0
        colour = COLOURS[name]
        pts = []
        for x, v in zip(xs, vals):
            gy = y0 - 0.9 * (y0 - y1) * v / top
            gx = x0 + (x1 - x0) * x / x_max
            pts += [(pts[-1][0], gy)] if pts else []
            pts.append((gx, gy))
        if len(pts) > 1:
            draw.line(pts, fill=colour, width=1)
        draw.text((legend_x, 19), f"{name} (max {top:.1e}, linear)", fill=colour)
    return np.asarray(img)


def _running_mean(values: list[float], n: int) -> list[float]:
    """Mean of each value and the ``n - 1`` before it (fewer at the start)."""
    sums = np.cumsum([0.0, *values])
    return [(sums[i + 1] - sums[max(0, i + 1 - n)]) / (i + 1 - max(0, i + 1 - n)) for i in range(len(values))]


def curves_figure(train_rows: list[dict], val_rows: list[dict]) -> np.ndarray:
    """Validation PSNR above training losses and learning rate; ``(2 * PANEL_H + 4, PANEL_W, 3)`` uint8."""
    if not train_rows and not val_rows:
        raise ValueError("no training or validation rows to plot")
    x_max = max(r["step"] for r in train_rows + val_rows)
    panels = []
    if val_rows:
        steps = [r["step"] for r in val_rows]
        val = {"psnr": (steps, [r["psnr"] for r in val_rows]),
               "psnr_input": (steps, [r["psnr_input"] for r in val_rows])}
        panels.append(_panel("validation PSNR (dB): model vs blurry input", val, x_max, False, "dB"))
    if train_rows:
        steps = [r["step"] for r in train_rows]
        losses = {k: (steps, _running_mean([r[k] for r in train_rows], SMOOTH)) for k in ("image", "dme", "reblur")
                  if k in train_rows[0]}
        panels.append(_panel(f"training losses (running mean of {SMOOTH} logged rows, log scale), learning rate",
                             losses, x_max, True, "loss",
                             secondary=("lr", steps, [r["lr"] for r in train_rows])))
    gap = np.full((4, PANEL_W, 3), 255, np.uint8)
    out = [panels[0]]
    for p in panels[1:]:
        out += [gap, p]
    return np.concatenate(out, axis=0)
