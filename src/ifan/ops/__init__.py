"""Functional ops (pure PyTorch)."""

from ifan.ops.iac import IAC, adaptive_conv1d, filter_channels, iac, lean_iac, separable_adaptive_conv

__all__ = ["IAC", "adaptive_conv1d", "filter_channels", "iac", "lean_iac", "separable_adaptive_conv"]
