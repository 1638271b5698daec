"""Training throughput on this machine: steps/s and peak memory of one full training step
(forward with the auxiliary outputs, the losses, backward, clipping, RAdam), in fp32 or bf16
autocast, with all three losses (image + DME + reblur), image + DME, or the image loss only.

Each case runs in its own subprocess (so peak RSS is the case's own); cases alternate over
``--rounds`` rounds and the median is reported.

    python benchmarks/bench_train.py                       # ifan-lite and ifan, 128 and 256 crops
    python benchmarks/bench_train.py --models ifan-lite --sizes 128 --precisions fp32 bf16 \
        --losses all img+dme img --layouts channels_last
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _measure as M  # noqa: E402

RESULTS = Path(__file__).resolve().parent / "results"


LOSS_MIXES = {"all": (1.0, 1.0, 1.0), "img+dme": (1.0, 1.0, 0.0), "img": (1.0, 0.0, 0.0)}


def run_case(model: str, size: int, batch: int, steps: int, layout: str, threads: int, precision: str = "fp32",
             losses: str = "all") -> dict:
    """One case, in this process: median step time over ``steps`` after one warm-up step."""
    import torch

    from ifan import create_model
    from ifan.models.reblur import ReblurNet
    from ifan.train.losses import LossWeights, ifan_losses

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    weights = LossWeights(*LOSS_MIXES[losses])
    net = create_model(model)
    reblur = ReblurNet(net.config) if weights.reblur else None
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    net = net.to(memory_format=fmt)
    params = [*net.parameters()]
    if reblur is not None:
        reblur = reblur.to(memory_format=fmt)
        params += [*reblur.parameters()]
    opt = torch.optim.RAdam(params, lr=1e-4, weight_decay=0.01, decoupled_weight_decay=True)
    views = [torch.rand(batch, 3, size, size).contiguous(memory_format=fmt) for _ in range(4)]
    views_on = weights.dme > 0
    times = []
    for i in range(steps + 1):
        t = time.perf_counter()
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=precision == "bf16"):
            out = net(views[0], views[1] if views_on else None, views[2] if views_on else None, aux=True)
            loss = ifan_losses(out, views[3], views[0], views[1], views[2], reblur, weights)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 0.5)
        opt.step()
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
    parser.add_argument("--json", type=Path, default=RESULTS / "train.json")
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
            proc = subprocess.run([sys.executable, __file__, "--case", json.dumps(case)], capture_output=True,
                                  text=True, check=True)
            samples[case].append(json.loads(proc.stdout.strip().splitlines()[-1]))


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
    meta = {**M.machine(), "threads": args.threads, "rounds": args.rounds, "timed_steps": args.steps}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
