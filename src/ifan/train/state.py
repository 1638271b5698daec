"""What a training run holds between steps, and its one ``state_dict``.

:class:`TrainingModule` pairs the deblurring network with the reblurring network and returns the
losses of a batch (one module, so that DDP synchronises the gradients of both). :class:`TrainState`
adds the optimiser, the loss scaler (fp16 only), the average of the weights (EMA), the step, the best
validation PSNR and the training time so far: what a checkpoint holds (:meth:`TrainState.state_dict`)
and what a resumed run loads back. One step of it is :func:`ifan.train.step.train_step`.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn

from ifan.models.ifan import IFAN
from ifan.models.reblur import ReblurNet
from ifan.train.config import OptimConfig
from ifan.train.losses import LossWeights, ifan_losses
from ifan.train.optim import EMA, build_optimizer


class TrainingModule(nn.Module):
    """The deblurring network and the reblurring network, returning the losses of a batch."""

    def __init__(self, model: IFAN, reblur: ReblurNet | None, weights: LossWeights) -> None:
        super().__init__()
        self.model, self.reblur, self.weights = model, reblur, weights

    def forward(self, c: Tensor, gt: Tensor, r: Tensor | None = None, l: Tensor | None = None,  # noqa: E741
                disparity: Tensor | None = None) -> dict[str, Tensor]:
        out = self.model(c, r, l, aux=True)
        return ifan_losses(out, gt, c, r, l, self.reblur, self.weights, disparity)


@dataclass(eq=False)
class TrainState:
    """The networks, the optimiser, the scaler and the EMA of a run, with its step and its best PSNR.

    Attributes:
        optim: the recipe's ``train`` section (learning rate schedule, clipping, memory format).
        autocast_dtype: the precision the steps run in (None: float32), as
            :func:`ifan.inference.runtime.resolve_precision` resolves ``optim.precision``.
        elapsed: seconds trained before this process started (a resumed run's earlier calls).
    """

    module: TrainingModule
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    optim: OptimConfig
    autocast_dtype: torch.dtype | None = None
    ema: EMA | None = None
    step: int = 0
    best_psnr: float | None = None
    elapsed: float = 0.0

    @classmethod
    def create(cls, model: IFAN, reblur: ReblurNet | None, weights: LossWeights, optim: OptimConfig,
               device: torch.device, autocast_dtype: torch.dtype | None = None) -> TrainState:
        """Move the networks to ``device`` (and to channels_last when ``optim`` says so), then build
        the optimiser (:func:`~ifan.train.optim.build_optimizer`), the scaler and the EMA (``optim.ema``)."""
        module = TrainingModule(model, reblur, weights).to(device)
        module = module.to(memory_format=cls.memory_format_of(optim))
        ema = EMA(model, optim.ema) if optim.ema > 0 else None
        scaler = torch.amp.GradScaler(device.type, enabled=autocast_dtype is torch.float16)
        return cls(module, build_optimizer(module, optim), scaler, optim, autocast_dtype, ema)

    @staticmethod
    def memory_format_of(optim: OptimConfig) -> torch.memory_format:
        return torch.channels_last if optim.channels_last else torch.contiguous_format

    @property
    def model(self) -> IFAN:
        return self.module.model

    @property
    def reblur(self) -> ReblurNet | None:
        return self.module.reblur

    @property
    def eval_model(self) -> IFAN:
        """What is validated and exported: the average of the weights when there is one."""
        return self.ema.model if self.ema is not None else self.model

    @property
    def params(self) -> list[nn.Parameter]:
        """The parameters the optimiser updates (and whose gradient norm is clipped)."""
        return self.optimizer.param_groups[0]["params"]

    def state_dict(self) -> dict:
        """Everything a resumed run needs (the torch RNG included), as plain tensors and numbers."""
        return {
            "step": self.step,
            "model": self.model.state_dict(),
            "reblur": self.reblur.state_dict() if self.reblur is not None else {},
            "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
            "ema": self.ema.model.state_dict() if self.ema is not None else {},
            "torch_rng": torch.get_rng_state(),
            "best_psnr": self.best_psnr,
            "elapsed": self.elapsed,
        }

    def load_state_dict(self, state: dict) -> None:
        """Load what :meth:`state_dict` saved (a checkpoint's training state)."""
        self.model.load_state_dict(state["model"])
        if self.reblur is not None:
            self.reblur.load_state_dict(state["reblur"])
        self.optimizer.load_state_dict(state["optimizer"])
        if "scaler" in state:
            self.scaler.load_state_dict(state["scaler"])
        if self.ema is not None:
            self.ema.model.load_state_dict(state.get("ema") or state["model"])
        torch.set_rng_state(state["torch_rng"])
        self.step, self.best_psnr, self.elapsed = state["step"], state.get("best_psnr"), state.get("elapsed", 0.0)
