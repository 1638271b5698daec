"""Deblurring images of any size: device and precision policy, a memory plan, tiling with a smooth blend.

:class:`Deblurrer` is the one object users need::

    from ifan.inference import Deblurrer
    deblurrer = Deblurrer.from_pretrained("ifan-lite")     # or Deblurrer(model)
    sharp = deblurrer.deblur(photo)                          # numpy / PIL / tensor in, same kind out
    defocus = deblurrer.defocus_map(photo)

What happens to one image:

1. The image (``H x W``, any size >= 1 pixel) is turned into a ``(1, 3, H, W)`` float32 tensor
   in [0, 1] (grey is repeated over RGB and averaged back; an alpha channel bypasses the network).
2. :meth:`Deblurrer.plan` estimates the peak memory of running the whole image at once
   (:class:`MemoryModel`, always the lean filter path :meth:`IFAN.lean_iac`) and compares it
   with the budget. If it fits, the image is padded to a multiple of 8 by reflection, run,
   and cropped back (what :func:`ifan.models.padding.run_any_size` does).
3. Otherwise :func:`plan_tiles` splits the padded image into the fewest, smallest equal tiles
   that fit, overlapping by at least ``overlap`` pixels, with every tile offset a multiple of
   8 (so each tile sees the same 1/8 sampling grid as the whole image). Each tile is run on
   its own and blended into the result with separable raised-cosine weights that sum to one.

The defocus map is the network's disparity output (``(B, 1, H/8, W/8)``), upsampled
bilinearly to the input size and multiplied by 8: the signed horizontal disparity between
the dual-pixel views the network was trained to predict, in pixels of the input image. Its
magnitude grows with the blur (0 = in focus); its sign tells on which side of the focal
plane a point lies (the convention of the training data's left/right views). Without
dual-pixel supervision (a model trained on images alone) it is only a relative blur cue.
"""

from __future__ import annotations

import ctypes
import math
import os
import re
import sys
import threading
import warnings
from collections.abc import Callable
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor

from ifan.models.ifan import IFAN, IFANConfig
from ifan.models.padding import MULTIPLE, pad_to_multiple
from ifan.models.zoo import DEFAULT_MODEL

PRECISIONS = frozenset({"fp32", "auto", "bf16", "fp16"})
DEFAULT_PRECISION = "fp32"  # "auto" (bf16 on CPUs with native bf16) once measured on trained weights
DEFAULT_OVERLAP = 128  # pixels; chosen from benchmarks/bench_tiling.py sweep (docs/benchmarks.md)
DEFAULT_MARGIN = 0.25  # fraction of each overlap given zero weight at a tile's edge
DEFAULT_BUDGET_FRACTION = 0.6  # of the memory available when no budget is given

ProgressCallback = Callable[[int, int], None]


class MemoryBudgetError(MemoryError):
    """Even the smallest tile does not fit the memory budget."""


# ----------------------------------------------------------------------------------------------
# Device and precision policy
# ----------------------------------------------------------------------------------------------


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 convolutions natively on this CPU (AVX512-BF16 or AMX).

    Without it, bf16 convolutions are emulated and many times slower than float32.
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def cpu_features() -> dict[str, object]:
    """What the CPU offers PyTorch: vector ISA level, native bf16, threads."""
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except AttributeError:
        capability = "unknown"
    return {"capability": capability, "native_bf16": cpu_has_native_bf16(), "threads": torch.get_num_threads()}


def resolve_device(device: str | torch.device | None = "auto") -> torch.device:
    """``"auto"``/None -> CUDA when available, else CPU; otherwise ``torch.device(device)``.

    Raises:
        ValueError: CUDA is asked for but not available.
    """
    if device is None or str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but PyTorch sees no CUDA device (CPU build or no GPU)")
    return dev


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (None = plain float32).

    * ``"fp32"``: float32 everywhere (strict).
    * ``"auto"``: bf16 autocast on CPUs with native bf16, float32 on other CPUs; fp16 autocast on CUDA.
    * ``"bf16"``: bf16 autocast (on a CPU without native bf16 this is emulated and very slow: a warning says so).
    * ``"fp16"``: fp16 autocast (CUDA only).
    """
    if precision not in PRECISIONS:
        raise ValueError(f"unknown precision {precision!r}; expected one of {sorted(PRECISIONS)}")
    if precision == "fp32":
        return None
    if device.type == "cuda":
        return torch.bfloat16 if precision == "bf16" else torch.float16
    if precision == "fp16":
        raise ValueError("precision 'fp16' needs a CUDA device; on CPU use 'fp32', 'bf16' or 'auto'")
    if precision == "auto":
        return torch.bfloat16 if cpu_has_native_bf16() else None
    if not cpu_has_native_bf16():
        warnings.warn("this CPU has no native bf16 (no AVX512-BF16/AMX): bf16 convolutions are emulated and "
                      "much slower than float32", RuntimeWarning, stacklevel=3)
    return torch.bfloat16


# ----------------------------------------------------------------------------------------------
# Memory
# ----------------------------------------------------------------------------------------------

# glibc serves blocks above its mmap threshold (at most 32 MiB) with a fresh mmap each time and
# unmaps them on free, so every large activation is page-faulted in again: measured here, one 1280x720
# forward of the default model took 1.1 million minor faults and 3.5 s of kernel time (of 15 s CPU).
# While a Deblurrer runs, large blocks come from the heap instead and the heap is not trimmed during a
# forward, so freed activations are reused without faults; it is trimmed after each tile and at the
# end (when glibc's settings are restored), so that the fragmentation of one forward does not add up.
_M_TRIM_THRESHOLD, _M_MMAP_MAX = -1, -4
_GLIBC_DEFAULT_TRIM, _GLIBC_DEFAULT_MMAP_MAX = 128 * 1024, 65536
_heap_lock = threading.Lock()
_heap_users = 0


def _glibc():
    try:
        libc = ctypes.CDLL(None)
        libc.gnu_get_libc_version  # noqa: B018 - raises AttributeError off glibc
        return libc
    except (OSError, AttributeError):
        return None


_LIBC = _glibc() if sys.platform.startswith("linux") else None


def trim_heap() -> None:
    """Give the free pages of glibc's heap back to the system (``malloc_trim``); a no-op off glibc."""
    if _LIBC is not None:
        _LIBC.malloc_trim(0)


@contextmanager
def heap_allocation(enabled: bool = True):
    """Serve large CPU allocations from glibc's heap (no mmap, no trim) inside the block; trim and
    restore glibc's defaults when the last user leaves. A no-op off glibc or when not ``enabled``.

    This is process-wide: other threads allocate the same way meanwhile. glibc's dynamic mmap
    threshold stays fixed at its current value afterwards (a side effect of ``mallopt``).
    """
    global _heap_users
    if not enabled or _LIBC is None:
        yield
        return
    with _heap_lock:
        _heap_users += 1
        if _heap_users == 1:
            _LIBC.mallopt(_M_MMAP_MAX, 0)
            _LIBC.mallopt(_M_TRIM_THRESHOLD, 2**31 - 1)
    try:
        yield
    finally:
        with _heap_lock:
            _heap_users -= 1
            if _heap_users == 0:
                _LIBC.mallopt(_M_MMAP_MAX, _GLIBC_DEFAULT_MMAP_MAX)
                _LIBC.mallopt(_M_TRIM_THRESHOLD, _GLIBC_DEFAULT_TRIM)
                _LIBC.malloc_trim(0)

_SIZE_UNITS = {"": 1, "b": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40,
               "kib": 2**10, "mib": 2**20, "gib": 2**30, "tib": 2**40,
               "kb": 10**3, "mb": 10**6, "gb": 10**9, "tb": 10**12}


def parse_size(text: str | int) -> int:
    """Parse a memory size: ``"4G"``/``"4GiB"`` (binary), ``"4GB"`` (decimal), ``"512M"``, bytes.

    Raises:
        ValueError: not a positive size.
    """
    if isinstance(text, int):
        value = text
    else:
        match = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", str(text))
        unit = match.group(2).lower() if match else None
        if not match or unit not in _SIZE_UNITS:
            raise ValueError(f"cannot read {text!r} as a memory size; use e.g. 4G (GiB), 4GB (10^9 bytes), 512M")
        value = int(float(match.group(1)) * _SIZE_UNITS[unit])
    if value <= 0:
        raise ValueError(f"a memory size must be positive, got {text!r}")
    return value


def format_bytes(n: float) -> str:
    """``3.2 GiB``-style rendering."""
    for unit, scale in (("GiB", 2**30), ("MiB", 2**20), ("KiB", 2**10)):
        if abs(n) >= scale:
            return f"{n / scale:.2f} {unit}"
    return f"{int(n)} B"


def process_rss() -> int | None:
    """Resident memory of this process in bytes (Linux ``/proc``), or None where unknown."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def available_ram() -> int | None:
    """``MemAvailable`` (Linux), else total physical memory, else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError, AttributeError):
        return None


# Calibration (benchmarks/calibrate_memory.py; tables in docs/benchmarks.md): the peak RSS growth of
# one whole-image Deblurrer.run on CPU (lean filter path, float32, glibc's default allocation, after a
# small warm-up run), measured in fresh child processes for ch 8/16/32 at 256x256, 768x512, 1280x720 and
# 1920x1080. Per config the growth is linear in the padded pixel count: fitted slopes 202/395/773 B per
# pixel (NHWC) and 223/448/894 B (NCHW) for ch 8/16/32, fixed parts under 30 MiB. The constants below
# (set from a first, noisier calibration) keep ``_SAFETY * (fixed + (base + per_ch * ch) * pixels)``
# above every measured point: measured / estimated is at most 0.82. bf16 (not measurable here) reuses
# the float32 numbers, which over-estimates it.
_PER_PIXEL = {True: (130.0, 21.0), False: (40.0, 29.0)}  # channels_last -> (base, per_ch) bytes/pixel
_FIXED_BYTES = 64 * 2**20
_DEFOCUS_BYTES_PER_PIXEL = 8.0  # the upsampled disparity and its scaled copy (float32)
_SAFETY = 1.15
# The heap allocation mode (heap_allocation) keeps freed pages resident during a forward, so its peak is
# higher and grows faster than linearly: 1.0-1.9 x the default mode's measured peak (1.88 x for ch 32 at
# 1920x1080; calibrate_memory.py --cpu-heap 1). Plans in that mode reserve HEAP_MEMORY_FACTOR x the
# estimate above: measured / reserved is at most 0.88. The mode made the forward 1.26-1.41 x faster
# (bench_inference.py, fp32 vs fp32_mmap), so a heap plan is preferred unless the plan without it runs
# on HEAP_SPEEDUP x fewer pixels.
HEAP_MEMORY_FACTOR = 1.75
HEAP_SPEEDUP = 1.25
# Calibrated up to 1920x1080 and checked on 1600x2064 tiles (bench_large.py); larger forwards in heap
# mode are avoided (the planner tiles instead) since its overhead grows with the size.
HEAP_MAX_PIXELS = 2**22
_CUDA_SAFETY = 1.3  # not calibrated on a GPU: more headroom for cuDNN workspaces


@dataclass(frozen=True)
class MemoryModel:
    """Peak memory of one whole-image lean forward: ``fixed + per_pixel * H8 * W8`` bytes.

    ``H8, W8`` are the sides padded to a multiple of 8. ``per_pixel`` holds the full-resolution
    activations alive at once (about 5 feature maps of ``ch`` channels in the reconstructor's last
    level plus the skip connections) and the input and output images.
    """

    fixed: int
    per_pixel: float
    defocus_per_pixel: float = _DEFOCUS_BYTES_PER_PIXEL

    def estimate(self, h: int, w: int, defocus: bool = False) -> int:
        """Estimated peak bytes of a forward on an ``h x w`` input (padded to multiples of 8),
        with ``defocus`` including the full-size defocus map."""
        per_pixel = self.per_pixel + (self.defocus_per_pixel if defocus else 0.0)
        return int(self.fixed + per_pixel * _ceil8(h) * _ceil8(w))


def memory_model(config: IFANConfig, precision: torch.dtype | None = None, channels_last: bool = True,
                 device_type: str = "cpu") -> MemoryModel:
    """The calibrated :class:`MemoryModel` of a lean forward of ``config``.

    Args:
        config: the network's configuration (only ``channels`` matters to first order).
        precision: autocast dtype (None = float32).
        channels_last: memory format of the activations.
        device_type: ``"cpu"`` or ``"cuda"`` (CUDA gets a larger safety factor).
    """
    base, per_ch = _PER_PIXEL[bool(channels_last)]
    per_pixel = base + per_ch * config.channels
    safety = _SAFETY * (_CUDA_SAFETY if device_type == "cuda" else 1.0)
    return MemoryModel(fixed=int(_FIXED_BYTES * safety), per_pixel=per_pixel * safety)


# ----------------------------------------------------------------------------------------------
# Tiling
# ----------------------------------------------------------------------------------------------


def _ceil8(n: int) -> int:
    return -(-n // MULTIPLE) * MULTIPLE


def _axis_layout(extent: int, count: int, overlap: int) -> tuple[int, tuple[int, ...]]:
    """``count`` equal tiles (length a multiple of 8) covering ``extent`` (a multiple of 8) with
    overlaps of at least ``overlap`` (a multiple of 8); starts are multiples of 8."""
    if count == 1:
        return extent, (0,)
    length = min(extent, _ceil8(math.ceil((extent + (count - 1) * overlap) / count)))
    span = extent - length
    starts = tuple((i * span // (count - 1)) // MULTIPLE * MULTIPLE for i in range(count))
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
    for nh in range(1, H8 // MULTIPLE + 1):
        th, rows = _axis_layout(H8, nh, overlap)
        if nh > 1 and th < min_side:
            break
        if not fits(th, min(W8, min_side)):
            continue
        for nw in range(1, W8 // MULTIPLE + 1):
            tw, cols = _axis_layout(W8, nw, overlap)
            if nw > 1 and tw < min_side:
                break
            if nh * nw > 1 and fits(th, tw):
                cost = (nh * th * nw * tw, nh * nw)
                if best is None or cost < best[0]:
                    best = (cost, th, rows, tw, cols)
                break  # more columns only cost more area
    return None if best is None else best[1:]


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
    overlap = _ceil8(overlap)
    H8, W8 = _ceil8(h), _ceil8(w)
    acc = 0 if host_accumulators else accumulator_bytes(h, w, defocus)
    min_side = _ceil8(2 * overlap + 32)

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
        side = max(MULTIPLE, _ceil8(tile))
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


# ----------------------------------------------------------------------------------------------
# Input and output kinds
# ----------------------------------------------------------------------------------------------


@dataclass
class _Prepared:
    """An input made into ``(B, 3, H, W)`` float32 in [0, 1] and how to give the result back."""

    rgb: Tensor
    alpha: Tensor | None
    restore: Callable[[Tensor, Tensor | None], object]
    restore_map: Callable[[Tensor], object]


def _prepare_numpy(x: np.ndarray) -> _Prepared:
    if x.ndim not in (2, 3) or (x.ndim == 3 and x.shape[2] not in (1, 2, 3, 4)):
        raise ValueError(f"expected an HWC array with 1-4 channels (or HW grey), got shape {x.shape}")
    if x.shape[0] < 1 or x.shape[1] < 1:
        raise ValueError(f"empty image of shape {x.shape}")
    dtype, two_d = x.dtype, x.ndim == 2
    if dtype == np.uint8:
        scale = 255.0
    elif dtype == np.uint16:
        scale = 65535.0
    elif np.issubdtype(dtype, np.floating):
        scale = 1.0
    else:
        raise ValueError(f"unsupported array dtype {dtype}; use uint8, uint16 or float in [0, 1]")
    arr = x[:, :, None] if two_d else x
    c = arr.shape[2]
    grey = c in (1, 2)
    arr = np.ascontiguousarray(arr)
    data = torch.from_numpy(arr if arr.flags.writeable else arr.copy())
    values = data.float() if scale == 1.0 else data.float().div_(scale)
    color = values[:, :, :1].expand(-1, -1, 3) if grey else values[:, :, :3]
    alpha = values[:, :, -1] if c in (2, 4) else None
    rgb = color.permute(2, 0, 1).unsqueeze(0)  # channels-last strides, no copy for RGB float32

    def restore(image: Tensor, _alpha: Tensor | None) -> np.ndarray:
        hwc = image[0].permute(1, 2, 0)
        if grey:
            hwc = hwc.mean(dim=2, keepdim=True)
        if alpha is not None:
            hwc = torch.cat([hwc, alpha[:, :, None]], dim=2)
        out = hwc.clamp_(0, 1) if scale == 1.0 else hwc.clamp(0, 1).mul_(scale).round_()
        out_np = out.numpy().astype(dtype, copy=False)
        return np.ascontiguousarray(out_np[:, :, 0] if two_d else out_np)

    def restore_map(m: Tensor) -> np.ndarray:
        return m[0, 0].numpy()

    return _Prepared(rgb, alpha, restore, restore_map)


def _prepare_pil(img) -> _Prepared:
    from PIL import Image as PILImage

    mode = img.mode
    if mode in ("I;16", "I;16L", "I;16B", "I;16N", "I"):
        arr = np.clip(np.asarray(img, dtype=np.int64), 0, 65535).astype(np.uint16)
    elif mode == "F":
        arr = np.asarray(img, dtype=np.float32)
    else:
        if mode not in ("L", "LA", "RGB", "RGBA"):
            keep_alpha = mode in ("PA", "La", "RGBa") or "transparency" in img.info
            img = img.convert("RGBA" if keep_alpha else ("L" if mode == "1" else "RGB"))
        arr = np.asarray(img)
    inner = _prepare_numpy(arr)
    out_mode, info = img.mode, dict(img.info)

    def restore(image: Tensor, alpha: Tensor | None):
        out_arr = inner.restore(image, alpha)
        if out_mode == "I":
            out = PILImage.fromarray(out_arr.astype(np.int32), mode="I")
        elif out_mode == "F":
            out = PILImage.fromarray(out_arr.astype(np.float32), mode="F")
        else:
            out = PILImage.fromarray(out_arr)
        out.info.update(info)
        return out

    def restore_map(m: Tensor):
        return PILImage.fromarray(m[0, 0].numpy().astype(np.float32), mode="F")

    return _Prepared(inner.rgb, inner.alpha, restore, restore_map)


def _prepare_tensor(x: Tensor) -> _Prepared:
    if x.dim() not in (3, 4) or x.shape[-3] not in (1, 2, 3, 4):
        raise ValueError(f"expected a (C, H, W) or (B, C, H, W) tensor with C in 1-4, got {tuple(x.shape)}")
    if x.shape[-1] < 1 or x.shape[-2] < 1:
        raise ValueError(f"empty image of shape {tuple(x.shape)}")
    batched, dtype, device = x.dim() == 4, x.dtype, x.device
    if dtype == torch.uint8:
        scale = 255.0
    elif x.is_floating_point():
        scale = 1.0
    else:
        raise ValueError(f"unsupported tensor dtype {dtype}; use float in [0, 1] or uint8")
    values = (x if batched else x.unsqueeze(0)).float() / scale
    c = values.shape[1]
    grey = c in (1, 2)
    rgb = values[:, :1].expand(-1, 3, -1, -1) if grey else values[:, :3]
    alpha = values[:, -1:] if c in (2, 4) else None

    def restore(image: Tensor, _alpha: Tensor | None) -> Tensor:
        out = image.clamp(0, 1).to(device)
        if grey:
            out = out.mean(dim=1, keepdim=True)
        if alpha is not None:
            out = torch.cat([out, alpha.to(device)], dim=1)
        out = (out * 255).round_().to(dtype) if scale != 1.0 else out.to(dtype)
        return out if batched else out[0]

    def restore_map(m: Tensor) -> Tensor:
        m = m.to(device)
        return m if batched else m[0]

    return _Prepared(rgb, alpha, restore, restore_map)


def _prepare(x) -> _Prepared:
    if isinstance(x, Tensor):
        return _prepare_tensor(x)
    if isinstance(x, np.ndarray):
        return _prepare_numpy(x)
    try:
        from PIL import Image as PILImage
    except ImportError:  # pragma: no cover - pillow is a dependency
        PILImage = None
    if PILImage is not None and isinstance(x, PILImage.Image):
        return _prepare_pil(x)
    raise TypeError(f"expected a numpy array, a PIL image or a torch tensor, got {type(x).__name__}")


# ----------------------------------------------------------------------------------------------
# Deblurrer
# ----------------------------------------------------------------------------------------------


@dataclass
class DeblurResult:
    """Outputs of :meth:`Deblurrer.run` for one ``(1, 3, H, W)`` image.

    Attributes:
        image: deblurred, ``(1, 3, H, W)`` float32, not clipped, on the input's device.
        defocus: signed defocus disparity in input pixels, ``(1, 1, H, W)``, or None.
        plan: how the image was run.
    """

    image: Tensor
    defocus: Tensor | None
    plan: TilePlan


class Deblurrer:
    """Deblur images of any size with an IFAN model, on CPU or GPU, within a memory budget.

    Args:
        model: an :class:`~ifan.models.ifan.IFAN` (moved to ``device``, put in eval mode and, with
            ``channels_last``, converted in place).
        device: ``"auto"`` (CUDA if available), ``"cpu"``, ``"cuda"``, ``"cuda:1"``, ...
        precision: ``"fp32"`` (default, strict float32), ``"auto"`` (bf16 autocast on CPUs with native
            bf16, float32 on others; fp16 autocast on CUDA), ``"bf16"`` or ``"fp16"`` (CUDA).
        channels_last: NHWC activations (faster with oneDNN and cuDNN); default True.
        compile: run the network through ``torch.compile`` (pays off only after many calls of the
            same shape: the first call of each new shape compiles for tens of seconds on a CPU).
        max_memory: peak memory the process may reach while deblurring (bytes or ``"4G"``), CPU RSS
            or CUDA allocated memory; default: what is in use now plus 60 % of what is available.
        overlap: minimum tile overlap in pixels.
        tile_size: force square tiles of this side (for tests and experiments).
        blend_margin: fraction of each overlap, at a tile's edge, that gets no weight in the blend.
        cpu_heap: on CPU with glibc, serve large allocations from the heap while running
            (:func:`heap_allocation`: no page faults on reused activations; process-wide while
            it lasts).

    Example:
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
        if model.config.dual_pixel_input:
            raise ValueError("the dual-pixel variant needs the right and left views; Deblurrer takes single images "
                             "(call the model directly with right=..., left=...)")
        self.device = resolve_device(device)
        self.precision = precision
        self.autocast_dtype = resolve_precision(precision, self.device)
        self.channels_last = channels_last
        self.model = model.to(self.device).eval()
        if channels_last:
            self.model = self.model.to(memory_format=torch.channels_last)
        self.max_memory = None if max_memory is None else parse_size(max_memory)
        self.overlap = overlap
        self.tile_size = tile_size
        if not 0 <= blend_margin < 0.5:
            raise ValueError(f"blend_margin must be in [0, 0.5), got {blend_margin}")
        self.blend_margin = blend_margin
        self.cpu_heap = cpu_heap and self.device.type == "cpu" and _LIBC is not None
        self._forward = torch.compile(self.model, dynamic=False) if compile else self.model
        self.compiled = compile
        self.memory = memory_model(model.config, self.autocast_dtype, channels_last, self.device.type)

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
        from ifan.models.zoo import load_model

        return cls(load_model(name_or_path, device="cpu"), device=device, **kwargs)

    @property
    def config(self) -> IFANConfig:
        return self.model.config

    def describe(self) -> str:
        """One line: model, device, precision and memory format."""
        cfg = self.config
        dtype = "float32" if self.autocast_dtype is None else f"{self.autocast_dtype} autocast"
        parts = [f"ch={cfg.channels} N={cfg.iterations}", f"device={self.device}", f"precision={self.precision} ({dtype})",
                 "channels_last" if self.channels_last else "NCHW", "lean IAC"]
        if self.compiled:
            parts.append("torch.compile")
        if self.cpu_heap:
            parts.append("heap allocation")
        if self.device.type == "cpu":
            feats = cpu_features()
            parts.append(f"cpu={feats['capability']} native_bf16={feats['native_bf16']} threads={feats['threads']}")
        return ", ".join(parts)

    # -- memory ---------------------------------------------------------------------------------

    def budget(self) -> int | None:
        """Bytes the next run may add to what is in use now (None = unknown: no limit)."""
        if self.device.type == "cuda":
            used = torch.cuda.memory_allocated(self.device)
            if self.max_memory is not None:
                return self.max_memory - used
            free, _ = torch.cuda.mem_get_info(self.device)
            return int(DEFAULT_BUDGET_FRACTION * free)
        rss = process_rss()
        if self.max_memory is not None:
            return self.max_memory - (rss or 0)
        avail = available_ram()
        return None if avail is None else int(DEFAULT_BUDGET_FRACTION * avail)

    def plan(self, h: int, w: int, defocus: bool = False) -> TilePlan:
        """The plan for an ``h x w`` image under the current budget (see :func:`plan_tiles`).

        Raises:
            MemoryBudgetError: the budget is used up already, or even the smallest tiles do not fit.
        """
        budget = self.budget()
        if budget is not None and budget <= 0:
            raise MemoryBudgetError(f"the memory budget {format_bytes(self.max_memory or 0)} is too small: this "
                                    f"process already uses {format_bytes((self.max_memory or 0) - budget)}")
        return plan_tiles(h, w, budget, memory=self.memory, overlap=self.overlap, tile=self.tile_size,
                          defocus=defocus, host_accumulators=self.device.type == "cuda",
                          heap_factor=HEAP_MEMORY_FACTOR if self.cpu_heap else None)

    # -- running --------------------------------------------------------------------------------

    def _autocast(self):
        if self.autocast_dtype is None:
            return nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _network(self, x: Tensor, defocus: bool) -> tuple[Tensor, Tensor | None]:
        """Run the padded ``(1, 3, h, w)`` input: (image float32, defocus at full size or None)."""
        x = x.to(self.device, torch.float32)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        with self._autocast():
            out = self._forward(x)
        image = out.image.float()
        disparity = None
        if defocus:
            disparity = F.interpolate(out.disparity.float(), size=x.shape[-2:], mode="bilinear", align_corners=False)
            disparity = disparity * MULTIPLE
        return image, disparity

    @torch.no_grad()
    def run(self, rgb: Tensor, defocus: bool = False, plan: TilePlan | None = None,
            progress: ProgressCallback | None = None) -> DeblurResult:
        """Deblur one ``(1, 3, H, W)`` float image in [0, 1] (any memory layout, any size >= 1).

        Args:
            rgb: the image, on any device (the result comes back there).
            defocus: also compute the defocus map.
            plan: a plan from :meth:`plan` (default: made now).
            progress: called as ``progress(done, total)`` after each tile.
        """
        if rgb.dim() != 4 or rgb.shape[:2] != (1, 3):
            raise ValueError(f"expected a (1, 3, H, W) image, got {tuple(rgb.shape)}")
        h, w = rgb.shape[-2:]
        plan = plan or self.plan(h, w, defocus)
        if (plan.height, plan.width) != (h, w):
            raise ValueError(f"the plan is for {plan.width}x{plan.height}, the image is {w}x{h}")
        with heap_allocation(plan.heap and self.cpu_heap):
            return self._run(rgb, defocus, plan, progress)

    def _run(self, rgb: Tensor, defocus: bool, plan: TilePlan, progress: ProgressCallback | None) -> DeblurResult:
        h, w = rgb.shape[-2:]
        home = rgb.device
        if not plan.tiled:
            image, disp = self._network(pad_to_multiple(rgb.float())[0], defocus)
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
                crop = rgb[..., y0:y1, x0:x1].float()
                image, disp = self._network(pad_to_multiple(crop)[0], defocus)
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

    def deblur(self, x, *, return_defocus: bool = False, plan: TilePlan | None = None,
               progress: ProgressCallback | None = None):
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

        Returns:
            The deblurred image, same kind, shape and dtype (clipped to the input's range), and
            with ``return_defocus`` a pair ``(image, defocus map)``.
        """
        prepared = _prepare(x)
        images, maps = [], []
        for b in range(prepared.rgb.shape[0]):
            res = self.run(prepared.rgb[b:b + 1], defocus=return_defocus, plan=plan, progress=progress)
            images.append(res.image)
            maps.append(res.defocus)
        image = images[0] if len(images) == 1 else torch.cat(images)
        result = prepared.restore(image, prepared.alpha)
        if not return_defocus:
            return result
        return result, prepared.restore_map(maps[0] if len(maps) == 1 else torch.cat(maps))

    def defocus_map(self, x, *, plan: TilePlan | None = None, progress: ProgressCallback | None = None):
        """The signed defocus disparity of ``x`` in input pixels (see the module docstring).

        Returns:
            numpy ``(H, W)`` float32 for an array, a PIL ``"F"`` image for a PIL image, a float32
            ``(B, 1, H, W)`` (or ``(1, H, W)``) tensor for a tensor.
        """
        prepared = _prepare(x)
        maps = [self.run(prepared.rgb[b:b + 1], defocus=True, plan=plan, progress=progress).defocus
                for b in range(prepared.rgb.shape[0])]
        return prepared.restore_map(maps[0] if len(maps) == 1 else torch.cat(maps))


# ----------------------------------------------------------------------------------------------
# Defocus map rendering
# ----------------------------------------------------------------------------------------------

# A sequential colour ramp (dark blue -> purple -> orange -> light yellow), anchors chosen for
# increasing lightness; in focus = dark, strongly defocused = bright.
_RAMP = np.array([[0.02, 0.02, 0.10], [0.25, 0.05, 0.45], [0.62, 0.15, 0.45], [0.92, 0.42, 0.20],
                  [0.99, 0.80, 0.35], [0.99, 0.99, 0.80]], dtype=np.float32)


def colorize_defocus(defocus: np.ndarray, vmax: float | None = None) -> tuple[np.ndarray, float]:
    """Render ``|defocus|`` with a sequential colour ramp: ``(H, W, 3)`` float32 in [0, 1].

    Args:
        defocus: ``(H, W)`` signed disparity in pixels.
        vmax: the magnitude mapped to the brightest colour (default: the 99th percentile, at least 1e-6).

    Returns:
        The colour image and the ``vmax`` used.
    """
    mag = np.abs(np.asarray(defocus, dtype=np.float32))
    if vmax is None:
        vmax = float(np.percentile(mag, 99)) if mag.size else 1.0
    vmax = max(vmax, 1e-6)
    t = np.clip(mag / vmax, 0, 1) * (len(_RAMP) - 1)
    i = np.minimum(t.astype(np.int64), len(_RAMP) - 2)
    f = (t - i)[..., None]
    return (_RAMP[i] * (1 - f) + _RAMP[i + 1] * f).astype(np.float32), vmax


def encode_defocus_16bit(defocus: np.ndarray) -> np.ndarray:
    """Fixed-point uint16 of the signed disparity: ``value = 32768 + 256 * d`` (``d`` in +-128 px,
    1/256 px steps); read back with ``d = (value - 32768) / 256``."""
    return np.clip(np.round(32768 + 256 * np.asarray(defocus, dtype=np.float64)), 0, 65535).astype(np.uint16)


def save_defocus(path: str | os.PathLike, defocus: np.ndarray, kind: str = "color") -> Path:
    """Write a defocus map atomically: ``"color"`` (8-bit PNG), ``"npy"`` (float32) or ``"png16"``
    (16-bit grey PNG, see :func:`encode_defocus_16bit`)."""
    from ifan.fileutil import atomic_write
    from ifan.io import write_image

    if kind == "color":
        rgb, _ = colorize_defocus(defocus)
        return write_image(path, rgb, bit_depth=8)
    if kind == "npy":
        def write(tmp: str) -> None:
            with open(tmp, "wb") as f:
                np.save(f, np.asarray(defocus, dtype=np.float32))

        return atomic_write(path, write)
    if kind == "png16":
        grey = encode_defocus_16bit(defocus).astype(np.float32) / 65535.0
        return write_image(path, grey, bit_depth=16, grayscale=True)
    raise ValueError(f"unknown defocus map kind {kind!r}; expected color, npy or png16")
