"""Where a run's numbers go: the metrics log (``metrics.jsonl``, :mod:`ifan.train.run`), TensorBoard
(``tb/``, when the recipe asks and tensorboard is installed) and a progress bar. Only the main
process of a run logs.
"""

from __future__ import annotations

import warnings
from pathlib import Path

from torch import Tensor

from ifan.train.config import LogConfig
from ifan.train.run import RUN_LAYOUT, append_metrics
from ifan.train.step import StepResult


def _tensorboard(run_dir: Path, start_step: int):
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        warnings.warn("tensorboard is not installed (pip install 'ifan[train]'); TensorBoard logs are off",
                      stacklevel=3)
        return None
    return SummaryWriter(str(run_dir / RUN_LAYOUT["tb"]), purge_step=start_step or None)


class RunLogger:
    """The logs of one run from ``start_step`` (a resumed run's events after it are replaced).

    Args:
        log: the recipe's ``log`` section (TensorBoard, progress bar, how often images are logged).
        total_steps: the run's length, for the progress bar.
    """

    def __init__(self, run_dir: Path, log: LogConfig, start_step: int, total_steps: int) -> None:
        self.run_dir, self.log = run_dir, log
        self.writer = _tensorboard(run_dir, start_step) if log.tensorboard else None
        self.progress = None
        if log.progress:
            from tqdm import tqdm

            self.progress = tqdm(total=total_steps, initial=start_step, unit="step", dynamic_ncols=True, desc="train")

    def stepped(self, result: StepResult) -> None:
        """Advance the progress bar by one step, showing its loss and learning rate."""
        if self.progress is not None:
            self.progress.update(1)
            self.progress.set_postfix(loss=f"{result.losses['total'].detach().item():.4f}", lr=f"{result.lr:.1e}")

    def train_row(self, step: int, result: StepResult, steps_per_s: float) -> None:
        """One training row: the learning rate, the speed, the gradient norm and every loss term."""
        row = {"step": step, "kind": "train", "lr": result.lr, "steps_per_s": steps_per_s,
               "grad_norm": result.grad_norm.item(), **{k: v.detach().item() for k, v in result.losses.items()}}
        append_metrics(self.run_dir, row)
        if self.writer is not None:
            for k in result.losses:
                self.writer.add_scalar(f"train/loss_{k}", row[k], step)
            self.writer.add_scalar("train/lr", row["lr"], step)
            self.writer.add_scalar("train/steps_per_s", steps_per_s, step)
            self.writer.add_scalar("train/grad_norm", row["grad_norm"], step)

    def val_row(self, step: int, values: dict, grid: Tensor | None) -> None:
        """One validation row (``psnr``, ``psnr_input``, ...) and its image grid (logged at the steps
        ``log.image_every`` allows)."""
        append_metrics(self.run_dir, {"step": step, "kind": "val", **values})
        if self.writer is not None:
            self.writer.add_scalar("val/psnr", values["psnr"], step)
            self.writer.add_scalar("val/psnr_input", values["psnr_input"], step)
            if grid is not None and (self.log.image_every is None or step % self.log.image_every == 0):
                self.writer.add_image("val/input_output_target_defocus", grid, step)

    def note(self, line: str) -> None:
        """A line beside the progress bar (nothing without one)."""
        if self.progress is not None:
            self.progress.write(line)

    def close(self) -> None:
        if self.progress is not None:
            self.progress.close()
        if self.writer is not None:
            self.writer.close()
