"""Named model configurations, their bundled weights, and the model constructors.

==============  =====  ==  ==========================================================
name            ch     N   notes
==============  =====  ==  ==========================================================
``ifan``        32     17  the paper's model (10,476,996 parameters)
``ifan-n8``     32     8   the paper's ablations on the number of IAC iterations
``ifan-n26``    32     26
``ifan-n35``    32     35
``ifan-n44``    32     44
``ifan-dual``   32     17  filter encoder reads the dual-pixel right and left views
``ifan-lite``   16     8   trainable on 2 CPU cores (see docs/architecture.md)
==============  =====  ==  ==========================================================

All use the paper's separable IAC unless ``iac_form="official"`` is passed; weights converted
from the authors' checkpoints carry the official form in their metadata. ``ifan-fac``,
``ifan-lite-fac`` and ``ifan-lite-conv`` replace IAC by FAC or by plain convolutions (docs/iac.md).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

import torch

from ifan.models.ifan import IFAN, IFANConfig
from ifan.models.reblur import ReblurNet
from ifan.models.serialization import check_fits, read_weights, save_weights


@dataclass(frozen=True)
class ModelSpec:
    """A named configuration and, where one ships, its weights file in ``ifan/weights``."""

    name: str
    config: IFANConfig
    description: str
    weights: str | None = None


_SPECS = [
    ModelSpec("ifan", IFANConfig(), "IFAN as in the paper: ch 32, N 17"),
    *(
        ModelSpec(f"ifan-n{n}", IFANConfig(iterations=n, reblur_iterations=n), f"IFAN with N = {n} IAC iterations")
        for n in (8, 26, 35, 44)
    ),
    ModelSpec("ifan-dual", IFANConfig(dual_pixel_input=True), "IFAN whose filter encoder reads the DP views [R, L]"),
    ModelSpec(
        "ifan-lite",
        IFANConfig(channels=16, iterations=8, reblur_iterations=8),
        "ch 16, N 8: a quarter of the convolution cost, trainable on 2 CPU cores",
        weights="ifan-lite.safetensors",
    ),
    # the IAC/FAC comparison (docs/iac.md): FAC at IAC's receptive field, and the plain-convolution control
    ModelSpec("ifan-fac", IFANConfig(adaptive_layer="fac", fac_size=35), "IFAN with FAC (35 x 35) in place of IAC"),
    ModelSpec("ifan-lite-fac", IFANConfig(channels=16, iterations=8, reblur_iterations=8, adaptive_layer="fac",
                                          fac_size=17), "ifan-lite with FAC (17 x 17) in place of IAC"),
    ModelSpec("ifan-lite-conv", IFANConfig(channels=16, iterations=8, reblur_iterations=8, adaptive_layer="conv",
                                           conv_layers=5), "ifan-lite with 5 plain 3x3 convs (same FLOPs) for IAC"),
]
MODELS: dict[str, ModelSpec] = {spec.name: spec for spec in _SPECS}
DEFAULT_MODEL = "ifan-lite"


def list_models() -> list[str]:
    """Names accepted by :func:`create_model` and :func:`load_model`."""
    return list(MODELS)


def get_spec(name: str) -> ModelSpec:
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown model {name!r}; known models: {', '.join(MODELS)}") from None


def create_model(name: str = "ifan", **overrides) -> IFAN:
    """Build a freshly initialised (untrained) model from a named configuration.

    Args:
        name: one of :func:`list_models`.
        **overrides: :class:`IFANConfig` fields to change, e.g. ``iac_form="official"``.

    Example:
        >>> model = create_model("ifan", channels=8, iterations=2)
        >>> model.config.iterations
        2
    """
    config = get_spec(name).config
    try:
        config = replace(config, **overrides)
    except TypeError as err:
        raise ValueError(f"invalid override for {name!r}: {err}") from None
    return IFAN(config)


def bundled_weights_path(name: str) -> Path | None:
    """Path of a named model's shipped weights file, or None when none ships."""
    spec = get_spec(name)
    if spec.weights is None:
        return None
    path = Path(str(resources.files("ifan") / "weights" / spec.weights))
    return path if path.is_file() else None


def resolve_weights(name_or_path: str | os.PathLike) -> Path:
    """A weights path for a model name (its bundled file) or an existing file path."""
    key = str(name_or_path)
    if key in MODELS:
        path = bundled_weights_path(key)
        if path is None:
            raise FileNotFoundError(
                f"no weights ship for {key!r} (only {[s.name for s in _SPECS if bundled_weights_path(s.name)]} "
                f"have bundled weights); pass a weights file, e.g. one made by `ifan convert` from the authors' "
                f"checkpoint, or use create_model({key!r}) for an untrained model"
            )
        return path
    path = Path(key).expanduser()
    if not path.is_file():
        raise FileNotFoundError(f"{key!r} is neither a model name ({', '.join(MODELS)}) nor an existing weights file")
    return path


def load_model(name_or_path: str | os.PathLike = DEFAULT_MODEL, device: str | torch.device = "cpu") -> IFAN:
    """Load trained weights into a model, in eval mode.

    Args:
        name_or_path: a model name with bundled weights, or a weights file: ifan safetensors,
            the authors' checkpoint (``.pytorch``/``.pth``: official key layout, with or
            without ``module.``; N, width and the dual-pixel input are inferred from the
            shapes and the official IAC form is selected), or a state dict.
        device: where to put the model.

    Raises:
        CheckpointError: the file does not fit the model (the message names the keys and shapes).

    Example:
        >>> model = load_model("ifan-lite")
        >>> model.config.channels, model.config.iterations, model.training
        (16, 8, False)
    """
    path = resolve_weights(name_or_path)
    loaded = read_weights(path)
    check_fits(loaded, path, reblur=False)  # before anything is allocated
    model = IFAN(loaded.config)
    model.load_state_dict(loaded.network)
    model.weights_metadata = dict(loaded.metadata, path=str(path))
    return model.to(device).eval()


def load_reblur_net(name_or_path: str | os.PathLike = DEFAULT_MODEL, device: str | torch.device = "cpu") -> ReblurNet | None:
    """Load the reblurring network (training only) that a weights file holds beside the model, in eval
    mode; None when the file holds none. Arguments as for :func:`load_model`.

    Raises:
        CheckpointError: the reblurring tensors do not fit the file's config.
    """
    path = resolve_weights(name_or_path)
    loaded = read_weights(path)
    if not loaded.reblur:
        return None
    check_fits(loaded, path, reblur=True)  # before anything is allocated
    reblur = ReblurNet(loaded.config)
    reblur.load_state_dict(loaded.reblur)
    return reblur.to(device).eval()


def convert_weights(src: str | os.PathLike, dst: str | os.PathLike) -> IFANConfig:
    """Convert a weights file (the authors' checkpoint, a state dict, a training checkpoint) to
    ifan safetensors with its config, IAC form and source in the metadata. Returns the config.

    The tensors are checked against the shapes of the inferred config first (nothing allocated),
    so a file that does not fit is refused with the offending keys named and nothing is written.
    """
    src = Path(src)
    loaded = read_weights(src)
    check_fits(loaded, src)
    meta = {k: v for k, v in loaded.metadata.items() if k not in ("format", "config")}
    meta.setdefault("source", str(src))
    meta["converted_from"] = src.name
    save_weights(dst, loaded.config, loaded.network, loaded.reblur, **meta)
    return loaded.config
