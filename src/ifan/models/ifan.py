"""The IFAN network (Lee et al., CVPR 2021) and its typed configuration.

Data flow for an input ``C`` of ``(B, 3, H, W)`` in [0, 1], ``H`` and ``W`` multiples of 8
(``c4 = 4 * channels``)::

    feature extractor   C -> f1 (1), f2 (1/2), f3 (1/4), f_C (1/8, c4 channels)
    filter encoder      C (or [R, L] for the dual-pixel variant) -> e (1/8, c4)
    disparity estimator e -> DM (1/8, 1 channel): the defocus disparity map
    filter predictor    [e, embed(DM)] -> fusion -> trunk -> 1x1 head -> filters (1/8)
    IAC                 f_C, filters -> deblurred features (1/8)
    reconstructor       -> 1/4 (+ f3) -> 1/2 (+ f2) -> 1 (+ f1) -> residual image, + C

The filters hold ``N * (2*c4*k + c4)`` channels (15,232 for the default config), 0.82 GiB of
float32 at 1280x720. At inference the head's 1x1 convolution is applied per IAC iteration
(:meth:`IFAN.lean_iac`), so that tensor is never held whole.

Two variants replace IAC (``IFANConfig.adaptive_layer``), for the comparison of docs/iac.md:
``"fac"``, a dense ``k x k`` filter adaptive convolution (:mod:`ifan.ops.fac`) whose head predicts
``c4 * k * k`` channels (applied one filter row at a time at inference), and ``"conv"``, no
adaptive layer at all: a plain stack of 3x3 convolutions on ``[f_C, filter features]`` (the
filter path's information, combined without per-pixel filters) in place of the head and IAC.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields

import torch
from torch import Tensor, nn

from ifan.models.blocks import ConvAct, ConvControl, ResBlock, UpConvAct, conv_res_stack
from ifan.ops.fac import FAC, fac_channels, lean_fac
from ifan.ops.iac import IAC, IAC_FORMS, filter_channels, lean_iac

DOWNSCALE = 8  # three stride-2 levels: IAC, the filters and the disparity are at 1/8; H, W must be multiples
ADAPTIVE_LAYERS = ("iac", "fac", "conv")
# fields that a config at its default (IAC) leaves out of to_dict(), so that its weights files read
# exactly as before this variant existed (and older versions of ifan still load them)
_VARIANT_DEFAULTS = {"adaptive_layer": "iac", "fac_size": 17, "conv_layers": 5}


def padded_side(n: int) -> int:
    """The smallest side the network accepts that holds ``n`` pixels: ``n`` rounded up to a multiple of 8.

    Example:
        >>> padded_side(37), padded_side(40)
        (40, 40)
    """
    return -(-n // DOWNSCALE) * DOWNSCALE


@dataclass(frozen=True)
class IFANConfig:
    """Architecture numbers of IFAN (defaults: the paper's model, IAC with N = 17).

    Attributes:
        channels: width of the first level (``ch``); levels are ch, 2ch, 4ch, 4ch.
        iterations: IAC iterations ``N``.
        filter_size: IAC 1-D kernel size ``Fs`` (odd).
        kernel_size: convolution kernel size ``ks``.
        res_units: residual units per block in the DME, filter predictor and reblurring net.
        dual_pixel_input: filter encoder reads the right and left DP views (6 channels).
        iac_form: ``"separable"`` (paper; kernel2 in the horizontal pass) or ``"official"``
            (kernel1 in both passes, as the authors' released weights were trained).
        reblur_iterations: IAC iterations of the reblurring network (``RBF_num``).
        reblur_filter_size: 1-D kernel size of the reblurring filters (``RBFs``).
        adaptive_layer: ``"iac"`` (the paper's), ``"fac"`` (a dense ``fac_size`` x ``fac_size``
            filter per pixel and channel) or ``"conv"`` (a plain stack of ``conv_layers`` 3x3
            convolutions in place of the filter head and the adaptive layer: the control).
        fac_size: FAC's filter size ``k`` (odd) when ``adaptive_layer == "fac"`` (else reset to 17).
        conv_layers: 3x3 convolutions of the control when ``adaptive_layer == "conv"`` (else reset to 5).
    """

    channels: int = 32
    iterations: int = 17
    filter_size: int = 3
    kernel_size: int = 3
    res_units: int = 2
    dual_pixel_input: bool = False
    iac_form: str = "separable"
    reblur_iterations: int = 17
    reblur_filter_size: int = 3
    adaptive_layer: str = "iac"
    fac_size: int = 17
    conv_layers: int = 5

    def __post_init__(self) -> None:
        for name in ("channels", "iterations", "filter_size", "kernel_size", "res_units",
                     "reblur_iterations", "reblur_filter_size", "fac_size", "conv_layers"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"IFANConfig.{name} must be a positive integer, got {value!r}")
        for name in ("filter_size", "kernel_size", "reblur_filter_size", "fac_size"):
            if getattr(self, name) % 2 == 0:
                raise ValueError(f"IFANConfig.{name} must be odd, got {getattr(self, name)}")
        if self.iac_form not in IAC_FORMS:
            raise ValueError(f"IFANConfig.iac_form must be one of {sorted(IAC_FORMS)}, got {self.iac_form!r}")
        if not isinstance(self.dual_pixel_input, bool):
            raise ValueError(f"IFANConfig.dual_pixel_input must be a bool, got {self.dual_pixel_input!r}")
        if self.adaptive_layer not in ADAPTIVE_LAYERS:
            raise ValueError(f"IFANConfig.adaptive_layer must be one of {list(ADAPTIVE_LAYERS)}, "
                             f"got {self.adaptive_layer!r}")
        # a size the chosen layer does not use is reset, so that equal networks have equal configs
        for name, layer in (("fac_size", "fac"), ("conv_layers", "conv")):
            if self.adaptive_layer != layer:
                object.__setattr__(self, name, _VARIANT_DEFAULTS[name])

    @property
    def feature_channels(self) -> int:
        """Channels at 1/8 resolution (``c4 = 4 * channels``), where IAC runs."""
        return 4 * self.channels

    @property
    def filter_channels(self) -> int:
        """Channels of the filter tensor (the filter head's outputs): ``N * (2 * c4 * Fs + c4)`` for
        IAC, ``c4 * k * k`` for FAC, 0 for the plain-convolution control (no filters)."""
        if self.adaptive_layer == "fac":
            return fac_channels(self.feature_channels, self.fac_size)
        if self.adaptive_layer == "conv":
            return 0
        return filter_channels(self.iterations, self.feature_channels, self.filter_size)

    @property
    def receptive_field(self) -> int:
        """Nominal receptive field of the adaptive layer (or the control's stack), in 1/8-scale pixels:
        ``N * (Fs - 1) + 1`` for IAC, ``k`` for FAC, ``2 * conv_layers + 1`` for the control."""
        if self.adaptive_layer == "fac":
            return self.fac_size
        if self.adaptive_layer == "conv":
            return 2 * self.conv_layers + 1
        return self.iterations * (self.filter_size - 1) + 1

    @property
    def reblur_filter_channels(self) -> int:
        """Channels of the reblurring filters (3 image channels): ``RBF_num * (2*3*RBFs + 3)``."""
        return filter_channels(self.reblur_iterations, 3, self.reblur_filter_size)

    def to_dict(self) -> dict:
        """The fields as a dict; the variant fields are left out where they hold their defaults (IAC)."""
        return {k: v for k, v in asdict(self).items() if _VARIANT_DEFAULTS.get(k, object()) != v}

    @classmethod
    def from_dict(cls, data: dict) -> IFANConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(f"unknown IFANConfig keys {unknown}; known keys: {sorted(known)}")
        return cls(**data)


@dataclass
class IFANOutput:
    """What :meth:`IFAN.forward` returns.

    Attributes:
        image: deblurred image ``(B, 3, H, W)``, not clipped.
        disparity: defocus disparity map of the input ``(B, 1, H/8, W/8)``.
        filters: IAC filters ``(B, filter_channels, H/8, W/8)`` (training call only).
        disparity_right: disparity estimated from the right DP view (from ``[R, L]`` for the
            dual-pixel variant), ``(B, 1, H/8, W/8)`` (training call with views only).
    """

    image: Tensor
    disparity: Tensor
    filters: Tensor | None = None
    disparity_right: Tensor | None = None


def xavier_init(module: nn.Module, gain: float) -> None:
    """Xavier-uniform init with ``gain`` for every (transposed) convolution in ``module``; zero biases."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            nn.init.xavier_uniform_(m.weight, gain=gain)
            if m.bias is not None:
                nn.init.zeros_(m.bias)


class Encoder(nn.Module):
    """Four levels of three ``ConvAct`` each; levels 2-4 start with stride 2.

    ``(B, in_ch, H, W)`` -> features at 1, 1/2, 1/4, 1/8 with ch, 2ch, 4ch, 4ch channels.
    """

    def __init__(self, in_ch: int, ch: int, kernel_size: int) -> None:
        super().__init__()
        widths = [in_ch, ch, 2 * ch, 4 * ch, 4 * ch]
        for level in range(1, 5):
            for j in range(1, 4):
                stride = 2 if (j == 1 and level > 1) else 1
                c_in = widths[level - 1] if j == 1 else widths[level]
                self.add_module(f"conv{level}_{j}", ConvAct(c_in, widths[level], kernel_size, stride))

    def forward(self, x: Tensor) -> list[Tensor]:
        feats = []
        for level in range(1, 5):
            for j in range(1, 4):
                x = getattr(self, f"conv{level}_{j}")(x)
            feats.append(x)
        return feats


class Reconstructor(nn.Module):
    """Decoder from deblurred 1/8 features to a residual image, with skips from the extractor."""

    def __init__(self, ch: int, kernel_size: int) -> None:
        super().__init__()
        c1, c2, c4 = ch, 2 * ch, 4 * ch
        self.bottleneck = conv_res_stack(c4, c4, c4, kernel_size, units=3, out_act=True, blocks=1)
        for level, (c_in, c_out) in zip((3, 2, 1), ((c4, c4), (c4, c2), (c2, c1))):
            self.add_module(f"up{level}", UpConvAct(c_in, c_out))
            self.add_module(f"refine{level}", nn.Sequential(ResBlock(c_out, kernel_size), ResBlock(c_out, kernel_size)))
        self.out = ConvAct(c1, 3, kernel_size)

    def forward(self, x: Tensor, skips: list[Tensor]) -> Tensor:
        """``x``: ``(B, 4ch, H/8, W/8)``; ``skips``: extractor features at 1, 1/2, 1/4 -> ``(B, 3, H, W)``."""
        x = self.bottleneck(x)
        for level in (3, 2, 1):
            x = getattr(self, f"up{level}")(x) + skips[level - 1]
            x = getattr(self, f"refine{level}")(x)
        return self.out(x)


def adaptive_macs(config: IFANConfig) -> int:
    """Multiply-adds per 1/8-scale pixel of the filter head plus the adaptive layer (or of the control).

    IAC: the 1x1 head ``c4 * N(2 c4 Fs + c4)`` plus ``N * c4 * 2 Fs`` filter taps (the biases and
    activations, a few per channel, are not counted); FAC: ``c4 * c4 k^2`` plus ``c4 k^2``; the
    control: ``9 * c4 * (2 c4 + (L - 1) c4)``.

    Example:
        >>> adaptive_macs(IFANConfig(channels=16, iterations=8))  # ifan-lite
        232448
    """
    c4 = config.feature_channels
    if config.adaptive_layer == "conv":
        return 9 * c4 * c4 * (config.conv_layers + 1)
    head = c4 * config.filter_channels
    if config.adaptive_layer == "fac":
        return head + c4 * config.fac_size ** 2
    return head + config.iterations * c4 * 2 * config.filter_size


def equal_flops_conv_layers(config: IFANConfig) -> int:
    """The control's depth whose multiply-adds come closest to ``config``'s head plus adaptive layer.

    Example:
        >>> equal_flops_conv_layers(IFANConfig(channels=16, iterations=8))  # 5 convs: 0.95x ifan-lite's
        5
    """
    target = adaptive_macs(config)
    per_layer = 9 * config.feature_channels ** 2
    return max(1, min(range(1, 257), key=lambda n: abs(per_layer * (n + 1) - target)))


class IFAN(nn.Module):
    """Iterative Filter Adaptive Network for single-image defocus deblurring.

    Args:
        config: architecture numbers; see :class:`IFANConfig`.

    Shape:
        - image: ``(B, 3, H, W)`` in [0, 1], ``H`` and ``W`` multiples of 8
          (:class:`ifan.Deblurrer` takes any size: it pads, or tiles, and crops back).
        - right, left: dual-pixel views, same shape (needed by the dual-pixel variant, and by
          a training call that computes the disparity loss).
        - output: :class:`IFANOutput`.

    Example:
        >>> model = IFAN(IFANConfig(channels=4, iterations=2, reblur_iterations=2)).eval()
        >>> out = model(torch.rand(1, 3, 32, 48))
        >>> out.image.shape, out.disparity.shape
        (torch.Size([1, 3, 32, 48]), torch.Size([1, 1, 4, 6]))
    """

    def __init__(self, config: IFANConfig | None = None) -> None:
        super().__init__()
        self.config = cfg = config or IFANConfig()
        ks, c4 = cfg.kernel_size, cfg.feature_channels
        self.feature_extractor = Encoder(3, cfg.channels, ks)
        self.filter_encoder = Encoder(6 if cfg.dual_pixel_input else 3, cfg.channels, ks)
        self.disparity_estimator = conv_res_stack(c4, c4, 1, ks, cfg.res_units, out_act=False)
        self.disparity_embed = ConvAct(1, c4, 3)
        self.filter_fusion = conv_res_stack(2 * c4, c4, c4, ks, cfg.res_units, out_act=True)
        self.filter_predictor = conv_res_stack(
            c4, c4, cfg.filter_channels or 1, ks, cfg.res_units, out_act=False, out_kernel_size=1
        )  # the control has no head: its 1-channel stand-in is dropped below
        if cfg.adaptive_layer == "iac":
            self.iac = IAC(cfg.iterations, cfg.filter_size, act_last=True, form=cfg.iac_form)
        elif cfg.adaptive_layer == "fac":
            self.fac = FAC(cfg.fac_size)
        else:  # the control: no head, a plain stack in place of head + adaptive layer
            self.filter_predictor = nn.Sequential(*list(self.filter_predictor)[:-1])
            self.conv_control = ConvControl(c4, cfg.conv_layers)
        self.reconstructor = Reconstructor(cfg.channels, ks)
        self.init_weights()

    def init_weights(self, gain: float = 1.0, filter_gain: float = 1.5) -> None:
        """The paper's initialisation: Xavier-uniform weights (``gain``), zero biases; the filter
        predictor uses ``filter_gain`` (official ``wi = 1.0``, ``wiF = 1.5``)."""
        xavier_init(self, gain)
        xavier_init(self.filter_predictor, filter_gain)

    @property
    def filter_head(self) -> nn.Conv2d:
        """The filter predictor's last 1x1 convolution (``c4 -> filter_channels``); IAC and FAC only."""
        if self.config.adaptive_layer == "conv":
            raise ValueError("the plain-convolution control (adaptive_layer 'conv') has no filter head")
        return self.filter_predictor[-1]

    def _check_input(self, name: str, x: Tensor | None, channels: int = 3) -> None:
        if x is None:
            raise ValueError(f"IFAN: {name} is required here")
        if x.dim() != 4 or x.shape[1] != channels:
            raise ValueError(f"IFAN: {name} must be (B, {channels}, H, W), got {tuple(x.shape)}")
        if x.shape[-2] % DOWNSCALE or x.shape[-1] % DOWNSCALE:
            raise ValueError(
                f"IFAN: {name} height and width must be multiples of 8, got {tuple(x.shape[-2:])}; "
                "ifan.Deblurrer takes any size"
            )

    def filter_encoder_input(self, image: Tensor, right: Tensor | None, left: Tensor | None) -> Tensor:
        """The filter encoder's input: the image, or ``[R, L]`` for the dual-pixel variant."""
        if not self.config.dual_pixel_input:
            return image
        self._check_input("right", right)
        self._check_input("left", left)
        return torch.cat([right, left], dim=1)

    def estimate_disparity(self, encoder_input: Tensor) -> tuple[Tensor, Tensor]:
        """Filter encoder + DME: ``(B, 3|6, H, W)`` -> (encoder features (1/8), disparity (B, 1, H/8, W/8))."""
        encoded = self.filter_encoder(encoder_input)[-1]
        return encoded, self.disparity_estimator(encoded)

    def filter_features(self, encoded: Tensor, disparity: Tensor) -> Tensor:
        """Filter predictor up to (not including) its 1x1 head: ``(B, c4, H/8, W/8)``."""
        fused = self.filter_fusion(torch.cat([encoded, self.disparity_embed(disparity)], dim=1))
        trunk = self.filter_predictor if self.config.adaptive_layer == "conv" else self.filter_predictor[:-1]
        return trunk(fused)

    def lean_iac(self, x: Tensor, filter_feats: Tensor) -> Tensor:
        """IAC with the filter head applied per iteration (:func:`ifan.ops.iac.lean_iac`): equal to
        ``self.iac(x, self.filter_head(filter_feats))`` without building the full filter tensor."""
        cfg = self.config
        return lean_iac(x, filter_feats, self.filter_head.weight, self.filter_head.bias, cfg.iterations,
                        cfg.filter_size, self.iac.act_last, cfg.iac_form)

    def adapt(self, x: Tensor, filter_feats: Tensor, keep_filters: bool = False) -> tuple[Tensor, Tensor | None]:
        """The adaptive layer on the extractor's 1/8 features ``x``: ``(deblurred, filters or None)``.

        With ``keep_filters`` the whole filter tensor is built and returned (IAC, FAC); otherwise the
        head is applied piecewise (IAC per iteration, FAC per filter row: never held whole)."""
        layer, head = self.config.adaptive_layer, None if self.config.adaptive_layer == "conv" else self.filter_head
        if layer == "conv":
            return self.conv_control(x, filter_feats), None
        if keep_filters:
            # FAC reads each tap as an (H, W) plane: a head output in NCHW has exactly that layout
            filters = head(filter_feats if layer == "iac" else filter_feats.contiguous())
            return (self.iac(x, filters) if layer == "iac" else self.fac(x, filters)), filters
        if layer == "iac":
            return self.lean_iac(x, filter_feats), None
        return lean_fac(x, filter_feats, head.weight, head.bias, self.config.fac_size), None

    def forward(self, image: Tensor, right: Tensor | None = None, left: Tensor | None = None,
                aux: bool = False) -> IFANOutput:
        """Deblur ``image``; with ``aux`` also return the filters and the right-view disparity.

        Args:
            image: ``(B, 3, H, W)`` in [0, 1]; H, W multiples of 8.
            right, left: DP views ``(B, 3, H, W)``; required by the dual-pixel variant.
                With ``aux`` and ``right`` given, the disparity of the right view is returned
                (for the DME loss).
            aux: training call: keep the full filter tensor (for the reblurring loss; the control
                has none).
        """
        self._check_input("image", image)
        *skips, f_c = self.feature_extractor(image)
        encoded, disparity = self.estimate_disparity(self.filter_encoder_input(image, right, left))
        feats = self.filter_features(encoded, disparity)
        deblurred, filters = self.adapt(f_c, feats, keep_filters=aux)
        out = IFANOutput(image=self.reconstructor(deblurred, skips) + image, disparity=disparity, filters=filters)
        if aux and right is not None:
            if self.config.dual_pixel_input:
                out.disparity_right = disparity
            else:
                self._check_input("right", right)
                out.disparity_right = self.estimate_disparity(right)[1]
        return out
