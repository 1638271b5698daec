"""Grow a trained IFAN into a wider one that computes exactly the same function.

A wider model trained from scratch spends its first hours catching up with the one it replaces;
grown, it starts where that one is. :func:`widen` maps every tensor of a model of width ``c`` into a
model of width ``C > c``: the old channels keep their weights, every old output ignores the new
inputs (those weights are zero), and the new channels start from the usual initialisation. By
induction over the layers the old channels carry exactly the old activations, and the output
layers read only old channels, so the grown model's output equals the old one's (to float
rounding). Training then moves the zero weights first: their gradient is the new channels'
activation times the old outputs' gradient.

Channel layouts that are not "old channels first" are mapped explicitly: the filter fusion reads
the concatenation ``[encoder features, disparity embedding]``, and the filter head's outputs are
IAC's per-iteration kernels and biases (:func:`ifan.ops.iac.filter_channels`). IAC itself is
depthwise, so the new channels' filters never touch the old channels.
"""

from __future__ import annotations

import os
from collections.abc import Mapping

import torch
from torch import Tensor, nn

from ifan.models.ifan import IFAN, IFANConfig
from ifan.models.serialization import save_weights
from ifan.models.hub import load_model


def _iac_rows(n: int, c: int, k: int, new_c: int) -> Tensor:
    """Where each filter-head output of width ``c`` goes at width ``new_c`` (kernels, then biases)."""
    kernels = [i * 2 * new_c * k + p * new_c * k + ch * k + t
               for i in range(n) for p in range(2) for ch in range(c) for t in range(k)]
    biases = [n * 2 * new_c * k + i * new_c + ch for i in range(n) for ch in range(c)]
    return torch.tensor(kernels + biases)


def _channel_map(role: str, old_size: int, new_size: int, old: IFANConfig, new: IFANConfig) -> Tensor:
    """Indices in the new tensor's dimension of the old one's channels; ``role``: "concat" (the
    filter fusion's input, ``[encoder features, disparity embedding]``), "head" (the filter head's
    output, IAC's kernels and biases) or "plain" (old channels first)."""
    if old_size == new_size:
        return torch.arange(old_size)
    if role == "concat":
        half = old_size // 2
        return torch.cat([torch.arange(half), new_size // 2 + torch.arange(half)])
    if role == "head":
        return _iac_rows(old.iterations, old.feature_channels, old.filter_size, new.feature_channels)
    return torch.arange(old_size)


def widen(state: Mapping[str, Tensor], config: IFANConfig, channels: int, seed: int = 0) -> tuple[IFANConfig, dict[str, Tensor]]:
    """The weights of ``config`` (``state``: an IFAN state dict) grown to width ``channels``.

    Args:
        state: the trained model's state dict (float tensors).
        config: its architecture.
        channels: the new width (``IFANConfig.channels``), larger than ``config.channels``.
        seed: seed of the new channels' initialisation.

    Returns:
        ``(new config, new state dict)``; ``IFAN(new config)`` loaded with it computes the same
        output and disparity as the old model, up to float rounding.
    """
    if channels <= config.channels:
        raise ValueError(f"widen: the new width must exceed the old one ({config.channels}), got {channels}")
    if config.adaptive_layer != "iac":
        raise ValueError(f"widen: only IAC models grow exactly; this one uses adaptive_layer {config.adaptive_layer!r}")
    new_config = IFANConfig.from_dict({**config.to_dict(), "channels": channels})
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = IFAN(new_config)
        model.init_weights()
    out = {k: v.detach().clone() for k, v in model.state_dict().items()}
    concat_input, head_output = model.filter_fusion[0][0], model.filter_head
    for name, module in model.named_modules():
        if not isinstance(module, (nn.Conv2d, nn.ConvTranspose2d)):
            continue
        w_old, w_new = state[f"{name}.weight"], out[f"{name}.weight"]
        out_dim, in_dim = (1, 0) if isinstance(module, nn.ConvTranspose2d) else (0, 1)
        o = _channel_map("head" if module is head_output else "plain", w_old.shape[out_dim],
                         w_new.shape[out_dim], config, new_config)
        i = _channel_map("concat" if module is concat_input else "plain", w_old.shape[in_dim],
                         w_new.shape[in_dim], config, new_config)
        w = w_new.movedim((out_dim, in_dim), (0, 1))  # a view: writes go to w_new
        w[o] = 0.0  # old outputs ignore new inputs ...
        w[o[:, None], i[None, :]] = w_old.movedim((out_dim, in_dim), (0, 1)).to(w.dtype)  # ... and keep their weights
        if module.bias is not None:
            out[f"{name}.bias"][o] = state[f"{name}.bias"].to(w.dtype)
    return new_config, out


def grow_weights_file(source: str | os.PathLike, channels: int, out: str | os.PathLike,
                      seed: int = 0) -> tuple[IFANConfig, IFANConfig]:
    """``source`` (a bundled model's name or a weights file) widened to ``channels`` and written to
    ``out`` (replacing it); returns the old and the new architecture."""
    model = load_model(source)
    config, state = widen(model.state_dict(), model.config, channels, seed=seed)
    save_weights(out, config, state, source=f"{source} grown from width {model.config.channels} to {channels} "
                 f"by ifan grow (same function; new channels seeded {seed})")
    return model.config, config
