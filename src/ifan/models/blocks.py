"""Building blocks of IFAN: convolution + leaky ReLU, transposed-conv upsampling, residual blocks,
and the plain-convolution stack of the IAC/FAC comparison's control.

The parameter layout of each block (``0.weight``, ``stem.i.0.weight``, ...) is the official
code's, so checkpoints map onto ours by renaming the top-level prefixes only
(see :mod:`ifan.models.official`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor, nn

LEAKY_SLOPE = 0.1


def conv(in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1) -> nn.Conv2d:
    """A ``same``-padded 2-D convolution with bias (no activation)."""
    return nn.Conv2d(in_ch, out_ch, kernel_size, stride=stride, padding=(kernel_size - 1) // 2)


class ConvAct(nn.Sequential):
    """Convolution followed by leaky ReLU 0.1. ``(B, in_ch, H, W) -> (B, out_ch, H/stride, W/stride)``."""

    def __init__(self, in_ch: int, out_ch: int, kernel_size: int = 3, stride: int = 1) -> None:
        super().__init__(conv(in_ch, out_ch, kernel_size, stride), nn.LeakyReLU(LEAKY_SLOPE))


class UpConvAct(nn.Sequential):
    """4x4 transposed convolution with stride 2, then leaky ReLU. ``(B, in, H, W) -> (B, out, 2H, 2W)``."""

    def __init__(self, in_ch: int, out_ch: int) -> None:
        super().__init__(nn.ConvTranspose2d(in_ch, out_ch, 4, stride=2, padding=1), nn.LeakyReLU(LEAKY_SLOPE))


class ResBlock(nn.Module):
    """``units`` residual units ``x = lrelu(x + conv(lrelu(conv(x))))``, chained.

    With more than one unit, the block input is added once more at the end (the official
    ``ResnetBlock`` does this, and its checkpoints depend on it). Shape-preserving.
    """

    def __init__(self, channels: int, kernel_size: int = 3, units: int = 1) -> None:
        super().__init__()
        self.units = units
        self.stem = nn.ModuleList(
            nn.Sequential(
                conv(channels, channels, kernel_size),
                nn.LeakyReLU(LEAKY_SLOPE),
                conv(channels, channels, kernel_size),
            )
            for _ in range(units)
        )

    def forward(self, x: Tensor) -> Tensor:
        skip = x
        for unit in self.stem:
            x = F.leaky_relu(x + unit(x), LEAKY_SLOPE)
        return x + skip if self.units > 1 else x


def conv_res_stack(in_ch: int, ch: int, out_ch: int, kernel_size: int, units: int, out_act: bool,
                   out_kernel_size: int | None = None, blocks: int = 2) -> nn.Sequential:
    """``ConvAct(in_ch, ch)``, ``blocks`` x ``ResBlock(ch, units)``, then a last conv to ``out_ch``.

    The pattern of the official DME, filter predictor, its fusion trunk, the bottleneck and the
    reblurring network. ``out_act`` adds the leaky ReLU after the last conv.
    """
    k_out = kernel_size if out_kernel_size is None else out_kernel_size
    last: nn.Module = ConvAct(ch, out_ch, k_out) if out_act else conv(ch, out_ch, k_out)
    return nn.Sequential(
        ConvAct(in_ch, ch, kernel_size),
        *(ResBlock(ch, kernel_size, units) for _ in range(blocks)),
        last,
    )


class ConvControl(nn.Module):
    """The plain-convolution control: ``lrelu(x + stack([x, filter features]))`` at 1/8.

    ``layers`` 3x3 convolutions (leaky ReLU between them): the first maps the ``2 * c4`` channels
    of the concatenation to ``c4``, the others keep ``c4``. It sees what IAC sees (the features and
    the filter path's output) but mixes them with fixed weights instead of per-pixel filters;
    :func:`ifan.models.ifan.equal_flops_conv_layers` sizes it to the FLOPs of the filter head plus IAC.
    """

    def __init__(self, c4: int, layers: int) -> None:
        super().__init__()
        convs = [conv(2 * c4, c4, 3) if layers == 1 else ConvAct(2 * c4, c4, 3)]
        convs += [ConvAct(c4, c4, 3) for _ in range(layers - 2)] + ([conv(c4, c4, 3)] if layers > 1 else [])
        self.stack = nn.Sequential(*convs)

    def forward(self, x: Tensor, filter_feats: Tensor) -> Tensor:
        return F.leaky_relu(x + self.stack(torch.cat([x, filter_feats], dim=1)), LEAKY_SLOPE)
