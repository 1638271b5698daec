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
from typing import TYPE_CHECKING

from ifan.version import __version__

_EXPORTS = {
    "Deblurrer": "ifan.inference",
    "IFAN": "ifan.models.ifan",
    "IFANConfig": "ifan.models.ifan",
    "IFANOutput": "ifan.models.ifan",
    "ReblurNet": "ifan.models.reblur",
    "create_model": "ifan.models.zoo",
    "list_models": "ifan.models.zoo",
    "load_model": "ifan.models.hub",
    "load_reblur_net": "ifan.models.hub",
}

__all__ = [*_EXPORTS, "__version__"]

if TYPE_CHECKING:  # pragma: no cover - for type checkers and IDEs
    from ifan.inference import Deblurrer as Deblurrer
    from ifan.models.hub import load_model as load_model
    from ifan.models.hub import load_reblur_net as load_reblur_net
    from ifan.models.ifan import IFAN as IFAN
    from ifan.models.ifan import IFANConfig as IFANConfig
    from ifan.models.ifan import IFANOutput as IFANOutput
    from ifan.models.reblur import ReblurNet as ReblurNet
    from ifan.models.zoo import create_model as create_model
    from ifan.models.zoo import list_models as list_models


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'ifan' has no attribute {name!r}")
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
