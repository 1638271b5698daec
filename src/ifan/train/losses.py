"""IFAN's training losses, computed as the official trainer computes them.

* image: MSE between the (unclipped) output and the sharp target (or L1 / Charbonnier), plus
  optionally an L1 distance between their 2-D Fourier spectra (``frequency``).
* dme (disparity map estimation): MSE between the right view at 1/8 (area), warped
  horizontally by the disparity predicted from the right view, and the left view at 1/8.
* reblur: MSE between the reblurred sharp target (reblurring network, 1/8) and the blurry
  input at 1/8 (area).
* disparity (ifan synth data only; not in the paper): L1 between the disparity estimated from
  the right view and the true one, at 1/8 (area) in 1/8-scale pixels. The DME warp samples R at
  ``x + d`` to match L, so the estimate that matches is ``-(x_L - x_R) / 8``.

All are means over every element (``nn.MSELoss()``), and the total is their weighted sum.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ifan.models.ifan import DOWNSCALE, IFANOutput
from ifan.models.reblur import ReblurNet


def area_downsample(x: Tensor, factor: int = DOWNSCALE) -> Tensor:
    """Mean over ``factor x factor`` blocks: ``(B, C, H, W) -> (B, C, H/factor, W/factor)``."""
    return F.interpolate(x, scale_factor=1 / factor, mode="area")


def horizontal_warp(x: Tensor, disparity: Tensor) -> Tensor:
    """Sample ``x`` at ``(row, col + disparity)`` with bilinear weights and zeros outside.

    The official DPD warp: ``grid_sample(align_corners=True)`` on an identity grid whose x
    coordinate is shifted by ``disparity / ((W - 1) / 2)``.

    Args:
        x: ``(B, C, H, W)``.
        disparity: ``(B, 1, H, W)`` in pixels of ``x``.
    """
    b, _, h, w = x.shape
    if disparity.shape != (b, 1, h, w):
        raise ValueError(f"disparity must be {(b, 1, h, w)}, got {tuple(disparity.shape)}")
    if w < 2:
        raise ValueError("horizontal_warp needs a width of at least 2 pixels")
    xs = torch.linspace(-1.0, 1.0, w, device=x.device, dtype=x.dtype).view(1, 1, w).expand(b, h, w)
    ys = torch.linspace(-1.0, 1.0, h, device=x.device, dtype=x.dtype).view(1, h, 1).expand(b, h, w)
    grid = torch.stack([xs + disparity[:, 0] / ((w - 1.0) / 2.0), ys], dim=-1)
    return F.grid_sample(x, grid, mode="bilinear", padding_mode="zeros", align_corners=True)


@dataclass(frozen=True)
class LossWeights:
    """The weights of the terms (0 switches a term off: it is then not computed) and the image loss's
    form: a recipe's ``losses`` section (:class:`ifan.train.config.TrainConfig`).

    ``image_loss``: ``mse`` (the paper's), ``l1`` or ``charbonnier`` (``sqrt(d**2 + 1e-6)``);
    ``frequency``: weight of an L1 loss between the 2-D spectra of output and target;
    ``disparity``: weight of an L1 loss between the estimated and the true disparity (``ifan synth``
    data, whose ``{split}_meta`` maps hold it; not in the paper).
    """

    image: float = 1.0
    dme: float = 1.0
    reblur: float = 1.0
    image_loss: str = "mse"
    frequency: float = 0.0
    disparity: float = 0.0


CHARBONNIER_EPS = 1e-3


def image_distance(output: Tensor, target: Tensor, kind: str = "mse") -> Tensor:
    """Mean over all elements of ``(o - t)**2`` (``mse``), ``|o - t|`` (``l1``) or
    ``sqrt((o - t)**2 + 1e-6)`` (``charbonnier``)."""
    diff = output.float() - target.float()
    if kind == "mse":
        return diff.square().mean()
    if kind == "l1":
        return diff.abs().mean()
    if kind == "charbonnier":
        return (diff.square() + CHARBONNIER_EPS ** 2).sqrt().mean()
    raise ValueError(f"unknown image loss {kind!r}; expected mse, l1 or charbonnier")


def frequency_distance(output: Tensor, target: Tensor) -> Tensor:
    """Mean absolute difference of the real and imaginary parts of the orthonormal 2-D spectra
    (``rfft2``) of ``(B, C, H, W)`` images: weighs every spatial frequency alike."""
    diff = torch.fft.rfft2(output.float() - target.float(), norm="ortho")
    return torch.view_as_real(diff).abs().mean()


def ifan_losses(
    out: IFANOutput,
    target: Tensor,
    blurry: Tensor,
    right: Tensor | None = None,
    left: Tensor | None = None,
    reblur_net: ReblurNet | None = None,
    weights: LossWeights = LossWeights(),
    disparity: Tensor | None = None,
) -> dict[str, Tensor]:
    """The official IFAN losses for one batch.

    Args:
        out: a training-call output (``aux=True``: ``filters`` set; ``disparity_right`` set
            when the DME loss is on).
        target: sharp image ``(B, 3, H, W)``.
        blurry: the network input ``C`` ``(B, 3, H, W)``.
        right, left: DP views (needed when ``weights.dme > 0``).
        reblur_net: needed when ``weights.reblur > 0``.
        disparity: the true disparity ``x_L - x_R`` (px) ``(B, 1, H, W)``, needed when
            ``weights.disparity > 0``.

    Returns:
        ``{"image", ["frequency"], ["dme"], ["reblur"], ["disparity"], "total"}``; unweighted terms,
        weighted total.
    """
    losses: dict[str, Tensor] = {"image": image_distance(out.image, target, weights.image_loss)}
    total = weights.image * losses["image"]
    if weights.frequency > 0:
        losses["frequency"] = frequency_distance(out.image, target)
        total = total + weights.frequency * losses["frequency"]
    if weights.dme > 0:
        if left is None or out.disparity_right is None:
            raise ValueError("the DME loss needs the left view and the right-view disparity (pass right/left)")
        warped = horizontal_warp(area_downsample(right), out.disparity_right)
        losses["dme"] = F.mse_loss(warped, area_downsample(left))
        total = total + weights.dme * losses["dme"]
    if weights.reblur > 0:
        if reblur_net is None or out.filters is None:
            raise ValueError("the reblurring loss needs the reblurring network and the filters (aux=True)")
        losses["reblur"] = F.mse_loss(reblur_net(target, out.filters), area_downsample(blurry))
        total = total + weights.reblur * losses["reblur"]
    if weights.disparity > 0:
        if disparity is None or out.disparity_right is None:
            raise ValueError("the disparity loss needs the true disparity and the right-view estimate")
        truth = -area_downsample(disparity.float()) / DOWNSCALE
        losses["disparity"] = F.l1_loss(out.disparity_right.float(), truth)
        total = total + weights.disparity * losses["disparity"]
    losses["total"] = total
    return losses
