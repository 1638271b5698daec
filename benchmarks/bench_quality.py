"""How well a model deblurs what it was not trained on: the generalisation suite.

    python -m benchmarks.bench_quality                         # the shipped ifan-lite
    python -m benchmarks.bench_quality --models ifan-lite runs/x/best.safetensors   # side by side

For each model it measures, on images it never saw:

1. ``synth-classic`` / ``synth-mixture``: held-out ``ifan synth`` test sets (100 scenes each,
   their own seeds: ``--seed 2 --noise``, the set of the 0.1 results, and ``--seed 3 --mixture``,
   the 0.2 training mixture), made on first use under ``data/quality/``. PSNR / SSIM / MAE of
   input and output against the sharp target, the gain by largest blur radius, and how well the
   estimated defocus ranks with the true blur: Spearman's rho between ``|defocus map|`` and
   ``|blur radius|`` on 8x8 blocks, per image (mean and worst; images whose blur hardly varies are
   skipped) and over the cells of all images pooled.
2. ``srgb-disc`` and ``lin-gauss-jpeg``: made by ``ifan.evaluate.suite`` (no ``ifan.synth``
   code) from sharp photos never trained on (china, tower and four Debian wallpaper photos):
   plain discs on sRGB values over two layers; a smooth Gaussian blur in linear light, then JPEG.
3. ``harm``: PSNR between output and input on sharp photos (no blur): how much a model changes
   what it should leave alone.
4. ``artefacts`` on real defocused photos (flower, groot, the cub and four Debian photos): near
   strong edges (the top 2 % of the input's gradient, a band 2-12 px around them), the mean *overshoot* of the
   output beyond the input's local range (15x15 window; halos and ringing, in 8-bit levels), the
   change of the 15x15 local mean colour (8-bit levels), and the ratio of local contrast
   (standard deviation) output / input. A figure of 100 % crops goes to ``--figure``.

Suite 2 (this version, ``suite`` in the JSON) changed the photos (``ifan.evaluate.suite``): the cub
(``cheetah2.jpg``) of suite 1 has a defocused body, so it moved from the sharp photos to real defocus
(docs/training.md says what that changed), and photos of two Debian wallpaper packages joined both
lists, so that the independent sets rest on six photos, not three.

PSNR/SSIM/MAE are ``ifan.evaluate.metrics.score_image`` under the ``full`` protocol: outputs clipped
to [0, 1] at full float precision, sRGB, not cropped; SSIM is scikit-image's default form (a 7x7
uniform window, sample covariance). The table is printed (markdown) and written with
every per-image number to ``benchmarks/results/quality.json`` (``--json``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import cv2
import numpy as np

from benchmarks import common
from ifan.evaluate import suite
from ifan.evaluate.suite import SUITE, Sample

BINS = [(0, 5), (5, 10), (10, 15), (15, 20.5)]
SYNTH_SETS = {  # name: (folder under data/quality, config factory name, seed)
    "synth-classic": ("synth-classic", "classic", 2),
    "synth-mixture": ("synth-mixture", "mixture", 3),
}


def ensure_synth_set(name: str, data_root: Path, count: int) -> Path:
    """The held-out ``ifan synth`` test set ``name``, rendered on first use."""
    from ifan.synth import SynthConfig, write_dataset

    folder, kind, seed = SYNTH_SETS[name]
    out = data_root / folder
    config = SynthConfig(noise=True) if kind == "classic" else SynthConfig.mixture()
    write_dataset(out, {"test": count}, config, seed=seed, workers=2, progress=False)
    return out


def load_synth_samples(root: Path, count: int) -> list[Sample]:
    from ifan.synth import sample_paths

    samples = []
    for i in range(count):
        paths = sample_paths(root, "test", i)
        with np.load(paths.meta) as maps:
            coc = maps["coc"].astype(np.float32)
        samples.append(Sample(paths.center.stem, suite.read_srgb(paths.center), suite.read_srgb(paths.target),
                              {"max_radius": float(np.abs(coc).max()), "coc": coc}))
    return samples


def scores(output: np.ndarray, target: np.ndarray) -> dict[str, float]:
    """PSNR, SSIM and MAE of one ``(H, W, 3)`` output (clipped) against its target: the ``full`` protocol."""
    from ifan.evaluate.metrics import FULL, score_image

    return {k: v for k, v in score_image(output, target, FULL).items() if k != "lpips"}


def blocks(x: np.ndarray, block: int = 8) -> np.ndarray:
    """Mean of ``|x|`` over ``block`` x ``block`` cells, flattened."""
    h, w = (x.shape[0] // block) * block, (x.shape[1] // block) * block
    return np.abs(x[:h, :w]).reshape(h // block, block, w // block, block).mean(axis=(1, 3)).ravel()


def block_spearman(defocus: np.ndarray, coc: np.ndarray, min_std: float = 0.25) -> float | None:
    """Spearman's rho of |defocus| and |coc| over 8 x 8 cells of one image (None: its blur hardly varies)."""
    from scipy.stats import spearmanr

    truth, est = blocks(coc), blocks(defocus)
    if truth.std() < min_std:
        return None
    return float(spearmanr(est, truth).statistic)


def edge_band(image: np.ndarray, top: float = 0.02, inner: int = 2, outer: int = 12) -> tuple[np.ndarray, np.ndarray]:
    """Strong edges of ``image`` (top ``top`` of the gradient magnitude) and a band around them."""
    grey = cv2.GaussianBlur(image.mean(axis=2), (0, 0), 1.0)
    mag = np.hypot(cv2.Sobel(grey, cv2.CV_32F, 1, 0), cv2.Sobel(grey, cv2.CV_32F, 0, 1))
    edges = mag >= np.quantile(mag, 1 - top)
    e8 = edges.astype(np.uint8)
    near = cv2.dilate(e8, np.ones((2 * outer + 1,) * 2, np.uint8)).astype(bool)
    core = cv2.dilate(e8, np.ones((2 * inner + 1,) * 2, np.uint8)).astype(bool)
    return edges, near & ~core


def artefacts(inp: np.ndarray, out: np.ndarray, window: int = 15) -> dict[str, float]:
    """Overshoot, local-mean change and local-contrast ratio near strong edges (see the module docstring)."""
    out = np.clip(out, 0, 1).astype(np.float32)
    _, band = edge_band(inp)
    k = np.ones((window, window), np.uint8)
    hi = np.stack([cv2.dilate(inp[..., c], k) for c in range(3)], axis=2)
    lo = np.stack([cv2.erode(inp[..., c], k) for c in range(3)], axis=2)
    over = np.maximum(out - hi, 0) + np.maximum(lo - out, 0)
    dark = np.maximum(lo - out, 0)

    def local(x):
        m = cv2.blur(x, (window, window))
        s = np.sqrt(np.maximum(cv2.blur(x * x, (window, window)) - m * m, 0))
        return m, s

    m_in, s_in = local(inp)
    m_out, s_out = local(out)
    ratio = (s_out.mean(axis=2)[band] + 1e-3) / (s_in.mean(axis=2)[band] + 1e-3)
    return {"overshoot": float(over[band].mean() * 255), "dark_overshoot": float(dark[band].mean() * 255),
            "mean_shift": float(np.abs(m_out - m_in)[band].mean() * 255),
            "contrast_ratio": float(np.median(ratio)), "band_px": int(band.sum())}


def run_model(model: str, precision: str, sets: dict[str, list[Sample]]) -> dict:
    from ifan import Deblurrer

    deblurrer = Deblurrer.from_pretrained(model, device="cpu", precision=precision)
    result = {"model": model, "describe": deblurrer.describe(), "sets": {}}
    for set_name, samples in sets.items():
        rows, pooled = [], []
        start = time.perf_counter()
        for s in samples:
            out, defocus = deblurrer.deblur(s.blurry, return_defocus=True)
            row = {"name": s.name, **{k: v for k, v in s.info.items() if k not in ("coc", "outputs")}}
            if set_name == "artefacts":
                row.update(artefacts(s.blurry, out))
                s.info.setdefault("outputs", {})[model] = out
            elif set_name == "harm":
                row["psnr_to_input"] = scores(out, s.blurry)["psnr"]
                row.update(artefacts(s.blurry, out))
            else:
                before, after = scores(s.blurry, s.sharp), scores(out, s.sharp)
                row.update({f"input_{k}": v for k, v in before.items()}, **after)
                if "coc" in s.info:
                    row["spearman"] = block_spearman(defocus, s.info["coc"])
                    pooled.append((blocks(defocus), blocks(s.info["coc"])))
            rows.append(row)
        result["sets"][set_name] = {"rows": rows, "seconds": time.perf_counter() - start}
        if pooled:  # one rank correlation over every cell of every image: ranks blur across images too
            from scipy.stats import spearmanr

            est, truth = (np.concatenate(x) for x in zip(*pooled))
            result["sets"][set_name]["spearman_pooled"] = float(spearmanr(est, truth).statistic)
    return result


def _photo(row: dict) -> str | None:
    """The evaluation photo a row was made from (for two-layer scenes, the background's)."""
    return row.get("photo") or (row.get("photos") or [None])[0]


def _gain(rows: list[dict]) -> dict:
    """How many rows, and their mean PSNR gain over the input (dB)."""
    return {"count": len(rows), "gain_db": float(np.mean([r["psnr"] - r["input_psnr"] for r in rows]))}


def summarise(result: dict) -> dict:
    """Means per set (and gains, blur bins, Spearman) from the per-image rows."""
    summary = {}
    for set_name, data in result["sets"].items():
        rows = data["rows"]
        if set_name == "artefacts" or set_name == "harm":
            keys = ["overshoot", "dark_overshoot", "mean_shift", "contrast_ratio"]
            if set_name == "harm":
                keys = ["psnr_to_input"] + keys
            summary[set_name] = {k: float(np.mean([r[k] for r in rows])) for k in keys}
            summary[set_name]["per_image"] = {r["name"]: {k: r[k] for k in keys} for r in rows}
            continue
        s = {k: float(np.mean([r[k] for r in rows])) for k in ("psnr", "ssim", "mae", "input_psnr", "input_ssim",
                                                                 "input_mae")}
        s["gain_db"] = s["psnr"] - s["input_psnr"]
        s["improved"] = int(sum(r["psnr"] > r["input_psnr"] for r in rows))
        s["count"] = len(rows)
        bins = {f"{lo}-{int(hi)}": [r for r in rows if lo <= r["max_radius"] < hi] for lo, hi in BINS}
        s["by_blur"] = {k: _gain(sel) for k, sel in bins.items() if sel}
        photos = sorted({_photo(r) for r in rows if _photo(r)})
        if photos:  # one photo can carry a set's mean: say which
            s["by_photo"] = {p: _gain([r for r in rows if _photo(r) == p]) for p in photos}
        rho = [r["spearman"] for r in rows if r.get("spearman") is not None]
        if rho:
            s["spearman_mean"], s["spearman_min"], s["spearman_count"] = float(np.mean(rho)), float(min(rho)), len(rho)
            s["spearman_pooled"] = data["spearman_pooled"]
        summary[set_name] = s
    return summary


def markdown(results: list[dict]) -> str:
    """The suite's table: one row per measure, one column per model."""
    names = [Path(r["model"]).stem if "/" in r["model"] else r["model"] for r in results]
    head = "| measure | " + " | ".join(names) + " |\n|---|" + "---|" * len(names) + "\n"
    lines = []

    def row(label, values):
        lines.append(f"| {label} | " + " | ".join(values) + " |")

    s0 = results[0]["summary"]
    for set_name in ("synth-classic", "synth-mixture", "srgb-disc", "lin-gauss-jpeg"):
        if set_name not in s0:
            continue
        base = s0[set_name]
        row(f"{set_name}: input PSNR / SSIM", [f"{base['input_psnr']:.2f} / {base['input_ssim']:.4f}"] * len(results))
        row(f"{set_name}: output PSNR / SSIM", [f"{r['summary'][set_name]['psnr']:.2f} / "
                                                f"{r['summary'][set_name]['ssim']:.4f}" for r in results])
        row(f"{set_name}: **gain (dB)**, images improved",
            [f"**{r['summary'][set_name]['gain_db']:+.2f}**, {r['summary'][set_name]['improved']}/"
             f"{r['summary'][set_name]['count']}" for r in results])
        row(f"{set_name}: gain by largest blur radius (px)",
            [", ".join(f"{k}: {v['gain_db']:+.2f}" for k, v in r["summary"][set_name]["by_blur"].items())
             for r in results])
        if "by_photo" in base:
            row(f"{set_name}: gain by photo" + (" (background)" if set_name == "srgb-disc" else ""),
                [", ".join(f"{k}: {v['gain_db']:+.2f}" for k, v in r["summary"][set_name]["by_photo"].items())
                 for r in results])
        if "spearman_mean" in base:
            row(f"{set_name}: defocus rank correlation per image, mean (worst); all cells pooled",
                [f"{r['summary'][set_name]['spearman_mean']:.2f} ({r['summary'][set_name]['spearman_min']:.2f}); "
                 f"{r['summary'][set_name]['spearman_pooled']:.2f}" for r in results])
    if "harm" in s0:
        row("sharp photos: PSNR output vs input (dB)", [f"{r['summary']['harm']['psnr_to_input']:.2f}"
                                                        for r in results])
        row("sharp photos: per photo (dB)", [", ".join(f"{k.removeprefix('sharp_')}: {v['psnr_to_input']:.1f}"
                                                       for k, v in r["summary"]["harm"]["per_image"].items())
                                             for r in results])
    if "artefacts" in s0:
        for label, key, fmt in (("real defocus: overshoot near edges (8-bit levels)", "overshoot", "{:.2f}"),
                                ("real defocus: dark overshoot (halo) near edges", "dark_overshoot", "{:.2f}"),
                                ("real defocus: local mean shift near edges (8-bit levels)", "mean_shift", "{:.2f}"),
                                ("real defocus: local contrast ratio near edges", "contrast_ratio", "{:.3f}")):
            row(label, [fmt.format(r["summary"]["artefacts"][key]) for r in results])
    return head + "\n".join(lines) + "\n"


def crops_figure(samples: list[Sample], models: list[str], path: Path, size: int = 160,
                 per_image: int = 1) -> None:
    """100 % crops where the input has the strongest edges: input, then each model's output."""
    rows = []
    for s in samples:
        edges, _ = edge_band(s.blurry)
        density = cv2.blur(edges.astype(np.float32), (size, size))
        h, w = density.shape
        taken = []
        for _ in range(per_image):
            d = density.copy()
            for (y, x) in taken:
                d[max(y - size, 0):y + size, max(x - size, 0):x + size] = -1
            d[:size // 2], d[h - size // 2:], d[:, :size // 2], d[:, w - size // 2:] = -1, -1, -1, -1
            y, x = np.unravel_index(int(np.argmax(d)), d.shape)
            taken.append((y, x))
            y0, x0 = y - size // 2, x - size // 2
            panels = [s.blurry[y0:y0 + size, x0:x0 + size]]
            panels += [np.clip(s.info["outputs"][m], 0, 1)[y0:y0 + size, x0:x0 + size] for m in models]
            sep = np.ones((size, 4, 3), np.float32)
            rows.append(np.concatenate([p for panel in panels for p in (panel, sep)][:-1], axis=1))
    labels = ["input"] + [Path(m).stem if "/" in m else m for m in models]
    header = np.full((22, rows[0].shape[1], 3), 255, np.uint8)
    for i, label in enumerate(labels):
        cv2.putText(header, label, (i * (size + 4) + 4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (0, 0, 0), 1, cv2.LINE_AA)
    gap = np.ones((4, rows[0].shape[1], 3), np.float32)
    body = np.concatenate([p for r in rows for p in (r, gap)][:-1], axis=0)
    figure = np.concatenate([header, np.round(body * 255).astype(np.uint8)], axis=0)
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.ascontiguousarray(figure[..., ::-1]))


def build_sets(data_root: Path, synth_count: int, indep_count: int) -> dict[str, list[Sample]]:
    photos = suite.eval_photos()
    sets = {}
    for name in SYNTH_SETS:
        sets[name] = load_synth_samples(ensure_synth_set(name, data_root, synth_count), synth_count)
    sets["srgb-disc"] = suite.srgb_disc_layers(photos, indep_count)
    sets["lin-gauss-jpeg"] = suite.linear_gaussian_jpeg(photos, indep_count)
    sets["harm"] = suite.sharp_photos(photos)
    sets["artefacts"] = suite.real_defocus()
    return sets


def require_photos(partial: bool) -> None:
    """Exit with a message naming the suite's missing photos and their sources, unless ``partial``
    (then a warning is printed and the rest is scored)."""
    import warnings

    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            suite.require_photos(partial)
    except suite.SuitePhotosMissing as err:
        sys.exit(f"error: {err}")
    for warning in caught:
        print(f"warning: {warning.message}", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=["ifan-lite"], help="model names or weights files")
    parser.add_argument("--precision", default="fp32", help="inference precision (default fp32: the protocol)")
    parser.add_argument("--data", type=Path, default=common.ROOT / "data" / "quality",
                        help="where the synth sets live")
    parser.add_argument("--synth-count", type=int, default=100, help="images per held-out synth set (default 100)")
    parser.add_argument("--indep-count", type=int, default=24, help="images per independent set (default 24)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--json", type=Path, default=common.RESULTS / "quality.json")
    parser.add_argument("--figure", type=Path, default=common.ROOT / "docs" / "images" / "quality_crops.png")
    parser.add_argument("--partial", action="store_true",
                        help="run even if some of the suite's photos are missing here (the numbers then do not "
                             "compare with the suite's published ones)")
    args = parser.parse_args()
    require_photos(args.partial)

    import torch

    torch.set_num_threads(args.threads)
    sets = build_sets(args.data, args.synth_count, args.indep_count)
    results = []
    for model in args.models:
        r = run_model(model, args.precision, sets)
        r["summary"] = summarise(r)
        results.append(r)
    table = markdown(results)
    print(table)
    meta = {"suite": SUITE, "date": time.strftime("%Y-%m-%d %H:%M:%S"), "cpu": common.lscpu_model(),
            "threads": args.threads,
            "precision": args.precision, "synth_count": args.synth_count, "indep_count": args.indep_count,
            "eval_photos": sorted(suite.eval_photo_paths()),
            "real_defocus_photos": sorted(suite.real_defocus_paths())}
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps({"meta": meta, "table": table,
                                     "results": [{k: v for k, v in r.items()} for r in results]}, indent=1))
    crops_figure(sets["artefacts"], args.models, args.figure)
    print(f"wrote {args.json} and {args.figure} ({meta['cpu']})")


if __name__ == "__main__":
    main()
