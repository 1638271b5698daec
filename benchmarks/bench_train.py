"""Training throughput on this machine: steps/s and peak memory of the trainer's step
(``ifan.train.step.train_step``: forward with the auxiliary outputs, the losses, backward, clipping,
RAdam), in fp32 or bf16 autocast, with all three losses (image + DME + reblur), image + DME, or the
image loss only.

Each case runs in its own subprocess (so peak RSS is the case's own); cases alternate over
``--rounds`` rounds and the median is reported.

    python -m benchmarks.bench_train                       # ifan-lite and ifan, 128 and 256 crops
    python -m benchmarks.bench_train --models ifan-lite --sizes 128 --precisions fp32 bf16 \
        --losses all img+dme img --layouts channels_last
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import time
from pathlib import Path

from benchmarks import common

LOSS_MIXES = {"all": (1.0, 1.0, 1.0), "img+dme": (1.0, 1.0, 0.0), "img": (1.0, 0.0, 0.0)}


def run_case(model: str, size: int, batch: int, steps: int, layout: str, threads: int, precision: str = "fp32",
             losses: str = "all") -> dict:
    """One case, in this process: median time of the trainer's step (``ifan.train.step.train_step``,
    with the recipe defaults of ``OptimConfig``: lr 1e-4, clipping at 0.5, no EMA) over ``steps`` after
    one warm-up step, on random batches."""
    import torch

    from ifan import create_model
    from ifan.inference.runtime import resolve_precision
    from ifan.models.reblur import ReblurNet
    from ifan.train.config import OptimConfig
    from ifan.train.losses import LossWeights
    from ifan.train.state import TrainState
    from ifan.train.step import train_step

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    weights = LossWeights(*LOSS_MIXES[losses])
    net = create_model(model)
    reblur = ReblurNet(net.config) if weights.reblur else None
    optim = OptimConfig(channels_last=layout == "channels_last", precision=precision)
    device = torch.device("cpu")
    state = TrainState.create(net, reblur, weights, optim, device, resolve_precision(precision, device))
    fmt = state.memory_format_of(optim)
    c, r, l, gt = (torch.rand(batch, 3, size, size).contiguous(memory_format=fmt) for _ in range(4))  # noqa: E741
    views = {"r": r, "l": l} if weights.dme > 0 else {}
    times = []
    for i in range(steps + 1):
        t = time.perf_counter()
        train_step(state, {"c": c, "gt": gt, **views})
        if i:
            times.append(time.perf_counter() - t)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    return {"step_s": statistics.median(times), "peak_mb": peak_mb}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["ifan-lite", "ifan"])
    parser.add_argument("--sizes", nargs="+", type=int, default=[128, 256])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--steps", type=int, default=4, help="timed steps per case (after 1 warm-up)")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--layouts", nargs="+", default=["channels_last", "contiguous"])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precisions", nargs="+", default=["fp32"], choices=["fp32", "bf16"])
    parser.add_argument("--losses", nargs="+", default=["all"], choices=list(LOSS_MIXES))
    parser.add_argument("--json", type=Path, default=common.RESULTS / "train.json")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        print(json.dumps(run_case(*json.loads(args.case))))
        return

    cases = [(m, s, args.batch, args.steps, lay, args.threads, prec, mix)
             for m in args.models for s in args.sizes for lay in args.layouts for prec in args.precisions
             for mix in args.losses]
    samples: dict[tuple, list[dict]] = {c: [] for c in cases}
    for _ in range(args.rounds):
        for case in cases:
            samples[case].append(common.run_child(__spec__.name, ["--case", json.dumps(case)]))


    rows = []
    for case, runs in samples.items():
        model, size, batch, _, layout, threads, precision, losses = case
        step_s = statistics.median(r["step_s"] for r in runs)
        rows.append({"model": model, "crop": size, "batch": batch, "layout": layout, "threads": threads,
                     "precision": precision, "losses": losses,
                     "step_s": step_s, "steps_per_s": 1 / step_s,
                     "samples_per_s": batch / step_s, "peak_mb": max(r["peak_mb"] for r in runs),
                     "runs": [r["step_s"] for r in runs]})
    header = (f"{'model':<10} {'crop':>5} {'batch':>5} {'layout':<14} {'prec':<5} {'losses':<8} {'s/step':>8} "
              f"{'steps/s':>8} {'img/s':>7} {'peak MB':>8}")
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['model']:<10} {r['crop']:>5} {r['batch']:>5} {r['layout']:<14} {r['precision']:<5} "
              f"{r['losses']:<8} {r['step_s']:>8.3f} "
              f"{r['steps_per_s']:>8.3f} {r['samples_per_s']:>7.2f} {r['peak_mb']:>8.0f}")
    meta = {**common.machine(), "threads": args.threads, "rounds": args.rounds, "timed_steps": args.steps}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
