"""Training throughput on this machine: steps/s and peak memory of one full training step
(forward with the auxiliary outputs, image + DME + reblur losses, backward, clipping, RAdam).

Each case runs in its own subprocess (so peak RSS is the case's own); cases alternate over
``--rounds`` rounds and the median is reported.

    python benchmarks/bench_train.py                       # ifan-lite and ifan, 128 and 256 crops
    python benchmarks/bench_train.py --models ifan-lite --sizes 128 --batch 8 --steps 6
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


def run_case(model: str, size: int, batch: int, steps: int, layout: str, threads: int) -> dict:
    """One case, in this process: median step time over ``steps`` after one warm-up step."""
    import torch

    from ifan import create_model
    from ifan.models.reblur import ReblurNet
    from ifan.train.losses import ifan_losses

    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = create_model(model)
    reblur = ReblurNet(net.config)
    fmt = torch.channels_last if layout == "channels_last" else torch.contiguous_format
    net, reblur = net.to(memory_format=fmt), reblur.to(memory_format=fmt)
    params = [*net.parameters(), *reblur.parameters()]
    opt = torch.optim.RAdam(params, lr=1e-4, weight_decay=0.01, decoupled_weight_decay=True)
    views = [torch.rand(batch, 3, size, size).contiguous(memory_format=fmt) for _ in range(4)]
    times = []
    for i in range(steps + 1):
        t = time.perf_counter()
        out = net(views[0], views[1], views[2], aux=True)
        loss = ifan_losses(out, views[3], views[0], views[1], views[2], reblur)["total"]
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
    parser.add_argument("--json", type=Path, default=RESULTS / "train.json")
    parser.add_argument("--case", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.case:
        model, size, batch, steps, layout, threads = json.loads(args.case)
        print(json.dumps(run_case(model, size, batch, steps, layout, threads)))
        return

    cases = [(m, s, args.batch, args.steps, lay, args.threads)
             for m in args.models for s in args.sizes for lay in args.layouts]
    samples: dict[tuple, list[dict]] = {c: [] for c in cases}
    for _ in range(args.rounds):
        for case in cases:
            proc = subprocess.run([sys.executable, __file__, "--case", json.dumps(case)], capture_output=True,
                                  text=True, check=True)
            samples[case].append(json.loads(proc.stdout.strip().splitlines()[-1]))


    rows = []
    for case, runs in samples.items():
        model, size, batch, _, layout, threads = case
        step_s = statistics.median(r["step_s"] for r in runs)
        rows.append({"model": model, "crop": size, "batch": batch, "layout": layout, "threads": threads,
                     "step_s": step_s, "steps_per_s": 1 / step_s,
                     "samples_per_s": batch / step_s, "peak_mb": max(r["peak_mb"] for r in runs),
                     "runs": [r["step_s"] for r in runs]})
    header = f"{'model':<10} {'crop':>5} {'batch':>5} {'layout':<14} {'s/step':>8} {'steps/s':>8} {'img/s':>7} {'peak MB':>8}"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(f"{r['model']:<10} {r['crop']:>5} {r['batch']:>5} {r['layout']:<14} {r['step_s']:>8.3f} "
              f"{r['steps_per_s']:>8.3f} {r['samples_per_s']:>7.2f} {r['peak_mb']:>8.0f}")
    meta = {**M.machine(), "threads": args.threads, "rounds": args.rounds, "timed_steps": args.steps}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "rows": rows}, indent=2))
    print(f"\nwrote {args.json}")


if __name__ == "__main__":
    main()
