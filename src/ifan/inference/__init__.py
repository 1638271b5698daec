"""Deblurring images of any size: device and precision policy, a memory plan, tiling with a smooth blend.

:class:`Deblurrer` is the one object users need::

    from ifan import Deblurrer
    deblurrer = Deblurrer.from_pretrained("ifan-lite")     # or Deblurrer(model)
    sharp = deblurrer.deblur(photo)                          # numpy / PIL / tensor in, same kind out
    defocus = deblurrer.defocus_map(photo)

What happens to one image:

1. The image (``H x W``, any size >= 1 pixel) is turned into a ``(1, 3, H, W)`` float32 tensor
   in [0, 1] (:mod:`~ifan.inference.adapters`: grey is repeated over RGB and averaged back; an
   alpha channel bypasses the network).
2. :meth:`Deblurrer.plan` estimates the peak memory of running the whole image at once
   (:mod:`~ifan.inference.memory`: the calibrated memory model of the lean filter path) and
   compares it with the budget. If it fits, the image is padded to a multiple of 8 by
   reflection, run, and cropped back.
3. Otherwise :func:`~ifan.inference.tiling.plan_tiles` splits it into equal overlapping tiles on
   the network's 1/8 grid; each tile is run on its own and blended into the result with
   raised-cosine weights that sum to one.

The device, the precision (``auto`` by default: bf16 on CPUs with native bf16, fp16 on CUDA,
float32 elsewhere) and autocast come from :mod:`~ifan.inference.runtime`, which evaluation and
training share.

Modules: :mod:`~ifan.inference.runtime`, :mod:`~ifan.inference.memory`,
:mod:`~ifan.inference.tiling`, :mod:`~ifan.inference.adapters`, :mod:`~ifan.inference.deblurrer`.
"""

from ifan.inference.deblurrer import DeblurResult, Deblurrer, ProgressCallback
from ifan.inference.memory import MemoryBudgetError, MemoryModel, format_bytes, memory_model, parse_size
from ifan.inference.runtime import (DEFAULT_PRECISION, PRECISIONS, cpu_has_native_bf16, resolve_device,
                                    resolve_precision)
from ifan.inference.tiling import DEFAULT_OVERLAP, TilePlan, blend_weights, plan_tiles

__all__ = [
    "DEFAULT_OVERLAP",
    "DEFAULT_PRECISION",
    "PRECISIONS",
    "DeblurResult",
    "Deblurrer",
    "MemoryBudgetError",
    "MemoryModel",
    "ProgressCallback",
    "TilePlan",
    "blend_weights",
    "cpu_has_native_bf16",
    "format_bytes",
    "memory_model",
    "parse_size",
    "plan_tiles",
    "resolve_device",
    "resolve_precision",
]
