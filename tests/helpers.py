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


def make_archive(root: Path, corrupt: bool = False) -> list[Path]:
    """Eight photos in two folders (some of one size, a 16-bit PNG, JPEGs), optionally a corrupt JPEG."""
    rng = np.random.default_rng(0)
    paths = []
    for i in range(8):
        folder = root / ("2019" if i % 3 else "2020")
        size = (24, 32) if i % 2 else (40, 24 + 8 * i)
        path = folder / f"p{i}.{'jpg' if i % 4 == 1 else 'png'}"
        paths.append(write_image(path, rng.random((*size, 3), dtype=np.float32), bit_depth=16 if i == 2 else 8))
    if corrupt:
        good = write_image(root / "tmp.jpg", rng.random((16, 16, 3), dtype=np.float32))
        (root / "2020" / "bad.jpg").write_bytes(good.read_bytes()[:300])
        good.unlink()
        paths.append(root / "2020" / "bad.jpg")
    return sorted(paths, key=str)
