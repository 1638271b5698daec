"""The authors' (codeslake/IFAN) checkpoint layout: key mapping both ways, and config inference.

Official checkpoints hold ``DataParallel(DeblurNet).state_dict()``: keys ``module.Network.*``
(the deblurring network) and ``module.reblurNet.*`` (the reblurring network, training only).
Our modules keep the official block layout, so only the top-level prefixes differ.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

from torch import Tensor

from ifan.models.ifan import IFANConfig
from ifan.ops.iac import filter_channels

# official prefix (after "Network.") -> our prefix in IFAN
_NETWORK_PREFIXES: dict[str, str] = {
    **{f"conv{lv}_{j}.": f"feature_extractor.conv{lv}_{j}." for lv in range(1, 5) for j in range(1, 4)},
    **{f"kconv{lv}_{j}.": f"filter_encoder.conv{lv}_{j}." for lv in range(1, 5) for j in range(1, 4)},
    "DME.": "disparity_estimator.",
    "conv_DME.": "disparity_embed.",
    "conv4_4.": "filter_fusion.",
    "F.": "filter_predictor.",
    "conv_res.": "reconstructor.bottleneck.",
    **{f"upconv{lv}_u.": f"reconstructor.up{lv}." for lv in (1, 2, 3)},
    **{f"upconv{lv}_{j}.": f"reconstructor.refine{lv}.{j - 1}." for lv in (1, 2, 3) for j in (1, 2)},
    "out_res.": "reconstructor.out.",
}
_REBLUR_PREFIXES: dict[str, str] = {"RBF.": "filter_net."}


class CheckpointError(ValueError):
    """A weights file that does not fit the expected layout or shapes."""


def _rename(key: str, table: Mapping[str, str]) -> str | None:
    for src, dst in table.items():
        if key.startswith(src):
            return dst + key[len(src):]
    return None


def is_official_state_dict(state: Mapping[str, Tensor]) -> bool:
    """True when the keys look like the official layout (``[module.]Network.*``)."""
    return any(re.match(r"^(module\.)?Network\.", k) for k in state)


def split_official(state: Mapping[str, Tensor]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """Official state dict -> (our IFAN state dict, our ReblurNet state dict; may be empty).

    Accepts keys with or without the ``module.`` prefix. Unknown keys raise
    :class:`CheckpointError` naming them.
    """
    network: dict[str, Tensor] = {}
    reblur: dict[str, Tensor] = {}
    unknown = []
    for key, value in state.items():
        bare = key[len("module."):] if key.startswith("module.") else key
        part, _, rest = bare.partition(".")
        table, target = {"Network": (_NETWORK_PREFIXES, network), "reblurNet": (_REBLUR_PREFIXES, reblur)}.get(
            part, (None, None)
        )
        ours = _rename(rest, table) if table is not None else None
        if ours is None:
            unknown.append(key)
        else:
            target[ours] = value
    if unknown:
        raise CheckpointError(
            f"{len(unknown)} keys are not in the official IFAN layout, e.g. {unknown[:5]}; "
            "expected 'module.Network.*' and optionally 'module.reblurNet.*'"
        )
    return network, reblur


def to_official(network: Mapping[str, Tensor], reblur: Mapping[str, Tensor] | None = None,
                prefix: str = "module.") -> dict[str, Tensor]:
    """Our state dicts -> one state dict in the official layout (``module.Network.*`` ...)."""
    inverse_net = {v: k for k, v in _NETWORK_PREFIXES.items()}
    inverse_rb = {v: k for k, v in _REBLUR_PREFIXES.items()}
    out: dict[str, Tensor] = {}
    for part, table, state in (("Network", inverse_net, network), ("reblurNet", inverse_rb, reblur or {})):
        for key, value in state.items():
            theirs = _rename(key, table)
            if theirs is None:
                raise CheckpointError(f"key {key!r} has no official counterpart")
            out[f"{prefix}{part}.{theirs}"] = value
    return out


def official_key(key: str, reblur: bool = False) -> str:
    """The official name (``Network.*`` / ``reblurNet.*``) of one of our keys, for messages."""
    table = _REBLUR_PREFIXES if reblur else _NETWORK_PREFIXES
    theirs = _rename(key, {v: k for k, v in table.items()})
    return f"{'reblurNet' if reblur else 'Network'}.{theirs}" if theirs else key


def infer_config(network: Mapping[str, Tensor], reblur: Mapping[str, Tensor] | None = None,
                 iac_form: str = "official") -> IFANConfig:
    """Recover the architecture numbers from the shapes of our-layout state dicts.

    ``channels`` from the first conv, the dual-pixel input from the filter encoder's input
    channels, ``N`` from the filter head, ``res_units`` from the DME's residual units, and the
    reblurring numbers from the reblurring head when present (else ``RBF_num = N``).
    """
    def shape(state: Mapping[str, Tensor], key: str, dims: int, reblur: bool = False) -> tuple[int, ...]:
        name = f"{key!r} ({official_key(key, reblur)!r} in the authors' layout)"
        if key not in state:
            raise CheckpointError(f"missing key {name}: not an IFAN checkpoint, or an incomplete one")
        found = tuple(state[key].shape)
        if len(found) != dims or 0 in found:
            raise CheckpointError(f"{name} has shape {found}: not an IFAN convolution weight")
        return found


    first = shape(network, "feature_extractor.conv1_1.0.weight", 4)
    enc_in = shape(network, "filter_encoder.conv1_1.0.weight", 4)[1]
    head = shape(network, "filter_predictor.3.weight", 4)
    ks = first[-1]
    ch = first[0]
    c4 = 4 * ch
    units = len({k.split(".")[3] for k in network if k.startswith("disparity_estimator.1.stem.")})
    # filter_channels(N, c4, Fs) is N times the channels of one iteration: try the usual odd sizes.
    n_fs = [(head[0] // filter_channels(1, c4, fs), fs) for fs in (3, 5, 7, 1, 9, 11)
            if head[0] % filter_channels(1, c4, fs) == 0]
    if not n_fs:
        raise CheckpointError(f"filter head has {head[0]} output channels: not N*(2*{c4}*Fs+{c4}) for any Fs")
    n, fs = n_fs[0]
    rb_n, rb_fs = n, 3
    if reblur:
        # The official configurations all use RBFs = 3.
        rb_out = shape(reblur, "filter_net.3.weight", 4, reblur=True)[0]
        if rb_out % filter_channels(1, 3, rb_fs):
            raise CheckpointError(f"reblurring head has {rb_out} channels: not RBF_num*(2*3*3+3)")
        rb_n = rb_out // filter_channels(1, 3, rb_fs)
    try:
        return IFANConfig(
            channels=ch, iterations=n, filter_size=fs, kernel_size=ks, res_units=max(units, 1),
            dual_pixel_input=enc_in == 6, iac_form=iac_form, reblur_iterations=rb_n, reblur_filter_size=rb_fs,
        )
    except ValueError as err:
        raise CheckpointError(f"the tensor shapes give no valid IFAN config: {err}") from None
