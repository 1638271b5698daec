"""Training curves from a run's ``metrics.jsonl``, drawn with Pillow (no plotting library needed).

    python -m ifan.train.curves runs/NAME -o curves.png

Two panels: validation PSNR of the model and of the blurry input against the step, and the
training losses (log scale, each logged row) with the learning rate as a step line.
"""

from __future__ import annotations

import argparse
import json
import math
from pathlib import Path

import numpy as np

PANEL_W, PANEL_H = 560, 300
SMOOTH = 5
MARGIN_L, MARGIN_R, MARGIN_T, MARGIN_B = 64, 16, 36, 40
COLOURS = {"psnr": (200, 40, 40), "psnr_input": (120, 120, 120), "image": (30, 90, 200), "dme": (40, 150, 60),
           "reblur": (220, 140, 0), "lr": (150, 60, 170)}


def read_metrics(path: str | Path) -> tuple[list[dict], list[dict]]:
    """``(train_rows, val_rows)`` of a ``metrics.jsonl`` (a run folder or the file itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("kind") == "train"], [r for r in rows if r.get("kind") == "val"]


def _nice_ticks(lo: float, hi: float, count: int = 5) -> list[float]:
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
    from PIL import Image, ImageDraw

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
    for t in _nice_ticks(0, x_max):
        gx = x0 + (x1 - x0) * t / x_max
        draw.line([gx, y0, gx, y0 + 4], fill=(0, 0, 0))
        draw.text((gx - 12, y0 + 6), f"{t:g}", fill=(0, 0, 0))
    for t in _nice_ticks(lo, hi):
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


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description="plot a run's metrics.jsonl")
    parser.add_argument("run", help="run folder or metrics.jsonl")
    parser.add_argument("-o", "--out", required=True, help="PNG to write")
    args = parser.parse_args(argv)
    from ifan.io import write_image

    train_rows, val_rows = read_metrics(args.run)
    write_image(args.out, curves_figure(train_rows, val_rows).astype(np.float32) / 255.0)
    print(f"wrote {args.out}: {len(train_rows)} training rows, {len(val_rows)} validation rows")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
