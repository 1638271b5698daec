"""The reblurring network (training only): deblurring filters -> reblurring filters -> reblur.

It turns IFAN's predicted deblurring filters into reblurring filters and applies them with IAC
to the sharp target at 1/8 resolution; the reblurring loss compares the result with the
blurry input at 1/8, so the deblurring filters must encode the blur's shape and size.
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor, nn

from ifan.models.blocks import conv_res_stack
from ifan.models.ifan import IFANConfig, xavier_init
from ifan.ops.iac import iac


class ReblurNet(nn.Module):
    """Reblurring network.

    Shape:
        - sharp: ``(B, 3, H, W)`` in [0, 1].
        - filters: IFAN's filters ``(B, config.filter_channels, h, w)`` (``h = H/8``).
        - output: reblurred sharp image ``(B, 3, h, w)``.
    """

    def __init__(self, config: IFANConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or IFANConfig()
        if cfg.adaptive_layer != "iac":
            raise ValueError(f"ReblurNet turns IAC's deblurring filters into reblurring filters; this model uses "
                             f"adaptive_layer {cfg.adaptive_layer!r} (train it without the reblurring loss)")
        c4 = cfg.feature_channels
        self.filter_net = conv_res_stack(
            cfg.filter_channels, c4, cfg.reblur_filter_channels, cfg.kernel_size, cfg.res_units, out_act=False,
            out_kernel_size=3,
        )
        self.init_weights()

    def init_weights(self, gain: float = 1.0) -> None:
        """Xavier-uniform init (official ``wiRF = 1.0``), zero biases."""
        xavier_init(self, gain)

    def forward(self, sharp: Tensor, filters: Tensor) -> Tensor:
        # Nearest-neighbour downsampling to the filters' grid, as the official code does
        # (for H a multiple of 8 this is sharp[..., ::8, ::8]).
        small = F.interpolate(sharp, size=filters.shape[-2:], mode="nearest")
        cfg = self.config
        reblur_filters = self.filter_net(filters)
        return iac(small, reblur_filters, cfg.reblur_iterations, cfg.reblur_filter_size, act_last=False,
                   form=cfg.iac_form) + small
