"""ifan: IFAN (Iterative Filter Adaptive Network) single-image defocus deblurring.

Public API::

    from ifan import create_model, list_models, load_model
    model = load_model("ifan-lite")            # bundled weights, eval mode
    out = model(image)                          # (B, 3, H, W) in [0, 1], H, W multiples of 8
    out.image, out.disparity

    from ifan import Deblurrer
    deblurrer = Deblurrer.from_pretrained("ifan-lite")  # any size, tiled within a memory budget
    sharp = deblurrer.deblur(photo)             # numpy (uint8/uint16/float), PIL or tensor in, same kind out
"""

from ifan.models.ifan import IFAN, IFANConfig, IFANOutput
from ifan.models.reblur import ReblurNet
from ifan.models.zoo import create_model, list_models, load_model
from ifan.inference import Deblurrer  # noqa: E402  (imports the zoo)

__version__ = "0.1.0"

__all__ = [
    "Deblurrer",
    "IFAN",
    "IFANConfig",
    "IFANOutput",
    "ReblurNet",
    "create_model",
    "list_models",
    "load_model",
    "__version__",
]
