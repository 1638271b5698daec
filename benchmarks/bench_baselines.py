"""Speed of the Wiener baseline of ``ifan evaluate --baselines``: radius estimation and deconvolution.

A 512x512 photo (scikit-image ``astronaut``) blurred with a hard disc of radius 5 (reflected at
the borders), deblurred ``--reps`` times with the radius estimated each time (what the evaluation
does per image) and once more with the radius given. Prints a table and writes
``benchmarks/results/bench_baselines.json``.

    python -m benchmarks.bench_baselines [--reps 5] [--threads 2]
"""

from __future__ import annotations

import argparse
import time

from benchmarks import common


def blurred_photo(radius: float):
    """``astronaut`` as float32 in [0, 1], blurred by a hard disc of ``radius`` (reflected borders)."""
    import numpy as np
    from scipy import ndimage
    from skimage import data

    img = data.astronaut().astype(np.float32) / 255
    r = int(np.ceil(radius))
    y, x = np.mgrid[-r:r + 1, -r:r + 1]
    disc = (x * x + y * y <= radius * radius).astype(np.float64)
    disc /= disc.sum()
    return np.stack([ndimage.convolve(img[..., c], disc, mode="reflect") for c in range(3)], -1).astype(np.float32)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--reps", type=int, default=5)
    p.add_argument("--radius", type=float, default=5.0)
    p.add_argument("--threads", type=int, default=2, help="torch threads (the FFTs are numpy's)")
    args = p.parse_args()
    import torch

    from ifan.evaluate.baselines import wiener_deblur

    torch.set_num_threads(args.threads)
    blurred = blurred_photo(args.radius)
    estimated, given, radii = [], [], []
    for _ in range(args.reps):
        t0 = time.perf_counter()
        _, r = wiener_deblur(blurred)
        estimated.append(time.perf_counter() - t0)
        radii.append(r)
        t0 = time.perf_counter()
        wiener_deblur(blurred, radius=args.radius)
        given.append(time.perf_counter() - t0)
    rows = [["radius estimated + deconvolution", f"{common.median(estimated):.3f}", f"{min(estimated):.3f}"],
            ["deconvolution, radius given", f"{common.median(given):.3f}", f"{min(given):.3f}"]]
    table = common.print_table(["512x512, disc radius 5", "median s", "min s"], rows)
    print(f"estimated radii: {sorted(set(round(r, 2) for r in radii))} (true {args.radius})")
    common.write_json("bench_baselines.json", {"machine": common.machine(), "size": [512, 512], "radius": args.radius,
                                                "estimated_s": estimated, "given_s": given, "radii": radii,
                                                "table": table})


if __name__ == "__main__":
    main()
