"""Peak memory and time of the plain and lean inference paths, and of the IAC op alone, on CPU.

Every case runs in a fresh child process; its peak is that process's peak RSS (``VmHWM``), reported
both as is and as the growth above the RSS just before the measured call (model built, inputs made,
a small warm-up run done).

Cases (default config ``ifan``: ch 32, N 17, random init):

* ``plain``: ``model(x, aux=True)`` under ``no_grad`` at 1920x1080: the full filter tensor
  (15,232 channels at 1/8 resolution) is built, then IAC runs on it.
* ``lean``: ``model(x)``: the filter head is applied per IAC iteration (``IFAN.lean_iac``).
* IAC alone at the shapes of that input (features 1x128x135x240, filters 1x15232x135x240),
  forward (``no_grad``) and forward+backward (gradients of features and filters from ``out.sum()``):
  ``ifan.ops.iac.iac`` (shift-sum) against an unfold-based reference computed the way the official
  code computes it (``benchmarks.common.iac_unfold``: replicate pad, ``unfold``, multiply, sum; filter
  slices taken by basic indexing), and the same unfold reference with the filters split by ``torch.split``.

    python -m benchmarks.bench_memory [--size 1080x1920] [--reps 3] [--cases ...]

Prints a table and writes benchmarks/results/bench_memory.json.
"""

from __future__ import annotations

import argparse
import gc
import json
import time

from benchmarks import common

CASES = ["plain", "lean", "iac_fwd", "unfold_fwd", "unfold_split_fwd", "iac_fwdbwd", "unfold_fwdbwd",
         "unfold_split_fwdbwd"]


def child(args) -> None:
    import torch

    from ifan import create_model
    from ifan.models.ifan import DOWNSCALE
    from ifan.ops.iac import iac, iteration_rows

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    h, w = (int(v) for v in args.size.split("x"))
    case = args.case
    if case in ("plain", "lean"):
        model = create_model(args.model).eval()
        x = torch.rand(1, 3, h, w)
        aux = case == "plain"
        with torch.no_grad():
            model(torch.rand(1, 3, 64, 64), aux=aux)  # warm-up

        def call():
            with torch.no_grad():
                return model(x, aux=aux).image
    else:
        cfg = create_model(args.model).config
        n, k, c = cfg.iterations, cfg.filter_size, cfg.feature_channels
        feat = torch.rand(1, c, h // DOWNSCALE, w // DOWNSCALE)
        # taps around an average filter and small biases, so 17 iterations stay O(1) (no denormals);
        # the biases follow every iteration's kernels, from where iteration 0's bias begins
        filters = torch.empty(1, cfg.filter_channels, h // DOWNSCALE, w // DOWNSCALE)
        biases = iteration_rows(0, n, c, k)[-1][0]
        filters[:, :biases].normal_(1.0 / k, 0.05)
        filters[:, biases:].normal_(0.0, 0.01)
        backward = case.endswith("fwdbwd")
        split = "split" in case

        def op(a, f):
            return iac(a, f, n, k) if case.startswith("iac") else common.iac_unfold(a, f, n, k, split=split)

        def call():
            if not backward:
                with torch.no_grad():
                    return op(feat, filters)
            a = feat.clone().requires_grad_()
            f = filters.requires_grad_()  # a leaf: no copy of the 2 GB tensor
            out = op(a, f)
            out.sum().backward()
            grads = (a.grad, f.grad)
            f.grad = None
            return grads

        small_f = filters[..., :8, :8].clone()
        with torch.no_grad():
            op(feat[..., :8, :8].clone(), small_f)  # warm-up

    gc.collect()
    common.reset_peak_rss()
    before = common.rss_bytes()
    times = []
    for _ in range(args.reps):
        t = time.perf_counter()
        out = call()
        times.append(time.perf_counter() - t)
        del out
        gc.collect()
    peak = common.peak_rss_bytes()
    print(json.dumps({"case": case, "times": times, "seconds": common.median(times), "peak_rss": peak,
                      "rss_before": before, "growth": peak - before}))


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--case", choices=CASES)
    p.add_argument("--cases", nargs="+", choices=CASES, default=CASES)
    p.add_argument("--model", default="ifan")
    p.add_argument("--size", default="1080x1920", help="HxW of the image (IAC shapes are H/8 x W/8)")
    p.add_argument("--reps", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    args = p.parse_args()
    if args.child:
        child(args)
        return
    records, rows = [], []
    for case in args.cases:
        r = common.run_child(__spec__.name, ["--child", "--case", case, "--model", args.model, "--size", args.size,
                         "--reps", str(args.reps), "--threads", str(args.threads)])
        records.append(r)
        rows.append([case, f"{r['peak_rss'] / 2**30:.2f}", f"{r['growth'] / 2**30:.2f}", f"{r['seconds']:.2f}",
                     " ".join(f"{t:.2f}" for t in r["times"])])
        print(rows[-1], flush=True)
    by = {r["case"]: r for r in records}
    ratios = {}
    if "plain" in by and "lean" in by:
        ratios["lean_over_plain_peak_rss"] = by["lean"]["peak_rss"] / by["plain"]["peak_rss"]
        ratios["lean_over_plain_growth"] = by["lean"]["growth"] / by["plain"]["growth"]
    for mode in ("fwd", "fwdbwd"):
        for ref in ("unfold", "unfold_split"):
            if f"iac_{mode}" in by and f"{ref}_{mode}" in by:
                ratios[f"{ref}_over_iac_{mode}_time"] = by[f"{ref}_{mode}"]["seconds"] / by[f"iac_{mode}"]["seconds"]
                ratios[f"{ref}_over_iac_{mode}_growth"] = (by[f"{ref}_{mode}"]["growth"]
                                                          / max(by[f"iac_{mode}"]["growth"], 1))
    table = common.print_table(["case", "peak RSS GiB", "growth GiB", f"median s ({args.reps} runs)", "runs s"], rows)
    for k, v in ratios.items():
        print(f"{k}: {v:.2f}")
    common.write_json("bench_memory.json", {"machine": common.machine(), "model": f"{args.model} (random init)",
                                             "size": args.size, "records": records, "ratios": ratios, "table": table})


if __name__ == "__main__":
    main()
