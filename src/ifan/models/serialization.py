"""Weights files: ifan's safetensors format, the authors' checkpoints, and safe loading.

ifan's format is a safetensors file holding the deblurring network's tensors (our key
names), optionally the reblurring network's under ``reblur_net.``, and metadata:

* ``format``: ``"ifan-weights/1"``
* ``config``: the :class:`~ifan.models.ifan.IFANConfig` as JSON (architecture and IAC form)
* ``source``: where the weights came from (a training run, a converted official file, ...)
* any further string entries (``model_name``, ``training``, ``defocus_calibration`` (the blur-radius
  calibration, :mod:`ifan.inference.calibration`), ...)

:func:`update_metadata` rewrites a file's metadata and copies its tensor bytes unchanged.

Nothing is unpickled: files are read by :mod:`ifan.tensorfile` (``.pt``/``.pth``/``.pytorch``
with ``torch.load(weights_only=True)``). Nothing is allocated from a file's word either: before a
model is built, its config is held to :data:`CONFIG_LIMITS` and every tensor's shape is compared
with a model of that config built on the meta device (:func:`check_fits`), so a model is only as
large as the file that describes it.
"""

from __future__ import annotations

import json
import os
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from ifan.fileutil import atomic_write, atomic_write_bytes
from ifan.models.ifan import IFAN, IFANConfig
from ifan.models.official import CheckpointError, infer_config, is_official_state_dict, official_key, split_official
from ifan.models.reblur import ReblurNet
from ifan.tensorfile import as_state_dict, read_safetensors, read_torch

FORMAT = "ifan-weights/1"
REBLUR_PREFIX = "reblur_net."
# The largest architecture numbers a weights file may ask for: far above every published configuration
# (ch 32, N up to 44, 3x3 kernels, 2 residual units), far below what would exhaust memory before the
# tensors are compared.
CONFIG_LIMITS = {"channels": 256, "iterations": 128, "filter_size": 15, "kernel_size": 15, "res_units": 8,
                 "reblur_iterations": 128, "reblur_filter_size": 15, "fac_size": 63, "conv_layers": 64}


@dataclass
class LoadedWeights:
    """Tensors and description read from a weights file (our key layout)."""

    config: IFANConfig
    network: dict[str, Tensor]
    reblur: dict[str, Tensor] = field(default_factory=dict)
    metadata: dict[str, str] = field(default_factory=dict)
    official_layout: bool = False

    def check(self, network: Mapping[str, Tensor], reblur: Mapping[str, Tensor] | None, path: Path) -> None:
        """Refuse tensors that do not fit ``network`` (and ``reblur``), naming keys as the file does."""
        name = (lambda k: official_key(k)) if self.official_layout else (lambda k: k)
        check_state_dict(network, self.network, f"weights file {path}", name)
        if reblur is not None and self.reblur:
            check_state_dict(reblur, self.reblur, f"reblurring weights in {path}", self.reblur_key_name)

    def reblur_key_name(self, key: str) -> str:
        """A reblurring-network key as the file spells it (for messages)."""
        return official_key(key, reblur=True) if self.official_layout else REBLUR_PREFIX + key


def save_weights(path: str | os.PathLike, config: IFANConfig, network: Mapping[str, Tensor],
                 reblur: Mapping[str, Tensor] | None = None, **metadata: str) -> Path:
    """Write an ifan safetensors weights file atomically (tensors made contiguous, on CPU)."""
    from safetensors.torch import save

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in network.items()}
    tensors.update({REBLUR_PREFIX + k: v.detach().to("cpu").contiguous() for k, v in (reblur or {}).items()})
    meta = {"format": FORMAT, "config": json.dumps(config.to_dict(), sort_keys=True)}
    meta.update({k: str(v) for k, v in metadata.items()})
    return atomic_write(path, lambda f: f.write(save(tensors, metadata=meta)))


def update_metadata(src: str | os.PathLike, dst: str | os.PathLike, updates: Mapping[str, str | None]) -> Path:
    """Write ``src`` (a safetensors file) to ``dst`` (may be ``src``) atomically with its metadata
    entries set (None: removed) and its tensor data copied byte for byte: only the header changes.

    Raises:
        CheckpointError: ``src`` is not a safetensors file.
    """
    src = Path(src)
    raw = src.read_bytes()
    try:
        (size,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8:8 + size])
        if not isinstance(header, dict) or 8 + size > len(raw):
            raise ValueError("bad header")
    except RecursionError:
        raise CheckpointError(f"{src}: not a safetensors file (header JSON nested too deeply)") from None
    except (struct.error, ValueError, UnicodeDecodeError) as err:
        raise CheckpointError(f"{src}: not a safetensors file ({err})") from None
    meta = dict(header.get("__metadata__") or {})
    for key, value in updates.items():
        if value is None:
            meta.pop(key, None)
        else:
            meta[key] = str(value)
    header["__metadata__"] = meta
    text = json.dumps(header, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)  # the data section stays 8-byte aligned, as safetensors writes it
    data = struct.pack("<Q", len(text)) + text + raw[8 + size:]
    return atomic_write_bytes(dst, data)


def _read_safetensors(path: Path) -> LoadedWeights:
    tensors, meta = read_safetensors(path, CheckpointError)
    network = {k: v for k, v in tensors.items() if not k.startswith(REBLUR_PREFIX)}
    reblur = {k[len(REBLUR_PREFIX):]: v for k, v in tensors.items() if k.startswith(REBLUR_PREFIX)}
    if is_official_state_dict(tensors):
        network, reblur = split_official(tensors)
        return LoadedWeights(infer_config(network, reblur), network, reblur, {"source": f"official layout: {path}"},
                             official_layout=True)
    if "config" in meta:
        try:
            config = IFANConfig.from_dict(json.loads(meta["config"]))
        except RecursionError:
            raise CheckpointError(f"{path}: invalid config in metadata: JSON nested too deeply") from None
        except (ValueError, TypeError) as err:
            raise CheckpointError(f"{path}: invalid config in metadata: {err}") from err
    else:
        config = infer_config(network, reblur, iac_form="separable")
    return LoadedWeights(config, network, reblur, meta)


def _read_torch(path: Path) -> LoadedWeights:
    obj = read_torch(path, CheckpointError)
    # A training checkpoint of ours: {"model": {...}, "model_config": {...}, ["ema": {...}], ...}
    if isinstance(obj, Mapping) and "model" in obj and ("model_config" in obj or "config" in obj):
        config = obj.get("model_config", obj.get("config"))
        if not isinstance(config, Mapping) or not isinstance(obj["model"], Mapping):
            raise CheckpointError(f"{path}: a training checkpoint needs 'model' and 'model_config' mappings, "
                                  f"found {type(obj['model']).__name__} and {type(config).__name__}")
        try:
            config = IFANConfig.from_dict(dict(config))
        except (ValueError, TypeError) as err:
            raise CheckpointError(f"{path}: invalid model config: {err}") from None
        ema = obj.get("ema") or {}  # the averaged weights: what the run validated and exported
        if not isinstance(ema, Mapping):
            raise CheckpointError(f"{path}: 'ema' is a {type(ema).__name__}, expected a mapping of tensors")
        network, reblur = dict(ema or obj["model"]), obj.get("reblur") or {}
        if not isinstance(reblur, Mapping):
            raise CheckpointError(f"{path}: 'reblur' is a {type(reblur).__name__}, expected a mapping of tensors")
        as_state_dict({**network, **reblur}, path, CheckpointError)
        meta = {"source": str(path), "weights": "ema" if ema else "model"}
        return LoadedWeights(config, network, dict(reblur), meta)
    state = as_state_dict(obj, path, CheckpointError)
    if is_official_state_dict(state):
        network, reblur = split_official(state)
        return LoadedWeights(infer_config(network, reblur, iac_form="official"), network, reblur,
                             {"source": f"official checkpoint {path.name}"}, official_layout=True)
    return LoadedWeights(infer_config(dict(state), None, iac_form="separable"), dict(state), {},
                         {"source": str(path)})


def read_weights(path: str | os.PathLike) -> LoadedWeights:
    """Read any supported weights file: ifan safetensors, the authors' ``.pytorch``/``.pth``, or a
    plain state dict. Official-layout files get the official IAC form and a config inferred
    from the tensor shapes."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"weights file not found: {path}")
    try:
        return _read_safetensors(path) if path.suffix == ".safetensors" else _read_torch(path)
    except CheckpointError as err:  # from the layout and shape checks, which do not know the file
        if str(err).startswith(f"{path}: "):
            raise
        raise CheckpointError(f"{path}: {err}") from None


def check_config_limits(config: IFANConfig, path: str | os.PathLike) -> None:
    """Raise :class:`CheckpointError` when a file's config exceeds :data:`CONFIG_LIMITS`."""
    over = [f"{k} {getattr(config, k)} (at most {v})" for k, v in CONFIG_LIMITS.items() if getattr(config, k) > v]
    if over:
        raise CheckpointError(f"{path}: the config asks for {', '.join(over)}: beyond any IFAN model; "
                              "refused before building it")


def check_fits(loaded: LoadedWeights, path: str | os.PathLike, reblur: bool = True) -> None:
    """Check ``loaded`` against its own config before any model is allocated: the config's numbers
    against :data:`CONFIG_LIMITS`, and every tensor's shape against a model built on the meta device
    (and the reblurring network's, with ``reblur`` and when the file has one).

    Raises:
        CheckpointError: naming what is out of bounds, missing, unexpected or of the wrong shape.
    """
    check_config_limits(loaded.config, path)
    with torch.device("meta"):
        network = IFAN(loaded.config).state_dict()
        reblur_net = ReblurNet(loaded.config).state_dict() if reblur and loaded.reblur else None
    loaded.check(network, reblur_net, Path(path))


def check_state_dict(expected: Mapping[str, Tensor], found: Mapping[str, Tensor], what: str,
                     name: Callable[[str], str] = str) -> None:
    """Raise :class:`CheckpointError` naming missing/unexpected keys and shape mismatches
    (keys shown through ``name``, e.g. as the file spells them)."""
    missing = sorted(name(k) for k in set(expected) - set(found))
    unexpected = sorted(name(k) for k in set(found) - set(expected))
    shapes = [
        f"{name(k)}: file {tuple(found[k].shape)} vs model {tuple(expected[k].shape)}"
        for k in expected
        if k in found and tuple(found[k].shape) != tuple(expected[k].shape)
    ]
    problems = []
    if missing:
        problems.append(f"missing keys ({len(missing)}): {missing[:8]}")
    if unexpected:
        problems.append(f"unexpected keys ({len(unexpected)}): {unexpected[:8]}")
    if shapes:
        problems.append(f"shape mismatches ({len(shapes)}): {shapes[:8]}")
    if problems:
        raise CheckpointError(f"{what} does not fit the model: " + "; ".join(problems))
