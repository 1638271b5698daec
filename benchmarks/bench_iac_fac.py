"""IAC against FAC at equal receptive field: filter memory, FLOPs, time, peak memory, effective receptive field.

    python -m benchmarks.bench_iac_fac                      # every part (python benchmarks/bench_iac_fac.py too)
    python -m benchmarks.bench_iac_fac --parts erf --trained arm=runs/x/model.safetensors   # one part again

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
import json
import os
import statistics
import sys
import time

if __name__ == "__main__" and not __package__:
    # run as a file (python benchmarks/bench_iac_fac.py, the form issue 23 names): run again as the
    # module, the house's form, with the repository root importable (children inherit it)
    _root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    _env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [_root, os.environ.get("PYTHONPATH")]))}
    os.execve(sys.executable, [sys.executable, "-m", "benchmarks.bench_iac_fac", *sys.argv[1:]], _env)

from benchmarks import common  # noqa: E402

JSON_NAME = "iac_fac.json"
FIGURE = common.ROOT / "docs" / "images" / "iac_fac.png"
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


def memory_child(r: int, layer: str, prec: str, case: str, threads: int) -> dict:
    import gc

    import torch

    from ifan.inference.memory import trim_heap
    from ifan.inference.runtime import autocast

    torch.set_num_threads(threads)
    fn = dict(_cases(r, layer, 0))[case]
    with torch.no_grad(), autocast(torch.device("cpu"), _dtype(prec)):
        gc.collect()
        trim_heap()
        if not common.reset_peak_rss():
            raise RuntimeError("cannot reset the peak RSS (/proc/self/clear_refs): no memory part here")
        before = common.rss_bytes()
        fn()
        peak = common.peak_rss_bytes()
    return {"R": r, "layer": layer, "precision": prec, "case": case, "rss_before": before, "peak_rss": peak,
            "growth": peak - before}


def memory(threads: int) -> list[dict]:
    rows = []
    for r in FIELDS:
        for layer in ("iac", "fac"):
            for prec in precisions():
                for case in ("layer_lean", "model"):
                    rows.append(common.run_child("benchmarks.bench_iac_fac", [
                        "--child", "--child-case", json.dumps([r, layer, prec, case]), "--threads", str(threads)]))
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
    photo = common.ROOT / "examples" / "photos" / "flower.jpg"
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


COLOURS = {"IAC": (31, 119, 180), "FAC": (214, 39, 40), "half-width (R-1)/2": (120, 120, 120)}
LIGHT = {"IAC": (130, 180, 225), "FAC": (240, 150, 150)}


def _series(rows, layer: str, **match) -> list[tuple[float, float]]:
    return sorted((x["R"], x["value"]) for x in rows if x["layer"] == layer and all(x[k] == v for k, v in match.items()))


def _chart(title: str, series: dict[str, tuple[tuple[int, int, int], list[tuple[float, float]]]], log_y: bool,
           rings: list[tuple[tuple[int, int, int], float, float]] = ()):
    """One chart against R, ``(300, 520, 3)`` uint8: ``series`` name -> (colour, [(R, y)]), optional rings."""
    import math

    import numpy as np
    from PIL import Image, ImageDraw

    from ifan.viz import nice_ticks

    w, h, ml, mr, mt, mb = 520, 300, 60, 14, 52, 34
    img = Image.new("RGB", (w, h), "white")
    d = ImageDraw.Draw(img)
    tf = math.log10 if log_y else (lambda v: v)
    ys = [tf(y) for _, pts in series.values() for _, y in pts] + [tf(y) for _, _, y in rings]
    lo, hi = (math.floor(min(ys)), math.ceil(max(ys))) if log_y else (0.0, max(ys) * 1.08)
    xlo, xhi = FIELDS[0] - 2, FIELDS[-1] + 2

    def px(x: float, y: float) -> tuple[float, float]:
        return ml + (w - ml - mr) * (x - xlo) / (xhi - xlo), h - mb - (h - mb - mt) * (tf(y) - lo) / (hi - lo)

    ticks = [10.0 ** e for e in range(int(lo), int(hi) + 1)] if log_y else nice_ticks(lo, hi)
    for t in ticks:
        gy = px(xlo, t)[1]
        d.line([ml - 4, gy, w - mr, gy], fill=(225, 225, 225))
        label = f"{t:g}"
        d.text((ml - 8 - d.textlength(label), gy - 6), label, fill=(0, 0, 0))
    d.rectangle([ml, mt, w - mr, h - mb], outline=(0, 0, 0))
    for r in FIELDS:
        gx = px(r, ticks[0])[0]
        d.line([gx, h - mb, gx, h - mb + 4], fill=(0, 0, 0))
        d.text((gx - 6, h - mb + 6), str(r), fill=(0, 0, 0))
    d.text((ml, 6), title, fill=(0, 0, 0))
    d.text((w // 2 - 80, h - 14), "nominal receptive field R (1/8-scale px)", fill=(0, 0, 0))
    lx, ly = ml, 24
    for name, (colour, pts) in series.items():
        if lx + d.textlength(name) > w - mr:
            lx, ly = ml, ly + 13
        d.text((lx, ly), name, fill=colour)
        lx += 14 + d.textlength(name)
        pts = [px(x, y) for x, y in pts]
        if len(pts) > 1:
            d.line(pts, fill=colour, width=2)
        for p in pts:
            d.ellipse([p[0] - 2, p[1] - 2, p[0] + 2, p[1] + 2], fill=colour)
    for colour, x, y in rings:
        p = px(x, y)
        d.ellipse([p[0] - 6, p[1] - 6, p[0] + 6, p[1] + 6], outline=colour, width=2)
    return np.asarray(img)


def figure(data: dict, path) -> None:
    """Four panels against R: memory (filter tensor; measured peak of the model), the whole model's
    time, the lean layer's time (fp32 and bf16, log scales), and the effective receptive field."""
    import numpy as np
    from PIL import Image

    from ifan.fileutil import atomic_write

    panels = []
    if "analytic" in data:
        s = {}
        for name, layer in (("IAC", "iac"), ("FAC", "fac")):
            pts = [(a["R"], a["filter_bytes_fp32"] / 2**20) for a in data["analytic"] if a["layer"] == layer and a["c4"] == 64]
            s[f"{name} filter tensor"] = (COLOURS[name], sorted(pts))
        for name, layer in (("IAC", "iac"), ("FAC", "fac")):
            pts = [(m["R"], m["growth"] / 2**20) for m in data.get("memory", [])
                   if m["layer"] == layer and m["case"] == "model" and m["precision"] == "fp32"]
            if pts:
                s[f"{name} model peak (lean)"] = (LIGHT[name], sorted(pts))
        panels.append(_chart("memory at 1280x720, MiB (log): filter tensor (fp32, c4 64); measured peak RSS growth", s, True))
    if "time" in data:
        rows = [{**x, "value": x["median_s"]} for x in data["time"]["rows"]]
        for case, title in (("model", "whole model (lean) at 1280x720, median s (log)"),
                            ("layer_lean", "adaptive layer (head + op, lean) at 1280x720, median s (log)")):
            s = {}
            for prec in ("fp32", "bf16"):
                for name, layer in (("IAC", "iac"), ("FAC", "fac")):
                    pts = _series(rows, layer, case=case, precision=prec)
                    if pts:
                        s[f"{name} {prec}"] = ((COLOURS if prec == "fp32" else LIGHT)[name], pts)
            panels.append(_chart(title, s, True))
    if "erf" in data:
        rows = [{**x, "value": x["radius95"]} for x in data["erf"]["random"]]
        s = {"half-width (R-1)/2": (COLOURS["half-width (R-1)/2"], [(r, (r - 1) / 2) for r in FIELDS])}
        for name, layer in (("IAC", "iac"), ("FAC", "fac")):
            s[f"{name} averaging"] = (COLOURS[name], _series(rows, layer, filters="averaging"))
            s[f"{name} zero-mean"] = (LIGHT[name], _series(rows, layer, filters="zero-mean"))
        rings = [(COLOURS["IAC" if t["layer"] == "iac" else "FAC"], t["R"], t["radius95_median"])
                 for t in data["erf"]["trained"]]
        panels.append(_chart("effective receptive field: 95 % gradient half-side (rings: trained, median)", s, False, rings))
    if not panels:
        return
    while len(panels) % 2:
        panels.append(np.full_like(panels[0], 255))
    gap_v = np.full((panels[0].shape[0], 10, 3), 255, np.uint8)
    rows = [np.concatenate([panels[i], gap_v, panels[i + 1]], axis=1) for i in range(0, len(panels), 2)]
    gap_h = np.full((10, rows[0].shape[1], 3), 255, np.uint8)
    grid = rows[0]
    for row in rows[1:]:
        grid = np.concatenate([grid, gap_h, row], axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write(path, lambda tmp: Image.fromarray(grid).save(tmp, format="PNG"))


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
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--child-case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        print(json.dumps(memory_child(*json.loads(args.child_case), threads=args.threads)))
        return

    path = common.RESULTS / JSON_NAME
    data = json.loads(path.read_text()) if path.is_file() else {}  # the parts not rerun are kept
    data["machine"] = {**common.machine(), "lscpu": common.lscpu_model()}
    trained = dict(item.split("=", 1) for item in args.trained) or {"ifan-lite (shipped)": "ifan-lite"}
    for part in args.parts:
        start, began = time.perf_counter(), time.strftime("%Y-%m-%dT%H:%M:%S")
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
        data.setdefault("part_runs", {})[part] = {"started": began, "seconds": round(time.perf_counter() - start, 1),
                                                  "load_avg_1min_after": os.getloadavg()[0]}
        common.write_json(JSON_NAME, data)  # after every part: a stopped run keeps the rest
    data.pop("part_seconds", None)
    print(tables(data))
    figure(data, FIGURE)
    common.write_json(JSON_NAME, data)
    print(f"wrote {FIGURE} ({data['machine']['lscpu']})")

if __name__ == "__main__":
    main()
