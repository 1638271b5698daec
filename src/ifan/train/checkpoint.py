"""Training checkpoints: written atomically, the last K kept, read back safely.

A checkpoint (``RUN_DIR/checkpoints/step_XXXXXXXXX.pt``) holds everything a resume needs:
the step, the model and reblurring-network weights, the optimizer state, the torch RNG state,
the best validation PSNR so far, and the resolved configs. The learning rate is a function of
the step, and the data order and augmentations are functions of (seed, step), so nothing else
is needed for a resumed run to end with the same weights as an uninterrupted one.

A run folder is started only empty (or with ``force``, which first deletes what a run writes
there, :data:`RUN_FILES`), and resumed only from a checkpoint: :func:`open_run` picks the newest
one that loads, so a checkpoint damaged by a crash costs the steps since the one before it.
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ifan.fileutil import atomic_write, remove_stale_temps
from ifan.models.serialization import describe_load_error
from ifan.train.config import ConfigError

CKPT_RE = re.compile(r"^step_(\d{9})\.pt$")
RUN_FILES = ("checkpoints", "config.yaml", "metrics.jsonl", "best.safetensors", "model.safetensors", "tb")
_STATE_KEYS = ("step", "model", "optimizer", "torch_rng")


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return run_dir / "checkpoints" / f"step_{step:09d}.pt"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the checkpoints in a run, oldest first."""
    folder = run_dir / "checkpoints"
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := CKPT_RE.match(p.name))]
    return sorted(found)


def save_checkpoint(run_dir: Path, step: int, state: dict, keep_last: int) -> Path:
    """Write ``state`` atomically as the checkpoint of ``step``; delete all but the last ``keep_last``."""
    path = atomic_write(checkpoint_path(run_dir, step), lambda tmp: torch.save(state, tmp))
    for _, old in list_checkpoints(run_dir)[:-keep_last]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint with ``weights_only=True`` (no arbitrary code is unpickled).

    Raises:
        RuntimeError: in one line, when the file cannot be read or lacks the training state.
    """
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001
        raise RuntimeError(f"{path}: cannot read the checkpoint: {describe_load_error(err)}") from None
    missing = [k for k in _STATE_KEYS if k not in state] if isinstance(state, dict) else list(_STATE_KEYS)
    if missing:
        raise RuntimeError(f"{path}: not a training checkpoint (no {', '.join(missing)})")
    return state


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
    remove_stale_temps(run_dir / "checkpoints")
