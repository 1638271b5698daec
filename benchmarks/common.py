"""What the benchmarks share: the models and the test photo they run, the unfold reference of IAC,
child processes, peak-RSS measurement, the machine's description, tables and JSON.

The facts the package owns are taken from it: the resident memory (``ifan.inference.memory``), the
IAC filter layout (``ifan.ops.iac``), the CPU's model and bf16 flags (``ifan.inference.runtime``);
PSNR is ``ifan.evaluate.metrics.image_psnr``.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
SRC = ROOT / "src"


# --- what is measured -------------------------------------------------------------------------


def build_model(name: str):
    """The model a benchmark runs, in eval mode: a named configuration with random weights (seed 0),
    or trained weights from a file (a bundled model's name is a configuration here)."""
    import torch

    from ifan import create_model
    from ifan.models.hub import load_model
    from ifan.models.zoo import MODELS

    if name in MODELS:
        torch.manual_seed(0)
        return create_model(name).eval()
    return load_model(name)


def describe_model(name: str) -> str:
    """What :func:`build_model` runs, in words."""
    from ifan.models.zoo import MODELS

    return f"{name} (random init, seed 0)" if name in MODELS else f"{name} (trained weights)"


def model_tag(name: str) -> str:
    """How a model is named in a results file: the configuration's name, or the weights file's stem."""
    from ifan.models.zoo import MODELS

    return name if name in MODELS else Path(name).stem


def test_photo(h: int, w: int):
    """A real photo (scikit-image ``coffee``), resized to h x w and blurred (sigma 2 px) to look
    defocused: float32 ``(h, w, 3)`` in [0, 1]."""
    import numpy as np
    from scipy.ndimage import gaussian_filter
    from skimage import data
    from skimage.transform import resize

    img = resize(data.coffee().astype(np.float32) / 255, (h, w), order=3, anti_aliasing=True)
    img = np.stack([gaussian_filter(img[:, :, c], 2.0) for c in range(3)], axis=2)
    return np.clip(img, 0, 1).astype(np.float32)


def _unfold_pass(x, kernel, k, dim):
    """One spatially varying 1-D pass by unfolding: pad (replicate), unfold k taps, multiply, sum."""
    import torch.nn.functional as F

    b, c, h, w = x.shape
    p = k // 2
    pad = (0, 0, p, p) if dim == 2 else (p, p, 0, 0)
    patches = F.pad(x, pad, mode="replicate").unfold(dim, k, 1)  # (B, C, H, W, k)
    return (patches * kernel.view(b, c, k, h, w).permute(0, 1, 3, 4, 2)).sum(-1)


def iac_unfold(x, filters, n, k, split=False):
    """IAC (separable form, leaky ReLU 0.1 after every iteration) computed the way the official code
    computes it: by unfolding the input (``k`` copies of it). The filter slices of each iteration are
    taken by basic indexing (``ifan.ops.iac.iteration_rows``), or with ``split`` as ``torch.split``
    views (``ifan.ops.iac.split_filters``), as ``ifan.ops.iac.iac`` takes them."""
    import torch.nn.functional as F

    from ifan.ops.iac import iteration_rows, split_filters

    c = x.shape[1]
    if split:
        k1s, k2s, biases = split_filters(filters, n, c, k)
    for i in range(n):
        if split:
            k1, k2, bias = k1s[i], k2s[i], biases[i]
        else:
            k1, k2, bias = (filters[:, start:start + size] for start, size in iteration_rows(i, n, c, k))
        x = F.leaky_relu(_unfold_pass(_unfold_pass(x, k1, k, 2), k2, k, 3) + bias, 0.1)
    return x


# --- processes and memory ---------------------------------------------------------------------


def child_env() -> dict[str, str]:
    """The environment of a child process: this checkout's benchmarks and package importable."""
    paths = [str(ROOT), str(SRC), os.environ.get("PYTHONPATH", "")]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in paths if p))


def run_child(module: str, args: list[str], timeout: float | None = None, keep_stderr: bool = False) -> dict:
    """Run ``python -m MODULE ARGS...`` and parse the JSON it prints last (with ``keep_stderr``, the
    child's stderr is added under ``"stderr"``)."""
    proc = subprocess.run([sys.executable, "-m", module, *args], capture_output=True, text=True, env=child_env(),
                          timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"child {module} {args} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if keep_stderr:
        result["stderr"] = proc.stderr
    return result


def rss_bytes() -> int:
    """Current resident set size of this process (Linux)."""
    from ifan.inference.memory import process_rss

    rss = process_rss()
    if rss is None:
        raise RuntimeError("the resident memory is unknown here (no /proc)")
    return rss


def peak_rss_bytes(pid: int | str = "self") -> int:
    """Peak resident set size of this process (or of process ``pid``) since its start or the last
    :func:`reset_peak_rss` (``VmHWM``)."""
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError(f"VmHWM not found in /proc/{pid}/status")


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux ``clear_refs``); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


# --- the machine, tables, results -------------------------------------------------------------


def lscpu_model() -> str:
    """The CPU as lscpu names it, with its family and model (which a hypervisor keeps) and bf16 flags."""
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
    except (OSError, subprocess.CalledProcessError):
        return platform.processor() or "unknown (no lscpu)"
    fields = {k.strip(): v.strip() for k, v in (line.split(":", 1) for line in out.splitlines() if ":" in line)}
    bf16 = [f for f in ("avx512_bf16", "amx_bf16") if f in fields.get("Flags", "").split()]
    return (f"{fields.get('Model name', '?')} (family {fields.get('CPU family', '?')}, model "
            f"{fields.get('Model', '?')}; {', '.join(bf16) or 'no native bf16'})")


def machine() -> dict:
    """A short description of the machine the numbers come from: the CPU's model and bf16 flags
    (``ifan.inference.runtime.cpu_features``), memory, versions and the load."""
    import torch

    from ifan.inference.runtime import cpu_features

    try:
        with open("/proc/meminfo") as f:
            mem = int(f.readline().split()[1]) * 1024
    except OSError:
        mem = 0
    return {
        "date": _dt.datetime.now().isoformat(timespec="seconds"),
        "cpus": os.cpu_count(),
        "ram_gib": round(mem / 2**30, 1),
        "python": platform.python_version(),
        "torch": torch.__version__,
        **{f"cpu_{k}": v for k, v in cpu_features().items()},
        "load_avg_1min": os.getloadavg()[0],
    }


def median(values: list[float]) -> float:
    return statistics.median(values) if values else float("nan")


def print_table(headers: list[str], rows: list[list]) -> str:
    """Print (and return) a Markdown table."""
    cells = [[str(c) for c in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    lines = ["| " + " | ".join(h.ljust(w) for h, w in zip(headers, widths)) + " |",
             "|" + "|".join("-" * (w + 2) for w in widths) + "|"]
    lines += ["| " + " | ".join(c.ljust(w) for c, w in zip(r, widths)) + " |" for r in cells]
    text = "\n".join(lines)
    print(text, flush=True)
    return text


def write_json(name: str, data: dict) -> Path:
    """Write ``data`` to ``benchmarks/results/NAME`` (atomically: a run killed while writing leaves the
    committed results whole)."""
    from ifan.fileutil import atomic_write_bytes

    path = atomic_write_bytes(RESULTS / name, (json.dumps(data, indent=2, default=str) + "\n").encode())
    print(f"wrote {path}")
    return path
