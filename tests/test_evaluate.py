"""``ifan evaluate``: the CSV equals scikit-image recomputed from the saved files; summaries equal CSV means."""

from __future__ import annotations

import csv
import json
import math

import numpy as np
import pytest
from skimage.metrics import peak_signal_noise_ratio, structural_similarity

from ifan.apps.cli import main as cli_main
from ifan.io import read_image, write_image
from ifan.models.serialization import save_weights
from ifan.models.zoo import create_model


@pytest.fixture(scope="module")
def tiny_weights(tmp_path_factory):
    model = create_model("ifan", channels=2, iterations=2, reblur_iterations=2)
    path = tmp_path_factory.mktemp("w") / "tiny.safetensors"
    save_weights(path, model.config, model.state_dict(), source="test")
    return path


@pytest.fixture(scope="module")
def realdof(tmp_path_factory):
    root = tmp_path_factory.mktemp("realdof")
    rng = np.random.default_rng(0)
    for name in ("p1", "p2", "p3"):
        sharp = rng.random((40, 52, 3), dtype=np.float32)
        blurry = 0.5 * sharp + 0.5 * np.roll(sharp, 2, axis=1)
        write_image(root / "target" / f"{name}.png", sharp)
        write_image(root / "source" / f"{name}.png", blurry)
    return root


def _read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def test_csv_equals_skimage_from_saved_outputs_and_summary_equals_csv(tiny_weights, realdof, tmp_path):
    out = tmp_path / "eval"
    assert cli_main(["evaluate", "--model", str(tiny_weights), "--dataset", "RealDOF", "--root", str(realdof),
                     "--out", str(out), "--baselines", "--save-float"]) == 0
    rows = _read_csv(out / "per_image.csv")
    assert {r["method"] for r in rows} == {"ifan", "input", "wiener"} and len(rows) == 9
    for r in rows:
        scored = np.load(out / "outputs" / r["method"] / f"{r['name']}.npy")
        target = read_image(realdof / "target" / f"{r['name']}.png").rgb[:40, :48]  # official crop: multiple of 8
        assert scored.shape == target.shape == (40, 48, 3)
        assert read_image(out / "outputs" / r["method"] / f"{r['name']}.png").rgb.shape == (40, 48, 3)
        psnr = peak_signal_noise_ratio(target.astype(np.float64), scored.astype(np.float64), data_range=1)
        ssim = structural_similarity(scored.astype(np.float64), target.astype(np.float64), data_range=1,
                                     channel_axis=-1)
        mae = np.mean([np.abs(scored[..., c].astype(np.float64) - target[..., c]).mean() for c in range(3)])
        assert abs(float(r["psnr"]) - psnr) < 1e-5, (r, psnr)
        assert abs(float(r["ssim"]) - ssim) < 1e-5
        assert abs(float(r["mae"]) - mae) < 1e-5
        assert r["lpips"] == ""  # no LPIPS weights here: empty, never invented
    summary = json.loads((out / "summary.json").read_text())
    assert summary["protocol"] == "official" and summary["bit_depth"] == 8 and summary["images"] == 3
    assert "IFAN_LPIPS_WEIGHTS" in summary["lpips_note"]
    for method, stats in summary["methods"].items():
        mine = [r for r in rows if r["method"] == method]
        for key in ("psnr", "ssim", "mae"):
            assert math.isclose(stats[key], np.mean([float(r[key]) for r in mine]), abs_tol=1e-5)
        assert stats["lpips"] is None
    table = (out / "summary.md").read_text()
    assert "| ifan |" in table and "| wiener |" in table and "official" in table
    # the official protocol scores float32 outputs: evaluation keeps fp32 by default, and says so
    assert summary["precision"] == "fp32 (float32)" and "- precision: fp32 (float32)" in table


def test_full_protocol_keeps_the_full_size(tiny_weights, realdof, tmp_path):
    from ifan.evaluate.runner import evaluate

    result = evaluate(str(tiny_weights), "realdof", realdof, protocol="full", out_dir=tmp_path, progress=False)
    assert len(result.rows) == 3
    assert read_image(tmp_path / "outputs" / "ifan" / "p1.png").rgb.shape == (40, 52, 3)


def test_inputs_only_dataset_and_pixeldp_rotation(tiny_weights, tmp_path):
    from ifan.evaluate.runner import evaluate

    rng = np.random.default_rng(1)
    for view in ("c", "l", "r"):
        write_image(tmp_path / "pdp" / f"test_{view}" / "x.png", rng.random((24, 40, 3), dtype=np.float32))
    result = evaluate(str(tiny_weights), "PixelDP", tmp_path / "pdp", out_dir=tmp_path / "o", progress=False)
    assert result.rows[0]["psnr"] is None and result.summary["methods"]["ifan"]["psnr"] is None
    assert read_image(tmp_path / "o" / "outputs" / "ifan" / "x.png").rgb.shape == (24, 40, 3)  # rotated back
    with pytest.raises(ValueError, match="unknown dataset"):
        evaluate(str(tiny_weights), "NYU", tmp_path, progress=False)


def test_runs_through_the_deblurrer_with_its_memory_budget_and_precision(tiny_weights, realdof, tmp_path):
    from ifan.evaluate.runner import evaluate
    from ifan.inference import MemoryBudgetError

    with pytest.raises(MemoryBudgetError, match="too small"):
        evaluate(str(tiny_weights), "realdof", realdof, max_memory="1M", progress=False)
    result = evaluate(str(tiny_weights), "realdof", realdof, precision="bf16", out_dir=tmp_path, progress=False)
    assert result.summary["precision"] == "bf16 (torch.bfloat16 autocast)"
    assert "not the official protocol's float32" in (tmp_path / "summary.md").read_text()
