"""The :class:`Deblurrer`: one image of any size through the network, whole or tiled, within a memory budget.

This is the one inference path: ``ifan deblur``, ``ifan serve``, ``ifan demo``, ``ifan evaluate``
and training validation all run the network through :meth:`Deblurrer.run` (the dual-pixel
variant too, with its right and left views tiled like the image).

The defocus map (:func:`defocus_from_disparity`, its one definition) is the network's disparity
output (``(B, 1, H/8, W/8)``), upsampled bilinearly to the input size and multiplied by 8: the
signed horizontal disparity between the dual-pixel views the network was trained to predict, in
pixels of the input image. Its magnitude grows with the blur (0 = in focus); its sign tells on
which side of the focal plane a point lies (the convention of the training data's left/right
views). Without dual-pixel supervision (a model trained on images alone) it is only a relative
blur cue.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from ifan.inference.adapters import prepare
from ifan.inference.blend import (DEFAULT_TRANSITION, blend, bokeh_mask, check_keep_bokeh, check_strength, mask_weight,
                                  to_map)
from ifan.inference.calibration import calibration_of
from ifan.inference.memory import (_LIBC, HEAP_MEMORY_FACTOR, MemoryBudgetError, format_bytes, heap_allocation,
                                   memory_budget, memory_model, parse_size, trim_heap)
from ifan.inference.runtime import (DEFAULT_PRECISION, autocast, describe_cpu, describe_precision, resolve_device,
                                    resolve_precision)
from ifan.inference.tiling import (DEFAULT_MARGIN, DEFAULT_OVERLAP, TilePlan, blend_weights, check_tile_size,
                                   pad_to_multiple, plan_tiles)
from ifan.models.ifan import DOWNSCALE, IFAN, IFANConfig
from ifan.models.zoo import DEFAULT_MODEL

ProgressCallback = Callable[[int, int], None]


def defocus_from_disparity(disparity: Tensor, size: tuple[int, int]) -> Tensor:
    """The defocus map: the disparity ``(B, 1, h, w)`` at 1/8, upsampled bilinearly to ``size``
    and multiplied by 8, so that it is in pixels of the input image. ``(B, 1, *size)`` float32."""
    upsampled = F.interpolate(disparity.float(), size=size, mode="bilinear", align_corners=False)
    return upsampled * DOWNSCALE


@dataclass
class DeblurResult:
    """Outputs of :meth:`Deblurrer.run` for one ``(1, 3, H, W)`` image.

    Attributes:
        image: deblurred, ``(1, 3, H, W)`` float32, not clipped, on the input's device.
        defocus: the defocus map (signed disparity in input pixels), ``(1, 1, H, W)``, or None.
        plan: how the image was run.
    """

    image: Tensor
    defocus: Tensor | None
    plan: TilePlan


class Deblurrer:
    """Deblur images of any size with an IFAN model, on CPU or GPU, within a memory budget.

    Args:
        model: an :class:`~ifan.models.ifan.IFAN` (moved to ``device``, put in eval mode and, with
            ``channels_last``, converted in place). The dual-pixel variant is run by :meth:`run`
            with its views; :meth:`deblur` and :meth:`defocus_map` take single images.
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        precision: ``"auto"`` (default: bf16 autocast on CPUs with native bf16, float32 on others;
            fp16 autocast on CUDA), ``"fp32"`` (strict float32), ``"bf16"`` or ``"fp16"`` (CUDA); the
            names are :mod:`ifan.inference.runtime`'s.
        channels_last: NHWC activations (faster with oneDNN and cuDNN); default True.
        compile: run the network through ``torch.compile`` (pays off only after many calls of the
            same shape: the first call of each new shape compiles for tens of seconds on a CPU).
        max_memory: peak memory the process may reach while deblurring (bytes or ``"4G"``), CPU RSS
            or CUDA allocated memory; default: what is in use now plus a fraction of what is available
            (:data:`ifan.inference.memory.DEFAULT_BUDGET_FRACTION`).
        overlap: minimum tile overlap in pixels.
        tile_size: force square tiles of this side (for tests and experiments).
        blend_margin: fraction of each overlap, at a tile's edge, that gets no weight in the blend.
        cpu_heap: on CPU with glibc, serve large allocations from the heap while running
            (:func:`heap_allocation`: no page faults on reused activations; process-wide while
            it lasts).

    Example:
        >>> import numpy as np
        >>> from ifan import create_model
        >>> deblurrer = Deblurrer(create_model("ifan", channels=2, iterations=2), device="cpu")
        >>> deblurrer.deblur(np.zeros((37, 53, 3), np.uint8)).shape
        (37, 53, 3)
    """

    def __init__(self, model: IFAN, device: str | torch.device | None = "auto", precision: str = DEFAULT_PRECISION,
                 channels_last: bool = True, compile: bool = False, max_memory: int | str | None = None,
                 overlap: int = DEFAULT_OVERLAP, tile_size: int | None = None,
                 blend_margin: float = DEFAULT_MARGIN, cpu_heap: bool = True) -> None:
        if not isinstance(model, IFAN):
            raise TypeError(f"expected an ifan IFAN model, got {type(model).__name__}")
        self.device = resolve_device(device)
        self.precision = precision
        self.autocast_dtype = resolve_precision(precision, self.device)
        self.channels_last = channels_last
        self.model = model.to(self.device).eval()
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.max_memory = None if max_memory is None else parse_size(max_memory)
        check_tile_size(tile_size, overlap)  # once, here, not on every image
        self.overlap = overlap
        self.tile_size = tile_size
        if not 0 <= blend_margin < 0.5:
            raise ValueError(f"blend_margin must be in [0, 0.5), got {blend_margin}")
        self.blend_margin = blend_margin
        self.cpu_heap = cpu_heap and self.device.type == "cpu" and _LIBC is not None
        self._forward = torch.compile(self.model, dynamic=False) if compile else self.model
        self.compiled = compile
        self.memory = memory_model(model.config, self.autocast_dtype, channels_last, self.device.type)
        self.calibration = calibration_of(model)  # defocus map -> blur radius (inference/calibration.py)

    @classmethod
    def from_pretrained(cls, name_or_path: str | os.PathLike | IFAN = DEFAULT_MODEL, device: str | torch.device = "auto",
                        **kwargs) -> Deblurrer:
        """Load a named model's bundled weights (or a weights file) and wrap it.

        Args:
            name_or_path: a model name (see :func:`ifan.list_models`), a weights file, or an IFAN module.
            device: see :class:`Deblurrer`.
            **kwargs: further :class:`Deblurrer` options.

        Raises:
            FileNotFoundError: no weights ship for the name, or the file does not exist.
            ifan.models.official.CheckpointError: the file does not fit the model.
        """
        if isinstance(name_or_path, IFAN):
            return cls(name_or_path, device=device, **kwargs)
        from ifan.models.hub import load_model

        return cls(load_model(name_or_path, device="cpu"), device=device, **kwargs)

    @property
    def config(self) -> IFANConfig:
        return self.model.config

    def describe(self) -> str:
        """One line: model, device, precision and memory format."""
        cfg = self.config
        parts = [f"ch={cfg.channels} N={cfg.iterations}", f"device={self.device}",
                 f"precision={describe_precision(self.precision, self.autocast_dtype)}",
                 "channels_last" if self.channels_last else "NCHW", "lean IAC"]
        if self.compiled:
            parts.append("torch.compile")
        if self.cpu_heap:
            parts.append("heap allocation")
        if self.device.type == "cpu":
            parts.append(f"cpu={describe_cpu()}")
        return ", ".join(parts)

    # -- memory ---------------------------------------------------------------------------------

    def budget(self) -> int | None:
        """Bytes the next run may add to what is in use now (None = unknown: no limit)."""
        return memory_budget(self.device, self.max_memory)

    def plan(self, h: int, w: int, defocus: bool = False, *, batch: int = 1, reserve: int = 0) -> TilePlan:
        """The plan for an ``h x w`` image under the current budget (see :func:`plan_tiles`).

        Args:
            batch: plan for this many images of the size run together (each gets a share of the budget).
            reserve: bytes of the budget to leave to other work meanwhile (the file loop's reads and writes).

        Raises:
            MemoryBudgetError: the budget is used up already, or even the smallest tiles do not fit.
        """
        budget = self.budget()
        if budget is not None and budget <= 0:
            raise MemoryBudgetError(f"the memory budget {format_bytes(self.max_memory or 0)} is too small: this "
                                    f"process already uses {format_bytes((self.max_memory or 0) - budget)}")
        if budget is not None:
            budget = (budget - reserve) // batch
        return plan_tiles(h, w, budget, memory=self.memory, overlap=self.overlap, tile=self.tile_size,
                          defocus=defocus, host_accumulators=self.device.type == "cuda",
                          heap_factor=HEAP_MEMORY_FACTOR if self.cpu_heap else None)

    # -- running --------------------------------------------------------------------------------

    def _network(self, x: Tensor, views: tuple[Tensor, ...], defocus: bool) -> tuple[Tensor, Tensor | None]:
        """Run the padded ``(1, 3, h, w)`` input (and padded views): (image float32, defocus map or None)."""
        x, *views = (v.to(self.device, torch.float32) for v in (x, *views))
        if self.channels_last:
            x, *views = (v.contiguous(memory_format=torch.channels_last) for v in (x, *views))
        with autocast(self.device, self.autocast_dtype):
            out = self._forward(x, *views)
        return out.image.float(), defocus_from_disparity(out.disparity, x.shape[-2:]) if defocus else None

    @torch.no_grad()
    def run(self, rgb: Tensor, defocus: bool = False, plan: TilePlan | None = None,
            progress: ProgressCallback | None = None, right: Tensor | None = None,
            left: Tensor | None = None) -> DeblurResult:
        """Deblur one ``(1, 3, H, W)`` float image in [0, 1] (any memory layout, any size >= 1), or a
        ``(B, 3, H, W)`` batch under a whole-image plan.

        Args:
            rgb: the image, on any device (the result comes back there).
            defocus: also compute the defocus map.
            plan: a plan from :meth:`plan` (default: made now).
            progress: called as ``progress(done, total)`` after each tile.
            right, left: the dual-pixel views, same shape as ``rgb`` (the dual-pixel variant only).
        """
        if rgb.dim() != 4 or rgb.shape[1] != 3 or rgb.shape[0] < 1:
            raise ValueError(f"expected a (1, 3, H, W) image or a (B, 3, H, W) batch, got {tuple(rgb.shape)}")
        views = () if right is None and left is None else (right, left)
        if bool(views) != self.config.dual_pixel_input:
            raise ValueError("the dual-pixel variant needs the right and left views (run(image, right=..., "
                             "left=...))" if self.config.dual_pixel_input else "this model takes no dual-pixel views")
        if any(v is None or v.shape != rgb.shape for v in views):
            raise ValueError(f"the right and left views must both be given, shaped like the image {tuple(rgb.shape)}")
        h, w = rgb.shape[-2:]
        plan = plan or self.plan(h, w, defocus, batch=rgb.shape[0])
        if (plan.height, plan.width) != (h, w):
            raise ValueError(f"the plan is for {plan.width}x{plan.height}, the image is {w}x{h}")
        if plan.tiled and rgb.shape[0] > 1:
            raise ValueError(f"a batch of {rgb.shape[0]} runs whole, and this plan is tiled: run its images one by one")
        with heap_allocation(plan.heap and self.cpu_heap):
            return self._run(rgb, views, defocus, plan, progress)

    def _run(self, rgb: Tensor, views: tuple[Tensor, ...], defocus: bool, plan: TilePlan,
             progress: ProgressCallback | None) -> DeblurResult:
        h, w = rgb.shape[-2:]
        home = rgb.device
        if not plan.tiled:
            padded_views = tuple(pad_to_multiple(v.float()) for v in views)
            image, disp = self._network(pad_to_multiple(rgb.float()), padded_views, defocus)
            if progress:
                progress(1, 1)
            image = image[..., :h, :w].to(home)
            return DeblurResult(image, None if disp is None else disp[..., :h, :w].to(home), plan)

        th, tw = plan.tile
        wy = blend_weights(plan.rows, th, plan.padded[0], self.blend_margin)
        wx = blend_weights(plan.cols, tw, plan.padded[1], self.blend_margin)
        # the result in HWC (channels-last) so that numpy callers get it without a copy
        out = torch.zeros(1, h, w, 3, dtype=torch.float32, device=home).permute(0, 3, 1, 2)
        out_map = torch.zeros(1, 1, h, w, dtype=torch.float32, device=home) if defocus else None
        total, done = plan.num_tiles, 0
        for r, y0 in enumerate(plan.rows):
            y1 = min(y0 + th, h)
            for c, x0 in enumerate(plan.cols):
                x1 = min(x0 + tw, w)
                crop, *crop_views = (pad_to_multiple(t[..., y0:y1, x0:x1].float()) for t in (rgb, *views))
                image, disp = self._network(crop, tuple(crop_views), defocus)
                weight = (wy[r, : y1 - y0, None] * wx[c, None, : x1 - x0]).to(home)
                out[..., y0:y1, x0:x1] += image[..., : y1 - y0, : x1 - x0].to(home) * weight
                if out_map is not None:
                    out_map[..., y0:y1, x0:x1] += disp[..., : y1 - y0, : x1 - x0].to(home) * weight
                del image, disp
                if plan.heap and self.cpu_heap:
                    trim_heap()  # each tile starts from a trimmed heap: fragmentation does not add up
                done += 1
                if progress:
                    progress(done, total)
        return DeblurResult(out, out_map, plan)

    def _prepare_single(self, x):
        if self.config.dual_pixel_input:
            raise ValueError("the dual-pixel variant needs the right and left views: use "
                             "run(image, right=..., left=...) with (1, 3, H, W) tensors")
        return prepare(x)

    def deblur(self, x, *, return_defocus: bool = False, plan: TilePlan | None = None,
               progress: ProgressCallback | None = None, strength: float = 1.0, keep_bokeh: float | None = None,
               mask=None, transition: float = DEFAULT_TRANSITION, return_mask: bool = False):
        """Deblur an image and return it in the same kind.

        Args:
            x: one of

                * numpy ``(H, W, C)`` or ``(H, W)``: uint8, uint16 or float in [0, 1]; C = 1 (grey),
                  2 (grey + alpha), 3 (RGB) or 4 (RGBA);
                * a PIL image (L, LA, RGB, RGBA, I;16, I, F; other modes are converted to RGB(A));
                * a tensor ``(C, H, W)`` or ``(B, C, H, W)``, float in [0, 1] or uint8, any device.

                Grey images are run as RGB and averaged back; alpha is passed through unchanged.
            return_defocus: also return :meth:`defocus_map` (from the same run).
            plan: a plan from :meth:`plan` (default: made now).
            progress: ``progress(done, total)`` after each tile.
            strength: how much of the model's change to apply, in [0, 2]: 0 = the input, 1 = the
                model, 2 = twice its change (:mod:`ifan.inference.blend`).
            keep_bokeh: leave regions whose calibrated blur radius exceeds this many pixels as they
                are, with a smooth transition (:func:`~ifan.inference.blend.bokeh_mask`).
            mask: the blend mask instead (``(H, W)``, 1 = deblur, 0 = keep; numpy, PIL or tensor;
                uint8/uint16 scaled to [0, 1]); it overrides ``keep_bokeh``.
            transition: the width, in pixels of blur radius, of ``keep_bokeh``'s soft threshold.
            return_mask: also return the mask used (the kind :meth:`defocus_map` returns; all
                ones without ``keep_bokeh`` or ``mask``).

        Returns:
            The deblurred image, same kind, shape and dtype (clipped to the input's range); with
            ``return_defocus`` and/or ``return_mask`` a tuple ``(image, [defocus map], [mask])``.
        """
        strength = check_strength(strength)
        if keep_bokeh is not None:
            check_keep_bokeh(keep_bokeh, transition)
        prepared = self._prepare_single(x)
        size = tuple(prepared.rgb.shape[-2:])
        user_mask = None if mask is None else mask_weight(mask, size)
        need_map = return_defocus or (keep_bokeh is not None and user_mask is None)
        images, maps, masks = [], [], []
        for b in range(prepared.rgb.shape[0]):
            res = self.run(prepared.rgb[b:b + 1], defocus=need_map, plan=plan, progress=progress)
            if user_mask is not None:
                m = (user_mask[b:b + 1] if user_mask.shape[0] > 1 else user_mask).to(res.image.device)
            elif keep_bokeh is not None:
                m = bokeh_mask(res.defocus, self.calibration, keep_bokeh, transition)
            else:
                m = None
            weight = strength if m is None else m * strength
            plain = m is None and weight == 1.0  # the model's result as it is, clipped by restore
            images.append(res.image if plain else blend(prepared.rgb[b:b + 1].to(res.image.device), res.image, weight))
            maps.append(res.defocus)
            masks.append(m)
        image = images[0] if len(images) == 1 else torch.cat(images)
        result = prepared.restore(image, prepared.alpha)
        if not (return_defocus or return_mask):
            return result
        out = [result]
        if return_defocus:
            out.append(prepared.restore_map(maps[0] if len(maps) == 1 else torch.cat(maps)))
        if return_mask:
            ones = [torch.ones(1, 1, *size) if m is None else m for m in masks]
            out.append(prepared.restore_map(ones[0] if len(ones) == 1 else torch.cat(ones)))
        return tuple(out)

    def bokeh_mask(self, defocus, keep_bokeh: float, transition: float = DEFAULT_TRANSITION):
        """The mask ``keep_bokeh`` computes from a defocus map (as :meth:`defocus_map` returns it,
        with this model's calibration): numpy ``(H, W)`` float32 for an array, a tensor
        ``(B, 1, H, W)`` for a tensor; 1 = deblur."""
        m = bokeh_mask(to_map(defocus, "defocus map"), self.calibration, keep_bokeh, transition)
        return m if isinstance(defocus, torch.Tensor) else m[0, 0].numpy()

    def deblur_batch(self, images: Sequence, *, return_defocus: bool = False, plan: TilePlan | None = None) -> list:
        """Deblur same-size single images (any kinds :meth:`deblur` takes) in one forward pass: what a
        GPU runs faster than the images one by one.

        Args:
            plan: a whole-image plan from :meth:`plan` with ``batch=len(images)`` (default: made now).

        Returns:
            What :meth:`deblur` returns for each image, in order.

        Raises:
            ValueError: the sizes differ, an input holds several images, or the batch does not fit whole.
        """
        prepared = [self._prepare_single(x) for x in images]
        sizes = {tuple(p.rgb.shape[-2:]) for p in prepared}
        if len(sizes) != 1 or any(p.rgb.shape[0] != 1 for p in prepared):
            raise ValueError(f"a batch takes single images of one size, got sizes {sorted(sizes)}")
        res = self.run(torch.cat([p.rgb for p in prepared]), defocus=return_defocus, plan=plan)
        out = [p.restore(res.image[i:i + 1], p.alpha) for i, p in enumerate(prepared)]
        if not return_defocus:
            return out
        return [(o, p.restore_map(res.defocus[i:i + 1])) for i, (o, p) in enumerate(zip(out, prepared))]

    def defocus_map(self, x, *, plan: TilePlan | None = None, progress: ProgressCallback | None = None):
        """The signed defocus disparity of ``x`` in input pixels (see the module docstring).

        Returns:
            numpy ``(H, W)`` float32 for an array, a PIL ``"F"`` image for a PIL image, a float32
            ``(B, 1, H, W)`` (or ``(1, H, W)``) tensor for a tensor.
        """
        prepared = self._prepare_single(x)
        maps = [self.run(prepared.rgb[b:b + 1], defocus=True, plan=plan, progress=progress).defocus
                for b in range(prepared.rgb.shape[0])]
        return prepared.restore_map(maps[0] if len(maps) == 1 else torch.cat(maps))
