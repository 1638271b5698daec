"""Training checkpoints: written atomically, the last K kept, read back safely.

A checkpoint (``RUN_DIR/checkpoints/step_XXXXXXXXX.pt``) holds everything a resume needs:
the step, the model and reblurring-network weights, the optimizer state, the torch RNG state,
the best validation PSNR so far, and the resolved configs. The learning rate is a function of
the step, and the data order and augmentations are functions of (seed, step), so nothing else
is needed for a resumed run to end with the same weights as an uninterrupted one.

Which checkpoint a resumed run starts from is the run folder's policy (:mod:`ifan.train.run`).
"""

from __future__ import annotations

import re
from pathlib import Path

import torch

from ifan.fileutil import atomic_write
from ifan.tensorfile import read_torch

CHECKPOINTS_DIR = "checkpoints"  # in the run folder
CKPT_RE = re.compile(r"^step_(\d{9})\.pt$")
_STATE_KEYS = ("step", "model", "optimizer", "torch_rng")


def checkpoint_path(run_dir: Path, step: int) -> Path:
    return run_dir / CHECKPOINTS_DIR / f"step_{step:09d}.pt"


def list_checkpoints(run_dir: Path) -> list[tuple[int, Path]]:
    """``(step, path)`` of the checkpoints in a run, oldest first."""
    folder = run_dir / CHECKPOINTS_DIR
    if not folder.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in folder.iterdir() if (m := CKPT_RE.match(p.name))]
    return sorted(found)


def save_checkpoint(run_dir: Path, step: int, state: dict, keep_last: int) -> Path:
    """Write ``state`` atomically as the checkpoint of ``step``; delete all but the last ``keep_last``."""
    path = atomic_write(checkpoint_path(run_dir, step), lambda f: torch.save(state, f))
    for _, old in list_checkpoints(run_dir)[:-keep_last]:
        old.unlink(missing_ok=True)
    return path


def load_checkpoint(path: Path) -> dict:
    """Read a checkpoint with ``weights_only=True`` (no arbitrary code is unpickled).

    Raises:
        RuntimeError: in one line, when the file cannot be read or lacks the training state.
    """
    state = read_torch(path, RuntimeError, "cannot read the checkpoint")
    missing = [k for k in _STATE_KEYS if k not in state] if isinstance(state, dict) else list(_STATE_KEYS)
    if missing:
        raise RuntimeError(f"{path}: not a training checkpoint (no {', '.join(missing)})")
    return state
