"""Speed of ``ifan.synth``: scenes per second and the time to write a training set.

Measures, on this machine:

1. one process: the time to draw, build and render a scene, and to encode and write its files,
   per scene kind (and the blur radii the scenes reach);
2. ``write_dataset`` with ``--workers`` processes: the wall-clock time to write ``--write-n``
   training samples (the files an ``ifan synth --train N`` run writes), in images per second.

Prints a table and writes JSON (``--json``, default ``benchmarks/results/synth.json``).

    python -m benchmarks.bench_synth --size 512x512 --scenes 30 --workers 2 --write-n 1000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import common


def _parse_size(text: str) -> tuple[int, int]:
    w, h = (int(v) for v in text.lower().split("x"))
    return w, h


def single_process(config, scenes: int, seed: int, out: Path) -> dict:
    """Per-scene timings (s) in this process, by stage and kind."""
    from ifan.synth.rendering import render
    from ifan.synth.assets import PHOTOS, load_photo, load_stereo_motorcycle
    from ifan.synth.scenes import build_scene
    from ifan.synth.writer import sample_paths, sample_spec_for, write_sample

    for name in PHOTOS:  # loading the photos once per process is not part of a scene's cost
        load_photo(name)
    load_stereo_motorcycle()
    rows = []
    for i in range(scenes):
        c0 = time.process_time()
        t0 = time.perf_counter()
        spec = sample_spec_for(seed, "train", i, config)
        t1 = time.perf_counter()
        scene = build_scene(spec)
        t2 = time.perf_counter()
        images = render(scene, spec.camera, spec.profile, spec.noise,
                        np.random.default_rng(np.random.SeedSequence([spec.seed, 1])))
        t3 = time.perf_counter()
        write_sample(sample_paths(out, "train", i), images)
        t4 = time.perf_counter()
        rows.append(dict(kind=spec.kind, layers=len(scene.layers), max_abs_coc=float(np.abs(images.coc).max()),
                         spec=t1 - t0, build=t2 - t1, render=t3 - t2, write=t4 - t3, total=t4 - t0,
                         cpu=time.process_time() - c0))
    return {"scenes": rows}


def summarise(rows: list[dict]) -> dict:
    out = {}
    for kind in sorted({r["kind"] for r in rows}) + ["all"]:
        sel = [r for r in rows if kind in ("all", r["kind"])]
        out[kind] = {k: float(np.mean([r[k] for r in sel])) for k in ("build", "render", "write", "total", "cpu")}
        out[kind]["count"] = len(sel)
        out[kind]["max_abs_coc_p50"] = float(np.median([r["max_abs_coc"] for r in sel]))
        out[kind]["max_abs_coc_max"] = float(np.max([r["max_abs_coc"] for r in sel]))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=_parse_size, default=(512, 512), help="WxH (default 512x512)")
    parser.add_argument("--max-blur", type=float, default=20.0)
    parser.add_argument("--scenes", type=int, default=30, help="scenes timed in one process (default 30)")
    parser.add_argument("--workers", type=int, default=2, help="processes for the dataset write (default 2)")
    parser.add_argument("--write-n", type=int, default=1000, help="training samples to write (default 1000; 0: skip)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--json", default="benchmarks/results/synth.json")
    args = parser.parse_args(argv)

    from ifan.synth.sampling import SynthConfig
    from ifan.synth.writer import write_dataset

    config = SynthConfig(width=args.size[0], height=args.size[1], max_blur=args.max_blur)
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="bench_synth_"))
    try:
        single = single_process(config, args.scenes, args.seed, tmp / "single")
        table = summarise(single["scenes"])
        write = None
        if args.write_n > 0:
            start, children = time.perf_counter(), resource.getrusage(resource.RUSAGE_CHILDREN)
            parent = time.process_time()
            write_dataset(tmp / "dataset", {"train": args.write_n}, config, seed=args.seed + 1,
                          workers=args.workers, progress=True)
            seconds = time.perf_counter() - start
            after = resource.getrusage(resource.RUSAGE_CHILDREN)
            cpu = (after.ru_utime + after.ru_stime - children.ru_utime - children.ru_stime
                   + time.process_time() - parent)
            size = sum(p.stat().st_size for p in (tmp / "dataset").rglob("*") if p.is_file())
            write = {"samples": args.write_n, "workers": args.workers, "seconds": seconds,
                     "images_per_s": args.write_n / seconds, "cpu_seconds": cpu,
                     "cpu_seconds_per_sample": cpu / args.write_n, "bytes": size}
    finally:
        shutil.rmtree(tmp, ignore_errors=True)

    w, h = args.size
    print(f"\nifan.synth at {w}x{h}, blur radii up to {args.max_blur:g} px, {os.cpu_count()} CPU cores "
          f"(load average {load_before[0]:.1f} before, {os.getloadavg()[0]:.1f} after)")
    print(f"{'kind':<8} {'n':>4} {'build s':>8} {'render s':>9} {'write s':>8} {'total s':>8} {'cpu s':>6} "
          f"{'scenes/s':>9} {'max|coc| p50/max':>17}")
    for kind, s in table.items():
        print(f"{kind:<8} {s['count']:>4} {s['build']:>8.3f} {s['render']:>9.3f} {s['write']:>8.3f} "
              f"{s['total']:>8.3f} {s['cpu']:>6.3f} {1 / s['total']:>9.2f} "
              f"{s['max_abs_coc_p50']:>8.1f}/{s['max_abs_coc_max']:<8.1f}")
    if write:
        print(f"write_dataset: {write['samples']} training samples with {write['workers']} workers in "
              f"{write['seconds']:.1f} s = {write['images_per_s']:.2f} samples/s; "
              f"{write['cpu_seconds_per_sample']:.3f} CPU s per sample ({write['bytes'] / 1e9:.2f} GB)")
    result = {
        "machine": common.machine(),
        "size": [w, h], "max_blur": args.max_blur, "cpu_count": os.cpu_count(), "platform": platform.platform(),
        "python": sys.version.split()[0], "numpy": np.__version__, "date": time.strftime("%Y-%m-%d %H:%M:%S"),
        "load_average_before": load_before, "load_average_after": os.getloadavg(),
        "single_process": table, "scenes": single["scenes"], "write_dataset": write,
    }
    path = Path(args.json)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=1))
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
