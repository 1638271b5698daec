"""The recipe's optimisation: the optimiser, the learning rate of each step, the average of the weights.

Each takes the recipe's ``train`` section (:class:`~ifan.train.config.OptimConfig`).
"""

from __future__ import annotations

import copy
import math

import torch
from torch import nn

from ifan.train.config import OptimConfig


def build_optimizer(module: nn.Module, optim: OptimConfig) -> torch.optim.Optimizer:
    """The paper's optimiser over every trainable parameter of ``module`` (the deblurring and the
    reblurring network): RAdam with decoupled weight decay (torch-optimizer's RAdam, which the
    official code uses) and the recipe's learning rate, betas, eps and weight decay."""
    params = [p for p in module.parameters() if p.requires_grad]
    return torch.optim.RAdam(params, lr=optim.lr, betas=tuple(optim.betas), eps=optim.eps,
                             weight_decay=optim.weight_decay, decoupled_weight_decay=True)


def lr_at(step: int, optim: OptimConfig) -> float:
    """The learning rate of (0-based) ``step``: a linear warm-up over ``warmup_steps``, then step decay
    (``lr * gamma ** milestones reached``) or a cosine from ``lr`` to ``min_lr`` (over the remaining
    steps, or over each ``restart_every`` steps: warm restarts)."""
    if step < optim.warmup_steps:
        return optim.lr * (step + 1) / optim.warmup_steps
    if optim.schedule == "step":
        return optim.lr * optim.lr_gamma ** sum(step >= m for m in optim.lr_milestones)
    period = optim.restart_every or max(optim.steps - optim.warmup_steps, 1)
    phase = ((step - optim.warmup_steps) % period) / period
    return optim.min_lr + 0.5 * (optim.lr - optim.min_lr) * (1.0 + math.cos(math.pi * phase))


class EMA:
    """An exponential moving average of a model's floating-point parameters and buffers.

    After each optimiser step, ``update()`` sets ``avg = decay * avg + (1 - decay) * current``;
    the average lives in ``self.model`` (a copy of the network, in eval mode), which validation
    and the exported weights use.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self._pairs = [(a, b) for a, b in zip(self.model.state_dict().values(), model.state_dict().values())
                       if a.is_floating_point()]

    @torch.no_grad()
    def update(self) -> None:
        averages, current = zip(*self._pairs)
        torch._foreach_lerp_(list(averages), list(current), 1.0 - self.decay)
