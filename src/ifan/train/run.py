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
saved in it. A run folder is started only empty (or with ``force``, which first deletes what a run
writes there, :data:`RUN_FILES`), and resumed only from a checkpoint: :func:`open_run` picks the
newest one that loads, so a checkpoint damaged by a crash costs the steps since the one before it.
:func:`run_file` (``ifan run-files``) says where a folder holds each of these, and which checkpoint
a resume would start from.
"""

from __future__ import annotations

import json
import os
import shutil
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

from ifan.fileutil import atomic_write_bytes, open_append, remove_stale_temps
from ifan.train.checkpoint import CHECKPOINTS_DIR, list_checkpoints, load_checkpoint
from ifan.train.config import ConfigError, TrainConfig, dump_config, load_config

CONFIG_FILE = "config.yaml"
METRICS_FILE = "metrics.jsonl"
#: What a run writes into its folder, by name (the layout above).
RUN_LAYOUT = {"checkpoints": CHECKPOINTS_DIR, "config": CONFIG_FILE, "metrics": METRICS_FILE,
              "best": "best.safetensors", "model": "model.safetensors", "tb": "tb"}
RUN_FILES = tuple(RUN_LAYOUT.values())
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


@dataclass
class RunStart:
    """How :func:`open_run` found a run folder: the checkpoint to resume from (None: a new run),
    its state, and the newer checkpoints that could not be read (``(path, why)``)."""

    checkpoint: Path | None = None
    state: dict | None = None
    unreadable: list[tuple[Path, str]] = field(default_factory=list)

    def note(self) -> str | None:
        """One line saying which checkpoint is used instead of the newest, or None."""
        if not self.unreadable or self.checkpoint is None:
            return None
        bad = "; ".join(f"{p.name}: {why}" for p, why in self.unreadable)
        return (f"note: resuming from {self.checkpoint.name} (step {self.state['step']}): newer checkpoints "
                f"cannot be read and are set aside as *.unreadable ({bad})")


def open_run(run_dir: Path, resume: bool, force: bool = False) -> RunStart:
    """Check that ``run_dir`` may be trained into, and read the checkpoint to resume from. Changes nothing.

    Raises:
        ConfigError: a new run into a folder that is not empty (without ``force``); a resume of a
            folder without checkpoints, or whose checkpoints all fail to load.
    """
    if resume and force:
        raise ConfigError("--force starts a new run; it cannot be combined with --resume")
    if run_dir.exists() and not run_dir.is_dir():
        raise ConfigError(f"{run_dir} is a file, not a run folder")
    if not resume:
        held = sorted(p.name for p in run_dir.iterdir()) if run_dir.is_dir() else []
        if held and not force:
            shown = ", ".join(held[:4]) + (f" and {len(held) - 4} more" if len(held) > 4 else "")
            raise ConfigError(f"{run_dir} is not empty ({shown}); continue its run with --resume {run_dir}, "
                              "train into a new --out folder, or pass --force to replace the run")
        return RunStart()
    found = list_checkpoints(run_dir)
    if not found:
        raise ConfigError(f"{run_dir}: no checkpoint to resume from (no checkpoints/step_*.pt); start the run "
                          f"over with: ifan train {run_dir / 'config.yaml'} --out {run_dir} --force")
    start = RunStart()
    for _, path in reversed(found):
        try:
            start.state = load_checkpoint(path)
        except RuntimeError as err:
            start.unreadable.append((path, str(err).removeprefix(f"{path}: ")))
            continue
        start.checkpoint = path
        return start
    bad = "; ".join(f"{p.name}: {why}" for p, why in start.unreadable)
    raise ConfigError(f"{run_dir}: none of its {len(found)} checkpoints can be read ({bad}); start the run "
                      f"over with: ifan train {run_dir / 'config.yaml'} --out {run_dir} --force")


def run_file(run_dir: str | os.PathLike, name: str) -> Path:
    """Where a run folder holds ``name``: one of :data:`RUN_LAYOUT` (whether it exists yet or not), or
    ``checkpoint``: the checkpoint a resume starts from (the newest that loads).

    Raises:
        ConfigError: an unknown name; ``checkpoint`` of a folder without a checkpoint that loads.
    """
    run_dir = Path(run_dir)
    if name == "checkpoint":
        return open_run(run_dir, resume=True).checkpoint
    if name not in RUN_LAYOUT:
        raise ConfigError(f"unknown run file {name!r}; expected checkpoint or one of {', '.join(RUN_LAYOUT)}")
    return run_dir / RUN_LAYOUT[name]


def prepare_run(run_dir: Path, start: RunStart, force: bool = False) -> None:
    """Make ``run_dir`` ready (main process only, after :func:`open_run` in every process): with
    ``force`` delete what an earlier run wrote (:data:`RUN_FILES`), set unreadable checkpoints aside,
    and remove the temporary files of writes a kill interrupted."""
    if force:
        for name in RUN_FILES:
            path = run_dir / name
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
    for path, _ in start.unreadable:
        path.rename(path.with_name(path.name + ".unreadable"))
    run_dir.mkdir(parents=True, exist_ok=True)
    remove_stale_temps(run_dir)
    remove_stale_temps(run_dir / CHECKPOINTS_DIR)


def save_config(run_dir: Path, config: TrainConfig) -> Path:
    """Write the resolved recipe into the run folder (atomically)."""
    return atomic_write_bytes(run_dir / CONFIG_FILE, dump_config(config).encode())


def append_metrics(run_dir: Path, row: dict) -> None:
    """Add one row (``step``, ``kind``: ``train`` or ``val``, values) to the run's metrics log."""
    with open_append(run_dir / METRICS_FILE) as f:
        f.write(json.dumps(row) + "\n")


def trim_metrics(run_dir: Path, step: int) -> None:
    """On resume, drop rows logged after the checkpoint's ``step`` (they will be logged again)."""
    path = run_dir / METRICS_FILE
    if path.exists():
        lines = [(n, line) for n, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]
        rows = [line for n, line in lines if _metrics_row(line, path, n)["step"] <= step]
        atomic_write_bytes(path, ("\n".join(rows) + "\n" if rows else "").encode())


def _metrics_row(line: str, path: Path, number: int) -> dict:
    """One row of a metrics log, or ValueError naming the file and the line."""
    try:
        row = json.loads(line)
    except (ValueError, RecursionError):
        row = None
    if not isinstance(row, dict) or not isinstance(row.get("step"), int):
        raise ValueError(f"{path}:{number}: not a metrics line (a JSON object with a 'step', as ifan train writes)")
    return row


def read_metrics(path: str | os.PathLike) -> tuple[list[dict], list[dict]]:
    """``(train_rows, val_rows)`` of a run's metrics log (the run folder or the file itself)."""
    path = Path(path)
    if path.is_dir():
        path = path / METRICS_FILE
    rows = [_metrics_row(line, path, n) for n, line in enumerate(path.read_text().splitlines(), 1) if line.strip()]
    return [r for r in rows if r.get("kind") == "train"], [r for r in rows if r.get("kind") == "val"]
