"""Tiling: whether an image runs whole or as overlapping tiles, how the tiles are blended back, padding.

Every piece the network sees (the whole image or a tile) is padded to a multiple of 8 by
reflection (:func:`pad_to_multiple`) and its output cropped back.

:func:`plan_tiles` compares the estimated peak of a whole-image forward with the budget. When it
does not fit, it splits the image (padded to a multiple of 8) into the fewest, smallest equal
tiles that fit, overlapping by at least ``overlap`` pixels, with every tile offset a multiple of
8 (so each tile sees the same 1/8 sampling grid as the whole image). :func:`blend_weights` gives
each tile separable raised-cosine weights that sum to one.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

import torch
import torch.nn.functional as F
from torch import Tensor

from ifan.inference.memory import (HEAP_MAX_PIXELS, HEAP_SPEEDUP, MemoryBudgetError, MemoryModel, format_bytes,
                                   memory_model)
from ifan.models.ifan import DOWNSCALE, IFANConfig, padded_side

DEFAULT_OVERLAP = 128  # pixels; chosen from `python -m benchmarks.bench_tiling sweep` (docs/benchmarks.md)
DEFAULT_MARGIN = 0.25  # fraction of each overlap given zero weight at a tile's edge


def pad_to_multiple(x: Tensor) -> Tensor:
    """Pad ``(B, C, H, W)`` at the bottom and right to multiples of 8 by reflection.

    Reflection needs the pad to be smaller than the side; it is applied in steps when the
    image is small, and a side of 1 pixel is replicated.

    Example:
        >>> pad_to_multiple(torch.arange(3.0).view(1, 1, 1, 3)).shape
        torch.Size([1, 1, 8, 8])
    """
    h, w = x.shape[-2:]
    if h < 1 or w < 1:
        raise ValueError(f"cannot pad an empty image of size {h}x{w}")
    target_h, target_w = padded_side(h), padded_side(w)
    while x.shape[-2] < target_h or x.shape[-1] < target_w:
        cur_h, cur_w = x.shape[-2:]
        ph, pw = min(target_h - cur_h, cur_h - 1), min(target_w - cur_w, cur_w - 1)
        if (cur_h < target_h and cur_h == 1) or (cur_w < target_w and cur_w == 1):
            x = F.pad(x, (0, target_w - cur_w, 0, target_h - cur_h), mode="replicate")
        else:
            x = F.pad(x, (0, pw, 0, ph), mode="reflect")
    return x


def _axis_layout(extent: int, count: int, overlap: int) -> tuple[int, tuple[int, ...]]:
    """``count`` equal tiles (length a multiple of 8) covering ``extent`` (a multiple of 8) with
    overlaps of at least ``overlap`` (a multiple of 8); starts are multiples of 8."""
    if count == 1:
        return extent, (0,)
    length = min(extent, padded_side(math.ceil((extent + (count - 1) * overlap) / count)))
    span = extent - length
    starts = tuple((i * span // (count - 1)) // DOWNSCALE * DOWNSCALE for i in range(count))
    return length, starts


@dataclass(frozen=True)
class TilePlan:
    """How one image is run: whole, or as a grid of equal overlapping tiles, and how memory is allocated.

    Coordinates are in the image padded to multiples of 8 (``padded``); tiles that reach past
    the image's bottom or right edge are cut there and reflection-padded like the whole image.

    Attributes:
        height, width: the input size.
        padded: ``(H8, W8)``.
        tile: ``(th, tw)`` of every tile (equal to ``padded`` for a whole-image run).
        rows, cols: tile starts along each axis.
        overlap: the minimum overlap asked for (pixels).
        budget: bytes the run may use (None = unlimited).
        whole_estimate: estimated peak bytes of a whole-image run (in the chosen allocation mode).
        tile_estimate: estimated peak bytes of the tiled run (one tile + the blend buffers).
        heap: run with :func:`heap_allocation` (faster on CPU, needs ``HEAP_MEMORY_FACTOR`` x the memory).
    """

    height: int
    width: int
    padded: tuple[int, int]
    tile: tuple[int, int]
    rows: tuple[int, ...]
    cols: tuple[int, ...]
    overlap: int
    budget: int | None
    whole_estimate: int
    tile_estimate: int
    heap: bool = False
    notes: tuple[str, ...] = field(default=())

    @property
    def tiled(self) -> bool:
        return len(self.rows) * len(self.cols) > 1

    @property
    def num_tiles(self) -> int:
        return len(self.rows) * len(self.cols)

    @property
    def area(self) -> int:
        """Pixels the network runs on in total (tiles overlap)."""
        return self.num_tiles * self.tile[0] * self.tile[1]

    @property
    def estimate(self) -> int:
        """Estimated peak bytes of the chosen plan."""
        return self.tile_estimate if self.tiled else self.whole_estimate

    def tiles(self) -> list[tuple[int, int, int, int]]:
        """``(y0, x0, th, tw)`` of each tile, row by row."""
        return [(y, x, *self.tile) for y in self.rows for x in self.cols]

    def __str__(self) -> str:
        budget = "unlimited" if self.budget is None else format_bytes(self.budget)
        lines = [f"image {self.width}x{self.height} (padded {self.padded[1]}x{self.padded[0]}), "
                 f"memory available to this run {budget}",
                 f"  whole image: estimated peak {format_bytes(self.whole_estimate)}"
                 + ("" if self.tiled else " -> run whole")]
        if self.tiled:
            th, tw = self.tile
            lines.append(f"  tiles: {len(self.rows)} x {len(self.cols)} = {self.num_tiles} of {tw}x{th}, overlap >= "
                         f"{self.overlap} px, estimated peak {format_bytes(self.tile_estimate)}")
            lines.append(f"  tile rows at y = {list(self.rows)}, columns at x = {list(self.cols)}")
        lines.append("  allocation: " + ("heap (no page faults on reused activations)" if self.heap
                                         else "the C library's default"))
        lines.extend(f"  note: {n}" for n in self.notes)
        return "\n".join(lines)


def accumulator_bytes(h: int, w: int, defocus: bool) -> int:
    """Blend buffers of a tiled run: the float32 result (3 channels) and the defocus map (1)."""
    return 4 * h * w * (4 if defocus else 3)


def _best_grid(H8: int, W8: int, fits: Callable[[int, int], bool], overlap: int, min_side: int):
    """The grid (more than one tile) of least total area whose tiles fit: (th, rows, tw, cols) or None."""
    best = None
    for nh in range(1, H8 // DOWNSCALE + 1):
        th, rows = _axis_layout(H8, nh, overlap)
        if nh > 1 and th < min_side:
            break
        if not fits(th, min(W8, min_side)):
            continue
        for nw in range(1, W8 // DOWNSCALE + 1):
            tw, cols = _axis_layout(W8, nw, overlap)
            if nw > 1 and tw < min_side:
                break
            if nh * nw > 1 and fits(th, tw):
                cost = (nh * th * nw * tw, nh * nw)
                if best is None or cost < best[0]:
                    best = (cost, th, rows, tw, cols)
                break  # more columns only cost more area
    return None if best is None else best[1:]


def check_tile_size(tile: int | None, overlap: int) -> None:
    """Refuse a forced ``tile`` side (None: the planner's) or an ``overlap`` that cannot make tiles: both are
    rounded up to multiples of 8, and a tile must be larger than the overlap.

    Raises:
        ValueError: saying which, and why.
    """
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    if tile is None:
        return
    side, rounded = max(DOWNSCALE, padded_side(tile)), padded_side(overlap)
    if tile < 1 or side <= rounded:
        raise ValueError(f"a tile of {tile} px ({side} px on the network's grid of 8) is not larger than the "
                         f"overlap of {overlap} px ({rounded} px); a tile needs at least {rounded + DOWNSCALE} px")


def plan_tiles(h: int, w: int, budget: int | None, config: IFANConfig | None = None, *,
               memory: MemoryModel | None = None, overlap: int = DEFAULT_OVERLAP, tile: int | None = None,
               defocus: bool = False, host_accumulators: bool = False,
               heap_factor: float | None = None) -> TilePlan:
    """Choose between a whole-image run and the cheapest grid of tiles that fits ``budget``.

    Args:
        h, w: input size (>= 1 each).
        budget: bytes the run may add to the process (None = unlimited: whole image).
        config: the network's configuration (for the default memory model).
        memory: the memory model (default: :func:`memory_model` of ``config`` in float32).
        overlap: minimum overlap between neighbouring tiles, pixels (rounded up to a multiple of 8).
        tile: force square tiles of this side (rounded up to a multiple of 8) whatever the budget.
        defocus: the defocus map is wanted too (one more blend buffer).
        host_accumulators: blend buffers live elsewhere (host memory for a GPU run) and do not
            count against ``budget``.
        heap_factor: the heap allocation mode is available and needs this multiple of the
            forward's estimate (None: not available).

    Among grids whose tiles fit, the one with the least total tile area is chosen (so tiles are
    as large as needed, not as large as possible); each tile side is at least ``2 * overlap + 32``.
    With ``heap_factor``, the best plan in heap mode (forwards of at most ``HEAP_MAX_PIXELS``) is
    taken unless the best plan without it computes ``HEAP_SPEEDUP`` times fewer pixels.

    Raises:
        MemoryBudgetError: not even the smallest tile fits.

    Example:
        >>> plan = plan_tiles(4000, 6000, budget=2 * 2**30, config=IFANConfig(channels=16, iterations=8))
        >>> plan.tiled, plan.tile[0] % 8, plan.rows[0]
        (True, 0, 0)
    """
    if h < 1 or w < 1:
        raise ValueError(f"cannot plan an empty image of size {w}x{h}")
    if overlap < 0:
        raise ValueError(f"overlap must be >= 0, got {overlap}")
    memory = memory or memory_model(config or IFANConfig())
    overlap = padded_side(overlap)
    H8, W8 = padded_side(h), padded_side(w)
    acc = 0 if host_accumulators else accumulator_bytes(h, w, defocus)
    min_side = padded_side(2 * overlap + 32)

    def make(th, rows, tw, cols, heap: bool, notes=()) -> TilePlan:
        factor = heap_factor if heap else 1.0
        whole = int(factor * memory.estimate(H8, W8, defocus))
        tiled = len(rows) * len(cols) > 1
        est = int(factor * memory.estimate(th, tw, defocus)) + acc if tiled else whole
        return TilePlan(h, w, (H8, W8), (th, tw), rows, cols, overlap, budget, whole, est, heap, tuple(notes))

    def best_for(heap: bool) -> TilePlan | None:
        factor = heap_factor if heap else 1.0
        max_pixels = HEAP_MAX_PIXELS if heap else math.inf
        if H8 * W8 <= max_pixels and (budget is None or factor * memory.estimate(H8, W8, defocus) <= budget):
            return make(H8, (0,), W8, (0,), heap)

        def fits(th: int, tw: int) -> bool:
            return th * tw <= max_pixels and (budget is None or factor * memory.estimate(th, tw, defocus) + acc <= budget)

        grid = _best_grid(H8, W8, fits, overlap, min_side)
        return None if grid is None else make(*grid, heap=heap)

    if tile is not None:
        side = max(DOWNSCALE, padded_side(tile))
        if side <= overlap:
            raise ValueError(f"tile size {side} must exceed the overlap {overlap}")
        counts = [1 if ext <= side else math.ceil((ext - overlap) / (side - overlap)) for ext in (H8, W8)]
        (th, rows), (tw, cols) = (_axis_layout(ext, n, overlap) for ext, n in zip((H8, W8), counts))
        # _axis_layout gives the shortest equal tiles for that count, never longer than ``side``
        heap = heap_factor is not None and th * tw <= HEAP_MAX_PIXELS and (
            budget is None or make(th, rows, tw, cols, True).estimate <= budget)
        return make(th, rows, tw, cols, heap, ["tile size forced"])

    plain = best_for(False)
    fast = best_for(True) if heap_factor is not None else None
    if fast is not None and (plain is None or fast.area <= HEAP_SPEEDUP * plain.area):
        return fast
    if plain is None:
        need = memory.estimate(min(H8, min_side), min(W8, min_side), defocus) + acc
        raise MemoryBudgetError(
            f"{w}x{h} image: the memory budget {format_bytes(budget)} is too small; the smallest tiles "
            f"({min_side}x{min_side}) need about {format_bytes(need)}"
            + (f", {format_bytes(acc)} of it for the blend buffers" if acc else "")
        )
    return plain


def blend_weights(starts: tuple[int, ...], length: int, extent: int, margin: float = DEFAULT_MARGIN) -> Tensor:
    """1-D blending weights of equal tiles along one axis: ``(len(starts), length)``, float32.

    Inside the overlap of two neighbours the later tile's weight rises from 0 to 1 as a raised
    cosine (after ``margin`` of the overlap at 0) while the earlier one's falls; outside overlaps
    the weight is 1. The weights are normalised so that, at every position, they sum to 1 over
    the tiles covering it.
    """
    n = len(starts)
    pos = torch.arange(length, dtype=torch.float64)
    weights = torch.ones(n, length, dtype=torch.float64)

    def ramp(u: Tensor, width: int) -> Tensor:  # 0 -> 1 over ``width``, the first/last ``margin`` flat
        skip = margin * width
        core = max(width - 2 * skip, 1e-9)
        t = ((u + 0.5 - skip) / core).clamp(0, 1)
        return 0.5 - 0.5 * torch.cos(math.pi * t)

    for i in range(n):
        if i > 0:
            weights[i] *= ramp(pos, starts[i - 1] + length - starts[i])
        if i < n - 1:
            shift = starts[i + 1] - starts[i]
            inside = pos >= shift
            weights[i, inside] *= 1 - ramp(pos[inside] - shift, starts[i] + length - starts[i + 1])
    total = torch.zeros(max(extent, starts[-1] + length), dtype=torch.float64)
    for i, s in enumerate(starts):
        total[s:s + length] += weights[i]
    if (total[:extent] <= 0).any():
        raise RuntimeError("tile blending weights leave a gap; the overlap is too large for the tile size")
    for i, s in enumerate(starts):
        weights[i] /= total[s:s + length].clamp_min(1e-12)
    return weights.float()
