"""Files of tensors, read safely: safetensors, or PyTorch files through ``torch.load(weights_only=True)``
(only tensors and plain containers are unpickled, never arbitrary Python objects), with one-line
errors that name the file.

The one reader of ifan's weights files (:mod:`ifan.models.serialization`), the training checkpoints
(:mod:`ifan.train.checkpoint`) and the LPIPS weights (:mod:`ifan.evaluate.lpips`); each passes the
error type its callers expect.
"""

from __future__ import annotations

import os
import pickle
import re
from collections.abc import Mapping

import torch
from torch import Tensor


def describe_load_error(err: BaseException) -> str:
    """One line for an error of ``torch.load(weights_only=True)``, without torch's advice to load unsafely."""
    text = str(err)
    if isinstance(err, pickle.UnpicklingError) or "weights_only" in text:
        found = re.search(r"GLOBAL ([\w.]+)", text)
        what = f"the Python object {found.group(1)}" if found else "Python objects other than tensors"
        return f"it holds {what}, refused for safety (only tensors and plain containers are loaded)"
    return " ".join(text.split()).split(". ")[0] or type(err).__name__  # torch's first sentence says it


def read_safetensors(path: str | os.PathLike, error: type[Exception] = ValueError
                     ) -> tuple[dict[str, Tensor], dict[str, str]]:
    """``(tensors, metadata)`` of a safetensors file, on the CPU.

    Raises:
        error: the file is not a readable safetensors file.
    """
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt") as f:
            return {k: f.get_tensor(k) for k in f.keys()}, dict(f.metadata() or {})
    except Exception as err:  # safetensors raises several types for a damaged header
        raise error(f"{path}: not a readable safetensors file ({err})") from err


def read_torch(path: str | os.PathLike, error: type[Exception] = ValueError,
               failure: str = "cannot be read as a PyTorch weights file") -> object:
    """What a PyTorch file holds, loaded on the CPU with ``weights_only=True``.

    Raises:
        error: ``"{path}: {failure}: {why}"`` when the file cannot be read (damaged, not a PyTorch
            file, or holding objects other than tensors and plain containers).
    """
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickle errors, zip errors, refused globals
        raise error(f"{path}: {failure}: {describe_load_error(err)}") from None


def as_state_dict(obj: object, path: str | os.PathLike, error: type[Exception] = ValueError) -> dict[str, Tensor]:
    """``obj`` (or its ``state_dict`` entry, as some trainers save it) as a mapping of names to tensors.

    Raises:
        error: ``obj`` is not a mapping, or holds entries that are not tensors.
    """
    if isinstance(obj, Mapping) and isinstance(obj.get("state_dict"), Mapping):
        obj = obj["state_dict"]
    if not isinstance(obj, Mapping):
        raise error(f"{path}: expected a state dict (a mapping), found {type(obj).__name__}")
    bad = [k for k, v in obj.items() if not isinstance(v, Tensor)]
    if bad:
        raise error(f"{path}: entries that are not tensors: {bad[:5]}")
    return dict(obj)
