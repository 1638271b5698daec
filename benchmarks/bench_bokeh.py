"""``--keep-bokeh`` on portraits: is the blurred background left alone, the subject deblurred, at what cost?

    python -m benchmarks.bench_bokeh                      # the shipped ifan-lite, --keep-bokeh at its default
    python -m benchmarks.bench_bokeh --model runs/x/best.safetensors --keep-bokeh 8

Scenes: ``ifan synth --mixture --kinds portrait=1 --seed 28`` (80 scenes of 512x512, made on first
use under ``data/bokeh28``; seed 28 is used by no training run nor any other benchmark): the
training mixture's portraits, a subject in front of a background far behind it. Kept: those with a
sharp subject (at least 10 % of the pixels with a true blur radius under 1 px) in front of a strongly
blurred background (at least 25 % beyond 10 px). Each is read as the 8-bit PNG it is and deblurred
as ``ifan deblur`` does (precision ``auto``), plain and with ``--keep-bokeh R``; both are rounded to
8 bits as they would be written.

Measured per scene and pooled:

* background (true radius >= 10 px): the share of pixels that ``--keep-bokeh`` leaves within 1 level
  of the input (8-bit), and the plain run's share for comparison; also over the background at least
  16 px (two cells of the estimate) away from anything less blurred;
* subject (true radius < 1 px): the share of pixels where ``--keep-bokeh`` gives the plain run's
  value within 1 level, and the PSNR against the sharp target of input, plain run and
  ``--keep-bokeh`` over the subject;
* time: the network with the defocus map and the blend (mask + recomposition) against a plain run
  of the same image (the fastest of 3 runs each, one process), and the blend alone; summed over
  the scenes.

Writes ``benchmarks/results/bench_bokeh.json`` and, with ``--figure``, 100 % crops of background and
subject (input, plain, ``--keep-bokeh``, the mask) for ``docs/results.md``. ``--sweep`` instead runs
each scene once and tabulates the background and subject shares for several radii and transitions
(``bench_bokeh_sweep.json``): how the default was chosen. ``--example-figure PNG`` draws the bundled
example (``ifan demo``'s photo: focus on the pagoda, foreground bushes blurred up to 13 px) at 100 %:
the most defocused window and the deblurred window the model changes most, as input | plain |
``--keep-bokeh`` | mask. ``--time-size 2048x1536`` times a plain run and the blend on it at that size
(``bench_bokeh_time.json``).
"""

from __future__ import annotations

import argparse
import statistics
import time
from dataclasses import replace
from pathlib import Path

import cv2
import numpy as np
import torch

from benchmarks.common import machine, print_table, write_json

ROOT = Path(__file__).resolve().parents[1]
SHARP, BLURRED, MARGIN = 1.0, 10.0, 16  # px of true blur radius; px away from less blurred pixels


def scenes(data: Path, count: int) -> Path:
    from ifan.synth import SynthConfig, write_dataset

    out = data / "bokeh28"
    config = replace(SynthConfig.mixture(512, 512), kinds=(("portrait", 1.0),))
    write_dataset(out, {"test": count}, config, seed=28, workers=1, progress=False)
    return out


def portraits(root: Path, count: int):
    """The kept scenes: ``(paths, true radius, subject, background)`` for each (see the module docstring)."""
    from ifan.synth import sample_paths

    for i in range(count):
        paths = sample_paths(root, "test", i)
        with np.load(paths.meta) as meta:
            radius = np.abs(meta["coc"])
        subject, background = radius < SHARP, radius >= BLURRED
        if subject.mean() >= 0.10 and background.mean() >= 0.25:
            yield paths, radius, subject, background


def psnr(a: np.ndarray, b: np.ndarray, sel: np.ndarray) -> float:
    mse = float(np.mean((a[sel] - b[sel]) ** 2))
    return 10 * np.log10(1 / max(mse, 1e-12))


def timed(fn, repeats: int = 3) -> tuple[object, float]:
    """``fn()`` and its fastest time of ``repeats`` (the least disturbed by other work on the machine)."""
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, min(times)


def main() -> None:
    from ifan.inference import Deblurrer
    from ifan.inference.blend import DEFAULT_KEEP_BOKEH, DEFAULT_TRANSITION, BlendSettings
    from ifan.io import read_image
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="ifan-lite")
    p.add_argument("--keep-bokeh", type=float, default=DEFAULT_KEEP_BOKEH)
    p.add_argument("--transition", type=float, default=DEFAULT_TRANSITION)
    p.add_argument("--count", type=int, default=80)
    p.add_argument("--data", type=Path, default=ROOT / "data")
    p.add_argument("--figure", type=Path, help="write the 100 %% crops here (PNG)")
    p.add_argument("--sweep", action="store_true", help="tabulate several radii and transitions instead")
    p.add_argument("--example-figure", type=Path, help="only draw the bundled example's crops here (PNG)")
    p.add_argument("--time-size", metavar="WxH", help="only time a plain run and the blend at this size")
    args = p.parse_args()
    if args.sweep:
        return sweep(args)
    if args.time_size:
        return time_size(args)
    if args.example_figure:
        return example_figure(args)

    torch.set_num_threads(2)
    root = scenes(args.data, args.count)
    deblurrer = Deblurrer.from_pretrained(args.model, device="cpu")
    settings = BlendSettings(keep_bokeh=args.keep_bokeh, transition=args.transition)
    rows, per_scene, pooled = [], [], {"bg": 0, "bg_keep": 0, "bg_plain": 0, "far": 0, "far_keep": 0,
                                       "subject": 0, "subject_same": 0}
    shown = []
    deblurrer.deblur(np.zeros((64, 64, 3), np.float32))  # warm-up
    for paths, radius, subject, background in portraits(root, args.count):
        far = background & ~cv2.dilate((radius < BLURRED).astype(np.uint8), np.ones((2 * MARGIN + 1,) * 2, np.uint8)
                                        ).astype(bool)
        image = read_image(paths.center).rgb
        target = read_image(paths.target).rgb
        plain, t_plain = timed(lambda: deblurrer.deblur(image))
        (full, defocus), t_map = timed(lambda: deblurrer.deblur(image, return_defocus=True))
        (kept, mask), t_blend = timed(lambda: settings.apply(image, full, defocus, deblurrer.calibration))
        q = [np.round(np.clip(a, 0, 1) * 255) for a in (image, plain, kept)]
        change_keep = np.abs(q[2] - q[0]).max(axis=2)
        change_plain = np.abs(q[1] - q[0]).max(axis=2)
        same = np.abs(q[2] - q[1]).max(axis=2) <= 1
        scene = {"scene": paths.center.stem, "subject_share": float(subject.mean()),
                 "background_share": float(background.mean()),
                 "background_within_1": float((change_keep[background] <= 1).mean()),
                 "background_within_1_plain": float((change_plain[background] <= 1).mean()),
                 "far_background_within_1": float((change_keep[far] <= 1).mean()) if far.any() else None,
                 "background_p99_change": float(np.percentile(change_keep[background], 99)),
                 "subject_same_as_plain": float(same[subject].mean()),
                 "subject_psnr": {"input": psnr(image, target, subject), "plain": psnr(plain, target, subject),
                                  "keep_bokeh": psnr(kept, target, subject)},
                 "seconds": {"plain": t_plain, "with_defocus_map": t_map, "blend": t_blend,
                             "keep_bokeh_overhead": (t_map + t_blend - t_plain) / t_plain}}
        per_scene.append(scene)
        pooled["bg"] += int(background.sum())
        pooled["bg_keep"] += int((change_keep[background] <= 1).sum())
        pooled["bg_plain"] += int((change_plain[background] <= 1).sum())
        pooled["far"] += int(far.sum())
        pooled["far_keep"] += int((change_keep[far] <= 1).sum())
        pooled["subject"] += int(subject.sum())
        pooled["subject_same"] += int(same[subject].sum())
        far_share = scene["far_background_within_1"]
        rows.append([scene["scene"], f"{100 * scene['background_within_1']:.1f}",
                     f"{100 * scene['background_within_1_plain']:.1f}",
                     "-" if far_share is None else f"{100 * far_share:.1f}",
                     f"{100 * scene['subject_same_as_plain']:.1f}",
                     "{input:.2f} / {plain:.2f} / {keep_bokeh:.2f}".format(**scene["subject_psnr"]),
                     f"{100 * scene['seconds']['keep_bokeh_overhead']:.1f}"])
        shown.append((scene, image, q[1] / 255, q[2] / 255, mask, radius))

    print(f"{args.model}, --keep-bokeh {args.keep_bokeh:g} (transition {args.transition:g} px), "
          f"{len(per_scene)} of {args.count} portrait scenes")
    print_table(["scene", "bg within 1 level: keep %", "plain %", "bg >16 px from subject: keep %",
                 "subject = plain (<=1 level) %", "subject PSNR input / plain / keep", "time cost %"], rows)
    seconds = {k: sum(s["seconds"][k] for s in per_scene) for k in ("plain", "with_defocus_map", "blend")}
    extra = seconds["with_defocus_map"] + seconds["blend"] - seconds["plain"]
    seconds["keep_bokeh_overhead"] = extra / seconds["plain"]
    summary = {"background_within_1": pooled["bg_keep"] / pooled["bg"],
               "background_within_1_plain": pooled["bg_plain"] / pooled["bg"],
               "far_background_within_1": pooled["far_keep"] / max(pooled["far"], 1),
               "subject_same_as_plain": pooled["subject_same"] / pooled["subject"],
               "subject_psnr_gain_plain": statistics.mean(s["subject_psnr"]["plain"] - s["subject_psnr"]["input"]
                                                          for s in per_scene),
               "subject_psnr_gain_keep": statistics.mean(s["subject_psnr"]["keep_bokeh"] - s["subject_psnr"]["input"]
                                                         for s in per_scene),
               "seconds": seconds,
               "blend_share_of_run": seconds["blend"] / seconds["plain"]}
    print(f"pooled: background within 1 level {100 * summary['background_within_1']:.1f} % "
          f"(plain run {100 * summary['background_within_1_plain']:.1f} %; >= {MARGIN} px from the subject "
          f"{100 * summary['far_background_within_1']:.1f} %); subject as the plain run "
          f"{100 * summary['subject_same_as_plain']:.1f} %; subject PSNR gain plain "
          f"{summary['subject_psnr_gain_plain']:+.2f} dB, keep-bokeh {summary['subject_psnr_gain_keep']:+.2f} dB")
    print(f"time (all scenes): plain {seconds['plain']:.2f} s, with the defocus map "
          f"{seconds['with_defocus_map']:.2f} s, blend {seconds['blend']:.2f} s "
          f"({100 * summary['blend_share_of_run']:.1f} % of a plain run); whole keep-bokeh overhead "
          f"{100 * seconds['keep_bokeh_overhead']:.1f} %")
    write_json("bench_bokeh.json", {"model": args.model, "keep_bokeh": args.keep_bokeh,
                                    "transition": args.transition, "scenes": len(per_scene), "of": args.count,
                                    "seed": 28, "summary": summary, "per_scene": per_scene, "machine": machine()})
    if args.figure:
        crops_figure(shown, args.figure)


def sweep(args, radii=(3, 4, 5, 6, 8), transitions=(2, 4, 6)) -> None:
    from ifan.inference import Deblurrer
    from ifan.inference.blend import BlendSettings
    from ifan.io import read_image

    torch.set_num_threads(2)
    root = scenes(args.data, args.count)
    deblurrer = Deblurrer.from_pretrained(args.model, device="cpu")
    counts = {(r, t): [0, 0, 0, 0] for r in radii for t in transitions}  # bg kept, bg, subject same, subject
    used = 0
    for paths, radius, subject, background in portraits(root, args.count):
        used += 1
        image = read_image(paths.center).rgb
        full, defocus = deblurrer.deblur(image, return_defocus=True)
        q_in, q_plain = (np.round(np.clip(a, 0, 1) * 255) for a in (image, full))
        for (r, t), c in counts.items():
            kept, _ = BlendSettings(keep_bokeh=r, transition=t).apply(image, full, defocus, deblurrer.calibration)
            q = np.round(np.clip(kept, 0, 1) * 255)
            c[0] += int((np.abs(q - q_in).max(axis=2)[background] <= 1).sum())
            c[1] += int(background.sum())
            c[2] += int((np.abs(q - q_plain).max(axis=2)[subject] <= 1).sum())
            c[3] += int(subject.sum())
    rows = [[r, t, f"{100 * c[0] / c[1]:.1f}", f"{100 * c[2] / c[3]:.1f}"] for (r, t), c in counts.items()]
    print(f"{args.model}: {used} portrait scenes")
    print_table(["--keep-bokeh R", "transition", "background within 1 level %", "subject = plain run %"], rows)
    write_json("bench_bokeh_sweep.json", {"model": args.model, "scenes": used, "rows": [
        {"keep_bokeh": r, "transition": t, "background_within_1": c[0] / c[1], "subject_same_as_plain": c[2] / c[3]}
        for (r, t), c in counts.items()], "machine": machine()})


def time_size(args, repeats: int = 3) -> None:
    """The blend's time against a plain run's on the bundled example resized to ``--time-size``."""
    from ifan.apps.demo import example_path
    from ifan.inference import Deblurrer
    from ifan.inference.blend import BlendSettings
    from ifan.io import read_image

    torch.set_num_threads(2)
    w, h = (int(v) for v in args.time_size.lower().split("x"))
    image = cv2.resize(read_image(example_path()).rgb, (w, h), interpolation=cv2.INTER_CUBIC).clip(0, 1)
    deblurrer = Deblurrer.from_pretrained(args.model, device="cpu")
    settings = BlendSettings(keep_bokeh=args.keep_bokeh, transition=args.transition)
    _, t_plain = timed(lambda: deblurrer.deblur(image), repeats)
    (full, defocus), t_map = timed(lambda: deblurrer.deblur(image, return_defocus=True), repeats)
    _, t_blend = timed(lambda: settings.apply(image, full, defocus, deblurrer.calibration), repeats)
    print(f"{w}x{h}: plain run {t_plain:.2f} s, with the defocus map {t_map:.2f} s, blend {t_blend * 1000:.0f} ms "
          f"({100 * t_blend / t_plain:.1f} % of a plain run; fastest of {repeats} each)")
    write_json("bench_bokeh_time.json", {"model": args.model, "size": [w, h], "plain_s": t_plain,
                                         "with_defocus_map_s": t_map, "blend_s": t_blend,
                                         "blend_share": t_blend / t_plain, "machine": machine()})


def example_figure(args, side: int = 200) -> None:
    from ifan.apps.demo import example_path
    from ifan.inference import Deblurrer
    from ifan.io import read_image, write_image
    from ifan.viz import captioned_row, most_defocused_box

    deblurrer = Deblurrer.from_pretrained(args.model, device="cpu")
    image = read_image(example_path()).rgb
    plain, defocus = deblurrer.deblur(image, return_defocus=True)
    kept, mask = deblurrer.deblur(image, keep_bokeh=args.keep_bokeh, transition=args.transition, return_mask=True)
    deblurred = cv2.blur(mask * np.abs(np.clip(plain, 0, 1) - image).max(axis=2), (side, side))  # the subject
    y, x = np.unravel_index(np.argmax(deblurred), deblurred.shape)
    windows = [most_defocused_box(defocus, side), (int(np.clip(y - side // 2, 0, image.shape[0] - side)),
                                                   int(np.clip(x - side // 2, 0, image.shape[1] - side)))]
    rows = []
    for top, left in windows:
        win = (slice(top, top + side), slice(left, left + side))
        rows.append(captioned_row([("input", image[win]), ("plain", np.clip(plain, 0, 1)[win]),
                                   (f"--keep-bokeh {args.keep_bokeh:g}", kept[win]),
                                   ("mask (white = deblurred)", np.repeat(mask[win][..., None], 3, axis=2))]))
    write_image(args.example_figure, np.concatenate(rows, axis=0))
    print(f"wrote {args.example_figure}: mask 0 on {100 * (mask == 0).mean():.0f} % of the photo, 1 on "
          f"{100 * (mask == 1).mean():.0f} %")


def crops_figure(shown, path: Path, side: int = 128, count: int = 3) -> None:
    """Rows of 100 % crops: for ``count`` scenes, a background window and a subject window, each as
    input | plain | --keep-bokeh | mask."""
    from ifan.io import write_image

    picked = sorted(shown, key=lambda s: -s[0]["background_share"] * s[0]["subject_share"])[:count]
    rows = []
    for scene, image, plain, kept, mask, radius in picked:
        for sel in (radius >= BLURRED, radius < SHARP):
            score = cv2.blur(sel.astype(np.float32), (side, side))
            score *= cv2.blur(np.abs(plain - image).max(axis=2), (side, side))  # where the model changes most
            y, x = np.unravel_index(np.argmax(score), score.shape)
            y = int(np.clip(y - side // 2, 0, image.shape[0] - side))
            x = int(np.clip(x - side // 2, 0, image.shape[1] - side))
            win = (slice(y, y + side), slice(x, x + side))
            tiles = [image[win], plain[win], kept[win], np.repeat(mask[win][..., None], 3, axis=2)]
            gap = np.ones((side, 4, 3), np.float32)
            rows.append(np.concatenate([t for tile in tiles for t in (tile, gap)][:-1], axis=1))
            rows.append(np.ones((4, rows[-1].shape[1], 3), np.float32))
    write_image(path, np.concatenate(rows[:-1], axis=0))
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
