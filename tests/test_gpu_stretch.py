"""scripts/gpu_stretch.sh end to end at a toy size on the CPU: data, training from the bundled
weights under a deadline, and the results it promises in $OUT (on a GPU machine the same script
trains on CUDA in bf16; no GPU is needed to check its plumbing)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from ifan.models.serialization import read_weights

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "scripts" / "gpu_stretch.sh"


def _run(tmp_path: Path, **env: str) -> subprocess.CompletedProcess:
    toy = {
        "OUT": str(tmp_path / "out"), "WORK": str(tmp_path / "work"), "PYTHON": sys.executable,
        "SCENES": "4", "SIZE": "160x160", "VAL": "2", "STEPS": "6", "DEADLINE": "300", "MARGIN": "10",
        "EXTRA": "--set train.batch_size=2 --set train.patch_size=64 --set data.workers=0 "
                 "--set log.val_every=3 --set log.ckpt_every=3 --set data.val_count=2 "
                 "--set train.warmup_steps=1 --set data.val_crop=128 --set train.precision=auto",
    }
    return subprocess.run(["bash", str(SCRIPT)], env={**os.environ, **toy, **env}, capture_output=True,
                          text=True, timeout=600)


@pytest.mark.slow
def test_gpu_stretch_script_trains_and_returns_weights_metrics_and_curves(tmp_path):
    done = _run(tmp_path)
    assert done.returncode == 0, done.stdout + done.stderr
    out = tmp_path / "out"
    assert {"best.safetensors", "last.safetensors", "metrics.jsonl", "config.yaml", "curves.png"} <= {
        p.name for p in out.iterdir()}
    assert read_weights(out / "last.safetensors").config.channels == 16  # the bundled ifan-lite's width
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    assert max(r.get("step", 0) for r in rows) == 6

    again = _run(tmp_path)  # results are never overwritten: a second call into the same OUT is refused
    assert again.returncode == 1 and "is not empty" in again.stderr
    elsewhere = _run(tmp_path, OUT=str(tmp_path / "out2"))  # nor is the run folder in WORK
    assert elsewhere.returncode != 0 and "run" in elsewhere.stderr and not (tmp_path / "out2" / "last.safetensors").exists()


@pytest.mark.slow  # a subprocess
def test_gpu_stretch_script_refuses_when_the_data_leaves_no_time_to_train(tmp_path):
    done = _run(tmp_path, SCENES="1", VAL="1", DEADLINE="1", MARGIN="0")
    assert done.returncode == 1 and "no time left to train" in done.stderr
    assert not (tmp_path / "work" / "run").exists()
