"""Where and in which precision the network runs: the device and precision policy.

Shared by inference (:class:`~ifan.inference.Deblurrer`), evaluation and training, so that a
precision name means the same everywhere:

* ``"fp32"``: float32 throughout (strict; what ``ifan evaluate`` uses by default).
* ``"auto"`` (the default of ``ifan deblur``, ``ifan serve``, ``ifan demo`` and ``Deblurrer``):
  bf16 autocast on CPUs with native bf16 (AVX512-BF16 or AMX), float32 on other CPUs, fp16
  autocast on CUDA. Measured on trained weights, bf16 stays more than 45 dB from float32 (a test
  guards it) and runs 1.3-2.6x faster where the CPU has it (``docs/benchmarks.md``).
* ``"bf16"``: bf16 autocast (on a CPU without native bf16 it is emulated and many times slower).
* ``"fp16"``: fp16 autocast (CUDA only).
"""

from __future__ import annotations

import re
import warnings
from contextlib import nullcontext
from pathlib import Path

import torch

PRECISIONS = frozenset({"fp32", "auto", "bf16", "fp16"})
DEFAULT_PRECISION = "auto"
DEVICE_HELP = "auto (CUDA if available), cpu, cuda or cuda:N"
_DEVICE_NAME = re.compile(r"auto|cpu|cuda(:\d+)?")
_BF16_FLAGS = ("avx512_bf16", "amx_bf16")


def cpu_has_native_bf16() -> bool:
    """Whether oneDNN runs bf16 convolutions natively on this CPU (AVX512-BF16 or AMX).

    Without it, bf16 convolutions are emulated and many times slower than float32.
    """
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):
        return False


def _cpuinfo() -> tuple[str, set[str]]:
    """The CPU's model name and flags from ``/proc/cpuinfo`` (empty where there is none)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        return "", set()
    fields = dict(line.split(":", 1) for line in text.split("\n\n", 1)[0].splitlines() if ":" in line)
    fields = {k.strip(): v.strip() for k, v in fields.items()}
    name = fields.get("model name", "")
    if "cpu family" in fields and "model" in fields:  # a hypervisor may hide the name: keep family/model
        name = f"{name} (family {fields['cpu family']}, model {fields['model']})".strip()
    return name, set(fields.get("flags", "").split())


def cpu_features() -> dict[str, object]:
    """What the CPU offers PyTorch: model, vector ISA level, bf16 flags, native bf16, threads.

    Example:
        >>> sorted(cpu_features())
        ['amx_bf16', 'avx512_bf16', 'capability', 'model', 'native_bf16', 'threads']
    """
    model, flags = _cpuinfo()
    try:
        capability = torch.backends.cpu.get_cpu_capability()
    except AttributeError:
        capability = "unknown"
    return {"model": model or "unknown", "capability": capability, **{f: f in flags for f in _BF16_FLAGS},
            "native_bf16": cpu_has_native_bf16(), "threads": torch.get_num_threads()}


def describe_cpu() -> str:
    """One line: the CPU model, its bf16 support and the threads PyTorch uses."""
    f = cpu_features()
    flags = ", ".join(name for name in _BF16_FLAGS if f[name]) or "no bf16 flags"
    return (f"{f['model']}, {f['capability']}, {flags}, native bf16 {'yes' if f['native_bf16'] else 'no'}, "
            f"{f['threads']} threads")


def check_device_name(name: str) -> str:
    """``name`` if it is one of :data:`DEVICE_HELP`'s forms.

    Raises:
        ValueError: any other name.
    """
    if not _DEVICE_NAME.fullmatch(name):
        raise ValueError(f"unknown device {name!r}; use {DEVICE_HELP}")
    return name


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


def check_precision(name: str) -> str:
    """``name`` if it is one of :data:`PRECISIONS` (see the module docstring).

    Raises:
        ValueError: any other name.
    """
    if name not in PRECISIONS:
        raise ValueError(f"unknown precision {name!r}; expected one of {sorted(PRECISIONS)}")
    return name


def resolve_precision(precision: str, device: torch.device) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device`` (None = plain float32); see the module docstring.

    Raises:
        ValueError: an unknown name, or fp16 on a CPU.
    """
    if check_precision(precision) == "fp32":
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


def autocast(device: torch.device, dtype: torch.dtype | None):
    """A context that runs in ``dtype`` autocast on ``device`` (a no-op for None = float32)."""
    return nullcontext() if dtype is None else torch.autocast(device.type, dtype=dtype)


def describe_precision(precision: str, dtype: torch.dtype | None) -> str:
    """``"auto (torch.bfloat16 autocast)"``-style rendering of a resolved precision."""
    return f"{precision} ({'float32' if dtype is None else f'{dtype} autocast'})"
