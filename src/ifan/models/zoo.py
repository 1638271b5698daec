"""Named models: one registry of their configurations, shipped weights and published weights, and the
model constructors.

==============  =====  ==  =======  ===================================================================
name            ch     N   RBF_num  notes
==============  =====  ==  =======  ===================================================================
``ifan``        32     17  17       the paper's model (10,476,996 parameters)
``ifan-n8``     32     8   8        the paper's ablation of the number of IAC iterations (its Table 4)
``ifan-n26``    32     26  9        (the authors' configs set RBF_num, the reblurring network's
``ifan-n35``    32     35  17       iterations, to 9 for N = 26 and keep 17 for N = 35 and 44)
``ifan-n44``    32     44  17
``ifan-16bit``  32     17  17       the paper's model trained on 16-bit images
``ifan-dual``   32     17  17       filter encoder reads the dual-pixel right and left views
``ifan-lite``   16     8   8        trainable on 2 CPU cores (see docs/architecture.md); weights ship
==============  =====  ==  =======  ===================================================================

:func:`create_model` builds them with the paper's separable IAC unless ``iac_form="official"`` is
passed. Every name but ``ifan-lite`` and the variants below has a :class:`Release`: the authors publish
its weights (trained with the official IAC form, which the converted weights carry). The registry
knows nothing of the cache: :mod:`ifan.models.hub` turns a name into a weights file and a loaded model.
``ifan-fac``, ``ifan-lite-fac`` and ``ifan-lite-conv`` replace IAC by FAC or by plain convolutions
(docs/iac.md); no weights exist for them.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, replace
from importlib import resources
from pathlib import Path

from ifan.models.ifan import IFAN, IFANConfig
from ifan.models.serialization import check_fits, read_weights, save_weights

# The authors' one archive of checkpoints, at the two places their README gives (tried in this order).
AUTHORS_ARCHIVE = "checkpoints.zip"
AUTHORS_URLS = (
    "https://www.dropbox.com/s/qohhmr9p81u0syi/checkpoints.zip?dl=1",
    "https://onedrive.live.com/download?resid=94530B7E5F49D254%21495&authkey=!AKmlSKrsKPa9cQ0",
)
AUTHORS_ORIGIN = "https://github.com/codeslake/IFAN"
AUTHORS_LICENCE = "AGPL-3.0"
PROJECT_LICENCE = "MIT"


@dataclass(frozen=True)
class Release:
    """Weights the authors publish for a name: where, under which file name, on which terms.

    Attributes:
        member: the checkpoint's file name inside the archive (found at any depth, e.g. under ``ckpt/``).
        urls: the archive's mirrors, tried in order.
        archive: the archive's file name.
        licence, origin: the weights' licence (the authors') and the page that publishes them.
        paper: where the paper reports this model's scores, with the one score quoted in this
            project's issue tracker from the paper (the DPDD PSNR of ``ifan``); the others could not be
            checked against the paper's text from this project's machine, so they are not quoted.
    """

    member: str
    paper: str
    urls: tuple[str, ...] = AUTHORS_URLS
    archive: str = AUTHORS_ARCHIVE
    licence: str = AUTHORS_LICENCE
    origin: str = AUTHORS_ORIGIN


@dataclass(frozen=True)
class ModelSpec:
    """A named configuration; its weights file in ``ifan/weights`` where one ships; the authors'
    :class:`Release` where they publish weights for it."""

    name: str
    config: IFANConfig
    description: str
    weights: str | None = None
    release: Release | None = None

    @property
    def licence(self) -> str | None:
        """The licence of the weights this name loads (None: no trained weights exist for it)."""
        if self.release is not None:
            return self.release.licence
        return PROJECT_LICENCE if self.weights else None

    @property
    def release_config(self) -> IFANConfig:
        """The config of the authors' weights: this name's, in the official IAC form they were trained with."""
        return replace(self.config, iac_form="official")


def _authors(name: str, config: IFANConfig, description: str, member: str, paper: str) -> ModelSpec:
    return ModelSpec(name, config, description, release=Release(member=member, paper=paper))


_SPECS = [
    _authors("ifan", IFANConfig(), "IFAN as in the paper: ch 32, N 17", "IFAN.pytorch",
             "main paper: 25.37 dB PSNR on DPDD, +1.48 dB over the input"),
    *(
        _authors(f"ifan-n{n}", IFANConfig(iterations=n, reblur_iterations=rbf), f"IFAN with N = {n} IAC iterations",
                 f"IFAN_{n}.pytorch", "main paper, Table 4")
        for n, rbf in ((8, 8), (26, 9), (35, 17), (44, 17))
    ),
    _authors("ifan-16bit", IFANConfig(), "IFAN trained on 16-bit images (ch 32, N 17)", "IFAN_16bit.pytorch",
             "supplementary material, Table 1"),
    _authors("ifan-dual", IFANConfig(dual_pixel_input=True), "IFAN whose filter encoder reads the DP views [R, L]",
             "IFAN_dual.pytorch", "supplementary material, Table 2"),
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
