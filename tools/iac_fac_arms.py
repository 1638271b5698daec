"""The trained IAC-vs-FAC comparison of docs/iac.md: five arms, the same start, the same data, the same CPU time.

    python -m tools.iac_fac_arms costs --out /work/runs/iacfac            # step cost of every candidate
    python -m tools.iac_fac_arms plan  --out /work/runs/iacfac --budget 1800
    python -m tools.iac_fac_arms run   --out /work/runs/iacfac --data D --val-data V --seeds 1 2
    python -m tools.iac_fac_arms score --out /work/runs/iacfac --json benchmarks/results/iac_fac_arms.json

Arms (all ``ifan-lite``'s width 16 and 1/8 bottleneck; only the adaptive part differs):

* ``iac``: ``ifan-lite``, IAC in the paper's separable form, N 8, Fs 3 (receptive field 17 at 1/8);
* ``fac-rf``: FAC at IAC's receptive field, 17 x 17;
* ``fac-time``: FAC whose measured training step costs closest to IAC's (k chosen by ``plan``);
* ``conv``: no adaptive layer: 5 plain 3x3 convolutions of the FLOPs of IAC's filter head plus IAC;
* ``iac-official``: IAC in the authors' form (kernel1 in both passes).

Same start: for each seed, one seeded ``ifan-lite`` initialisation (the recipe's Xavier gains) is
made, and each arm's model (initialised with the same seed) takes every tensor of it whose name and
shape it shares, so the arms differ only in the filter head (FAC: more outputs) or the control's
stack. ``iac-official`` therefore starts bit-identical to ``iac``. Each arm trains from that file
(``init.weights``, fresh optimiser) through the real ``ifan train`` command, on the same data in
the same order (the sampler is a function of the seed and the step).

Same time: the machine is shared, so time is turned into steps. ``costs`` measures one whole
training step of every candidate (forward with the auxiliary outputs, the recipe's losses, backward,
clipping, RAdam, EMA; batch 8 of 128 x 128, bf16 autocast where native, channels last) on random
batches, the candidates interleaved over rounds in one process, and keeps the median; ``plan``
gives every arm ``budget / its cost`` steps. The cost is the process's CPU time per step with one
thread, not its wall time: on a 2-core machine shared with other work at a load of 4-8, wall time
measures mostly the other work, and with two threads each OpenMP thread spins while the other waits
for a core, so even CPU time stops meaning work. One thread's CPU time stays put (the wall times are
recorded beside it). The runs use one thread each (``TRAIN_THREADS``; two were no faster), so a
second run or the scoring can use the other core: a run's steps are fixed by the plan, so its thread
count changes only how long it takes. The recipe is the CPU recipe of docs/training.md (Charbonnier image loss, DME, the true disparity at 0.1, no reblurring loss,
cosine from 2e-4 with warm-up, EMA 0.999), trained from scratch.

Only ``ifan`` is imported (the quality suite runs as its own command, ``python -m benchmarks.bench_quality``).
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BIN = Path(sys.executable).parent
FAC_CANDIDATES = (3, 5, 7, 9, 11, 13, 15, 17)
ARMS = ("iac", "fac-rf", "fac-time", "conv", "iac-official")
THREADS = 1  # the cost is measured with one thread: see "Same time" above
TRAIN_THREADS = 1  # one core per run, the other for scoring (two threads were no faster: 0.625 s/step against 0.588 s of one thread's CPU)


def write_json(path: Path, data: dict) -> None:
    """``data`` as indented JSON at ``path``, atomically (a killed run never leaves half a plan or recipe)."""
    from ifan.fileutil import atomic_write_bytes

    atomic_write_bytes(path, (json.dumps(data, indent=1) + "\n").encode())


def arm_model(arm: str, plan: dict | None = None) -> tuple[str, dict]:
    """``(model name, model_overrides)`` of an arm (``fac-time`` needs the plan's k)."""
    if arm == "iac":
        return "ifan-lite", {}
    if arm == "iac-official":
        return "ifan-lite", {"iac_form": "official"}
    if arm == "fac-rf":
        return "ifan-lite-fac", {"fac_size": 17}
    if arm == "fac-time":
        return "ifan-lite-fac", {"fac_size": plan["fac_time_k"]}
    if arm == "conv":
        return "ifan-lite-conv", {}
    if arm.startswith("fac"):  # a cost candidate: fac<k>
        return "ifan-lite-fac", {"fac_size": int(arm[3:])}
    raise ValueError(f"unknown arm {arm!r}")


def recipe(arm: str, plan: dict, seed: int, data: str, val_data: str, init: str) -> dict:
    """The arm's training recipe: the CPU recipe of docs/training.md, from scratch, for its steps."""
    model, overrides = arm_model(arm, plan)
    steps = plan["steps"][arm]
    return {
        "model": model, "model_overrides": overrides, "seed": seed,
        "data": {"root": data, "val_root": val_data, "kind": "dpdd", "val_split": "val", "val_count": 48,
                 "val_crop": 256, "cache": True, "workers": 0},
        "train": {"steps": steps, "batch_size": 8, "patch_size": 128, "lr": 2.0e-4, "schedule": "cosine",
                  "warmup_steps": 100, "min_lr": 1.0e-5, "weight_decay": 0.01, "betas": [0.9, 0.999],
                  "grad_clip": 0.5, "ema": 0.999, "precision": "auto", "channels_last": True, "threads": TRAIN_THREADS},
        "losses": {"image": 1.0, "image_loss": "charbonnier", "dme": 1.0, "reblur": 0.0, "disparity": 0.1},
        "augment": {"noise_p": 0.05, "gray_p": 0.2, "scale_p": 0.5, "scale_min": 0.7, "flip_h_p": 0.5},
        "init": {"weights": init},
        "log": {"log_every": 50, "val_every": max(math.ceil(steps / 6), 50), "ckpt_every": 200, "keep_last": 2,
                "progress": False},
    }


# --- step costs -------------------------------------------------------------------------------


def measure_costs(names: list[str], rounds: int, steps: int, threads: int) -> dict:
    """Median wall seconds (and process CPU seconds) of one training step per candidate, interleaved."""
    from dataclasses import asdict

    import torch

    from ifan.inference.runtime import resolve_precision
    from ifan.models.zoo import create_model
    from ifan.train.config import TrainConfig, from_dict
    from ifan.train.losses import LossWeights
    from ifan.train.state import TrainState
    from ifan.train.step import train_step

    torch.set_num_threads(threads)
    cfg = from_dict(TrainConfig, recipe("iac", {"steps": {"iac": 1000}}, 0, "", "", "")).validate()
    device = torch.device("cpu")
    dtype = resolve_precision(cfg.train.precision, device)
    weights = LossWeights(**asdict(cfg.losses))
    cl = torch.channels_last
    gen = torch.Generator().manual_seed(0)
    batch = {k: torch.rand(8, 3, 128, 128, generator=gen).contiguous(memory_format=cl) for k in ("c", "gt", "r", "l")}
    batch["disparity"] = 8 * torch.rand(8, 1, 128, 128, generator=gen) - 4
    state = {}
    for name in names:
        model_name, overrides = arm_model(name, {"fac_time_k": 0})
        torch.manual_seed(0)
        model = create_model(model_name, **overrides)
        state[name] = TrainState.create(model, None, weights, cfg.train, device, dtype)  # the trainer's own step
    wall: dict[str, list[float]] = {n: [] for n in names}
    cpu: dict[str, list[float]] = {n: [] for n in names}
    loads = [os.getloadavg()[0]]
    for r in range(rounds):
        for name in names:
            for i in range(steps + 1):  # the first step of a round warms the caches up
                t, c = time.perf_counter(), time.process_time()
                train_step(state[name], batch)
                if i:
                    wall[name].append(time.perf_counter() - t)
                    cpu[name].append(time.process_time() - c)
        loads.append(os.getloadavg()[0])
        print(f"round {r + 1}/{rounds}:", {n: round(statistics.median(v), 3) for n, v in wall.items()}, flush=True)
    return {"median_s": {n: statistics.median(v) for n, v in wall.items()},
            "min_s": {n: min(v) for n, v in wall.items()},
            "cpu_median_s": {n: statistics.median(v) for n, v in cpu.items()},
            "samples_s": wall, "rounds": rounds, "steps_per_round": steps, "threads": threads,
            "precision": str(dtype), "load_avg_1min": loads}


def machine() -> dict:
    import torch

    from ifan.inference.runtime import cpu_features

    return {"date": time.strftime("%Y-%m-%d %H:%M:%S"), "torch": torch.__version__, "cpus": os.cpu_count(),
            **{f"cpu_{k}": v for k, v in cpu_features().items()}}


# --- initialisation ---------------------------------------------------------------------------


def write_inits(out: Path, plan: dict, seed: int) -> dict[str, Path]:
    """One seeded ifan-lite init; every arm's init takes its tensors wherever name and shape match."""
    import torch

    from ifan.models.serialization import save_weights
    from ifan.models.zoo import create_model

    folder = out / "inits"
    folder.mkdir(parents=True, exist_ok=True)
    torch.manual_seed(seed)
    reference = create_model("ifan-lite")
    reference.init_weights(1.0, 1.5)  # the recipe's gains (init.gain, init.filter_gain)
    shared = reference.state_dict()
    paths, notes = {}, {}
    for arm in ARMS:
        path = folder / f"seed{seed}-{arm}.safetensors"
        name, overrides = arm_model(arm, plan)
        torch.manual_seed(seed)
        model = create_model(name, **overrides)
        model.init_weights(1.0, 1.5)
        state = model.state_dict()
        copied = [k for k, v in state.items() if k in shared and shared[k].shape == v.shape]
        for k in copied:
            state[k] = shared[k].clone()
        own = sorted(set(state) - set(copied))
        notes[arm] = {"copied": len(copied), "own": own}
        if not path.is_file():
            save_weights(path, model.config, state, source=f"iac_fac_arms init, seed {seed}, arm {arm}",
                         shared_from="ifan-lite seeded init", own_tensors=",".join(own))
        paths[arm] = path
    write_json(folder / f"seed{seed}.json", notes)
    return paths


# --- running ----------------------------------------------------------------------------------


def run_arm(out: Path, plan: dict, arm: str, seed: int, data: str, val_data: str) -> Path:
    """Train one arm to its planned steps with ``ifan train`` (resuming a run that stopped)."""
    run = out / f"seed{seed}" / arm
    if (run / "model.safetensors").is_file():
        print(f"seed {seed} {arm}: finished", flush=True)
        return run
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    if (run / "checkpoints").is_dir() and any((run / "checkpoints").glob("step_*.pt")):
        cmd = [str(BIN / "ifan"), "train", "--resume", str(run), "--device", "cpu"]
    else:
        inits = write_inits(out, plan, seed)
        recipes = out / "recipes"
        recipes.mkdir(parents=True, exist_ok=True)
        path = recipes / f"seed{seed}-{arm}.yaml"
        write_json(path, recipe(arm, plan, seed, data, val_data, str(inits[arm])))
        cmd = [str(BIN / "ifan"), "train", str(path), "-o", str(run), "--device", "cpu"]
        if run.exists():
            cmd.append("--force")  # a start that wrote no checkpoint
    print(f"seed {seed} {arm}: {plan['steps'][arm]} steps: {' '.join(cmd)}", flush=True)
    with open(logs / f"seed{seed}-{arm}.log", "a") as log:
        log.write(f"\n=== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n")
        log.flush()
        start = time.time()
        env = dict(os.environ, OMP_WAIT_POLICY="PASSIVE")  # no spinning on a shared machine
        proc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        log.write(f"=== exit {proc.returncode} after {time.time() - start:.0f} s\n")
    if proc.returncode != 0:
        raise SystemExit(f"seed {seed} {arm}: ifan train exited {proc.returncode}; see {logs / f'seed{seed}-{arm}.log'}")
    return run


# --- scoring ----------------------------------------------------------------------------------


def raw_weights(run: Path) -> Path:
    """The final raw (not averaged) weights, from the last checkpoint, beside the run's EMA weights."""
    import torch

    from ifan.models.ifan import IFANConfig
    from ifan.models.serialization import save_weights

    out = run / "raw.safetensors"
    if not out.is_file():
        last = max((run / "checkpoints").glob("step_*.pt"), key=lambda p: int(p.stem.split("_")[1]))
        state = torch.load(last, map_location="cpu", weights_only=True)
        save_weights(out, IFANConfig.from_dict(state["model_config"]), state["model"], source=f"{last} (raw)")
    return out


def run_summary(run: Path) -> dict:
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines() if x.strip()]
    val = [r for r in rows if r["kind"] == "val"]
    train = [r for r in rows if r["kind"] == "train"]
    last = val[-1]
    return {"steps": last["step"], "val_psnr_ema": last["psnr"], "val_psnr_raw": last.get("psnr_raw"),
            "val_psnr_input": last["psnr_input"], "train_seconds": last.get("elapsed"),
            "val_curve": [(r["step"], r["psnr"], r.get("psnr_raw")) for r in val],
            "last_losses": {k: v for k, v in train[-1].items() if k not in ("step", "kind")} if train else {}}


def suite_result(out: Path, label: str, weights: Path, synth_count: int, indep_count: int, threads: int) -> dict:
    """The quality suite's result for one weights file, run once (``out/quality/LABEL.json``, kept
    while it is newer than the weights), so that scoring a second seed does not score the first again."""
    folder = out / "quality"
    path = folder / f"{label}.json"
    if not path.is_file() or path.stat().st_mtime < weights.stat().st_mtime:
        folder.mkdir(parents=True, exist_ok=True)
        cmd = [sys.executable, "-m", "benchmarks.bench_quality", "--models", str(weights),
               "--synth-count", str(synth_count), "--indep-count", str(indep_count), "--threads", str(threads),
               "--json", str(path),
               "--figure", str(folder / f"{label}.png"), "--data", str(out / "quality-data")]
        print(" ".join(cmd), flush=True)
        subprocess.run(cmd, check=True, cwd=ROOT)
    suite = json.loads(path.read_text())
    return {"meta": suite["meta"], "summary": suite["results"][0]["summary"]}


def score(out: Path, plan: dict, seeds: list[int], json_path: Path, synth_count: int, indep_count: int,
          which: list[str], threads: int) -> dict:
    """Score every finished arm of ``seeds`` (the suite on its EMA and/or raw weights, the run's
    validation PSNR) and write the table, the per-arm seed-to-seed spread and the costs to ``json_path``."""
    runs = {(seed, arm): out / f"seed{seed}" / arm for seed in seeds for arm in ARMS
            if (out / f"seed{seed}" / arm / "model.safetensors").is_file()}
    rows, suite_meta = {}, None
    for (seed, arm), run in runs.items():
        row = rows.setdefault(f"seed{seed}/{arm}", {"seed": seed, "arm": arm, **run_summary(run)})
        for kind in which:
            weights = run / "model.safetensors" if kind == "ema" else raw_weights(run)
            result = suite_result(out, f"seed{seed}-{arm}-{kind}", weights, synth_count, indep_count, threads)
            s, suite_meta = result["summary"], result["meta"]
            row[kind] = {"synth-classic": s["synth-classic"]["gain_db"], "synth-mixture": s["synth-mixture"]["gain_db"],
                         "srgb-disc": s["srgb-disc"]["gain_db"], "lin-gauss-jpeg": s["lin-gauss-jpeg"]["gain_db"],
                         "sharp_kept_db": s["harm"]["psnr_to_input"],
                         "spearman": s["synth-mixture"].get("spearman_mean"),
                         "spearman_pooled": s["synth-mixture"].get("spearman_pooled"),
                         "overshoot": s["artefacts"]["overshoot"], "contrast_ratio": s["artefacts"]["contrast_ratio"]}
    costs = json.loads((out / "costs.json").read_text()) if (out / "costs.json").is_file() else None
    data = {"plan": plan, "costs": costs, "suite_meta": suite_meta, "rows": rows, "spread": spread(rows, which)}
    write_json(json_path, data)
    print_table(rows, which)
    return data


MEASURES = ("val_psnr", "synth-classic", "synth-mixture", "srgb-disc", "lin-gauss-jpeg", "sharp_kept_db",
            "spearman_pooled", "overshoot")


def _value(row: dict, kind: str, measure: str) -> float | None:
    if measure == "val_psnr":
        return row["val_psnr_ema"] if kind == "ema" else row["val_psnr_raw"]
    return row.get(kind, {}).get(measure)


def spread(rows: dict, which: list[str]) -> dict:
    """Per arm and measure: mean over seeds and the seed-to-seed range (max - min)."""
    out = {}
    for arm in ARMS:
        arm_rows = [r for r in rows.values() if r["arm"] == arm]
        for kind in which:
            for m in MEASURES:
                vals = [v for v in (_value(r, kind, m) for r in arm_rows) if v is not None]
                if vals:
                    out.setdefault(arm, {}).setdefault(kind, {})[m] = {
                        "mean": statistics.mean(vals), "range": max(vals) - min(vals), "n": len(vals)}
    return out


def print_table(rows: dict, which: list[str]) -> None:
    for kind in which:
        print(f"\nweights: {kind}\n| run | steps | val PSNR | gain classic | gain mixture | gain sRGB disc "
              "| gain Gauss+JPEG | sharp kept | rho (pooled) | overshoot |\n|---|---|---|---|---|---|---|---|---|---|")
        for key, r in rows.items():
            s = r.get(kind)
            if not s:
                continue
            print(f"| {key} | {r['steps']} | {_value(r, kind, 'val_psnr'):.3f} | {s['synth-classic']:+.3f} "
                  f"| {s['synth-mixture']:+.3f} | {s['srgb-disc']:+.3f} | {s['lin-gauss-jpeg']:+.3f} "
                  f"| {s['sharp_kept_db']:.2f} | {s['spearman']:.2f} ({s['spearman_pooled']:.2f}) | {s['overshoot']:.2f} |")


# --- command line -----------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["costs", "plan", "run", "score", "status"])
    parser.add_argument("--out", type=Path, required=True, help="the comparison's folder (costs, plan, runs, logs)")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--steps", type=int, default=2, help="timed steps per candidate and round")
    parser.add_argument("--threads", type=int, default=THREADS, help="threads of the cost measurement and of the suite")
    parser.add_argument("--cost", choices=["cpu", "wall"], default="cpu",
                        help="what a step costs: one thread's CPU time (default) or wall time")
    parser.add_argument("--budget", type=float, default=1800.0, help="seconds of step cost per arm")
    parser.add_argument("--data", help="training data (DPDD layout)")
    parser.add_argument("--val-data", help="validation data (its val split)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[1])
    parser.add_argument("--arms", nargs="+", default=list(ARMS), choices=ARMS)
    parser.add_argument("--json", type=Path, default=ROOT / "benchmarks" / "results" / "iac_fac_arms.json")
    parser.add_argument("--synth-count", type=int, default=100)
    parser.add_argument("--indep-count", type=int, default=24)
    parser.add_argument("--weights", nargs="+", default=["ema", "raw"], choices=["ema", "raw"])
    args = parser.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    costs_path, plan_path = args.out / "costs.json", args.out / "plan.json"

    if args.command == "costs":
        names = ["iac", "iac-official", "conv", *(f"fac{k}" for k in FAC_CANDIDATES)]
        result = {"machine": machine(), **measure_costs(names, args.rounds, args.steps, args.threads)}
        write_json(costs_path, result)
        print(json.dumps({"wall": result["median_s"], "cpu": result["cpu_median_s"]}, indent=1))
    elif args.command == "plan":
        if plan_path.is_file():
            raise SystemExit(f"{plan_path} exists: the arms' steps are fixed once (delete it to plan again)")
        costs = json.loads(costs_path.read_text())["cpu_median_s" if args.cost == "cpu" else "median_s"]
        k = min(FAC_CANDIDATES, key=lambda c: abs(costs[f"fac{c}"] - costs["iac"]))
        cost = {"iac": costs["iac"], "iac-official": costs["iac-official"], "conv": costs["conv"],
                "fac-rf": costs["fac17"], "fac-time": costs[f"fac{k}"]}
        plan = {"budget_s": args.budget, "cost": args.cost, "fac_time_k": k, "step_cost_s": cost,
                "steps": {arm: max(int(args.budget / c), 1) for arm, c in cost.items()}}
        write_json(plan_path, plan)
        print(json.dumps(plan, indent=1))
    elif args.command == "run":
        if not (args.data and args.val_data):
            parser.error("run needs --data and --val-data")
        plan = json.loads(plan_path.read_text())
        for seed in args.seeds:  # every arm of the first seed before the second seed
            for arm in args.arms:
                run_arm(args.out, plan, arm, seed, args.data, args.val_data)
    elif args.command == "status":
        plan = json.loads(plan_path.read_text())
        for seed in args.seeds:
            for arm in args.arms:
                run = args.out / f"seed{seed}" / arm
                done = (run / "model.safetensors").is_file()
                ckpts = sorted((run / "checkpoints").glob("step_*.pt"), key=lambda p: int(p.stem.split("_")[1])) \
                    if run.is_dir() else []
                print(f"seed {seed} {arm}: {'finished' if done else (ckpts[-1].stem if ckpts else 'not started')} "
                      f"of {plan['steps'][arm]} steps")
    else:
        score(args.out, json.loads(plan_path.read_text()), args.seeds, args.json, args.synth_count,
              args.indep_count, args.weights, args.threads)


if __name__ == "__main__":
    main()
