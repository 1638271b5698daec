"""Training curves: a run's metrics.jsonl read back, drawn, and `ifan curves`."""

from __future__ import annotations

import json

import numpy as np
import pytest

from ifan.apps.cli import main
from ifan.train.run import read_metrics
from ifan.viz import PANEL_H, PANEL_W, _running_mean, curves_figure


def _write_metrics(path, n_train=12, n_val=3):
    rows = [{"step": 50 * (i + 1), "kind": "train", "lr": 2e-4 if i < 8 else 1e-4, "image": 0.01 / (i + 1),
             "dme": 0.002, "reblur": 0.005, "total": 0.02} for i in range(n_train)]
    rows += [{"step": 200 * (i + 1), "kind": "val", "psnr": 26 + i, "psnr_input": 26.5} for i in range(n_val)]
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")


def test_reads_rows_by_kind_from_a_run_folder(tmp_path):
    _write_metrics(tmp_path / "metrics.jsonl")
    train, val = read_metrics(tmp_path)
    assert len(train) == 12 and len(val) == 3
    assert [r["psnr"] for r in val] == [26, 27, 28]


def test_figure_has_both_panels_and_draws_the_curves(tmp_path):
    _write_metrics(tmp_path / "metrics.jsonl")
    fig = curves_figure(*read_metrics(tmp_path))
    assert fig.shape == (2 * PANEL_H + 4, PANEL_W, 3) and fig.dtype == np.uint8
    red = (fig[..., 0] > 180) & (fig[..., 1] < 80) & (fig[..., 2] < 80)   # the model's PSNR line
    assert red[:PANEL_H].sum() > 100 and red[PANEL_H:].sum() == 0


def test_running_mean():
    assert _running_mean([1.0, 3.0, 5.0, 7.0], 2) == [1.0, 2.0, 4.0, 6.0]


def test_cli_writes_png_and_refuses_empty(tmp_path, capsys):
    _write_metrics(tmp_path / "metrics.jsonl")
    assert main(["curves", str(tmp_path), "-o", str(tmp_path / "c.png")]) == 0
    assert "12 training rows, 3 validation rows" in capsys.readouterr().out
    from ifan.io import read_image

    assert read_image(tmp_path / "c.png").size == (2 * PANEL_H + 4, PANEL_W)
    with pytest.raises(ValueError, match="no training or validation rows"):
        curves_figure([], [])
