"""The ``ifan`` subcommands that make data and models: ``synth``, ``train``, ``run-files``, ``grow`` and
``curves`` (arguments and runners, as in :mod:`ifan.apps.cli`)."""

from __future__ import annotations

import argparse
import os
import sys

from ifan.ram import available_ram

from ifan.apps.options import check_new_file, device_argument, integer, number, output_argument, overwrite_argument


def _image_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 512x512 (WIDTHxHEIGHT), got {text!r}") from None
    if w < 8 or h < 8:
        raise argparse.ArgumentTypeError(f"expected at least 8x8, got {text}")
    return w, h


def synth_arguments(p: argparse.ArgumentParser) -> None:
    output_argument(p, "--out", help="output folder (an interrupted run resumes; larger counts extend it)")
    p.add_argument("--train", type=integer(0), default=0, help="training samples (default 0)")
    p.add_argument("--val", type=integer(0), default=0, help="validation samples (default 0)")
    p.add_argument("--test", type=integer(0), default=0, help="test samples (default 0)")
    p.add_argument("--size", type=_image_size, default=(512, 512), metavar="WxH",
                   help="image size (default 512x512); checked against the memory before anything runs")
    p.add_argument("--seed", type=integer(0), default=0, help="dataset seed (default 0)")
    p.add_argument("--bit-depth", type=int, choices=(8, 16), default=8, help="PNG bit depth (default 8)")
    p.add_argument("--workers", type=integer(1),
                   help="rendering processes (default: all CPU cores, or as many as the memory holds)")
    p.add_argument("--max-blur", type=number(0, 64), default=20.0, help="largest blur radius in px, 0-64 (default 20)")
    p.add_argument("--noise", action="store_true", help="add sensor shot and read noise to L and R")
    p.add_argument("--mixture", action="store_true", help="the documented training mixture (docs/synth.md); "
                   "the options below override its parts")
    for flag, kind, what in _MIXTURE_OPTIONS:
        p.add_argument(flag, type=kind, help=what)
    p.add_argument("--preview", metavar="PNG", help="write a figure of a few samples (C, L, R, target, blur map)")
    overwrite_argument(p, "the --preview file")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")


def _mix(text: str) -> tuple[tuple[str, float], ...]:
    """``name=weight,name=weight`` (e.g. ``disc=0.5,polygon=0.5``) as a tuple of pairs."""
    try:
        return tuple((name.strip(), float(weight)) for name, weight in (item.split("=") for item in text.split(",")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=WEIGHT[,NAME=WEIGHT...], got {text!r}") from None


def _yes_no(text: str) -> bool:
    if text.lower() not in ("yes", "no", "true", "false"):
        raise argparse.ArgumentTypeError(f"expected yes or no, got {text!r}")
    return text.lower() in ("yes", "true")


_MIXTURE_OPTIONS = (  # flag, type, help: the parts of ifan.synth.SynthConfig beyond size, blur and noise
    ("--kinds", _mix, "scene kinds and weights, e.g. layers=0.6,planes=0.25,stereo=0.15,portrait=0,night=0"),
    ("--psf", _mix, "aperture families and weights: disc, polygon, rim, soft, gaussian (default disc=1)"),
    ("--cateye-p", float, "probability of cat's-eye vignetting (default 0)"),
    ("--gamma-blur-p", float, "probability of blurring sRGB-encoded values (default 0)"),
    ("--pipeline-p", float, "probability of a camera pipeline: tone, sharpening, resizing, JPEG (default 0)"),
    ("--sharp-p", float, "probability of a sample without blur (default 0)"),
    ("--soft-lens-p", float, "probability of a lens soft in focus: a Gaussian of 0.3-1 px on every image, "
                             "the target included (default 0)"),
    ("--content", str, "texture mixture: classic (default) or rich"),
    ("--noise-on-target", _yes_no, "yes: the target carries the input's noise too, so a model learns to deblur, "
                                   "not to denoise (default no; yes in the mixture)"),
)


def synth(args: argparse.Namespace) -> int:
    import importlib.util

    if importlib.util.find_spec("skimage") is None:
        print("ifan synth: error: scikit-image is needed for the photo textures: pip install 'ifan[synth]'",
              file=sys.stderr)
        return 1
    from ifan.io import write_image
    from ifan.synth import SynthConfig, preview_figure, write_dataset
    from ifan.synth.writer import RENDER_BYTES_PER_PIXEL, check_render_memory

    width, height = args.size
    parts = {flag[2:].replace("-", "_"): getattr(args, flag[2:].replace("-", "_")) for flag, _, _ in _MIXTURE_OPTIONS}
    try:
        config = SynthConfig.from_options(width, height, args.max_blur, args.noise, args.mixture, **parts)
    except ValueError as err:
        print(f"ifan synth: error: {err}", file=sys.stderr)
        return 2
    workers = args.workers
    if workers is None:  # all cores, but no more processes than the memory holds (at least one: checked next)
        avail = available_ram()
        fits = avail // (RENDER_BYTES_PER_PIXEL * width * height) if avail else os.cpu_count()
        workers = max(1, min(os.cpu_count() or 1, fits))
    check_render_memory(config, workers)  # before the preview, which renders samples too
    if args.preview:
        check_new_file(args.preview, args.overwrite)
        write_image(args.preview, preview_figure(config, seed=args.seed) / 255.0)
        print(f"wrote {args.preview}")
    if args.output is None:
        if not args.preview:
            print("ifan synth: error: give -o/--output DIR (or --preview FILE)", file=sys.stderr)
            return 2
        return 0
    counts = {"train": args.train, "val": args.val, "test": args.test}
    manifest = write_dataset(args.output, counts, config, seed=args.seed, bit_depth=args.bit_depth,
                             workers=workers, progress=not args.no_progress)
    print(f"wrote {args.output} (train {args.train}, val {args.val}, test {args.test}); manifest {manifest}")
    return 0


def train_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("config", nargs="?", help="recipe, e.g. configs/ifan.yaml or configs/ifan-lite-cpu.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set train.steps=1000 (repeatable)")
    output_argument(p, "--out", help="run folder, new or empty (default: runs/RECIPE-TIMESTAMP)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--force", action="store_true",
                   help="start a new run in an -o folder that holds one: its checkpoints, config, metrics, "
                        "TensorBoard logs and weights are deleted first")
    p.add_argument("--init", metavar="MODEL_OR_FILE",
                   help="start from trained weights (a bundled model such as ifan-lite, or a safetensors file): "
                        "weights only, a fresh optimiser (same as --set init.weights=...)")
    p.add_argument("--stop-after", type=int, metavar="N", help="stop with a checkpoint after N steps of this call")
    p.add_argument("--time-limit", type=float, metavar="SECONDS",
                   help="stop (with a checkpoint) after this many seconds of training in this call")
    device_argument(p)


def train(args: argparse.Namespace) -> int:
    from ifan.train.run import resolve_run
    from ifan.train.trainer import train

    overrides = [*args.set, *([f"init.weights={args.init}"] if args.init else [])]
    run = resolve_run(args.config, args.output, args.resume, overrides)
    for note in run.notes:
        print(f"note: {note}", file=sys.stderr)
    result = train(run.config, run.run_dir, resume=run.resume, stop_after=args.stop_after, device=args.device,
                   force=args.force, time_limit=args.time_limit)
    if result.finished:
        print(f"finished {result.step} steps; weights: {run.run_dir / 'model.safetensors'}")
    else:
        print(f"stopped at step {result.step}; continue with: ifan train --resume {run.run_dir}")
    return 0


def run_files_arguments(p: argparse.ArgumentParser) -> None:
    from ifan.train.run import RUN_LAYOUT

    p.add_argument("run", help="a training run's folder")
    p.add_argument("names", nargs="+", metavar="NAME", choices=["checkpoint", *RUN_LAYOUT],
                   help=f"checkpoint (the newest that loads: where --resume starts) or one of {', '.join(RUN_LAYOUT)}")


def run_files(args: argparse.Namespace) -> int:
    from ifan.train.run import run_file

    paths = [run_file(args.run, name) for name in args.names]  # all found before any is printed
    print(*paths, sep="\n")
    return 0


def curves_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("run", help="run folder or its metrics.jsonl")
    output_argument(p, "--out", required=True, metavar="PNG", help="the figure to write")
    overwrite_argument(p, "the figure")


def curves(args: argparse.Namespace) -> int:
    from ifan.io import write_image
    from ifan.train.run import read_metrics
    from ifan.viz import curves_figure

    check_new_file(args.output, args.overwrite, args.run)
    train_rows, val_rows = read_metrics(args.run)
    write_image(args.output, curves_figure(train_rows, val_rows) / 255.0)
    print(f"wrote {args.output}: {len(train_rows)} training rows, {len(val_rows)} validation rows")
    return 0


def grow_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("weights", help="a bundled model's name (e.g. ifan-lite) or a weights file")
    p.add_argument("--channels", type=integer(1), required=True, help="the new width (IFANConfig.channels)")
    p.add_argument("--seed", type=int, default=0, help="seed of the new channels' initialisation (default 0)")
    output_argument(p, required=True, metavar="SAFETENSORS", help="the grown weights file to write")
    overwrite_argument(p, "an existing output (never the weights grown)")


def grow(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ifan.models.grow import grow_weights_file

    out = Path(args.output)
    check_new_file(out, args.overwrite, args.weights)
    old, new = grow_weights_file(args.weights, args.channels, out, seed=args.seed)
    print(f"wrote {out}: width {old.channels} -> {new.channels}; train it with "
          f"--init {out} and model_overrides.channels={new.channels} (docs/training.md)")
    return 0
