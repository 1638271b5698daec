"""Weights files: ifan's safetensors format, the authors' checkpoints, and safe loading.

ifan's format is a safetensors file holding the deblurring network's tensors (our key
names), optionally the reblurring network's under ``reblur_net.``, and metadata:

* ``format``: ``"ifan-weights/1"``
* ``config``: the :class:`~ifan.models.ifan.IFANConfig` as JSON (architecture and IAC form)
* ``source``: where the weights came from (a training run, a converted official file, ...)
* any further string entries (``model_name``, ``training``, ...)

Nothing is unpickled: ``.pt``/``.pth``/``.pytorch`` files are read with
``torch.load(weights_only=True)``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor

from ifan.fileutil import atomic_write
from ifan.models.ifan import IFANConfig
from ifan.models.official import CheckpointError, infer_config, is_official_state_dict, official_key, split_official

FORMAT = "ifan-weights/1"
REBLUR_PREFIX = "reblur_net."


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
    from safetensors.torch import save_file

    tensors = {k: v.detach().to("cpu").contiguous() for k, v in network.items()}
    tensors.update({REBLUR_PREFIX + k: v.detach().to("cpu").contiguous() for k, v in (reblur or {}).items()})
    meta = {"format": FORMAT, "config": json.dumps(config.to_dict(), sort_keys=True)}
    meta.update({k: str(v) for k, v in metadata.items()})
    return atomic_write(path, lambda tmp: save_file(tensors, tmp, metadata=meta))


def _read_safetensors(path: Path) -> LoadedWeights:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            meta = dict(f.metadata() or {})
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as err:  # safetensors raises several types for a damaged header
        raise CheckpointError(f"{path}: not a readable safetensors file ({err})") from err
    network = {k: v for k, v in tensors.items() if not k.startswith(REBLUR_PREFIX)}
    reblur = {k[len(REBLUR_PREFIX):]: v for k, v in tensors.items() if k.startswith(REBLUR_PREFIX)}
    if is_official_state_dict(tensors):
        network, reblur = split_official(tensors)
        return LoadedWeights(infer_config(network, reblur), network, reblur, {"source": f"official layout: {path}"},
                             official_layout=True)
    if "config" in meta:
        try:
            config = IFANConfig.from_dict(json.loads(meta["config"]))
        except (ValueError, TypeError) as err:
            raise CheckpointError(f"{path}: invalid config in metadata: {err}") from err
    else:
        config = infer_config(network, reblur, iac_form="separable")
    return LoadedWeights(config, network, reblur, meta)


def _read_torch(path: Path) -> LoadedWeights:
    try:
        obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors, zip errors, refused globals
        raise CheckpointError(
            f"{path}: cannot be read as a PyTorch weights file with weights_only=True ({err})"
        ) from err
    if not isinstance(obj, Mapping):
        raise CheckpointError(f"{path}: expected a state dict (a mapping), found {type(obj).__name__}")
    # A training checkpoint of ours: {"model": {...}, "config": {...}, ...}
    if "model" in obj and isinstance(obj["model"], Mapping) and "config" in obj:
        config = IFANConfig.from_dict(dict(obj["config"]))
        return LoadedWeights(config, dict(obj["model"]), dict(obj.get("reblur") or {}), {"source": str(path)})
    state = obj.get("state_dict", obj) if isinstance(obj.get("state_dict"), Mapping) else obj
    bad = [k for k, v in state.items() if not isinstance(v, Tensor)]
    if bad:
        raise CheckpointError(f"{path}: entries that are not tensors: {bad[:5]}")
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
    if path.suffix == ".safetensors":
        return _read_safetensors(path)
    return _read_torch(path)


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
