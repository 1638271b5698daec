"""Evaluation: per-image metrics (PSNR, SSIM, MAE, LPIPS), evaluation protocols and baselines.

* :mod:`ifan.evaluate.metrics`: ``psnr``/``ssim``/``mae`` on ``(B, C, H, W)`` tensors -> ``(B,)``;
  ``Protocol`` (``"official"``, ``"full"``), ``score_image``; :mod:`ifan.evaluate.summary`: ``summarize``.
* :mod:`ifan.evaluate.lpips`: LPIPS v0.1 (AlexNet) from local weight files (``IFAN_LPIPS_WEIGHTS``).
* :mod:`ifan.evaluate.baselines`: ``BASELINES = {"input": ..., "wiener": ...}``.

Example:
    >>> import numpy as np
    >>> from ifan.evaluate import score_image
    >>> gt = np.random.default_rng(0).random((64, 64, 3))
    >>> s = score_image(gt * 0.9, gt, "official")
    >>> sorted(s)
    ['lpips', 'mae', 'psnr', 'ssim']
"""

from ifan.evaluate.baselines import (
    BASELINES,
    disc_kernel,
    estimate_defocus_radius,
    get_baseline,
    wiener_deblur,
    wiener_deconvolve,
)
from ifan.evaluate.lpips import (
    ENV_VAR as LPIPS_ENV_VAR,
    HOW_TO_GET_WEIGHTS as LPIPS_HOW_TO_GET_WEIGHTS,
    LPIPS,
    LPIPSWeightsError,
    LPIPSWeightsNotFound,
    load_lpips,
    load_lpips_or_none,
    pack_lpips_weights,
)
from ifan.evaluate.metrics import (
    FULL,
    METRIC_NAMES,
    OFFICIAL,
    PROTOCOLS,
    Protocol,
    crop_hw,
    get_protocol,
    image_psnr,
    mae,
    psnr,
    score_image,
    ssim,
    to_nchw,
)
from ifan.evaluate.summary import format_score, json_score, summarize

__all__ = [
    "BASELINES",
    "FULL",
    "LPIPS",
    "LPIPS_ENV_VAR",
    "LPIPS_HOW_TO_GET_WEIGHTS",
    "LPIPSWeightsError",
    "LPIPSWeightsNotFound",
    "METRIC_NAMES",
    "OFFICIAL",
    "PROTOCOLS",
    "Protocol",
    "crop_hw",
    "disc_kernel",
    "estimate_defocus_radius",
    "format_score",
    "get_baseline",
    "get_protocol",
    "image_psnr",
    "json_score",
    "load_lpips",
    "load_lpips_or_none",
    "mae",
    "pack_lpips_weights",
    "psnr",
    "score_image",
    "ssim",
    "summarize",
    "to_nchw",
    "wiener_deblur",
    "wiener_deconvolve",
]
