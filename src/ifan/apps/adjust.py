"""The web page's sliders: a deblurred upload recomposed at another ``strength`` / ``keep_bokeh``
without running the network again (:mod:`ifan.inference.blend` does the arithmetic).

When an upload is deblurred, :func:`save_views` keeps beside its previews what the sliders need:
the input and the model's result at preview size and as the 100 % crops (16-bit), and the calibrated
blur radius on the network's 1/8 grid (:func:`~ifan.inference.blend.radius_grid`). A slider moved:

* :func:`adjust_views` recomposes the previews and the crops and draws the mask (milliseconds);
* :func:`adjust_file` recomposes the full-size result for the download from the upload and the
  written result (read back at the input's bit depth: it can differ from ``ifan deblur --strength``,
  which blends before rounding, by one level in places) and writes it like the result.

The mask at preview size and at full size is drawn from the same grid, as ``--keep-bokeh`` draws it.
The service's part is :meth:`ifan.apps.service.DeblurService.adjust`; the page's (Gradio components and
their events) :class:`ifan.apps.serve.Sliders`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ifan.fileutil import atomic_write
from ifan.inference.blend import blend, check_strength, mask_from_radius, radius_grid
from ifan.inference.calibration import DefocusCalibration
from ifan.io import read_image, write_image, write_like

VIEWS_FILE = "adjust.npz"
KEEP_BOKEH_OFF = 0.0  # the page's slider value that turns --keep-bokeh off


def _u16(x: np.ndarray) -> np.ndarray:
    return np.round(np.clip(x, 0, 1) * 65535).astype(np.uint16)


def _nchw(x: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(x, dtype=np.float32) / (65535.0 if x.dtype == np.uint16 else 1.0)
                            ).permute(2, 0, 1)[None]


def save_views(folder: Path, views: dict[str, np.ndarray], defocus: np.ndarray, calibration: DefocusCalibration,
               size: tuple[int, int], crop_box: tuple[int, int, int]) -> Path:
    """Keep what the sliders need in ``folder``: ``views`` ``before``, ``after``, ``crop_before``,
    ``crop_after`` (float ``(h, w, 3)``), the radius grid of the full-size ``defocus`` map, the
    image ``size`` ``(H, W)`` and the crop box ``(top, left, side)``."""
    grid = radius_grid(torch.from_numpy(np.ascontiguousarray(defocus, dtype=np.float32))[None, None], calibration)
    arrays = dict(grid=grid[0, 0].numpy(), size=np.array(size), crop_box=np.array(crop_box),
                  **{k: _u16(v) for k, v in views.items()})
    return atomic_write(folder / VIEWS_FILE, lambda f: np.savez(f, **arrays))


@dataclass
class Adjusted:
    """The recomposed previews: ``after`` (preview size), ``crop_after`` (100 %), ``mask`` (preview
    size, white = deblurred; None without ``keep_bokeh``)."""

    after: Path
    crop_after: Path
    mask: Path | None


def _weight(grid: torch.Tensor, size: tuple[int, int], strength: float, keep_bokeh: float,
            window: tuple[slice, slice] | None = None) -> tuple[torch.Tensor | float, torch.Tensor | None]:
    """``(strength x mask, mask)`` at ``size`` (of the full image when ``window`` cuts a crop from it)."""
    if keep_bokeh <= KEEP_BOKEH_OFF:
        return strength, None
    mask = mask_from_radius(grid[None, None], keep_bokeh, size)
    if window is not None:
        mask = mask[..., window[0], window[1]]
    return mask * strength, mask


def adjust_views(folder: Path, out: Path, strength: float, keep_bokeh: float) -> Adjusted:
    """Recompose the previews kept by :func:`save_views` in ``folder`` into PNGs under ``out``."""
    strength = check_strength(strength)
    with np.load(folder / VIEWS_FILE) as kept:
        data = {k: kept[k] for k in kept.files}
    grid = torch.from_numpy(data["grid"])
    size = tuple(int(v) for v in data["size"])
    top, left, side = (int(v) for v in data["crop_box"])
    before, after = _nchw(data["before"]), _nchw(data["after"])
    weight, mask = _weight(grid, tuple(before.shape[-2:]), strength, keep_bokeh)
    preview = blend(before, after, weight)[0].permute(1, 2, 0).numpy()
    crop_weight, _ = _weight(grid, size, strength, keep_bokeh, (slice(top, top + side), slice(left, left + side)))
    crop = blend(_nchw(data["crop_before"]), _nchw(data["crop_after"]), crop_weight)[0].permute(1, 2, 0).numpy()
    return Adjusted(write_image(out / "after.png", preview), write_image(out / "crop_after.png", crop),
                    None if mask is None else write_image(out / "mask.png", mask[0, 0].numpy(), grayscale=True))


def adjust_file(folder: Path, source: Path, result: Path, out: Path, strength: float, keep_bokeh: float) -> Path:
    """The full-size result recomposed from the upload ``source`` and the written ``result``, written
    as ``out / result.name`` like the result (bit depth, grey/alpha, metadata)."""
    strength = check_strength(strength)
    with np.load(folder / VIEWS_FILE) as kept:
        grid = torch.from_numpy(kept["grid"])
    photo, done = read_image(source), read_image(result)
    if photo.size != done.size:
        raise ValueError(f"{result.name} is not the result of {source.name} (sizes differ)")
    weight, _ = _weight(grid, photo.size, strength, keep_bokeh)
    rgb = blend(_nchw(photo.rgb), _nchw(done.rgb), weight)[0].permute(1, 2, 0).numpy()
    return write_like(out / result.name, rgb, photo, bit_depth=done.bit_depth)
