"""CPU inference speed: the official way (eager fp32, NCHW, full filter tensor, unfold IAC) against
ifan's modes, measured in one run with alternating calls; plus the accuracy cost of each mode.

Each mode lives in its own worker process (so each has its own peak RSS); the parent asks the workers
for one call each in turn, ``--reps`` rounds, and reports medians (and minima: the machine is shared,
and contention only ever adds time). Accuracy: PSNR of each mode's output (clipped to [0, 1]) against
the reference output, on a real photo (scikit-image ``coffee``, resized and blurred).

Modes:

* ``reference``: ``model(x, aux=True)`` under ``no_grad``, NCHW, float32, with IAC computed by
  unfolding (as the official code does), i.e. a straightforward eager forward of the network.
* ``lean_nchw``: ``Deblurrer(channels_last=False, cpu_heap=False)``: the lean filter path alone.
* ``fp32_mmap``: ``Deblurrer(cpu_heap=False)``: lean path and channels_last, glibc's default allocation.
* ``fp32``: ``Deblurrer(precision="fp32")``: strict float32, lean path, channels_last, large
  allocations from the heap while running (the defaults).
* ``fp32_compile``: the same under ``torch.compile`` (first-call compile time reported apart).
* ``auto``: ``Deblurrer(precision="auto")`` (the default): bf16 autocast where the CPU has native
  bf16, else the same as ``fp32`` (then skipped, and said so). Its speed-up over ``fp32`` is the
  median of the per-round ratios (the two run in the same rounds), and its accuracy the PSNR of its
  output against ``fp32``'s.
* ``bf16_accuracy``: where the CPU lacks native bf16, bf16 is emulated (tens of times slower), so
  only its accuracy is measured, on a smaller crop.

    python -m benchmarks.bench_inference [--model ifan|ifan-lite|PATH] [--size 720x1280] [--reps 5]
    python -m benchmarks.bench_inference --model src/ifan/weights/ifan-lite.safetensors \
        --modes fp32 auto --reps 9 --tag precision       # the default precision against strict float32

Writes benchmarks/results/bench_inference_<model>[_<tag>].json.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import common

MODES = ["reference", "lean_nchw", "fp32_mmap", "fp32", "fp32_compile", "auto"]


def worker(args) -> None:
    """Set up one mode, then answer "run" with one timed call and "done" with the peak RSS."""
    import numpy as np
    import torch

    from ifan.inference import Deblurrer

    torch.set_num_threads(args.threads)
    model = common.build_model(args.model)
    h, w = (int(v) for v in args.size.split("x"))
    rgb = common.test_photo(h, w)
    mode = args.worker
    info = {}
    if mode == "reference":
        cfg = model.config
        model.iac.forward = lambda x, f: common.iac_unfold(x, f, cfg.iterations, cfg.filter_size)
        x = torch.from_numpy(rgb).permute(2, 0, 1)[None].contiguous()
        if cfg.iac_form != "separable":
            raise SystemExit("the unfold reference implements the separable form only")

        def call():
            with torch.no_grad():
                return model(x, aux=True).image.clamp(0, 1)[0].permute(1, 2, 0).numpy()

        with torch.no_grad():
            model(torch.rand(1, 3, 64, 64), aux=True)
    else:
        kwargs = {"lean_nchw": {"precision": "fp32", "channels_last": False, "cpu_heap": False},
                  "fp32_mmap": {"precision": "fp32", "cpu_heap": False},
                  "fp32": {"precision": "fp32"},
                  "fp32_compile": {"precision": "fp32", "compile": True}, "auto": {"precision": "auto"},
                  "bf16_accuracy": {"precision": "bf16"}}[mode]
        d = Deblurrer(model, device="cpu", **kwargs)
        info["describe"] = d.describe()

        def call():
            return d.deblur(rgb, plan=d.plan(h, w) if d.max_memory else None)

        if mode == "fp32_compile":
            t = time.perf_counter()
            call()
            info["compile_first_call_s"] = time.perf_counter() - t
        else:
            d.deblur(np.zeros((64, 64, 3), np.float32))
    common.reset_peak_rss()
    info["rss_before"] = common.rss_bytes()
    print(json.dumps({"ready": True, **info}), flush=True)
    first = None
    for line in sys.stdin:
        if line.strip() == "run":
            t = time.perf_counter()
            out = call()
            seconds = time.perf_counter() - t
            if first is None:
                first = out
            print(json.dumps({"seconds": seconds}), flush=True)
        elif line.strip() == "done":
            np.save(args.save, first if first is not None else call())
            print(json.dumps({"peak_rss": common.peak_rss_bytes()}), flush=True)
            return


class Worker:
    def __init__(self, mode: str, args, tmp: str) -> None:
        self.save = str(Path(tmp) / f"{mode}.npy")
        self.proc = subprocess.Popen(
            [sys.executable, "-m", __spec__.name, "--worker", mode, "--model", args.model, "--size", args.size,
             "--threads", str(args.threads), "--save", self.save],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=common.child_env())
        self.mode, self.times = mode, []
        self.info = self._read()

    def _read(self) -> dict:
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"worker {self.mode} died (exit {self.proc.wait()})")
        return json.loads(line)

    def run(self) -> float:
        self.proc.stdin.write("run\n")
        self.proc.stdin.flush()
        t = self._read()["seconds"]
        self.times.append(t)
        return t

    def finish(self) -> dict:
        self.proc.stdin.write("done\n")
        self.proc.stdin.flush()
        out = self._read()
        self.proc.wait()
        return out



def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--worker", choices=MODES + ["bf16_accuracy"], help=argparse.SUPPRESS)
    p.add_argument("--save", help=argparse.SUPPRESS)
    p.add_argument("--model", default="ifan", help="model name (random init) or a weights file")
    p.add_argument("--size", default="720x1280", help="HxW")
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--modes", nargs="+", default=MODES, choices=MODES)
    p.add_argument("--bf16-size", default="256x384", help="HxW of the emulated-bf16 accuracy check")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--tag", help="written as bench_inference_<model>_<tag>.json (default: without a tag)")
    args = p.parse_args()
    if args.worker:
        worker(args)
        return
    import numpy as np

    from ifan.evaluate.metrics import image_psnr
    from ifan.inference import cpu_has_native_bf16

    native_bf16 = cpu_has_native_bf16()
    modes = [m for m in args.modes if not (m == "auto" and not native_bf16)]
    notes = []
    if "auto" in args.modes and not native_bf16:
        notes.append("auto: this CPU has no native bf16, so precision='auto' is float32 = the 'fp32' mode (skipped)")
    with tempfile.TemporaryDirectory() as tmp:
        workers = []
        for mode in modes:
            print(f"starting {mode} ...", flush=True)
            workers.append(Worker(mode, args, tmp))
        for r in range(args.reps):
            for wk in (workers if r % 2 == 0 else workers[::-1]):  # alternate the order each round
                wk.run()
            print(f"round {r + 1}: " + ", ".join(f"{wk.mode} {wk.times[-1]:.2f}s" for wk in workers), flush=True)
        results = {wk.mode: {**wk.info, **wk.finish(), "times": wk.times} for wk in workers}
        outputs = {wk.mode: np.load(wk.save) for wk in workers}
        bf16 = None
        if not native_bf16:
            print("bf16 accuracy (emulated) ...", flush=True)
            acc_args = argparse.Namespace(**{**vars(args), "size": args.bf16_size})
            pair = {}
            for mode in ("fp32", "bf16_accuracy"):
                wk = Worker(mode, acc_args, tmp)
                wk.run()
                wk.finish()
                pair[mode] = np.load(wk.save)
            bf16 = {"size": args.bf16_size, "psnr_vs_fp32": image_psnr(pair["bf16_accuracy"], pair["fp32"]),
                    "max_abs": float(np.abs(pair["bf16_accuracy"] - pair["fp32"]).max()), "time_s": wk.times[0]}
            notes.append(f"bf16 emulated at {args.bf16_size}: PSNR vs fp32 {bf16['psnr_vs_fp32']:.1f} dB, "
                         f"max |diff| {bf16['max_abs']:.1e}, {bf16['time_s']:.1f} s per call (emulated: not a speed)")
    ref = results["reference"] if "reference" in results else None
    strict = results.get("fp32")
    rows = []
    for mode, r in results.items():
        med, best = common.median(r["times"]), min(r["times"])
        r.update(median_s=med, min_s=best,
                 psnr_vs_reference=image_psnr(outputs[mode], outputs["reference"]) if ref else None)
        if ref:
            r.update(speedup_median=common.median(ref["times"]) / med, speedup_min=min(ref["times"]) / best)
        if strict is not None:  # paired: the ratio within each round, then the median
            r.update(speedup_vs_fp32=common.median([a / b for a, b in zip(strict["times"], r["times"])]),
                     psnr_vs_fp32=image_psnr(outputs[mode], outputs["fp32"]))
        rows.append([mode, f"{med:.2f}", f"{best:.2f}",
                     f"{r.get('speedup_median', float('nan')):.2f}x", f"{r.get('speedup_min', float('nan')):.2f}x",
                     f"{r.get('speedup_vs_fp32', float('nan')):.2f}x",
                     f"{r['peak_rss'] / 2**30:.2f}", f"{(r['peak_rss'] - r['rss_before']) / 2**30:.2f}",
                     "ref" if mode == "reference" else f"{r.get('psnr_vs_reference') or float('nan'):.1f}",
                     "-" if mode == "fp32" or strict is None else f"{r['psnr_vs_fp32']:.1f}"])
    table = common.print_table(["mode", "median s", "min s", "speed-up (median)", "speed-up (min)", "vs fp32 (paired)",
                                "peak RSS GiB", "growth GiB", "PSNR vs ref dB", "PSNR vs fp32 dB"], rows)
    for n in notes:
        print("note:", n)
    for mode, r in results.items():
        if "describe" in r:
            print(f"{mode}: {r['describe']}")
        if "compile_first_call_s" in r:
            print(f"{mode}: first call (compiling) {r['compile_first_call_s']:.1f} s")
    desc = common.describe_model(args.model)
    common.write_json(f"bench_inference_{common.model_tag(args.model)}{'_' + args.tag if args.tag else ''}.json", {
        "machine": common.machine(), "model": desc, "size": args.size, "reps": args.reps, "results": results,
        "bf16_emulated_accuracy": bf16, "notes": notes, "table": table})


if __name__ == "__main__":
    main()
