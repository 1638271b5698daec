"""The shipped default model: present, small, loadable, it really deblurs the bundled example, and the
default precision (``auto``) stays within 45 dB of float32 wherever it is not float32."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from ifan import Deblurrer, load_model
from ifan.apps.demo import example_path
from ifan.inference import resolve_precision
from ifan.inference.runtime import cpu_has_native_bf16
from ifan.io import read_image
from ifan.models.zoo import DEFAULT_MODEL, bundled_weights_path

from helpers import psnr

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = [example_path(), ROOT / "examples" / "photos" / "china.jpg", ROOT / "examples" / "photos" / "flower.jpg"]
MIN_PSNR_VS_FP32 = 45.0  # dB; measured 63-70 dB for bf16 on trained weights (docs/benchmarks.md)


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
    out = Deblurrer.from_pretrained(DEFAULT_MODEL, device="cpu", precision="fp32").deblur(blurry)
    assert out.shape == blurry.shape
    # 20.17 -> 20.64 dB with the 0.4 weights (docs/results.md)
    assert psnr(np.clip(out, 0, 1), sharp) > psnr(blurry, sharp) + 0.3


@pytest.mark.slow
@pytest.mark.parametrize("device", [
    pytest.param("cpu", marks=pytest.mark.skipif(not cpu_has_native_bf16(),
                                                 reason="no native bf16 on this CPU: 'auto' is float32 here")),
    pytest.param("cuda", marks=[pytest.mark.cuda,
                                pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")]),
])
def test_default_precision_stays_close_to_fp32_on_the_bundled_examples(device):
    model = load_model(DEFAULT_MODEL)
    fast = Deblurrer(model, device=device)  # the default precision, "auto"
    assert fast.precision == "auto" and fast.autocast_dtype == resolve_precision("auto", fast.device) is not None
    strict = Deblurrer(model, device=device, precision="fp32")
    for path in EXAMPLES:
        rgb = read_image(path).rgb
        value = psnr(fast.deblur(rgb), strict.deblur(rgb))
        print(f"{path.name}: {fast.autocast_dtype} vs float32 on {device}: {value:.1f} dB")
        assert value >= MIN_PSNR_VS_FP32, f"{path.name}: {value:.1f} dB"
