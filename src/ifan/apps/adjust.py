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
:class:`Sliders` are the page's part (Gradio components and their events); the service's part is
:meth:`ifan.apps.serve.DeblurService.adjust`.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from ifan.fileutil import atomic_write
from ifan.inference.blend import (DEFAULT_KEEP_BOKEH, DEFAULT_TRANSITION, MAX_STRENGTH, blend, check_strength,
                                  mask_from_radius, radius_grid)
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


def adjust_file(folder: Path, source: Path, result: Path, out: Path, strength: float, keep_bokeh: float,
                quality: int = 95) -> Path:
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
    return write_like(out / result.name, rgb, photo, bit_depth=done.bit_depth, quality=quality)


class Sliders:
    """The page's strength and keep-the-bokeh sliders, the mask view and the job they act on (built
    inside a ``gr.Blocks``; the mask view where :meth:`mask_view` is called)."""

    def __init__(self) -> None:
        import gradio as gr

        self.strength = gr.Slider(0, MAX_STRENGTH, value=1.0, step=0.05, elem_id="strength",
                                  label="Strength: 0 = the photo, 1 = the model, 2 = twice its change")
        self.bokeh = gr.Slider(KEEP_BOKEH_OFF, 20, value=KEEP_BOKEH_OFF, step=0.5, elem_id="keep-bokeh",
                               label=f"Keep the bokeh: leave what is blurred beyond this radius (px) as it was; "
                                     f"0 = off, {DEFAULT_KEEP_BOKEH:g} is a good start ({DEFAULT_TRANSITION:g} px "
                                     "transition)")
        self.job = gr.State(None)

    def mask_view(self, height: int) -> None:
        import gradio as gr

        self.mask = gr.Image(label="Blend mask of 'keep the bokeh' (white = deblurred)", interactive=False,
                             height=height, elem_id="mask", buttons=["fullscreen"])

    def attach(self, service, fail, deblurred, slider, crop_after, download, download_button) -> None:
        """After ``deblurred`` (the deblur event) and on each slider's release: the previews (``slider``,
        ``crop_after``, the mask), then the full-size ``download`` (``download_button(job, path, how)``)."""
        import gradio as gr

        from ifan.apps.serve import UploadError

        def preview(job, strength: float, keep_bokeh: float):  # no network
            if job is None:
                return gr.skip(), gr.skip(), gr.skip()
            try:
                adjusted = service.adjust(job, strength, keep_bokeh)
            except UploadError as err:
                raise fail(str(err)) from None
            return ((str(job.before), str(adjusted.after)), str(adjusted.crop_after),
                    None if adjusted.mask is None else str(adjusted.mask))

        def full_size(job, strength: float, keep_bokeh: float):
            if job is None:
                return gr.skip()
            try:
                path = service.adjust(job, strength, keep_bokeh, full=True)
            except UploadError as err:
                raise fail(str(err)) from None
            kept = f", bokeh kept beyond {keep_bokeh:g} px" if keep_bokeh > KEEP_BOKEH_OFF else ""
            return download_button(job, path, "" if path == job.output else f"; strength {strength:g}{kept}")

        knobs = [self.job, self.strength, self.bokeh]
        for event in (deblurred.success, self.strength.release, self.bokeh.release):
            event(preview, knobs, [slider, crop_after, self.mask], api_name=False
                  ).success(full_size, knobs, download, api_name=False)
