"""How soon ``ifan synth`` writes its first sample, and the memory it holds by then, for large counts.

Each row runs ``python -m ifan synth -o TMP --train N --size 128x128 --workers 1 --no-progress`` in a fresh
process, waits for the first sample to be complete (its ``.npz``, written last), reads that process's peak
RSS (``VmHWM``) and stops it. ``--compare SRC`` runs the same rows with another checkout's ``src`` (the
code before a change) in the same invocation, so that the two are measured side by side::

    python -m benchmarks.bench_synth_start --counts 1000 100000 --compare /tmp/old/src --compare-label "before (e3bb74d)"

Writes ``benchmarks/results/synth_start.json``.
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.common import SRC, machine, peak_rss_bytes, print_table, write_json


def first_sample(src: Path, count: int, size: str, timeout: float) -> dict:
    """Seconds until the first sample of ``--train count`` is complete, and the peak RSS by then."""
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp) / "ds"
        first = out / "train_meta" / "000000.npz"
        env = dict(os.environ, PYTHONPATH=str(src), OMP_NUM_THREADS="1")
        start = time.perf_counter()
        proc = subprocess.Popen([sys.executable, "-m", "ifan", "synth", "-o", str(out), "--train", str(count),
                                 "--size", size, "--workers", "1", "--no-progress"], env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        try:
            while not first.exists():
                if proc.poll() is not None:
                    raise RuntimeError(f"ifan synth ended before its first sample: {proc.stderr.read()[-2000:]}")
                if time.perf_counter() - start > timeout:
                    return {"count": count, "seconds_to_first_sample": None,
                            "peak_rss_mib": peak_rss_bytes(proc.pid) / 2**20, "note": f"no sample after {timeout:.0f} s"}
                time.sleep(0.02)
            seconds = time.perf_counter() - start
            peak = peak_rss_bytes(proc.pid)
        finally:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
        return {"count": count, "seconds_to_first_sample": round(seconds, 2), "peak_rss_mib": round(peak / 2**20, 1)}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--counts", type=int, nargs="+", default=[1000, 100_000])
    p.add_argument("--size", default="128x128")
    p.add_argument("--compare", type=Path, help="another checkout's src folder, measured in the same run")
    p.add_argument("--compare-label", default="compared", help="its name in the table (e.g. the commit)")
    p.add_argument("--timeout", type=float, default=300.0)
    args = p.parse_args()
    sources = [("this checkout", SRC)] + ([(args.compare_label, args.compare)] if args.compare else [])
    rows = []
    for count in args.counts:  # the two codes alternate, so that the machine's load touches both alike
        for label, src in sources:
            rows.append({"code": label, "src": str(src), **first_sample(src, count, args.size, args.timeout)})
            print(rows[-1], flush=True)
    print_table(["code", "--train", "s to first sample", "peak RSS MiB"],
                [[r["code"], r["count"], r["seconds_to_first_sample"], r["peak_rss_mib"]] for r in rows])
    write_json("synth_start.json", {"meta": machine(), "size": args.size, "rows": rows})


if __name__ == "__main__":
    main()
