"""How much of the model's result goes into the photo, where: ``--strength``, ``--keep-bokeh``, ``--mask``.

A deblurred photo is recomposed from the input and the model's (clipped) result::

    out = clip(input + strength * mask * (model - input), 0, 1)

computed with :func:`torch.lerp`, so a weight ``strength * mask`` of exactly 0 gives the input's
pixels and exactly 1 the model's, bit for bit; the caller rounds to the input's bit depth.

* ``strength`` (:data:`MAX_STRENGTH` at most; 0 = the input, 1 = the model, above 1 exaggerates
  the model's change).
* ``mask`` (``(H, W)``, 1 = deblur, 0 = keep the input) is either the user's (a grey image) or the
  one ``keep_bokeh = R`` computes from the defocus map (:func:`bokeh_mask`):

  1. the calibrated blur radius (:mod:`ifan.inference.calibration`) of the mean ``|defocus|`` over
     each 8 x 8 cell (the grid the network estimates it on, :func:`radius_grid`);
  2. a soft threshold: 1 up to ``R - T/2``, 0 from ``R + T/2``, a smoothstep in between
     (``T = transition``, :data:`DEFAULT_TRANSITION` px of blur radius);
  3. smoothed on that grid by a Gaussian of :data:`MASK_SIGMA` cells (8 px), then upsampled
     bilinearly to the image: no seam, no edge sharper than the estimate itself;
  4. rounded to steps of 1/255, so that the mask written as an 8-bit PNG (``--save-mask``) and
     given back (``--mask``) blends exactly the same.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ifan.inference.adapters import check_finite_tensor
from ifan.inference.calibration import DefocusCalibration
from ifan.models.ifan import DOWNSCALE

MAX_STRENGTH = 2.0
DEFAULT_KEEP_BOKEH = 6.0  # px of blur radius: bokeh_mask's default and what --keep-bokeh R's help suggests
DEFAULT_TRANSITION = 4.0  # px of blur radius over which the mask falls from 1 to 0
MASK_SIGMA = 1.0  # cells of the 1/8 grid (8 px of the image)
MASK_LEVELS = 255  # the mask is rounded to steps of 1 / MASK_LEVELS


def check_strength(strength: float) -> float:
    """``strength`` as a float in [0, :data:`MAX_STRENGTH`], else ValueError."""
    s = float(strength)
    if not 0.0 <= s <= MAX_STRENGTH:  # also refuses NaN
        raise ValueError(f"strength must be in [0, {MAX_STRENGTH:g}] (0 = the input, 1 = the model), got {strength}")
    return s


def check_keep_bokeh(radius: float, transition: float = DEFAULT_TRANSITION) -> tuple[float, float]:
    """``(radius, transition)`` as floats (radius > 0, transition >= 0, finite), else ValueError."""
    r, t = float(radius), float(transition)
    if not (math.isfinite(r) and r > 0):
        raise ValueError(f"keep_bokeh must be a blur radius in pixels above 0, got {radius}")
    if not (math.isfinite(t) and t >= 0):
        raise ValueError(f"the transition must be 0 or more pixels, got {transition}")
    return r, t


def radius_grid(defocus: Tensor, calibration: DefocusCalibration) -> Tensor:
    """The calibrated blur radius (px) of each 8 x 8 cell: ``(B, 1, H, W)`` signed defocus ->
    ``(B, 1, ceil(H/8), ceil(W/8))`` float32 (cells cut by the image's edge average what is inside)."""
    cells = F.avg_pool2d(defocus.float().abs(), DOWNSCALE, ceil_mode=True)
    return calibration(cells)


def _gaussian_blur(x: Tensor, sigma: float) -> Tensor:
    if sigma <= 0:
        return x
    r = max(1, math.ceil(3 * sigma))
    t = torch.arange(-r, r + 1, dtype=torch.float32, device=x.device)
    k = torch.exp(-0.5 * (t / sigma) ** 2)
    k = k / k.sum()
    x = F.conv2d(F.pad(x, (r, r, 0, 0), mode="replicate"), k.view(1, 1, 1, -1))
    return F.conv2d(F.pad(x, (0, 0, r, r), mode="replicate"), k.view(1, 1, -1, 1))


def mask_from_radius(grid: Tensor, keep_bokeh: float, size: tuple[int, int],
                     transition: float = DEFAULT_TRANSITION) -> Tensor:
    """The blend mask of a :func:`radius_grid` at ``size`` ``(H, W)``: ``(B, 1, H, W)`` float32 in
    [0, 1] (1 = deblur), in steps of 1/255."""
    r, t = check_keep_bokeh(keep_bokeh, transition)
    if t > 0:
        u = ((r + t / 2 - grid) / t).clamp(0, 1)
        soft = u * u * (3 - 2 * u)
    else:
        soft = (grid <= r).float()
    smooth = F.interpolate(_gaussian_blur(soft, MASK_SIGMA), size=size, mode="bilinear", align_corners=False)
    return smooth.clamp_(0, 1).mul_(MASK_LEVELS).round_().div_(MASK_LEVELS)


def bokeh_mask(defocus: Tensor, calibration: DefocusCalibration, keep_bokeh: float = DEFAULT_KEEP_BOKEH,
               transition: float = DEFAULT_TRANSITION) -> Tensor:
    """The mask ``keep_bokeh`` computes from a defocus map ``(B, 1, H, W)``: ``(B, 1, H, W)``, 1 where
    the calibrated blur radius is below ``keep_bokeh - transition/2`` px, 0 above ``keep_bokeh +
    transition/2`` (see the module docstring)."""
    return mask_from_radius(radius_grid(defocus, calibration), keep_bokeh, tuple(defocus.shape[-2:]), transition)


def blend(image: Tensor, deblurred: Tensor, weight: Tensor | float) -> Tensor:
    """``clip(image + weight * (clip(deblurred) - image))``: ``(B, 3, H, W)`` images in [0, 1] and a
    weight ``(B, 1, H, W)`` or a number (strength x mask, in [0, 2]); exact at weights 0 and 1."""
    model = deblurred.float().clamp(0, 1)
    if not isinstance(weight, Tensor):
        if weight == 1.0:
            return model
        weight = torch.tensor(float(weight), device=model.device)
    return torch.lerp(image.float(), model, weight.to(model.device, torch.float32)).clamp_(0, 1)


# -- masks and maps as arrays, PIL images and tensors ------------------------------------------

def to_map(x, what: str = "mask") -> Tensor:
    """A one-channel map as ``(B, 1, H, W)`` float32: numpy ``(H, W)`` (uint8 / uint16 scaled to
    [0, 1], floats as they are), a PIL image (L, I;16, I, F) or a tensor ``(H, W)``, ``(1, H, W)``
    or ``(B, 1, H, W)``. ``what`` names it in errors; NaN or infinity is refused, as in an image."""
    if isinstance(x, Tensor):
        t = x
        scale = 255.0 if t.dtype == torch.uint8 else 1.0
        t = t.float() / scale
        if t.dim() == 2:
            t = t[None, None]
        elif t.dim() == 3:
            t = t[None]
        if t.dim() != 4 or t.shape[1] != 1:
            raise ValueError(f"a {what} must be one channel, (H, W), (1, H, W) or (B, 1, H, W), got {tuple(x.shape)}")
        return _finite(t, what)
    if not isinstance(x, np.ndarray):
        x = np.asarray(x)  # PIL images
    if x.ndim == 3 and x.shape[2] == 1:
        x = x[:, :, 0]
    if x.ndim != 2:
        raise ValueError(f"a {what} must be one grey channel (H, W), got shape {x.shape}")
    if x.dtype == np.uint8:
        arr = x.astype(np.float32) / 255.0
    elif x.dtype == np.uint16 or x.dtype == np.int32:  # PIL's I;16 and I modes come as int32
        arr = np.clip(x, 0, 65535).astype(np.float32) / 65535.0
    elif np.issubdtype(x.dtype, np.floating):
        arr = x.astype(np.float32)
    else:
        raise ValueError(f"a {what} must be uint8, uint16 or float, got {x.dtype}")
    return _finite(torch.from_numpy(np.ascontiguousarray(arr))[None, None], what)


def _finite(t: Tensor, what: str) -> Tensor:
    check_finite_tensor(t, what, "it must be finite")
    return t


def mask_weight(mask, size: tuple[int, int], strength: float = 1.0) -> Tensor:
    """``strength x mask`` as a ``(B, 1, H, W)`` weight, the mask (any kind :func:`to_map` takes)
    checked against the image ``size`` ``(H, W)`` and clipped to [0, 1]."""
    m = to_map(mask)
    if tuple(m.shape[-2:]) != tuple(size):
        raise ValueError(f"the mask is {m.shape[-1]}x{m.shape[-2]}, the image {size[1]}x{size[0]}: "
                         "a mask must have the image's size")
    return m.clamp(0, 1) * check_strength(strength)


def read_mask(path: str | os.PathLike) -> np.ndarray:
    """A mask file (grey PNG/TIFF/JPEG/..., 8 or 16 bits; white = deblur, black = keep) as float32
    ``(H, W)`` in [0, 1], upright. An RGB file is taken when its three channels are equal (as editors
    often save grey); anything else is refused (ValueError naming the file)."""
    from ifan.io import read_image

    img = read_image(path)
    if img.alpha is not None:
        raise ValueError(f"{path}: a mask must be a grey image without transparency (white = deblur, black = keep)")
    rgb = img.rgb
    step = 1.0 / (255 if img.bit_depth == 8 else 65535)
    if not img.grayscale and float(np.abs(rgb - rgb[:, :, :1]).max()) > step:
        raise ValueError(f"{path}: a mask must be grey (white = deblur, black = keep); this image has colour")
    return np.ascontiguousarray(rgb[:, :, 0])


def recompose(photo, deblurred, *, strength: float = 1.0, mask=None):
    """Recompose a result from a photo and its deblurred version without running the network again
    (a slider moved on the web page, another strength, an edited mask).

    Args:
        photo, deblurred: the same kind and shape (numpy, PIL or tensor, as :meth:`Deblurrer.deblur`
            takes and returns them; floats keep the most precision).
        strength: in [0, :data:`MAX_STRENGTH`].
        mask: ``(H, W)`` (any kind :func:`to_map` takes), 1 = deblur; None: everywhere.

    Returns:
        The recomposed image, the kind, shape and dtype of ``photo``.
    """
    from ifan.inference.adapters import prepare

    src, out = prepare(photo), prepare(deblurred)
    if src.rgb.shape != out.rgb.shape:
        raise ValueError(f"photo and deblurred differ in shape: {tuple(src.rgb.shape)} vs {tuple(out.rgb.shape)}")
    size = tuple(src.rgb.shape[-2:])
    weight = check_strength(strength) if mask is None else mask_weight(mask, size, strength)
    return src.restore(blend(src.rgb, out.rgb, weight), src.alpha)



@dataclass(frozen=True)
class BlendSettings:
    """How a file's result is recomposed (the command line's ``--strength``, ``--keep-bokeh`` and ``--mask``).

    Attributes:
        strength: in [0, :data:`MAX_STRENGTH`].
        keep_bokeh: blur radius (px) beyond which the input is kept (None: off).
        transition: width (px of blur radius) of ``keep_bokeh``'s soft threshold.
        mask: ``(H, W)`` float32 in [0, 1] (1 = deblur) that overrides ``keep_bokeh``; ``mask_name``
            names it in messages.
    """

    strength: float = 1.0
    keep_bokeh: float | None = None
    transition: float = DEFAULT_TRANSITION
    mask: np.ndarray | None = field(default=None, compare=False, repr=False)
    mask_name: str = "the mask"

    def __post_init__(self) -> None:
        check_strength(self.strength)
        if self.keep_bokeh is not None:
            check_keep_bokeh(self.keep_bokeh, self.transition)
        if self.mask is not None and (self.mask.ndim != 2 or self.mask.dtype != np.float32):
            raise ValueError(f"a BlendSettings mask is float32 (H, W), got {self.mask.dtype} {self.mask.shape}")

    @property
    def plain(self) -> bool:
        """The model's result as it is."""
        return self.strength == 1.0 and self.keep_bokeh is None and self.mask is None

    @property
    def needs_defocus(self) -> bool:
        """The mask is computed from the defocus map."""
        return self.keep_bokeh is not None and self.mask is None

    def size_error(self, size: tuple[int, int]) -> str | None:
        """Why the mask does not fit an image of ``size`` ``(H, W)`` (None: it fits, or there is none)."""
        if self.mask is None or tuple(self.mask.shape) == tuple(size):
            return None
        return (f"{self.mask_name} is {self.mask.shape[1]}x{self.mask.shape[0]} and the photo "
                f"{size[1]}x{size[0]}: a mask must have the photo's size")

    def describe(self, calibration: DefocusCalibration) -> str:
        """One line for ``-v``."""
        parts = [f"strength {self.strength:g}"]
        if self.mask is not None:
            overrides = " (overrides --keep-bokeh)" if self.keep_bokeh is not None else ""
            parts.append(f"mask {self.mask_name}{overrides}")
        elif self.keep_bokeh is not None:
            parts.append(f"keep bokeh beyond {self.keep_bokeh:g} px of blur radius (transition {self.transition:g} px; "
                         f"radius {calibration.describe()})")
        return ", ".join(parts)

    def apply(self, photo: np.ndarray, deblurred: np.ndarray, defocus: np.ndarray | None,
              calibration: DefocusCalibration) -> tuple[np.ndarray, np.ndarray | None]:
        """Recompose float32 ``(H, W, 3)`` results: ``(image, mask used or None)``."""
        if self.plain:
            return deblurred, None
        size = photo.shape[:2]
        if self.mask is not None:
            if (why := self.size_error(size)) is not None:
                raise ValueError(why)
            mask = torch.from_numpy(self.mask)[None, None]
        elif self.keep_bokeh is not None:
            if defocus is None:
                raise ValueError("keep_bokeh needs the defocus map of the run")
            mask = bokeh_mask(torch.from_numpy(np.ascontiguousarray(defocus))[None, None], calibration,
                              self.keep_bokeh, self.transition)
        else:
            mask = None
        weight = self.strength if mask is None else mask * self.strength
        nchw = [torch.from_numpy(np.asarray(a, dtype=np.float32)).permute(2, 0, 1)[None] for a in (photo, deblurred)]
        out = blend(nchw[0], nchw[1], weight)[0].permute(1, 2, 0).numpy()
        return out, None if mask is None else mask[0, 0].numpy()
