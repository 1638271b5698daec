"""Photos per hour of ``ifan deblur`` over a folder of 12-megapixel JPEGs, measured in one run: one
process with the I/O after the network (``--sequential-io``) and beside it (the default), and one and
two processes (``torchrun``) of one thread each; also one process with every core.

    python -m benchmarks.bench_archive [--photos 4] [--size 3000x4000] [--model ifan-lite]

Every configuration is the real command in its own process(es), over the same photos into a fresh
folder; its rate comes from the run's manifest (the file loop: from the first photo to the last write
of the slowest rank) and from the wall time of the whole command (start-up and model loading too).
From the manifest's records also: the network's seconds per photo, and the time each process spends
outside it per photo (reading, writing, waiting for the other rank; what the overlap hides), which a
changing load on a shared machine disturbs much less than the rates. Peak RSS: the largest process. The
photos are scikit-image's ``coffee``, blurred, resized to the size and shifted a little per photo (JPEG,
quality 95). Also measured: one photo's read and write, which is what the overlap can hide. Writes
benchmarks/results/bench_archive.json (with the CPU model from lscpu and /proc/cpuinfo, and the load).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import common

# name -> (processes, extra arguments of ifan deblur)
CONFIGS = {
    "1 process x 1 thread, I/O after the network": (1, ["--threads", "1", "--sequential-io"]),
    "1 process x 1 thread, I/O beside the network": (1, ["--threads", "1"]),
    "2 processes x 1 thread (torchrun), I/O beside": (2, ["--threads", "1"]),
    "1 process x all threads, I/O beside": (1, []),
}


def measure(cmd: list[str]) -> None:
    """Run ``cmd`` and print its wall time, exit code and the peak RSS of its largest process (JSON)."""
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    print(json.dumps({"seconds": seconds, "exit_code": proc.returncode, "stderr": proc.stderr[-2000:],
                      "peak_rss": resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024}))


def make_photos(folder: Path, n: int, h: int, w: int) -> list[Path]:
    import cv2
    import numpy as np

    from ifan.io import write_image

    base = cv2.resize(common.test_photo(h // 4, w // 4), (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    return [write_image(folder / f"photo{i:02d}.jpg", np.roll(base, 97 * i, axis=1)) for i in range(n)]


def io_seconds(photo: Path, out: Path) -> tuple[float, float]:
    """Median seconds of reading one photo and of writing its result (3 times each)."""
    from ifan.io import read_image, write_like

    reads, writes = [], []
    for _ in range(3):
        t = time.perf_counter()
        image = read_image(photo)
        reads.append(time.perf_counter() - t)
        t = time.perf_counter()
        write_like(out, image.rgb, image)
        writes.append(time.perf_counter() - t)
    return common.median(reads), common.median(writes)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--measure", nargs=argparse.REMAINDER, help=argparse.SUPPRESS)
    p.add_argument("--photos", type=int, default=4, help="photos in the folder (default 4)")
    p.add_argument("--size", default="3000x4000", help="HxW of each photo (default 3000x4000: 12 MP)")
    p.add_argument("--model", default="ifan-lite", help="model name or weights file (default ifan-lite)")
    p.add_argument("--precision", default="auto", help="as ifan deblur's --precision (default auto)")
    args = p.parse_args()
    if args.measure:
        measure(args.measure)
        return
    h, w = (int(v) for v in args.size.split("x"))
    rows, runs = [], {}
    with tempfile.TemporaryDirectory() as tmp:
        photos = make_photos(Path(tmp) / "photos", args.photos, h, w)
        read_s, write_s = io_seconds(photos[0], Path(tmp) / "io" / "out.jpg")
        for name, (procs, extra) in CONFIGS.items():
            out = Path(tmp) / f"out{len(runs)}"
            launch = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={procs}"] \
                if procs > 1 else [sys.executable]
            cmd = [*launch, "-m", "ifan", "deblur", str(Path(tmp) / "photos"), "-o", str(out), "--model", args.model,
                   "--precision", args.precision, "-q", *extra]
            load = os.getloadavg()[0]
            r = common.run_child(__spec__.name, ["--measure", *cmd])
            if r["exit_code"] != 0:
                raise RuntimeError(f"{name} failed ({r['exit_code']}):\n{r['stderr']}")
            lines = [json.loads(line) for line in (out / "ifan-manifest.jsonl").read_text().splitlines()]
            summary, network = lines[-1]["summary"], sum(r["seconds"] for r in lines[:-1])
            assert summary["done"] == args.photos, summary
            r.update(network_seconds_per_photo=network / args.photos,  # the time of all processes outside it:
                     outside_seconds_per_photo=(procs * summary["seconds"] - network) / args.photos)
            command = " ".join(cmd).replace(tmp, "TMP").replace(sys.executable, "python")
            r.update(summary=summary, command=command, load_before=load,
                     load_after=os.getloadavg()[0], end_to_end_photos_per_hour=3600 * args.photos / r["seconds"])
            runs[name] = r
            print(f"{name}: {summary['photos_per_hour']:.0f} photos/hour in the loop, "
                  f"{r['end_to_end_photos_per_hour']:.0f} end to end", flush=True)
    first = runs[next(iter(CONFIGS))]["summary"]["photos_per_hour"]
    for name, r in runs.items():
        rate = r["summary"]["photos_per_hour"]
        rows.append([name, f"{rate:.0f}", f"{rate / first:.2f}x", f"{r['end_to_end_photos_per_hour']:.0f}",
                     f"{r['network_seconds_per_photo']:.1f}", f"{r['outside_seconds_per_photo']:.2f}",
                     f"{r['peak_rss'] / 2**30:.2f}", f"{r['load_before']:.1f}"])
    table = common.print_table(["configuration", "photos/hour", "vs first", "photos/hour end to end",
                                "network s/photo", "outside the network s/photo", "peak RSS GiB", "load before"], rows)
    note = (f"{args.photos} JPEGs of {w}x{h} ({w * h / 1e6:.0f} MP), {args.model}, precision {args.precision}; "
            f"one photo's read {read_s:.2f} s and write {write_s:.2f} s; CPU: {common.lscpu_model()}")
    print(note)
    common.write_json("bench_archive.json", {"machine": {**common.machine(), "lscpu_model": common.lscpu_model()},
                                             "photos": args.photos, "size": [h, w], "model": args.model,
                                             "precision": args.precision,
                                             "read_seconds": read_s, "write_seconds": write_s, "runs": runs,
                                             "table": table, "note": note})


if __name__ == "__main__":
    main()
