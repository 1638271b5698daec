"""Regenerate docs/results.md and its figures with the shipped model (or --model PATH).

    python docs/make_results.py                     # ~5 min on 2 CPU cores
    python docs/make_results.py --model runs/lite/best.safetensors --limit 20

Steps: include the generalisation suite's table (``benchmarks/results/quality.json``, made by
``python -m benchmarks.bench_quality``), render the held-out synthetic test set if it is missing
(`ifan synth --test 100 --seed 2 --noise`, never used in training), score the model and the baselines
on it with `ifan evaluate` (official protocol), break the gain down by the largest blur in each
scene, and make the figures with `ifan demo`: the bundled example, the test scene with the median
gain, a photo with real optical defocus and a sharp photo (which should come out unharmed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
IMAGES = DOCS / "images"
BLUR_BINS = [(0, 5), (5, 10), (10, 15), (15, 21)]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default="ifan-lite")
    parser.add_argument("--test-root", default=str(ROOT / "data" / "synth-test"))
    parser.add_argument("--out", default=str(ROOT / "runs" / "results-eval"))
    parser.add_argument("--limit", type=int)
    args = parser.parse_args()

    from ifan.apps.demo import example_path, run_demo
    from ifan.evaluate.metrics import image_psnr
    from ifan.evaluate.runner import evaluate, markdown_table
    from ifan.io import read_image

    test_root = Path(args.test_root)
    shown_root = test_root.relative_to(ROOT) if test_root.is_relative_to(ROOT) else test_root
    synth_cmd = ["ifan", "synth", "--out", str(shown_root), "--test", "100", "--size", "512x512", "--seed", "2",
                 "--noise"]
    if not (test_root / "manifest.json").is_file():
        subprocess.run([sys.executable, "-m", "ifan", *synth_cmd[1:3], str(test_root), *synth_cmd[4:]], check=True)
    result = evaluate(args.model, "DPDD", test_root, out_dir=args.out, baselines=True, limit=args.limit)
    table = markdown_table(result.summary)

    # gain per scene, by the largest |blur radius| in the scene (from the generator's manifest)
    manifest = json.loads((test_root / "manifest.json").read_text())
    max_blur = {s["name"]: s["max_abs_coc_px"] for s in manifest["samples"]["test"]}
    scores = {(r["method"], r["name"]): r for r in result.rows}
    names = sorted({r["name"] for r in result.rows})
    gains = {n: scores["ifan", n]["psnr"] - scores["input", n]["psnr"] for n in names}
    wiener_gains = {n: scores["wiener", n]["psnr"] - scores["input", n]["psnr"] for n in names}
    bins = ["| largest blur radius in the scene | scenes | input PSNR | model gain | Wiener gain |",
            "|---|---|---|---|---|"]
    for lo, hi in BLUR_BINS:
        members = [n for n in names if lo <= max_blur[n] < hi]
        if members:
            bins.append(f"| {lo}-{min(hi, 20)} px | {len(members)} | "
                        f"{statistics.mean(scores['input', n]['psnr'] for n in members):.2f} dB | "
                        f"{statistics.mean(gains[n] for n in members):+.2f} dB | "
                        f"{statistics.mean(wiener_gains[n] for n in members):+.2f} dB |")
    improved = sum(g > 0 for g in gains.values())
    median_name = sorted(names, key=lambda n: gains[n])[len(names) // 2]

    # figures, each made by `ifan demo` (run_demo)
    IMAGES.mkdir(parents=True, exist_ok=True)
    work = Path(args.out) / "figures"
    shots = {
        "demo": (example_path(), ROOT / "examples" / "china_sharp.png"),
        "results_synth": (test_root / "test_c" / "source" / f"{median_name}.png",
                          test_root / "test_c" / "target" / f"{median_name}.png"),
        "results_flower": (ROOT / "examples" / "photos" / "flower.jpg", None),
        "results_sharp": (ROOT / "examples" / "photos" / "china.jpg", None),
    }
    seconds, numbers = {}, {}
    for key, (image, sharp) in shots.items():
        demo = run_demo(work / key, model=args.model, image=image, sharp=sharp)
        (IMAGES / f"{key}.png").write_bytes(demo.figure.read_bytes())
        seconds[key] = demo.seconds
        inp = read_image(image).rgb
        out = read_image(demo.output).rgb
        numbers[key] = {"change": image_psnr(inp, out)}
        if sharp is not None:
            ref = read_image(sharp).rgb
            numbers[key].update(blurry=image_psnr(inp, ref), deblurred=image_psnr(out, ref))

    suite = ROOT / "benchmarks" / "results" / "quality.json"
    suite_text = SUITE_MISSING
    if suite.is_file():
        data = json.loads(suite.read_text())
        suite_text = SUITE.format(table=data["table"], date=data["meta"]["date"], cpu=data["meta"]["cpu"],
                                  version=data["meta"].get("suite", 1),
                                  models=", ".join(Path(r["model"]).stem for r in data["results"]))

    s = result.summary
    text = TEMPLATE.format(suite=suite_text,
        model=args.model, images=s["images"], device=s["device"], date=s["date"], table=table,
        bins="\n".join(bins), improved=improved, total=len(names), median=median_name,
        median_gain=gains[median_name], best=max(gains.values()), worst=min(gains.values()),
        synth_cmd=" ".join(synth_cmd), root=shown_root, model_arg="" if args.model == "ifan-lite" else f" --model {args.model}",
        demo_s=seconds["demo"], demo_blurry=numbers["demo"]["blurry"], demo_deblurred=numbers["demo"]["deblurred"],
        synth_blurry=numbers["results_synth"]["blurry"], synth_deblurred=numbers["results_synth"]["deblurred"],
        flower_change=numbers["results_flower"]["change"], sharp_change=numbers["results_sharp"]["change"],
    )
    (DOCS / "results.md").write_text(text)
    print(text)
    return 0


SUITE = """## Generalisation suite

Suite {version}, made by `python -m benchmarks.bench_quality --models ...` ({date}, {cpu}; models: {models}):
held-out sets of the training generator, two sets made by other degradation code on photos never trained on,
sharp photos (how much the model changes them) and artefacts near strong edges of real defocused
photos (`benchmarks/bench_quality.py` says how each is measured).

{table}
![100% crops of real defocused photos: input, then each model](images/quality_crops.png)
"""

SUITE_MISSING = """## Generalisation suite

Not run yet: `python -m benchmarks.bench_quality` writes `benchmarks/results/quality.json`, which this
page then includes.
"""

TEMPLATE = """# Results of `{model}`

Everything on this page is made by `python docs/make_results.py` ({date}, {device}); rerun it after
training another model (`--model PATH`).

{suite}

## Held-out synthetic test set

{images} scenes of 512x512 rendered by `{synth_cmd}` (seed 2, never trained on: `ifan-lite` 0.1
was trained on seed 1 of this generator, 0.2 and 0.3 on the mixture, seed 21), scored by the official
protocol (output clipped to [0, 1], kept in float, PSNR/SSIM/MAE over the whole image):

```bash
ifan evaluate{model_arg} --dataset DPDD --root {root} --baselines --out runs/results-eval
```

{table}

`input` scores the blurry image itself; `wiener` is Wiener deconvolution with a disc kernel whose
radius is estimated per image from the spectrum (`ifan.evaluate.baselines`). The model improves
{improved} of {total} scenes; per scene the gain over the input ranges from {worst:+.2f} to
{best:+.2f} dB. By the largest blur in the scene (the generator's manifest records it):

{bins}

## Examples

Each figure is `ifan demo --image INPUT [--sharp REFERENCE]`: blurry | deblurred | estimated defocus
(the magnitude of the predicted dual-pixel disparity: dark in focus, bright most blurred), then 100%
crops of the region the model finds most defocused.

**Bundled example** (`ifan demo`; a real photo with synthetic defocus, blur radius up to 13 px).
PSNR against the sharp photo: blurry {demo_blurry:.2f} dB, deblurred {demo_deblurred:.2f} dB;
{demo_s:.1f} s on the CPU.

![bundled example](images/demo.png)

**The test scene with the median gain** (`{median}`, {median_gain:+.2f} dB): blurry {synth_blurry:.2f} dB,
deblurred {synth_deblurred:.2f} dB against its all-in-focus target.

![median test scene](images/results_synth.png)

**Real optical defocus** (`examples/photos/flower.jpg`, a dahlia shot with a shallow depth of field;
no ground truth). PSNR between input and output: {flower_change:.2f} dB (how much the model changed
the photo).

![real defocus](images/results_flower.png)

**A sharp photo** (`examples/photos/china.jpg`, never blurred by us): the output should equal the
input. PSNR between input and output: {sharp_change:.2f} dB.

![sharp photo](images/results_sharp.png)

Neither photo is among the training textures (those are scikit-image's; these two ship with
scikit-learn), nor is any photo of the generalisation suite.
"""


if __name__ == "__main__":
    raise SystemExit(main())
