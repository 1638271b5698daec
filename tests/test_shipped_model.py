"""The shipped default model: present, small, loadable, and it really deblurs the bundled example."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from ifan import Deblurrer, load_model
from ifan.apps.demo import example_path
from ifan.io import read_image
from ifan.models.zoo import DEFAULT_MODEL, bundled_weights_path

ROOT = Path(__file__).resolve().parent.parent


def _psnr(a: np.ndarray, b: np.ndarray) -> float:
    return float(10 * np.log10(1 / np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)))


def test_default_model_ships_as_separable_ifan_lite_under_25_mb():
    path = bundled_weights_path(DEFAULT_MODEL)
    assert path is not None, "src/ifan/weights/ifan-lite.safetensors is missing"
    assert path.stat().st_size <= 25 * 2**20
    assert (path.parent / "ifan-lite.md").is_file()  # the model card ships beside it
    model = load_model(DEFAULT_MODEL)
    assert not model.training
    assert (model.config.channels, model.config.iterations, model.config.iac_form) == (16, 8, "separable")
    assert all(torch.isfinite(p).all() for p in model.parameters())


def test_shipped_model_deblurs_the_bundled_example():
    blurry = read_image(example_path()).rgb  # float32 in [0, 1]
    sharp = read_image(ROOT / "examples" / "china_sharp.png").rgb
    out = Deblurrer.from_pretrained(DEFAULT_MODEL, device="cpu").deblur(blurry)
    assert out.shape == blurry.shape
    # 20.17 -> 20.67 dB when the weights were shipped (docs/results.md)
    assert _psnr(np.clip(out, 0, 1), sharp) > _psnr(blurry, sharp) + 0.3
