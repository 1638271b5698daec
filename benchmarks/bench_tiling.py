"""Tiled vs whole-image inference: agreement as a function of the overlap, and time / peak memory.

Part 1 (``sweep``): one process; a real photo (scikit-image ``coffee``, upscaled and blurred to
look defocused) deblurred whole and with forced square tiles at several overlaps and blend margins;
PSNR between the tiled and whole outputs, and the defocus maps' relative RMS difference.

Part 2 (``memory``): each case in a fresh child process: whole image vs tiled under memory budgets
(``Deblurrer(max_memory=...)``), time and peak RSS, the plan's estimate, PSNR against the whole run.

    python -m benchmarks.bench_tiling sweep [--model ifan-lite|ifan|PATH] [--tile 256]
    python -m benchmarks.bench_tiling memory [--model ifan] [--size 1080x1920] [--budgets 1.5G 1G]

Random-init models unless ``--model`` is a weights file (the effective receptive field of trained
weights may differ: rerun with them). Writes benchmarks/results/bench_tiling_<part>_<model>.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import tempfile
import time
from pathlib import Path

from benchmarks import common


def sweep(args) -> None:
    import numpy as np
    import torch

    from ifan.evaluate.metrics import image_psnr
    from ifan.inference import Deblurrer

    torch.set_num_threads(args.threads)
    model, desc = common.build_model(args.model), common.describe_model(args.model)
    h, w = (int(v) for v in args.size.split("x"))
    rgb = common.test_photo(h, w)
    whole = Deblurrer(model, device="cpu")
    t = time.perf_counter()
    ref, ref_map = whole.deblur(rgb, return_defocus=True)
    t_whole = time.perf_counter() - t
    rows, records = [], []
    for overlap in args.overlaps:
        for margin in args.margins:
            d = Deblurrer(model, device="cpu", tile_size=args.tile, overlap=overlap, blend_margin=margin)
            plan = d.plan(h, w)
            t = time.perf_counter()
            out, dmap = d.deblur(rgb, return_defocus=True, plan=plan)
            seconds = time.perf_counter() - t
            p = image_psnr(out, ref)
            rel = float(np.sqrt(np.mean((dmap - ref_map) ** 2)) / max(np.sqrt(np.mean(ref_map ** 2)), 1e-12))
            records.append({"overlap": overlap, "margin": margin, "tile": list(plan.tile), "tiles": plan.num_tiles,
                            "psnr": p, "max_abs": float(np.abs(out - ref).max()), "defocus_rel_rms": rel,
                            "seconds": seconds})
            rows.append([overlap, margin, f"{plan.tile[1]}x{plan.tile[0]}", plan.num_tiles, f"{p:.1f}",
                         f"{np.abs(out - ref).max():.1e}", f"{rel:.3f}", f"{seconds:.1f}"])
            print(rows[-1], flush=True)
    table = common.print_table(["overlap px", "margin", "tile", "tiles", "PSNR vs whole dB", "max |diff|",
                                "defocus rel. RMS diff", "s"], rows)
    print(f"whole image {w}x{h}: {t_whole:.1f} s; model {desc}")
    common.write_json(f"bench_tiling_sweep_{common.model_tag(args.model)}.json", {
        "machine": common.machine(), "model": desc, "size": [h, w], "tile": args.tile, "whole_seconds": t_whole,
        "records": records, "table": table})


def child(args) -> None:
    import numpy as np
    import torch

    from ifan.inference import Deblurrer

    torch.set_num_threads(args.threads)
    model = common.build_model(args.model)
    h, w = (int(v) for v in args.size.split("x"))
    rgb = common.test_photo(h, w)
    d = Deblurrer(model, device="cpu", max_memory=args.budget)
    d.deblur(np.zeros((64, 64, 3), np.float32))  # warm-up
    gc.collect()
    common.reset_peak_rss()
    before = common.rss_bytes()
    plan = d.plan(h, w)
    t = time.perf_counter()
    out = d.deblur(rgb, plan=plan)
    seconds = time.perf_counter() - t
    peak = common.peak_rss_bytes()
    np.save(args.save, out)
    print(json.dumps({"seconds": seconds, "peak_rss": peak, "rss_before": before, "estimate": plan.estimate,
                      "tiles": plan.num_tiles, "tile": list(plan.tile), "plan": str(plan)}))


def memory(args) -> None:
    import numpy as np

    from ifan.evaluate.metrics import image_psnr

    h, w = (int(v) for v in args.size.split("x"))
    rows, records = [], []
    with tempfile.TemporaryDirectory() as tmp:
        outputs = {}
        for budget in [None, *args.budgets]:
            label = budget or "unlimited"
            save = str(Path(tmp) / f"{len(outputs)}.npy")
            argv = ["child", "--model", args.model, "--size", args.size, "--save", save,
                    "--threads", str(args.threads)] + ([] if budget is None else ["--budget", budget])
            r = common.run_child(__spec__.name, argv)
            outputs[label] = np.load(save)
            p = image_psnr(outputs[label], outputs["unlimited"])
            r.update(budget=label, psnr_vs_whole=p)
            records.append(r)
            heap = "heap" if "allocation: heap" in r["plan"] else "default"
            rows.append([label, ("whole" if r["tiles"] == 1 else f"{r['tiles']} x {r['tile'][1]}x{r['tile'][0]}")
                         + f", {heap} allocation",
                         f"{r['estimate'] / 2**30:.2f}", f"{r['peak_rss'] / 2**30:.2f}",
                         f"{(r['peak_rss'] - r['rss_before']) / 2**30:.2f}", f"{r['seconds']:.1f}",
                         "-" if budget is None else f"{p:.1f}"])
            print(rows[-1], flush=True)
    table = common.print_table(["--max-memory", "plan", "estimate GiB", "peak RSS GiB", "growth GiB", "time s",
                                "PSNR vs whole dB"], rows)
    common.write_json(f"bench_tiling_memory_{common.model_tag(args.model)}.json", {
        "machine": common.machine(), "model": args.model, "size": [h, w], "records": records, "table": table})


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("part", choices=["sweep", "memory", "child"])
    p.add_argument("--model", default="ifan-lite", help="model name (random init) or a weights file")
    p.add_argument("--size", default="800x1200", help="HxW")
    p.add_argument("--tile", type=int, default=256)
    p.add_argument("--overlaps", type=int, nargs="+", default=[0, 16, 32, 48, 64, 96, 128])
    p.add_argument("--margins", type=float, nargs="+", default=[0.0, 0.25])
    p.add_argument("--budgets", nargs="+", default=["2G", "1.5G", "1G"])
    p.add_argument("--budget")
    p.add_argument("--save")
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    {"sweep": sweep, "memory": memory, "child": child}[args.part](args)


if __name__ == "__main__":
    main()
