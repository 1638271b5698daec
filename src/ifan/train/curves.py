"""Training curves from a run's ``metrics.jsonl``, drawn with Pillow (no plotting library needed).

    python -m ifan.train.curves runs/NAME -o curves.png

Two panels: validation PSNR of the model and of the blurry input against the step, and the
training losses (log scale, each logged row) with the learning rate as a step line.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from ifan.viz import curves_figure


def read_metrics(path: str | Path) -> tuple[list[dict], list[dict]]:
    """``(train_rows, val_rows)`` of a ``metrics.jsonl`` (a run folder or the file itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / "metrics.jsonl"
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("kind") == "train"], [r for r in rows if r.get("kind") == "val"]


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
