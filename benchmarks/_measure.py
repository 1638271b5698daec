"""Helpers shared by the benchmarks: peak-RSS measurement in child processes, timing, tables, JSON.

The facts the package owns are taken from it: the resident memory (``ifan.inference.memory``), PSNR
(``ifan.evaluate.metrics``) and the CPU's model and bf16 flags (``ifan.inference.runtime``).
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

RESULTS = Path(__file__).resolve().parent / "results"
SRC = Path(__file__).resolve().parents[1] / "src"


def rss_bytes() -> int:
    """Current resident set size of this process (Linux)."""
    from ifan.inference.memory import process_rss

    rss = process_rss()
    if rss is None:
        raise RuntimeError("the resident memory is unknown here (no /proc)")
    return rss


def psnr(a, b) -> float:
    """PSNR (dB, peak 1) of two ``(H, W, 3)`` arrays in [0, 1], by ifan's metric."""
    from ifan.evaluate.metrics import psnr as per_image_psnr
    from ifan.evaluate.metrics import to_nchw

    return float(per_image_psnr(to_nchw(a), to_nchw(b))[0])


def peak_rss_bytes() -> int:
    """Peak resident set size since the start or the last :func:`reset_peak_rss` (``VmHWM``)."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmHWM not found in /proc/self/status")


def reset_peak_rss() -> bool:
    """Reset ``VmHWM`` to the current RSS (Linux ``clear_refs``); False where not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def run_child(module_args: list[str], timeout: float | None = None, keep_stderr: bool = False) -> dict:
    """Run ``python benchmarks/<script> --child ...`` and parse the JSON it prints last
    (with ``keep_stderr``, the child's stderr is added under ``"stderr"``)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = str(SRC) + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, *module_args], capture_output=True, text=True, env=env, timeout=timeout)
    if proc.returncode != 0:
        raise RuntimeError(f"child {module_args} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    if keep_stderr:
        result["stderr"] = proc.stderr
    return result


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
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = RESULTS / name
    path.write_text(json.dumps(data, indent=2, default=str) + "\n")
    print(f"wrote {path}")
    return path
