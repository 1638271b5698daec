"""Calibrate the memory estimator of ifan.inference (MemoryModel): peak RSS growth of one
whole-image Deblurrer.run on CPU, per width ch, memory format and image size, each in a fresh
child process; a least-squares fit ``fixed + per_pixel * H8 * W8`` per case, and of per_pixel
against ch.

    python -m benchmarks.calibrate_memory [--sizes 256x256 512x768 720x1280]

With ``--cpu-heap 1`` the heap allocation mode is measured instead (its estimate includes
HEAP_MEMORY_FACTOR); ``--precision bf16`` measures bf16 autocast (on a CPU with native bf16). Prints a
table and writes benchmarks/results/calibrate_memory_<mmap|heap>[_<precision>].json.
"""

from __future__ import annotations

import argparse
import gc
import json
import time

from benchmarks import common


def child(args: argparse.Namespace) -> None:
    import torch

    from ifan import create_model
    from ifan.inference import Deblurrer, plan_tiles
    from ifan.inference.memory import HEAP_MEMORY_FACTOR

    torch.manual_seed(0)
    model = create_model("ifan", channels=args.channels, iterations=args.iterations)
    d = Deblurrer(model, device="cpu", channels_last=args.channels_last, precision=args.precision)
    d.run(torch.rand(1, 3, 64, 64))  # warm up oneDNN and the allocator on a small input
    h, w = args.height, args.width
    x = torch.rand(1, 3, h, w)
    plan = plan_tiles(h, w, None, memory=d.memory, defocus=args.defocus,
                      heap_factor=HEAP_MEMORY_FACTOR if args.cpu_heap else None)
    assert plan.heap == bool(args.cpu_heap) and not plan.tiled
    gc.collect()
    common.reset_peak_rss()
    before = common.rss_bytes()
    t = time.perf_counter()
    res = d.run(x, defocus=args.defocus, plan=plan)
    seconds = time.perf_counter() - t
    peak = common.peak_rss_bytes()
    del res
    print(json.dumps({"before": before, "peak": peak, "increase": peak - before, "seconds": seconds,
                      "estimate": plan.estimate}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--channels", type=int, nargs="+", default=[8, 16, 32])
    p.add_argument("--iterations", type=int, default=None)
    p.add_argument("--channels-last", type=int, default=1)
    p.add_argument("--formats", type=int, nargs="+", default=[1, 0], help="channels_last on (1) / off (0)")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--defocus", action="store_true")
    p.add_argument("--cpu-heap", type=int, default=0, help="1: measure the heap allocation mode (its plan estimate "
                                                            "includes HEAP_MEMORY_FACTOR)")
    p.add_argument("--height", type=int)
    p.add_argument("--width", type=int)
    p.add_argument("--sizes", nargs="+", default=["256x256", "512x768", "720x1280", "1080x1920"])
    args = p.parse_args()
    if args.child:
        args.channels = args.channels[0]
        child(args)
        return
    import numpy as np

    from ifan.models.ifan import padded_side

    rows, records = [], []
    for ch in args.channels:
        n = args.iterations or (17 if ch >= 32 else 8)
        for cl in args.formats:
            xs, ys = [], []
            for size in args.sizes:
                h, w = (int(v) for v in size.split("x"))
                r = common.run_child(__spec__.name, ["--child", "--channels", str(ch), "--iterations", str(n),
                                                     "--channels-last", str(cl), "--precision", args.precision,
                                                     "--height", str(h), "--width", str(w),
                                                     "--cpu-heap", str(args.cpu_heap)]
                                     + (["--defocus"] if args.defocus else []))
                px = padded_side(h) * padded_side(w)
                xs.append(px)
                ys.append(r["increase"])
                records.append({"channels": ch, "iterations": n, "channels_last": bool(cl), "height": h, "width": w,
                                **r})
                rows.append([ch, n, "NHWC" if cl else "NCHW", f"{w}x{h}", f"{r['increase'] / 2**20:.0f}",
                             f"{r['increase'] / px:.0f}", f"{r['estimate'] / 2**20:.0f}", f"{r['seconds']:.2f}"])
            slope, intercept = np.polyfit(xs, ys, 1)
            records.append({"fit": True, "channels": ch, "channels_last": bool(cl), "per_pixel": slope,
                            "fixed": intercept})
            rows.append([ch, n, "NHWC" if cl else "NCHW", "fit", f"fixed {intercept / 2**20:.0f} MiB",
                         f"{slope:.0f}", "", ""])
    table = common.print_table(["ch", "N", "format", "input WxH", "peak growth MiB", "B/pixel", "estimate MiB", "s"],
                               rows)
    fits = [r for r in records if r.get("fit")]
    for cl in args.formats:
        pts = [(r["channels"], r["per_pixel"]) for r in fits if r["channels_last"] == bool(cl)]
        if len(pts) >= 2:
            b, a = np.polyfit([c for c, _ in pts], [v for _, v in pts], 1)
            print(f"{'NHWC' if cl else 'NCHW'}: per_pixel ~= {a:.1f} + {b:.2f} * ch bytes")
            records.append({"per_pixel_vs_ch": True, "channels_last": bool(cl), "base": a, "per_ch": b})
    mode = "heap" if args.cpu_heap else "mmap"
    worst = max(r["increase"] / r["estimate"] for r in records if "increase" in r)
    print(f"allocation mode {mode}: largest measured / estimated = {worst:.2f}")
    tag = "" if args.precision == "fp32" else f"_{args.precision}"
    common.write_json(f"calibrate_memory_{mode}{tag}.json", {
        "machine": common.machine(), "precision": args.precision, "allocation": mode,
        "worst_measured_over_estimate": worst, "defocus": args.defocus, "records": records, "table": table})


if __name__ == "__main__":
    main()
