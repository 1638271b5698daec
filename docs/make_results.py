"""Regenerate docs/results.md and its figures with the shipped model (or --model PATH).

    python docs/make_results.py                     # ~5 min on 2 CPU cores
    python docs/make_results.py --model runs/lite/best.safetensors --limit 20

Steps: include the generalisation suite's table (``benchmarks/results/quality.json``, made by
``python -m benchmarks.bench_quality``), render the held-out synthetic test set if it is missing
(`ifan synth --test 100 --seed 2 --noise`, never used in training), score the model and the baselines
on it with `ifan evaluate` (official protocol), break the gain down by the largest blur in each
scene, and make the figures with `ifan demo`: the bundled example, the test scene with the median
gain, a photo with real optical defocus and a sharp photo (which should come out unharmed). The
keep-the-bokeh section comes from ``benchmarks/results/calibrate_defocus_ifan-lite.json`` and
``bench_bokeh.json`` (``benchmarks/calibrate_defocus.py``, ``benchmarks/bench_bokeh.py --figure
docs/images/keep_bokeh.png``): :func:`bokeh_section`.
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
    text = TEMPLATE.format(suite=suite_text, bokeh=bokeh_section(),
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

def bokeh_section() -> str:
    """The keep-the-bokeh section: the calibration's error and the portraits' numbers, from the benchmarks' JSON."""
    results = ROOT / "benchmarks" / "results"
    cal_path, bokeh_path = results / "calibrate_defocus_ifan-lite.json", results / "bench_bokeh.json"
    if not (cal_path.is_file() and bokeh_path.is_file()):
        return "## Keep the bokeh\n\nRun `benchmarks/calibrate_defocus.py` and `benchmarks/bench_bokeh.py` to fill this.\n"
    cal, bokeh = json.loads(cal_path.read_text()), json.loads(bokeh_path.read_text())
    rows = ["| true blur radius | pixels | calibrated estimate: median (10th-90th %) | median error "
            "| ideal `|d|/0.833`: median (10th-90th %) | median error |", "|---|---|---|---|---|---|"]
    for c, i in zip(cal["calibrated"]["bins"], cal["ideal"]["bins"]):
        rows.append(f"| {c['radius'][0]}-{c['radius'][1]} px | {c['pixels']} | {c['median_estimate']:.1f} "
                    f"({c['p10']:.1f}-{c['p90']:.1f}) px | {c['median_abs_px']:.1f} px | {i['median_estimate']:.1f} "
                    f"({i['p10']:.1f}-{i['p90']:.1f}) px | {i['median_abs_px']:.1f} px |")
    k, b, t = cal["keep_bokeh"], bokeh["summary"], bokeh["summary"]["seconds"]
    m = bokeh["machine"]
    timing = results / "bench_bokeh_time.json"
    large = ""
    if timing.is_file():
        big = json.loads(timing.read_text())
        large = (f" At {big['size'][0]}x{big['size'][1]} (`--time-size`, the bundled example enlarged; load "
                 f"{big['machine'].get('load_avg_1min', 0):.1f}): {1000 * big['blend_s']:.0f} ms against "
                 f"{big['plain_s']:.2f} s, **{100 * big['blend_share']:.1f} %**.")
    return BOKEH.format(large=large,
        table="\n".join(rows), mae=cal["calibrated"]["median_abs_px"], ideal_mae=cal["ideal"]["median_abs_px"],
        fit=cal["fit_seed"], test=cal["test_seed"], n=cal["scenes"], r=k["keep_bokeh"], tr=k["transition"],
        hi=k["keep_bokeh"] + k["transition"] / 2, lo=k["keep_bokeh"] - k["transition"] / 2,
        kept=100 * k["blurred_kept"], deblurred=100 * k["sharp_deblurred"], scenes=bokeh["scenes"], of=bokeh["of"],
        R=bokeh["keep_bokeh"], bg=100 * b["background_within_1"], bg_plain=100 * b["background_within_1_plain"],
        far=100 * b["far_background_within_1"], same=100 * b["subject_same_as_plain"],
        gain_plain=b["subject_psnr_gain_plain"], gain_keep=b["subject_psnr_gain_keep"],
        blend_pct=100 * b["blend_share_of_run"], blend_s=t["blend"], plain_s=t["plain"], map_s=t["with_defocus_map"],
        cpu=m.get("cpu_model", "?"), date=m.get("date", "?"), load=m.get("load_avg_1min", 0.0))


BOKEH = """## Keep the bokeh

`ifan deblur --keep-bokeh R` leaves what is blurred beyond R px of blur radius as it was
([inference.md](inference.md#keeping-the-bokeh-strength-and-masks)). It rests on the model's
defocus estimate, calibrated to a blur radius.

**Calibration** (`python -m benchmarks.calibrate_defocus --write`): fitted on {n} held-out scenes of the
training mixture (seed {fit}), measured on {n} others (seed {test}), every 4th pixel; median absolute error
**{mae:.2f} px** (the ideal relation that uncalibrated weights get: {ideal_mae:.2f} px, but it puts every
strong blur far too low). By true radius:

{table}

The estimate ranks blur only roughly (the model card's rank correlation is 0.44-0.46 per image) and
tops out near 9 px: what is blurred by 13-20 px mostly reads as 9-12 px. At `--keep-bokeh {r:g}`
(transition {tr:g} px) the mask keeps {kept:.1f} % of the pixels truly blurred beyond {hi:g} px fully as they
were, and deblurs {deblurred:.1f} % of those truly sharper than {lo:g} px fully.

**Portraits** (`python -m benchmarks.bench_bokeh --figure docs/images/keep_bokeh.png`; {date}, {cpu},
load {load:.1f}): {scenes} of {of} held-out portrait scenes of the mixture (seed 28) have a sharp subject
(10 % or more of the pixels under 1 px of blur) before a strongly blurred background (25 % or more
beyond 10 px). At `--keep-bokeh {R:g}`:

| | keep-bokeh {R:g} | plain run |
|---|---|---|
| background (true radius >= 10 px) within 1 level (8-bit) of the input | **{bg:.1f} %** | {bg_plain:.1f} % |
| ... of it at least 16 px from anything less blurred | {far:.1f} % | |
| subject (true radius < 1 px) within 1 level of the plain run | **{same:.1f} %** | 100 % |
| subject PSNR against the sharp target, change from the input | {gain_keep:+.2f} dB | {gain_plain:+.2f} dB |
| time over the {scenes} scenes | network + map {map_s:.2f} s, blend {blend_s:.2f} s | {plain_s:.2f} s |

The blend (mask and recomposition) costs **{blend_pct:.1f} %** of a plain run at 512x512 (fastest of 3 runs
each, one process; the defocus map comes from the same forward pass, and the runs with it were no slower
here: the machine was shared, so only the blend's share is quoted).{large}

The background is not kept everywhere: where the model reads a strongly blurred background as nearly
sharp (smooth, textureless backgrounds especially), the mask deblurs it, as the plain run would. On
these already sharp subjects the model itself loses PSNR (it sharpens what was sharp); `--keep-bokeh`
changes {same:.1f} % of the subject as the plain run does, and where the mask keeps some of the input
there, it scores a little higher.

**The bundled example** (`python -m benchmarks.bench_bokeh --example-figure docs/images/keep_bokeh_example.png`;
focus on the pagoda, the foreground bushes blurred up to 13 px): where the plain run breaks the smooth
blur of the bushes into disc-shaped blotches (the model card's known limit), `--keep-bokeh 6` leaves it
as it was; the pagoda is deblurred as by the plain run. 100 %, input | plain | `--keep-bokeh 6` | mask:

![keep the bokeh on the bundled example](images/keep_bokeh_example.png)

Rows: for three of the scenes, a 128 x 128 window at 100 % of the background, then of the subject, each
as input | plain run | `--keep-bokeh {R:g}` | the mask (white = deblurred):

![keep the bokeh: 100 % crops](images/keep_bokeh.png)
"""


TEMPLATE = """# Results of `{model}`

Everything on this page is made by `python docs/make_results.py` ({date}, {device}); rerun it after
training another model (`--model PATH`).

{suite}
{bokeh}

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
