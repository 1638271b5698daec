"""One training step: the one the trainer runs, and the one the training benchmark and the recipe
ablations time.

The step sets the learning rate of the step (:func:`~ifan.train.optim.lr_at`), computes the losses
under autocast in the state's precision, refuses a loss that is not finite, back-propagates
(through the fp16 loss scaler when there is one), clips the gradient norm, steps the optimiser and
updates the average of the weights.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ifan.data.datasets import VIEWS
from ifan.inference.runtime import autocast
from ifan.train.optim import lr_at
from ifan.train.state import TrainState

#: What a batch may hold: the views (``c``, ``gt``, ``l``, ``r``) and the true disparity.
BATCH_KEYS = (*VIEWS, "disparity")


@dataclass
class StepResult:
    """What one step did: the losses (unweighted terms and the weighted ``total``, as
    :func:`~ifan.train.losses.ifan_losses` returns them), the gradient norm before clipping, and the
    learning rate it used."""

    losses: dict[str, Tensor]
    grad_norm: Tensor
    lr: float


def batch_to(batch: Mapping[str, Tensor], device: torch.device,
             memory_format: torch.memory_format = torch.contiguous_format) -> dict[str, Tensor]:
    """A loader's batch on ``device``, in ``memory_format`` (the tensors :func:`train_step` reads)."""
    return {k: batch[k].to(device, non_blocking=True).contiguous(memory_format=memory_format)
            for k in BATCH_KEYS if k in batch}


def train_step(state: TrainState, batch: Mapping[str, Tensor], net: nn.Module | None = None) -> StepResult:
    """Run one optimisation step of ``state`` on ``batch`` and advance ``state.step``.

    Args:
        batch: ``c`` (the blurry input) and ``gt`` (the sharp target), ``(B, 3, H, W)`` in [0, 1];
            ``r`` and ``l``, the dual-pixel views, where the DME loss or a dual-pixel model reads
            them; ``disparity`` ``(B, 1, H, W)`` for the disparity loss. On the state's device.
        net: what computes the losses: ``state.module`` (the default) or its DDP wrapper.

    Raises:
        FloatingPointError: the loss is not finite (nothing is updated).
    """
    lr = lr_at(state.step, state.optim)
    for group in state.optimizer.param_groups:
        group["lr"] = lr
    with autocast(batch["c"].device, state.autocast_dtype):
        losses = (net or state.module)(batch["c"], batch["gt"], batch.get("r"), batch.get("l"),
                                       batch.get("disparity"))
    if not torch.isfinite(losses["total"]):
        raise FloatingPointError(f"the loss became {float(losses['total'])} at step {state.step + 1}; "
                                 f"lower train.lr or check the data (last checkpoint kept)")
    state.optimizer.zero_grad(set_to_none=True)
    state.scaler.scale(losses["total"]).backward()
    state.scaler.unscale_(state.optimizer)
    grad_norm = torch.nn.utils.clip_grad_norm_(state.params, state.optim.grad_clip)
    state.scaler.step(state.optimizer)
    state.scaler.update()
    if state.ema is not None:
        state.ema.update()
    state.step += 1
    return StepResult(losses, grad_norm, lr)
