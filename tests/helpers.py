"""Small builders shared by the tests."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np

from ifan.io import write_image


def make_dpdd(root: Path, split: str = "train", names=("a", "b"), size=(40, 48), bit_depth=8, seed=0) -> Path:
    """A DPDD-layout split of random images (every view a different random image)."""
    rng = np.random.default_rng(seed)
    for name in names:
        for folder in (f"{split}_c/source", f"{split}_c/target", f"{split}_l/source", f"{split}_r/source"):
            write_image(root / folder / f"{name}.png", rng.random((*size, 3), dtype=np.float32), bit_depth=bit_depth)
    return root


def psnr(a, b) -> float:
    """PSNR (dB, peak 1) of two arrays in [0, 1], in float64 numpy: the tests' own reference."""
    mse = float(np.mean((np.asarray(a, np.float64) - np.asarray(b, np.float64)) ** 2))
    return math.inf if mse == 0 else 10 * math.log10(1 / mse)
