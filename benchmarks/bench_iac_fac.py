"""IAC against FAC at equal receptive field: filter memory, FLOPs, time, peak memory, effective receptive field.

    python benchmarks/bench_iac_fac.py                      # every part; or: python -m benchmarks.bench_iac_fac
    python benchmarks/bench_iac_fac.py --parts erf --trained arm=runs/x/model.safetensors   # one part again

Cases: nominal receptive fields R = 9, 13, ..., 41 pixels at the filters' scale (1/8 of the image):
IAC with 1-D filters of Fs = 3 and N = (R - 1) / 2 iterations against FAC with k = R (a dense
R x R filter per pixel and channel), inside ``ifan-lite`` (width 16: c4 = 64 channels at 1/8, the
model of the trained comparison in docs/iac.md), at 1280 x 720 (160 x 90 cells at 1/8).

Parts (``--parts``; the JSON keeps the parts not rerun):

* ``analytic``: channels and bytes of the whole filter tensor (what training holds, and what the
  reblurring loss reads), for c4 = 64 and the paper's c4 = 128; multiply-adds (MACs) of the filter
  head plus the layer per 1/8 cell (``ifan.models.ifan.adaptive_macs``) and at 1280 x 720.
* ``flops``: the same MACs counted while the layer runs (lean path, the one inference takes), by a
  ``TorchDispatchMode`` that counts each convolution's MACs (``out elements * in/groups * kh * kw``)
  and one MAC per multiplied element of ``mul``/``addcmul``; the convolutions are checked against
  torch's ``FlopCounterMode`` (which counts matmuls and convolutions only, 2 FLOPs per MAC).
* ``time``: median wall time over interleaved rounds of (a) the lean layer (head + adaptive op,
  per piece), (b) the layer alone given its whole filter tensor, where that tensor fits under
  ``--max-filter-gib``, and (c) the whole model's lean forward, in fp32 and bf16 (autocast, where
  the CPU has native bf16), 2 threads, ``no_grad``; the load average is recorded.
* ``memory``: peak RSS growth (``VmHWM``, each case in a fresh child process) of the lean layer and
  of the whole model's forward at 1280 x 720, fp32 and bf16.
* ``erf``: the effective receptive field: the gradient of one output cell of the layer with respect
  to its input, summed over channels; the half-side (1/8-scale pixels) of the smallest square
  around that cell holding 95 % of the gradient's absolute mass (at most the nominal (R - 1) / 2). Random filters: taps i.i.d.
  |N(0, 1)| normalised to sum 1 per pixel and pass ("averaging", a blur) and i.i.d. N(0, 1/taps)
  ("zero-mean"), biases zero. Trained filters: the filters a trained model predicts for the
  bundled photo ``examples/photos/flower.jpg`` (real defocus), the median over a grid of
  cells (``--trained NAME=WEIGHTS``; default the shipped ifan-lite).

Writes ``benchmarks/results/iac_fac.json`` and ``docs/images/iac_fac.png`` (memory, time and
effective receptive field against the nominal one) and prints the tables.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
JSON_PATH = ROOT / "benchmarks" / "results" / "iac_fac.json"
FIGURE = ROOT / "docs" / "images" / "iac_fac.png"
FIELDS = (9, 13, 17, 21, 25, 29, 33, 37, 41)
HEIGHT, WIDTH = 720, 1280
PARTS = ("analytic", "flops", "time", "memory", "erf")


def configs(r: int, channels: int = 16):
    """The IAC and FAC configs of nominal receptive field ``r`` at 1/8 (ifan-lite's width by default)."""
    from ifan import IFANConfig

    n = (r - 1) // 2
    iac = IFANConfig(channels=channels, iterations=n, filter_size=3, reblur_iterations=n)
    fac = IFANConfig(channels=channels, iterations=n, reblur_iterations=n, adaptive_layer="fac", fac_size=r)
    return {"iac": iac, "fac": fac}


def machine() -> dict:
    import torch

    from ifan.inference.runtime import cpu_features

    return {"date": dt.datetime.now().isoformat(timespec="seconds"), "python": platform.python_version(),
            "torch": torch.__version__, "cpus": os.cpu_count(),
            **{f"cpu_{k}": v for k, v in cpu_features().items()}, "load_avg_1min": os.getloadavg()[0]}


def precisions() -> list[str]:
    from ifan.inference.runtime import cpu_features

    return ["fp32", "bf16"] if cpu_features().get("native_bf16") else ["fp32"]


def _dtype(name: str):
    import torch

    return torch.bfloat16 if name == "bf16" else None


# --- analytic ---------------------------------------------------------------------------------


def analytic() -> list[dict]:
    from ifan.models.ifan import adaptive_macs

    cells = (HEIGHT // 8) * (WIDTH // 8)
    rows = []
    for r in FIELDS:
        for channels in (16, 32):
            for layer, cfg in configs(r, channels).items():
                rows.append({"R": r, "layer": layer, "c4": cfg.feature_channels, "N": cfg.iterations if layer == "iac" else None,
                             "k": cfg.fac_size if layer == "fac" else cfg.filter_size,
                             "filter_channels": cfg.filter_channels,
                             "filter_bytes_fp32": cfg.filter_channels * cells * 4,
                             "macs_per_cell": adaptive_macs(cfg), "gmacs_1280x720": adaptive_macs(cfg) * cells / 1e9})
    return rows


# --- flops ------------------------------------------------------------------------------------


def count_macs(fn) -> dict:
    """MACs of ``fn()``: convolutions from their shapes, elementwise multiplies one per output element;
    and torch's FlopCounterMode total (matmul/convolution FLOPs) for the check."""
    import torch
    from torch.utils._python_dispatch import TorchDispatchMode
    from torch.utils.flop_counter import FlopCounterMode

    aten = torch.ops.aten
    counts = {"conv": 0, "elementwise": 0}

    class Counter(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            packet = func.overloadpacket
            if packet in (aten.convolution, aten._convolution, aten.mkldnn_convolution):
                w = args[1]
                counts["conv"] += out.numel() * w.shape[1] * w.shape[2] * w.shape[3]
            elif packet in (aten.mul, aten.mul_, aten.addcmul, aten.addcmul_):
                counts["elementwise"] += out.numel()
            return out

    with torch.no_grad():
        flops = FlopCounterMode(display=False)
        with flops:
            fn()
        with Counter():
            fn()
    return {**counts, "flop_counter_flops": flops.get_total_flops()}


def flops() -> list[dict]:
    import torch

    from ifan.models.ifan import IFAN, adaptive_macs

    h8, w8 = 12, 10  # any size: MACs per cell do not depend on it
    rows = []
    for r in FIELDS:
        for layer, cfg in configs(r).items():
            torch.manual_seed(0)
            model = IFAN(cfg).eval()
            x = torch.rand(1, cfg.feature_channels, h8, w8)
            feats = torch.rand(1, cfg.feature_channels, h8, w8)
            counted = count_macs(lambda: model.adapt(x, feats))
            cells = h8 * w8
            rows.append({"R": r, "layer": layer, "analytic_macs_per_cell": adaptive_macs(cfg),
                         "counted_macs_per_cell": (counted["conv"] + counted["elementwise"]) / cells,
                         "counted_conv_macs_per_cell": counted["conv"] / cells,
                         "counted_elementwise_macs_per_cell": counted["elementwise"] / cells,
                         "flop_counter_conv_macs_per_cell": counted["flop_counter_flops"] / 2 / cells})
    return rows


# --- time -------------------------------------------------------------------------------------


def _cases(r: int, layer: str, max_filter_bytes: float, prec: str = "fp32"):
    """``(name, callable)`` pairs timed for one configuration (random weights; run under ``no_grad`` and
    the precision's autocast). The layer on its whole filter tensor gets that tensor in ``prec``."""
    import torch

    from ifan.models.ifan import IFAN

    cfg = configs(r)[layer]
    torch.manual_seed(0)
    model = IFAN(cfg).eval().to(memory_format=torch.channels_last)
    c4, h8, w8 = cfg.feature_channels, HEIGHT // 8, WIDTH // 8
    x = torch.rand(1, c4, h8, w8).contiguous(memory_format=torch.channels_last)
    feats = torch.rand(1, c4, h8, w8).contiguous(memory_format=torch.channels_last)
    image = torch.rand(1, 3, HEIGHT, WIDTH).contiguous(memory_format=torch.channels_last)
    cases = [("layer_lean", lambda: model.adapt(x, feats)), ("model", lambda: model(image))]
    if cfg.filter_channels * h8 * w8 * 4 <= max_filter_bytes:
        dtype = torch.bfloat16 if prec == "bf16" else torch.float32
        with torch.no_grad():
            filters = model.filter_head(feats if layer == "iac" else feats.contiguous()).to(dtype)
        x_p = x.to(dtype)
        op = model.iac if layer == "iac" else model.fac
        cases.append(("layer_given_filters", lambda: op(x_p, filters)))
    return cases


def timing(rounds: int, threads: int, max_filter_gib: float) -> dict:
    import torch

    from ifan.inference.runtime import autocast

    torch.set_num_threads(threads)
    cpu = torch.device("cpu")
    jobs = {}
    for r in FIELDS:
        for layer in ("iac", "fac"):
            for prec in precisions():
                for name, fn in _cases(r, layer, max_filter_gib * 2**30, prec):
                    jobs[(r, layer, name, prec)] = fn
    samples: dict[tuple, list[float]] = {key: [] for key in jobs}
    loads = [os.getloadavg()[0]]
    for i in range(rounds + 1):  # round 0 warms up (oneDNN primitives, allocator)
        for key, fn in jobs.items():
            with torch.no_grad(), autocast(cpu, _dtype(key[3])):
                t = time.perf_counter()
                fn()
                if i:
                    samples[key].append(time.perf_counter() - t)
        loads.append(os.getloadavg()[0])
        print(f"time: round {i}/{rounds} done (load {loads[-1]:.1f})", flush=True)
    rows = [{"R": k[0], "layer": k[1], "case": k[2], "precision": k[3], "median_s": statistics.median(v),
             "samples_s": v} for k, v in samples.items()]
    return {"rounds": rounds, "threads": threads, "load_avg_1min": loads, "rows": rows}


# --- memory (child processes) -----------------------------------------------------------------


def _peak_rss() -> int:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    raise RuntimeError("VmHWM missing from /proc/self/status")


def _reset_peak() -> None:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")


def memory_child(r: int, layer: str, prec: str, case: str, threads: int) -> dict:
    import gc

    import torch

    from ifan.inference.memory import process_rss, trim_heap
    from ifan.inference.runtime import autocast

    torch.set_num_threads(threads)
    fn = dict(_cases(r, layer, 0))[case]
    with torch.no_grad(), autocast(torch.device("cpu"), _dtype(prec)):
        gc.collect()
        trim_heap()
        _reset_peak()
        before = process_rss()
        fn()
        peak = _peak_rss()
    return {"R": r, "layer": layer, "precision": prec, "case": case, "rss_before": before, "peak_rss": peak,
            "growth": peak - before}


def memory(threads: int) -> list[dict]:
    rows = []
    for r in FIELDS:
        for layer in ("iac", "fac"):
            for prec in precisions():
                for case in ("layer_lean", "model"):
                    cmd = [sys.executable, str(Path(__file__).resolve()), "--child", "--child-case",
                           json.dumps([r, layer, prec, case]), "--threads", str(threads)]
                    proc = subprocess.run(cmd, capture_output=True, text=True)
                    if proc.returncode:
                        raise RuntimeError(f"memory child {r} {layer} {prec} {case} failed:\n{proc.stderr[-2000:]}")
                    rows.append(json.loads(proc.stdout.strip().splitlines()[-1]))
                    print(f"memory: R {r} {layer} {prec} {case}: {rows[-1]['growth'] / 2**20:.0f} MiB", flush=True)
    return rows


# --- effective receptive field ----------------------------------------------------------------


def erf_radius(grad, cy: int, cx: int, mass: float = 0.95) -> float:
    """Half-side of the square around ``(cy, cx)`` holding ``mass`` of ``|grad|`` (``(H, W)``), interpolated
    linearly between whole squares: a layer of nominal receptive field R has all its mass within ``(R - 1) / 2``."""
    import torch

    g = grad.abs().double()
    h, w = g.shape
    yy, xx = torch.meshgrid(torch.arange(h, dtype=torch.float64), torch.arange(w, dtype=torch.float64),
                            indexing="ij")
    ring = torch.maximum((yy - cy).abs(), (xx - cx).abs()).long().flatten()
    inside = torch.cumsum(torch.zeros(int(ring.max()) + 1, dtype=torch.float64).index_add_(0, ring, g.flatten()), 0)
    inside = inside / inside[-1]  # mass within half-side 0, 1, 2, ...
    r = int(torch.searchsorted(inside, torch.tensor(mass, dtype=torch.float64)))
    if r == 0:
        return 0.0
    return (r - 1) + float((mass - inside[r - 1]) / (inside[r] - inside[r - 1]))  # linear between squares


def random_filters(layer: str, cfg, c: int, h: int, w: int, kind: str, gen):
    """Random filters for ``layer`` on ``c`` channels: ``averaging`` (|N(0,1)| normalised per pass) or
    ``zero-mean`` (N(0, 1/taps)); IAC biases zero."""
    import torch

    def taps(count: int):
        t = torch.randn(1, c, count, h, w, generator=gen, dtype=torch.float64)
        if kind == "averaging":
            t = t.abs()
            return t / t.sum(2, keepdim=True)
        return t / count ** 0.5

    if layer == "fac":
        return taps(cfg.fac_size ** 2)
    n, k = cfg.iterations, cfg.filter_size
    parts = []
    for _ in range(n):  # kernel block i: kernel1 (c*k: index ch*k + tap), kernel2
        parts += [taps(k).flatten(1, 2), taps(k).flatten(1, 2)]
    parts.append(torch.zeros(1, n * c, h, w, dtype=torch.float64))
    return torch.cat(parts, dim=1)


def _layer_erf(layer: str, cfg, x, filters, cells) -> list[float]:
    """95 % radius of the layer's gradient at each output cell in ``cells`` (float64)."""
    import torch

    from ifan.ops import fac, iac

    radii = []
    for cy, cx in cells:
        xg = x.detach().clone().requires_grad_()
        out = iac(xg, filters, cfg.iterations, cfg.filter_size, act_last=True, form=cfg.iac_form) \
            if layer == "iac" else fac(xg, filters)
        out[0, :, cy, cx].sum().backward()
        radii.append(erf_radius(xg.grad[0].abs().sum(0), cy, cx))
    return radii


def erf(trained: dict[str, str]) -> dict:
    import torch

    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    size, channels = 96, 16
    centre = [(size // 2, size // 2)]
    random_rows = []
    for r in FIELDS:
        for layer, cfg in configs(r).items():
            for kind in ("averaging", "zero-mean"):
                x = torch.rand(1, channels, size, size, generator=gen, dtype=torch.float64)
                filters = random_filters(layer, cfg, channels, size, size, kind, gen)
                radius = _layer_erf(layer, cfg, x, filters, centre)[0]
                random_rows.append({"R": r, "layer": layer, "filters": kind, "radius95": radius,
                                    "nominal_half_width": (r - 1) / 2})
            print(f"erf: R {r} {layer} done", flush=True)
    return {"random": random_rows, "trained": [trained_erf(name, path) for name, path in trained.items()]}


def trained_erf(name: str, weights: str) -> dict:
    """The 95 % radius of a trained model's adaptive layer on the filters it predicts for a real photo."""
    import torch
    import torch.nn.functional as F

    from ifan.io import read_image
    from ifan.models.hub import load_model

    model = load_model(weights).double()
    cfg = model.config
    photo = ROOT / "examples" / "photos" / "flower.jpg"
    rgb = torch.from_numpy(read_image(photo).rgb).permute(2, 0, 1)[None].double()
    rgb = F.interpolate(rgb, size=(384, 576), mode="area")  # 48 x 72 cells at 1/8
    with torch.no_grad():
        *_, f_c = model.feature_extractor(rgb)
        encoded, disparity = model.estimate_disparity(rgb)
        filters = model.filter_head(model.filter_features(encoded, disparity))
    if cfg.adaptive_layer == "fac":
        filters = filters.unflatten(1, (cfg.feature_channels, cfg.fac_size ** 2))
    h8, w8 = f_c.shape[-2:]
    cells = [(y, x) for y in range(12, h8 - 11, 8) for x in range(12, w8 - 11, 8)]
    radii = _layer_erf(cfg.adaptive_layer, cfg, f_c, filters, cells)
    print(f"erf: trained {name}: median radius {statistics.median(radii):.2f} over {len(radii)} cells", flush=True)
    return {"name": name, "weights": str(weights), "layer": cfg.adaptive_layer, "R": cfg.receptive_field,
            "iac_form": cfg.iac_form if cfg.adaptive_layer == "iac" else None, "photo": photo.name,
            "cells": len(cells), "radius95_median": statistics.median(radii), "radius95_mean": statistics.mean(radii),
            "radius95_min": min(radii), "radius95_max": max(radii)}


# --- tables and figure ------------------------------------------------------------------------


def tables(data: dict) -> str:
    lines = []
    if "analytic" in data:
        lines += ["| R (1/8 px) | IAC N | IAC filters @1280x720 (c4 64 / 128) | FAC filters (c4 64 / 128) "
                  "| IAC GMACs (c4 64) | FAC GMACs (c4 64) |", "|---|---|---|---|---|---|"]
        by = {(a["R"], a["layer"], a["c4"]): a for a in data["analytic"]}
        for r in FIELDS:
            i64, i128, f64, f128 = by[(r, "iac", 64)], by[(r, "iac", 128)], by[(r, "fac", 64)], by[(r, "fac", 128)]
            lines.append(f"| {r} | {i64['N']} | {i64['filter_bytes_fp32'] / 2**20:.0f} / {i128['filter_bytes_fp32'] / 2**20:.0f} MiB "
                         f"| {f64['filter_bytes_fp32'] / 2**30:.2f} / {f128['filter_bytes_fp32'] / 2**30:.2f} GiB "
                         f"| {i64['gmacs_1280x720']:.2f} | {f64['gmacs_1280x720']:.2f} |")
    if "flops" in data:
        lines += ["", "| R | layer | MACs/cell analytic | counted (conv + elementwise) | FlopCounterMode conv MACs |",
                  "|---|---|---|---|---|"]
        for f in data["flops"]:
            lines.append(f"| {f['R']} | {f['layer']} | {f['analytic_macs_per_cell']:,} | {f['counted_macs_per_cell']:,.0f} "
                         f"({f['counted_conv_macs_per_cell']:,.0f} + {f['counted_elementwise_macs_per_cell']:,.0f}) "
                         f"| {f['flop_counter_conv_macs_per_cell']:,.0f} |")
    if "time" in data:
        t = {(x["R"], x["layer"], x["case"], x["precision"]): x["median_s"] for x in data["time"]["rows"]}
        mem = {(m["R"], m["layer"], m["case"], m["precision"]): m["growth"] for m in data.get("memory", [])}
        for prec in sorted({k[3] for k in t}, reverse=True):
            lines += ["", f"{prec}, 1280 x 720, median s (peak RSS growth): | R | IAC layer (lean) | FAC layer (lean) "
                      "| IAC layer, filters given | FAC layer, filters given | IAC model | FAC model |",
                      "|---|---|---|---|---|---|---|"]
            for r in FIELDS:
                def cell(layer, case):
                    if (r, layer, case, prec) not in t:
                        return "-"
                    m = mem.get((r, layer, case, prec))
                    return f"{t[(r, layer, case, prec)]:.3f}" + (f" ({m / 2**20:.0f} MiB)" if m is not None else "")
                lines.append(f"| {r} | {cell('iac', 'layer_lean')} | {cell('fac', 'layer_lean')} "
                             f"| {cell('iac', 'layer_given_filters')} | {cell('fac', 'layer_given_filters')} "
                             f"| {cell('iac', 'model')} | {cell('fac', 'model')} |")
    if "erf" in data:
        e = {(x["R"], x["layer"], x["filters"]): x["radius95"] for x in data["erf"]["random"]}
        lines += ["", "| R | half-width (R-1)/2 | IAC 95% half-side, averaging / zero-mean | FAC, averaging / zero-mean |",
                  "|---|---|---|---|"]
        for r in FIELDS:
            lines.append(f"| {r} | {(r - 1) / 2:g} | {e[(r, 'iac', 'averaging')]:.2f} / {e[(r, 'iac', 'zero-mean')]:.2f} "
                         f"| {e[(r, 'fac', 'averaging')]:.2f} / {e[(r, 'fac', 'zero-mean')]:.2f} |")
        for tr in data["erf"]["trained"]:
            lines.append(f"trained {tr['name']} ({tr['layer']}, R {tr['R']}): 95% half-side median "
                         f"{tr['radius95_median']:.2f} (range {tr['radius95_min']:.2f}-{tr['radius95_max']:.2f}) "
                         f"over {tr['cells']} cells of {tr['photo']}")
    return "\n".join(lines)


def figure(data: dict, path: Path) -> None:
    """Three panels against R: filter-tensor memory (log), whole-model time, effective radius."""
    import numpy as np
    from PIL import Image, ImageDraw

    from ifan.fileutil import atomic_write

    colours = {"IAC": (31, 119, 180), "FAC": (214, 39, 40), "IAC bf16": (120, 170, 220), "FAC bf16": (240, 140, 140),
               "half-width": (120, 120, 120), "IAC trained": (31, 119, 180), "FAC trained": (214, 39, 40)}
    panels = []
    series_sets = []
    if "analytic" in data:
        s = {name: [(a["R"], a["filter_bytes_fp32"] / 2**20) for a in data["analytic"] if a["layer"] == layer and a["c4"] == 64]
             for name, layer in (("IAC", "iac"), ("FAC", "fac"))}
        series_sets.append(("filter tensor, MiB (fp32, c4 64, 1280x720; log)", s, True))
    if "time" in data:
        s = {}
        for prec in ("fp32", "bf16"):
            for name, layer in (("IAC", "iac"), ("FAC", "fac")):
                pts = [(x["R"], x["median_s"]) for x in data["time"]["rows"]
                       if x["layer"] == layer and x["case"] == "model" and x["precision"] == prec]
                if pts:
                    s[name if prec == "fp32" else f"{name} bf16"] = sorted(pts)
        series_sets.append(("whole model at 1280x720, s (fp32; bf16 light)", s, False))
    if "erf" in data:
        s = {"half-width": [(r, (r - 1) / 2) for r in FIELDS]}
        s.update({name: [(x["R"], x["radius95"]) for x in data["erf"]["random"]
                         if x["layer"] == layer and x["filters"] == "averaging"]
                  for name, layer in (("IAC", "iac"), ("FAC", "fac"))})
        marks = [(("IAC trained" if t["layer"] == "iac" else "FAC trained"), t["R"], t["radius95_median"])
                 for t in data["erf"]["trained"]]
        series_sets.append(("95% gradient half-side (random averaging filters; rings: trained)", s, False, marks))
    for entry in series_sets:
        title, series, log_y = entry[:3]
        marks = entry[3] if len(entry) > 3 else []
        w, h, ml, mr, mt, mb = 420, 300, 56, 12, 40, 30
        img = Image.new("RGB", (w, h), "white")
        d = ImageDraw.Draw(img)
        ys = [y for pts in series.values() for _, y in pts] + [m[2] for m in marks]
        tf = (lambda v: np.log10(max(v, 1e-9))) if log_y else (lambda v: v)
        lo, hi = (np.floor(tf(min(ys))), np.ceil(tf(max(ys)))) if log_y else (0.0, 1.05 * max(ys))
        xlo, xhi = min(FIELDS) - 2, max(FIELDS) + 2

        def px(x, y):
            return ml + (w - ml - mr) * (x - xlo) / (xhi - xlo), h - mb - (h - mb - mt) * (tf(y) - lo) / (hi - lo)

        d.rectangle([ml, mt, w - mr, h - mb], outline=(0, 0, 0))
        for r in FIELDS:
            gx = px(r, ys[0])[0]
            d.line([gx, h - mb, gx, h - mb + 4], fill=(0, 0, 0))
            d.text((gx - 6, h - mb + 6), str(r), fill=(0, 0, 0))
        ticks = int(hi - lo) if log_y else 4
        for j in range(ticks + 1):
            v = lo + (hi - lo) * j / ticks
            gy = h - mb - (h - mb - mt) * j / ticks
            d.line([ml - 4, gy, w - mr, gy], fill=(225, 225, 225))
            d.text((2, gy - 6), f"{10 ** v:g}" if log_y else f"{v:.3g}", fill=(0, 0, 0))
        d.text((ml, 4), title, fill=(0, 0, 0))
        d.text((w // 2 - 60, h - 14), "nominal receptive field R (1/8 px)", fill=(0, 0, 0))
        lx = ml + 4
        for name, pts in series.items():
            pts = [px(x, y) for x, y in sorted(pts)]
            d.line(pts, fill=colours[name], width=2)
            for p in pts:
                d.ellipse([p[0] - 2, p[1] - 2, p[0] + 2, p[1] + 2], fill=colours[name])
            d.text((lx, 20), name, fill=colours[name])
            lx += 10 + d.textlength(name)
        for name, x, y in marks:
            p = px(x, y)
            d.ellipse([p[0] - 5, p[1] - 5, p[0] + 5, p[1] + 5], outline=colours[name], width=2)
        panels.append(np.asarray(img))
    if not panels:
        return
    gap = np.full((panels[0].shape[0], 6, 3), 255, np.uint8)
    row = panels[0]
    for p in panels[1:]:
        row = np.concatenate([row, gap, p], axis=1)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Image.fromarray(row).save(tmp, format="PNG"))


# --- command line -----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--parts", nargs="+", choices=PARTS, default=list(PARTS))
    parser.add_argument("--rounds", type=int, default=3, help="timed rounds (after one warm-up round)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--max-filter-gib", type=float, default=0.6,
                        help="time the layer on its whole filter tensor only where that fits (fp32)")
    parser.add_argument("--trained", action="append", default=[], metavar="NAME=WEIGHTS",
                        help="a trained model whose filters' effective receptive field to measure (repeatable; "
                             "default: the shipped ifan-lite)")
    parser.add_argument("--json", type=Path, default=JSON_PATH)
    parser.add_argument("--figure", type=Path, default=FIGURE)
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(memory_child(*json.loads(args.child_case), threads=args.threads)))
        return

    data = json.loads(args.json.read_text()) if args.json.is_file() else {}
    data["machine"] = machine()
    trained = dict(item.split("=", 1) for item in args.trained) or {"ifan-lite (shipped)": "ifan-lite"}
    for part in args.parts:
        start = time.perf_counter()
        if part == "analytic":
            data["analytic"] = analytic()
        elif part == "flops":
            data["flops"] = flops()
        elif part == "time":
            data["time"] = timing(args.rounds, args.threads, args.max_filter_gib)
        elif part == "memory":
            data["memory"] = memory(args.threads)
        else:
            data["erf"] = erf(trained)
        data.setdefault("part_seconds", {})[part] = time.perf_counter() - start
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(data, indent=1) + "\n")  # after every part: a stopped run keeps the rest
    print(tables(data))
    figure(data, args.figure)
    print(f"wrote {args.json} and {args.figure} ({data['machine']['cpu_model'] if 'cpu_model' in data['machine'] else ''})")


if __name__ == "__main__":
    main()
