"""Calibrate a model's defocus map to the blur radius in pixels, and measure the calibration's error.

    python -m benchmarks.calibrate_defocus                                  # the shipped ifan-lite: measure
    python -m benchmarks.calibrate_defocus --write                          # ... and store it in the weights
    python -m benchmarks.calibrate_defocus --model runs/x/best.safetensors --write

``--keep-bokeh R`` needs each pixel's blur radius; the network estimates a dual-pixel disparity
(the defocus map, ``ifan.inference.deblurrer.defocus_from_disparity``). This script fits the mapping
``radius = f(|defocus|)`` (``ifan.inference.calibration.fit_calibration``: the median true radius
in quantile bins of the estimate, made monotone) on held-out scenes of the simulator and measures
its error on *other* held-out scenes:

* fit: ``ifan synth --mixture --soft-lens-p 0.5 --seed 26``, 100 scenes of 512x512 (the training
  mixture of ifan-lite 0.3/0.4, whose training used seeds 1, 11, 21 and 41; seeds 2 and 3 are the
  quality suite's), made on first use under ``data/calib26``;
* error: the same with ``--seed 27`` (``data/calib27``): the median absolute error in px over all
  pixels, and per bin of the true radius the median estimate and its 10th-90th percentiles; the
  same for the ideal relation (``|d| / 0.833``) that weights without a calibration get; and, at
  the default ``--keep-bokeh``, how often the mask keeps what is truly more blurred and deblurs
  what is truly sharp.

The network runs in float32 (``--precision``), every 4th pixel of each row and column is sampled.
``--write`` stores the calibration (knots, source, error) in the weights file's metadata; the
tensors are copied byte for byte (checked). Prints a table and writes
``benchmarks/results/calibrate_defocus_<model>.json``.
"""

from __future__ import annotations

import argparse
import hashlib
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from benchmarks.common import machine, print_table, write_json

ROOT = Path(__file__).resolve().parents[1]
RADIUS_BINS = [(0, 1), (1, 2), (2, 4), (4, 6), (6, 8), (8, 10), (10, 13), (13, 21)]
STEP = 4  # sample every STEP-th pixel of each row and column


def synth_set(data: Path, seed: int, count: int) -> Path:
    """The held-out mixture set of ``seed`` (rendered on first use; resumes, never re-renders)."""
    from ifan.synth import SynthConfig, write_dataset

    out = data / f"calib{seed}"
    config = replace(SynthConfig.mixture(512, 512), soft_lens_p=0.5)
    write_dataset(out, {"test": count}, config, seed=seed, workers=1, progress=False)
    return out


def collect(deblurrer, root: Path, count: int) -> tuple[list[np.ndarray], list[np.ndarray]]:
    """Per scene: the defocus map (signed, px) and the true signed blur radius (``coc``)."""
    from ifan.io import read_image
    from ifan.synth import sample_paths

    maps, cocs = [], []
    for i in range(count):
        paths = sample_paths(root, "test", i)
        maps.append(deblurrer.defocus_map(read_image(paths.center).rgb))
        with np.load(paths.meta) as meta:
            cocs.append(meta["coc"].astype(np.float32))
    return maps, cocs


def sampled(arrays: list[np.ndarray]) -> np.ndarray:
    return np.concatenate([np.abs(a[::STEP, ::STEP]).ravel() for a in arrays])


def error_table(estimate: np.ndarray, truth: np.ndarray) -> dict:
    """The median absolute error and, per bin of the true radius, the spread of the estimate."""
    err = np.abs(estimate - truth)
    bins = []
    for lo, hi in RADIUS_BINS:
        sel = (truth >= lo) & (truth < hi)
        if sel.sum() == 0:
            continue
        e = estimate[sel]
        bins.append({"radius": [lo, hi], "pixels": int(sel.sum()), "median_estimate": float(np.median(e)),
                     "p10": float(np.percentile(e, 10)), "p90": float(np.percentile(e, 90)),
                     "median_abs_px": float(np.median(err[sel]))})
    return {"median_abs_px": float(np.median(err)), "mean_abs_px": float(err.mean()), "bins": bins}


def keep_rates(deblurrer, maps: list[np.ndarray], cocs: list[np.ndarray], radius: float, transition: float) -> dict:
    """At ``--keep-bokeh radius``: of the pixels truly blurred beyond ``radius + transition/2``, the
    share the mask keeps (mask 0); of those truly sharper than ``radius - transition/2``, the share
    it deblurs fully (mask 1)."""
    kept = deblurred = n_blurred = n_sharp = 0
    for m, coc in zip(maps, cocs):
        mask = deblurrer.bokeh_mask(m, radius, transition)
        truth = np.abs(coc)
        blurred, sharp = truth > radius + transition / 2, truth < radius - transition / 2
        kept += int((mask[blurred] == 0).sum())
        deblurred += int((mask[sharp] == 1).sum())
        n_blurred, n_sharp = n_blurred + int(blurred.sum()), n_sharp + int(sharp.sum())
    return {"keep_bokeh": radius, "transition": transition, "blurred_pixels": n_blurred, "sharp_pixels": n_sharp,
            "blurred_kept": kept / max(n_blurred, 1), "sharp_deblurred": deblurred / max(n_sharp, 1)}


def tensor_digest(path: Path) -> str:
    from safetensors import safe_open

    h = hashlib.sha256()
    with safe_open(str(path), framework="pt") as f:
        for k in sorted(f.keys()):
            t = f.get_tensor(k)
            h.update(k.encode() + str(t.dtype).encode() + str(tuple(t.shape)).encode())
            h.update(t.contiguous().view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def main() -> None:
    from ifan.inference import Deblurrer
    from ifan.inference.blend import DEFAULT_KEEP_BOKEH, DEFAULT_TRANSITION
    from ifan.inference.calibration import METADATA_KEY, UNCALIBRATED, fit_calibration
    from ifan.models.serialization import update_metadata
    from ifan.models.hub import resolve_weights

    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="ifan-lite", help="model name or weights file (default ifan-lite)")
    p.add_argument("--data", type=Path, default=ROOT / "data", help="where the scenes are made (default data/)")
    p.add_argument("--fit-seed", type=int, default=26)
    p.add_argument("--test-seed", type=int, default=27)
    p.add_argument("--count", type=int, default=100, help="scenes per set (default 100)")
    p.add_argument("--precision", default="fp32")
    p.add_argument("--write", action="store_true", help="store the calibration in the weights file's metadata")
    args = p.parse_args()

    torch.set_num_threads(2)
    weights = resolve_weights(args.model)
    deblurrer = Deblurrer.from_pretrained(str(weights), device="cpu", precision=args.precision)
    start = time.perf_counter()
    fit_maps, fit_cocs = collect(deblurrer, synth_set(args.data, args.fit_seed, args.count), args.count)
    test_maps, test_cocs = collect(deblurrer, synth_set(args.data, args.test_seed, args.count), args.count)
    seconds = time.perf_counter() - start

    source = (f"ifan synth --mixture --soft-lens-p 0.5 --seed {args.fit_seed}, {args.count} scenes of 512x512, "
              f"{args.precision}; error on --seed {args.test_seed}")
    fitted = fit_calibration(sampled(fit_maps), sampled(fit_cocs), source=source)
    truth, est = sampled(test_cocs), sampled(test_maps)
    calibrated = error_table(fitted(est), truth)
    ideal = error_table(UNCALIBRATED(est), truth)
    deblurrer.calibration = fitted
    rates = keep_rates(deblurrer, test_maps, test_cocs, DEFAULT_KEEP_BOKEH, DEFAULT_TRANSITION)
    bins = [{k: (round(v, 3) if isinstance(v, float) else v) for k, v in b.items()} for b in calibrated["bins"]]
    calibration = replace(fitted, error={"median_abs_px": round(calibrated["median_abs_px"], 3), "bins": bins})

    rows = []
    for c, i in zip(calibrated["bins"], ideal["bins"]):
        lo, hi = c["radius"]
        rows.append([f"{lo}-{hi}", c["pixels"], f"{c['median_estimate']:.2f} ({c['p10']:.2f}-{c['p90']:.2f})",
                     f"{c['median_abs_px']:.2f}", f"{i['median_estimate']:.2f} ({i['p10']:.2f}-{i['p90']:.2f})",
                     f"{i['median_abs_px']:.2f}"])
    print(f"{args.model}: fitted on seed {args.fit_seed}, measured on seed {args.test_seed} ({args.count} scenes each)")
    print_table(["true radius (px)", "pixels", "calibrated: median (p10-p90)", "median |error|",
                 "ideal |d|/0.833: median (p10-p90)", "median |error|"], rows)
    print(f"median |error| over all pixels: calibrated {calibrated['median_abs_px']:.2f} px, "
          f"ideal relation {ideal['median_abs_px']:.2f} px")
    print(f"at --keep-bokeh {DEFAULT_KEEP_BOKEH:g} (transition {DEFAULT_TRANSITION:g} px): "
          f"{100 * rates['blurred_kept']:.1f} % of the pixels blurred beyond "
          f"{DEFAULT_KEEP_BOKEH + DEFAULT_TRANSITION / 2:g} px kept as they were, "
          f"{100 * rates['sharp_deblurred']:.1f} % of those below {DEFAULT_KEEP_BOKEH - DEFAULT_TRANSITION / 2:g} px "
          "deblurred fully")
    print("knots |defocus| -> radius:", ", ".join(f"{d:.2f}->{r:.2f}" for d, r in zip(fitted.defocus, fitted.radius)))

    result = {"model": args.model, "weights": str(weights), "fit_seed": args.fit_seed, "test_seed": args.test_seed,
              "scenes": args.count, "precision": args.precision, "sample_step": STEP, "seconds": seconds,
              "calibration": {"defocus": fitted.defocus, "radius": fitted.radius},
              "calibrated": calibrated, "ideal": ideal, "keep_bokeh": rates, "machine": machine()}
    if args.write:
        before = tensor_digest(weights)
        update_metadata(weights, weights, {METADATA_KEY: calibration.to_json()})
        after = tensor_digest(weights)
        if before != after:
            raise SystemExit(f"{weights}: the tensors changed while the metadata was written")
        result["written_to"] = str(weights)
        result["tensors_sha256"] = after
        print(f"wrote the calibration into {weights} (tensors unchanged: sha256 {after[:16]}...)")
    write_json(f"calibrate_defocus_{Path(str(args.model)).stem}.json", result)


if __name__ == "__main__":
    main()
