"""Memory: the C library's heap, RAM probes, size parsing, the budget and the calibrated memory model.

:func:`memory_model` estimates the peak of one whole-image forward; :func:`memory_budget` says
how much a run may add to what the process uses now; the tile planner
(:mod:`ifan.inference.tiling`) compares the two. :func:`pixel_limit` says how large an image file a
run reads by default (what its memory holds beside the network). :func:`heap_allocation` makes CPU
runs faster by serving large blocks from glibc's heap while they last.
"""

from __future__ import annotations

import ctypes
import re
import sys
import threading
from contextlib import contextmanager
from dataclasses import dataclass

import torch

from ifan.models.ifan import IFANConfig, padded_side
from ifan.ram import available_ram, process_rss  # noqa: F401 - the RAM probes, here for the planner's callers

DEFAULT_BUDGET_FRACTION = 0.6  # of the memory available when no budget is given


class MemoryBudgetError(MemoryError):
    """Even the smallest tile does not fit the memory budget."""


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

    Example:
        >>> parse_size("4G"), parse_size("4GB"), format_bytes(parse_size("1.5K"))
        (4294967296, 4000000000, '1.50 KiB')
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


# Calibration (benchmarks/calibrate_memory.py; tables in docs/benchmarks.md): the peak RSS growth of
# one whole-image Deblurrer.run on CPU (lean filter path, float32, glibc's default allocation, after a
# small warm-up run), measured in fresh child processes for ch 8/16/32 at 256x256, 768x512, 1280x720 and
# 1920x1080. Per config the growth is linear in the padded pixel count: fitted slopes 202/395/773 B per
# pixel (NHWC) and 223/448/894 B (NCHW) for ch 8/16/32, fixed parts under 30 MiB. The constants below
# (set from a first, noisier calibration) keep ``_SAFETY * (fixed + (base + per_ch * ch) * pixels)``
# above every measured point: measured / estimated is at most 0.82. bf16 autocast (calibrate_memory.py
# --precision bf16, on a Zen 4 with native bf16) grows about half as much (378 and 791 B per pixel for
# ch 32 in the default and heap modes; measured / estimated at most 0.58): it reuses the float32 numbers.
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
        return int(self.fixed + per_pixel * padded_side(h) * padded_side(w))


def memory_model(config: IFANConfig, precision: torch.dtype | None = None, channels_last: bool = True,
                 device_type: str = "cpu") -> MemoryModel:
    """The calibrated :class:`MemoryModel` of a lean forward of ``config``.

    Args:
        config: the network's configuration (only ``channels`` matters to first order).
        precision: autocast dtype (None = float32); bf16 and fp16 get the float32 model, which
            over-estimates them (measured: about half, see the calibration notes above).
        channels_last: memory format of the activations.
        device_type: ``"cpu"`` or ``"cuda"`` (CUDA gets a larger safety factor).
    """
    base, per_ch = _PER_PIXEL[bool(channels_last)]
    per_pixel = base + per_ch * config.channels
    safety = _SAFETY * (_CUDA_SAFETY if device_type == "cuda" else 1.0)
    return MemoryModel(fixed=int(_FIXED_BYTES * safety), per_pixel=per_pixel * safety)


def memory_budget(device: torch.device, max_memory: int | None = None) -> int | None:
    """Bytes the next run on ``device`` may add to what is in use now (None = unknown: no limit).

    Args:
        device: where the run happens (CUDA: allocated memory; CPU: the process's RSS).
        max_memory: the peak the process may reach, in bytes; None: what is in use now plus
            :data:`DEFAULT_BUDGET_FRACTION` of what is available.
    """
    if device.type == "cuda":
        used = torch.cuda.memory_allocated(device)
        if max_memory is not None:
            return max_memory - used
        free, _ = torch.cuda.mem_get_info(device)
        return int(DEFAULT_BUDGET_FRACTION * free)
    rss = process_rss()
    if max_memory is not None:
        return max_memory - (rss or 0)
    avail = available_ram()
    return None if avail is None else int(DEFAULT_BUDGET_FRACTION * avail)


# Peak memory of deblurring a file, per pixel of the image, beyond one tile's forward: reading, the
# float image, the blend buffers, the result and its encoding. Measured with a tiny model under forced
# 768 px tiles (peak RSS of 3000x3000 minus 768x768 PNGs): 36 (8-bit) and 45 (16-bit) bytes per
# pixel, 112 and 115 with --defocus-map. The default --max-pixels is the memory of a run over this.
FILE_BYTES_PER_PIXEL = {False: 48, True: 120}  # with defocus maps -> bytes


def pixel_limit(device: torch.device, budget: int | None, defocus: bool) -> tuple[int, str] | None:
    """The largest image (pixels) whose file a run on ``device`` holds at :data:`FILE_BYTES_PER_PIXEL`
    (``defocus``: with a defocus map), and why (for the error); None where the memory sets no limit.

    Args:
        budget: the run's budget (:func:`memory_budget`) on a CPU; on a GPU, whose budget is its own
            memory, the image-sized buffers stay in host memory: the default budget of the RAM is used.
    """
    if device.type != "cpu":
        budget = memory_budget(torch.device("cpu"))
    if budget is None or budget <= 0:  # unknown, or spent: the plan says so
        return None
    per_pixel = FILE_BYTES_PER_PIXEL[defocus]
    return budget // per_pixel, (f"what the {format_bytes(budget)} of memory this run may use holds at "
                                 f"{per_pixel} bytes per pixel; --max-memory sets it")
