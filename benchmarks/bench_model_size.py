"""How much larger an IFAN may be within the shipped model's speed limit (twice `ifan-lite`).

    python -m benchmarks.bench_model_size            # about 2 minutes on 2 CPU cores

Untrained models of other widths and IAC iteration counts deblur one 1280x720 image each through
``Deblurrer`` (precision ``auto``: bf16 where the CPU has it), the models interleaved over rounds;
the best time of each is compared with ``ifan-lite``'s in the same run. Prints a table and writes
``benchmarks/results/model_size.json``.
"""

from __future__ import annotations

import argparse
import time

from benchmarks import common

SIZES = [(16, 8), (20, 8), (24, 8), (16, 12), (16, 17)]  # (width, IAC iterations); the first is ifan-lite's


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--precision", default="auto")
    args = parser.parse_args()

    import numpy as np
    import torch

    from ifan.inference.deblurrer import Deblurrer
    from ifan.models.zoo import create_model

    torch.set_num_threads(args.threads)
    image = np.random.default_rng(0).random((720, 1280, 3), dtype=np.float32)
    models = {size: create_model("ifan-lite", channels=size[0], iterations=size[1]).eval() for size in SIZES}
    deblurrers = {size: Deblurrer(m, device="cpu", precision=args.precision) for size, m in models.items()}
    for d in deblurrers.values():  # warm-up
        d.deblur(image[:64, :64])
    times: dict[tuple[int, int], list[float]] = {size: [] for size in SIZES}
    for _ in range(args.rounds):
        for size, d in deblurrers.items():
            start = time.perf_counter()
            d.deblur(image)
            times[size].append(time.perf_counter() - start)
    base = min(times[SIZES[0]])
    rows, records = [], []
    for size in SIZES:
        params = sum(p.numel() for p in models[size].parameters())
        ratio = min(times[size]) / base
        rows.append([f"width {size[0]}, N = {size[1]}", f"{params / 1e6:.2f} M", f"{min(times[size]):.2f} s",
                     f"{ratio:.2f}", "yes" if ratio <= 2.0 else "no"])
        records.append({"width": size[0], "iterations": size[1], "parameters": params, "times_s": times[size],
                        "ratio": ratio})
    common.print_table(["model", "parameters", "1280x720, best", "vs ifan-lite", "within 2x"], rows)
    common.write_json("model_size.json", {"machine": common.machine(), "threads": args.threads,
                                          "precision": args.precision, "rounds": args.rounds, "models": records})


if __name__ == "__main__":
    main()
