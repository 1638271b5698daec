"""A training run's folder: what it holds, how a run starts or resumes, and its metrics log.

Run folder::

    RUN_DIR/config.yaml                   the resolved recipe (what --resume reads back)
    RUN_DIR/checkpoints/step_*.pt         resumable state (the last K; see ifan.train.checkpoint)
    RUN_DIR/best.safetensors              weights with the best validation PSNR
    RUN_DIR/model.safetensors             final weights
    RUN_DIR/metrics.jsonl                 training losses and validation results, one JSON row each
    RUN_DIR/tb/                           TensorBoard events

:func:`resolve_run` is the policy ``ifan train`` follows: a new run of a recipe goes into the
folder given (default ``runs/RECIPE-TIMESTAMP``); ``resume`` continues a folder with the recipe
saved in it. :func:`check_run_dir` refuses to start a new run over an existing one.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ifan.fileutil import atomic_write_bytes
from ifan.train.checkpoint import latest_checkpoint
from ifan.train.config import ConfigError, TrainConfig, dump_config, load_config

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
RUNS_DIR = Path("runs")


@dataclass(frozen=True)
class RunSpec:
    """What a call of :func:`ifan.train.trainer.train` gets: the recipe, the folder, resume or not.

    Attributes:
        notes: what the caller should tell the user (e.g. a recipe ignored on resume).
    """

    config: TrainConfig
    run_dir: Path
    resume: bool
    notes: tuple[str, ...] = field(default=())


def resolve_run(recipe: str | os.PathLike | None = None, out: str | os.PathLike | None = None,
                resume: str | os.PathLike | None = None, overrides: list[str] | tuple[str, ...] = ()) -> RunSpec:
    """Resolve the recipe and folder of a training run.

    Args:
        recipe: a YAML recipe (needed for a new run; ignored, with a note, when resuming).
        out: the folder of a new run (default ``runs/RECIPE-YYYYmmdd-HHMMSS``).
        resume: a run folder to continue with its saved ``config.yaml``.
        overrides: ``key=value`` changes applied to the recipe (e.g. ``train.steps=1000``).

    Raises:
        ConfigError: no recipe for a new run, or ``resume`` is not a run folder.
    """
    if resume is not None:
        run_dir = Path(resume)
        saved = run_dir / CONFIG_FILE
        if not saved.is_file():
            raise ConfigError(f"{run_dir} is not a run folder (no {CONFIG_FILE})")
        notes = (f"resuming {run_dir} with its saved {CONFIG_FILE}; {recipe} is ignored",) if recipe else ()
        return RunSpec(load_config(saved, overrides), run_dir, resume=True, notes=notes)
    if recipe is None:
        raise ConfigError("give a recipe (e.g. configs/ifan-lite-cpu.yaml) or --resume RUN_DIR")
    config = load_config(recipe, overrides)
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    run_dir = Path(out) if out is not None else RUNS_DIR / f"{Path(recipe).stem}-{stamp}"
    return RunSpec(config, run_dir, resume=False)


def check_run_dir(run_dir: Path, resume: bool) -> Path | None:
    """The checkpoint to resume from (None: start at step 0).

    Raises:
        ConfigError: a new run into a folder that already holds one.
    """
    existing = latest_checkpoint(run_dir)
    if existing is not None and not resume:
        raise ConfigError(f"{run_dir} already holds a run (checkpoint {existing.name}); resume it with --resume")
    return existing if resume else None


def save_config(run_dir: Path, config: TrainConfig) -> Path:
    """Write the resolved recipe into the run folder (atomically)."""
    return atomic_write_bytes(run_dir / CONFIG_FILE, dump_config(config).encode())


def append_metrics(run_dir: Path, row: dict) -> None:
    """Add one row (``step``, ``kind``: ``train`` or ``val``, values) to the run's metrics log."""
    with open(run_dir / METRICS_FILE, "a") as f:
        f.write(json.dumps(row) + "\n")


def trim_metrics(run_dir: Path, step: int) -> None:
    """On resume, drop rows logged after the checkpoint's ``step`` (they will be logged again)."""
    path = run_dir / METRICS_FILE
    if path.exists():
        rows = [line for line in path.read_text().splitlines() if line and json.loads(line)["step"] <= step]
        atomic_write_bytes(path, ("\n".join(rows) + "\n" if rows else "").encode())


def read_metrics(path: str | os.PathLike) -> tuple[list[dict], list[dict]]:
    """``(train_rows, val_rows)`` of a run's metrics log (the run folder or the file itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return [r for r in rows if r.get("kind") == "train"], [r for r in rows if r.get("kind") == "val"]
