"""Functional ops (pure PyTorch)."""

from ifan.ops.fac import FAC, fac, fac_channels, lean_fac
from ifan.ops.iac import IAC, adaptive_conv1d, filter_channels, iac, lean_iac, separable_adaptive_conv

__all__ = ["FAC", "IAC", "adaptive_conv1d", "fac", "fac_channels", "filter_channels", "iac", "lean_fac", "lean_iac",
           "separable_adaptive_conv"]
