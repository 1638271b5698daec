"""Recipe ablations at equal wall-clock: which losses, image loss, crop and precision learn most per CPU-hour.

    python -m benchmarks.ablate_recipe --data data/mix --budget 240      # 4 minutes of training per variant

Every variant starts from the same weights (``--init``, default the shipped ``ifan-lite``) on the
same data and trains for the same *time*. Machines shared with other work are noisy, so the time
is turned into a step budget: first the cost of one training step of each variant is measured
in one process, the variants interleaved over rounds (median), and each variant then trains
``budget / step cost`` steps. Then each is scored on the training mixture's validation split
(the trainer's validation, EMA and raw weights) and, with its raw weights (a few hundred steps are
under the EMA's horizon of 1000), on the quality suite's independent sets
(``python -m benchmarks.bench_quality``: sRGB discs over two layers, linear Gaussian + JPEG, sharp photos) and a
held-out mixture subset. A table is printed and everything is written to
``benchmarks/results/ablations.json``.

``--data-variant NAME=DIR`` adds data ablations: the 0.2 recipe's losses (``dme-charb-disp``) trained
on other data (for example ``ifan synth`` with one more option and the same seed, so the scenes are
the same), validated on ``--data``'s val split, against ``dme-charb-disp`` on ``--data`` itself.

``--widen NAME=C`` adds model-size ablations: the same recipe (``dme-charb-disp``) on a model grown
to width C from ``--init`` (``ifan grow``: the same function at step 0, so it starts where the
control does), against ``dme-charb-disp`` at the original width, each for the same time.

The ``bf16-vs-fp32`` pair instead trains the same number of steps in both precisions, to check
that bf16 training follows fp32's validation curve.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

from benchmarks import bench_quality, common

ROOT = Path(__file__).resolve().parents[1]
BASE = [  # shared by every variant: the CPU recipe's optimiser, a cosine from 2e-4, EMA
    "model=ifan-lite", "train.batch_size=8", "train.patch_size=128", "train.lr=2e-4", "train.schedule=cosine", "train.min_lr=1e-5",
    "train.warmup_steps=50", "train.ema=0.999", "train.precision=auto", "train.grad_clip=0.5",
    "data.cache=true", "data.val_count=48", "data.val_crop=256", "log.progress=false", "log.tensorboard=false",
    "log.ckpt_every=100000", "log.log_every=50",
]
VARIANTS = {  # name: overrides
    "all-mse": ["losses.image_loss=mse", "losses.dme=1", "losses.reblur=1"],
    "dme-mse": ["losses.image_loss=mse", "losses.dme=1", "losses.reblur=0"],
    "dme-charb": ["losses.image_loss=charbonnier", "losses.dme=1", "losses.reblur=0"],
    "img-charb": ["losses.image_loss=charbonnier", "losses.dme=0", "losses.reblur=0"],
    "dme-charb-disp": ["losses.image_loss=charbonnier", "losses.dme=1", "losses.reblur=0", "losses.disparity=0.1"],
}
# the recipe of 0.2-0.4 (dme-charb-disp) with larger crops, or with a frequency term
VARIANTS["dme-charb-disp-192"] = [*VARIANTS["dme-charb-disp"], "train.patch_size=192"]
VARIANTS["dme-charb-disp-freq"] = [*VARIANTS["dme-charb-disp"], "losses.frequency=0.1"]


def step_costs(names: list[str], data_overrides: list[str], widths: dict[str, int] | None = None,
               rounds: int = 3, steps: int = 3) -> dict[str, float]:
    """Median seconds of one training step per variant: the trainer's step
    (``ifan.train.step.train_step``) under each variant's recipe, on random batches, the variants
    interleaved over rounds.

    ``names`` are :data:`VARIANTS` or keys of ``widths`` (``dme-charb-disp`` at that width)."""
    widths = widths or {}
    import torch

    from ifan.inference.runtime import resolve_precision
    from ifan.models.reblur import ReblurNet
    from ifan.models.zoo import create_model
    from ifan.train.config import load_config
    from ifan.train.state import TrainState
    from ifan.train.step import train_step

    device = torch.device("cpu")
    times: dict[str, list[float]] = {n: [] for n in names}
    for _ in range(rounds):
        for name in names:
            recipe = VARIANTS["dme-charb-disp"] if name in widths else VARIANTS[name]
            cfg = load_config(None, [*BASE, *recipe, *data_overrides])
            torch.manual_seed(0)
            width = {"channels": widths[name]} if name in widths else {}
            net = create_model("ifan-lite", **width)
            reblur = ReblurNet(net.config) if cfg.losses.reblur else None
            state = TrainState.create(net, reblur, cfg.losses, cfg.train, device,
                                      resolve_precision(cfg.train.precision, device))
            size, b = cfg.train.patch_size, cfg.train.batch_size
            fmt = state.memory_format_of(cfg.train)
            c, gt, r, l = (torch.rand(b, 3, size, size).contiguous(memory_format=fmt) for _ in range(4))  # noqa: E741
            views = {"r": r, "l": l} if cfg.losses.dme or cfg.losses.disparity else {}
            batch = {"c": c, "gt": gt, **views, "disparity": r[:, :1] * 8}
            for i in range(steps + 1):
                t = time.perf_counter()
                train_step(state, batch)
                if i:
                    times[name].append(time.perf_counter() - t)
    return {n: statistics.median(v) for n, v in times.items()}


def grow_init(source: str, channels: int, out: Path) -> Path:
    """``source`` (a model name or weights file) grown to width ``channels``, written to ``out`` once."""
    if not out.is_file():
        from ifan.models.grow import grow_weights_file

        out.parent.mkdir(parents=True, exist_ok=True)
        grow_weights_file(source, channels, out)
    return out


def raw_weights(run: Path) -> Path:
    """The run's final raw (not averaged) weights as a weights file beside its checkpoints.

    A variant trains a few hundred steps, under the EMA's horizon (1 / (1 - 0.999) = 1000 steps):
    its averaged weights are still mostly the initial ones, so the suite scores the raw weights."""
    from ifan.models.ifan import IFANConfig
    from ifan.models.serialization import save_weights
    from ifan.train.checkpoint import load_checkpoint
    from ifan.train.run import run_file

    last = run_file(run, "checkpoint")
    state = load_checkpoint(last)
    out = run / "raw.safetensors"
    save_weights(out, IFANConfig.from_dict(state["model_config"]), state["model"], source=f"{last} (raw)")
    return out


def evaluate(weights: Path, sets: dict) -> dict:
    r = bench_quality.run_model(str(weights), "auto", sets)
    s = bench_quality.summarise(r)
    out = {k: s[k]["gain_db"] for k in ("synth-mixture", "srgb-disc", "lin-gauss-jpeg") if k in s}
    out["spearman"] = s.get("synth-mixture", {}).get("spearman_mean")
    out["spearman_pooled"] = s.get("synth-mixture", {}).get("spearman_pooled")
    out["harm_psnr"] = s["harm"]["psnr_to_input"]
    out["harm_per_photo"] = {k: v["psnr_to_input"] for k, v in s["harm"]["per_image"].items()}
    out["by_photo"] = {k: {p: v["gain_db"] for p, v in s[k]["by_photo"].items()}
                       for k in ("srgb-disc", "lin-gauss-jpeg") if "by_photo" in s.get(k, {})}
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, help="training data (DPDD layout, with a val split)")
    parser.add_argument("--budget", type=float, default=240.0, help="seconds of training per variant")
    parser.add_argument("--init", default="ifan-lite", help="weights every variant starts from")
    parser.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    parser.add_argument("--data-variant", action="append", default=[], metavar="NAME=DIR",
                        help="also train dme-charb-disp on the training split of DIR (validated on --data)")
    parser.add_argument("--val-data", type=Path, help="the validation split's dataset (default: --data)")
    parser.add_argument("--widen", action="append", default=[], metavar="NAME=C",
                        help="also train dme-charb-disp on --init grown to width C (ifan grow)")
    parser.add_argument("--precision-check", type=int, default=300, metavar="STEPS",
                        help="steps of the bf16-vs-fp32 pair (0: skip)")
    parser.add_argument("--costs", type=json.loads, metavar="JSON",
                        help='step costs measured before, e.g. on a quieter machine: {"dme-mse": 0.51, ...} '
                             "(default: measure them now)")
    parser.add_argument("--rescore", action="store_true",
                        help="only score the finished variants in --out again (e.g. after the suite changed)")
    parser.add_argument("--out", type=Path, default=ROOT / "runs" / "ablate")
    parser.add_argument("--json", type=Path, default=common.RESULTS / "ablations.json")
    parser.add_argument("--partial", action="store_true", help="score even if some suite photos are missing here")
    args = parser.parse_args()

    import torch

    from ifan.train.config import load_config
    from ifan.train.run import read_metrics, run_file
    from ifan.train.trainer import train

    bench_quality.require_photos(args.partial)  # before hours of training, not after

    torch.set_num_threads(2)
    if args.rescore:
        data = json.loads(args.json.read_text())
        sets = bench_quality.build_sets(ROOT / "data" / "quality", 30, 24)
        sets = {k: v for k, v in sets.items() if k in ("synth-mixture", "srgb-disc", "lin-gauss-jpeg", "harm")}
        for name, row in data["rows"].items():
            row.update(evaluate(raw_weights(args.out / name), sets))
            print(name, {k: v for k, v in row.items() if k != "val_curve"}, flush=True)
        args.json.write_text(json.dumps(data, indent=1))
        print_table(data["rows"])
        return
    if args.data is None:
        parser.error("--data is needed to train the variants")
    data = [f"data.root={args.data}", *([f"data.val_root={args.val_data}"] if args.val_data else [])]
    data_variants = dict(item.split("=", 1) for item in args.data_variant)
    widths = {name: int(c) for name, c in (item.split("=", 1) for item in args.widen)}
    if (data_variants or widths) and "dme-charb-disp" not in args.variants:
        args.variants.append("dme-charb-disp")  # the control of the data and size ablations
    costs = args.costs or step_costs([*args.variants, *widths], data, widths)
    print("step cost (s):", {k: round(v, 3) for k, v in costs.items()}, flush=True)
    sets = bench_quality.build_sets(ROOT / "data" / "quality", 30, 24)
    sets = {k: v for k, v in sets.items() if k in ("synth-mixture", "srgb-disc", "lin-gauss-jpeg", "harm")}
    rows = json.loads(args.json.read_text())["rows"] if args.json.is_file() else {}  # earlier variants kept
    plan = [(n, [*VARIANTS[n]], max(int(args.budget / costs[n]), 1)) for n in args.variants]
    plan += [(name, [*VARIANTS["dme-charb-disp"], f"data.root={root}", f"data.val_root={args.val_data or args.data}"],
              max(int(args.budget / costs["dme-charb-disp"]), 1)) for name, root in data_variants.items()]
    grown = {name: grow_init(args.init, c, args.out / f"{name}-init.safetensors") for name, c in widths.items()}
    plan += [(name, [*VARIANTS["dme-charb-disp"], f"model_overrides.channels={c}", f"init.weights={grown[name]}"],
              max(int(args.budget / costs[name]), 1)) for name, c in widths.items()]
    if args.precision_check:
        plan += [(f"check-{p}", [*VARIANTS["dme-charb"], f"train.precision={p}"], args.precision_check)
                 for p in ("bf16", "fp32")]
    for name, overrides, steps in plan:
        run = args.out / name
        cfg = load_config(None, [*BASE, *data, f"init.weights={args.init}", *overrides, f"train.steps={steps}",
                                 f"log.val_every={max(steps // 4, 1)}"])
        start = time.perf_counter()
        train(cfg, run, resume=run_file(run, "checkpoints").is_dir(), device="cpu")
        seconds = time.perf_counter() - start
        _, val = read_metrics(run)
        rows[name] = {"steps": steps, "step_cost_s": costs.get(name), "wall_s": seconds,
                      "val_curve": [(m["step"], m["psnr"], m.get("psnr_raw")) for m in val],
                      "val_input_psnr": val[-1]["psnr_input"], **evaluate(raw_weights(run), sets)}
        print(name, json.dumps(rows[name]), flush=True)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"budget_s": args.budget, "base": BASE, "variants": VARIANTS, "costs": costs,
                                         "cpu": common.lscpu_model(), "rows": rows}, indent=1))
    print_table(rows)


def print_table(rows: dict) -> None:
    print("\n| variant | steps | val PSNR (EMA / raw) | gain mixture | gain sRGB disc | gain lin-Gauss+JPEG "
          "| sharp kept | defocus rho (pooled) |\n|---|---|---|---|---|---|---|---|")
    for name, r in rows.items():
        last = r["val_curve"][-1]
        raw = f"{last[2]:.2f}" if last[2] is not None else "-"
        print(f"| {name} | {r['steps']} | {last[1]:.2f} / {raw} | {r['synth-mixture']:+.2f} | {r['srgb-disc']:+.2f} "
              f"| {r['lin-gauss-jpeg']:+.2f} | {r['harm_psnr']:.2f} | {r['spearman']:.2f} "
              f"({r['spearman_pooled']:.2f}) |")


if __name__ == "__main__":
    main()
