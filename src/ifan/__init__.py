"""ifan: IFAN (Iterative Filter Adaptive Network) single-image defocus deblurring.

Public API::

    from ifan import create_model, list_models, load_model
    model = load_model("ifan-lite")            # bundled weights, eval mode
    out = model(image)                          # (B, 3, H, W) in [0, 1], H, W multiples of 8
    out.image, out.disparity

    from ifan import Deblurrer
    deblurrer = Deblurrer.from_pretrained("ifan-lite")  # any size, tiled within a memory budget
    sharp = deblurrer.deblur(photo)             # numpy (uint8/uint16/float), PIL or tensor in, same kind out

The names are imported on first use, so that ``import ifan`` (and ``ifan --help``) stays light.

Example:
    >>> import ifan
    >>> "ifan-lite" in ifan.list_models()
    True
"""

from __future__ import annotations

import importlib
from importlib import metadata as _metadata
from typing import TYPE_CHECKING

try:  # the installed distribution's version (pyproject.toml holds it)
    __version__ = _metadata.version("ifan")
except _metadata.PackageNotFoundError:  # run from a source tree that is not installed
    __version__ = "0+unknown"

_EXPORTS = {
    "Deblurrer": "ifan.inference",
    "IFAN": "ifan.models.ifan",
    "IFANConfig": "ifan.models.ifan",
    "IFANOutput": "ifan.models.ifan",
    "ReblurNet": "ifan.models.reblur",
    "create_model": "ifan.models.zoo",
    "list_models": "ifan.models.zoo",
    "load_model": "ifan.models.zoo",
    "load_reblur_net": "ifan.models.zoo",
}

__all__ = [*_EXPORTS, "__version__"]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from ifan.inference import Deblurrer
    from ifan.models.ifan import IFAN, IFANConfig, IFANOutput
    from ifan.models.reblur import ReblurNet
    from ifan.models.zoo import create_model, list_models, load_model, load_reblur_net


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ifan' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
