"""The ``ifan`` command line: one entry point, a few lines per subcommand over the public API."""

from __future__ import annotations

import argparse
import os
import sys


def _cmd_list_models(args: argparse.Namespace) -> int:
    from ifan.models.zoo import MODELS, bundled_weights_path

    for name, spec in MODELS.items():
        c = spec.config
        weights = "bundled weights" if bundled_weights_path(name) else "no weights"
        print(f"{name:<10} ch={c.channels:<3} N={c.iterations:<3} {weights:<15} {spec.description}")
    return 0


def _cmd_convert(args: argparse.Namespace) -> int:
    from ifan.models.zoo import convert_weights

    config = convert_weights(args.src, args.dst)
    print(f"wrote {args.dst}: ch={config.channels} N={config.iterations} dual={config.dual_pixel_input} "
          f"iac_form={config.iac_form}")
    return 0


def _parse_size(text: str) -> tuple[int, int]:
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"size must look like 512x512 (WIDTHxHEIGHT), got {text!r}") from None
    return w, h


def _parse_mix(text: str) -> tuple[tuple[str, float], ...]:
    """``name=weight,name=weight`` (e.g. ``disc=0.5,polygon=0.5``) as a tuple of pairs."""
    try:
        pairs = tuple((name.strip(), float(weight)) for name, weight in (item.split("=") for item in text.split(",")))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected NAME=WEIGHT[,NAME=WEIGHT...], got {text!r}") from None
    return pairs


def _cmd_synth(args: argparse.Namespace) -> int:
    import importlib.util

    if importlib.util.find_spec("skimage") is None:
        print("ifan synth: error: scikit-image is needed for the photo textures: pip install 'ifan[synth]'",
              file=sys.stderr)
        return 1
    from ifan.io import write_image
    from ifan.synth import SynthConfig, preview_figure, write_dataset

    from dataclasses import replace

    width, height = args.size
    if args.mixture:
        config = SynthConfig.mixture(width=width, height=height, max_blur=args.max_blur)
    else:
        config = SynthConfig(width=width, height=height, max_blur=args.max_blur, noise=args.noise)
    chosen = {name: getattr(args, name) for name in ("kinds", "psf", "cateye_p", "gamma_blur_p", "pipeline_p",
                                                      "sharp_p", "content") if getattr(args, name) is not None}
    if args.noise:
        chosen["noise"] = True
    try:
        config = replace(config, **chosen)
    except ValueError as err:
        print(f"ifan synth: error: {err}", file=sys.stderr)
        return 2
    if args.preview:
        write_image(args.preview, preview_figure(config, seed=args.seed) / 255.0)
        print(f"wrote {args.preview}")
    if args.out is None:
        if not args.preview:
            print("ifan synth: error: give --out DIR (or --preview FILE)", file=sys.stderr)
            return 2
        return 0
    counts = {"train": args.train, "val": args.val, "test": args.test}
    manifest = write_dataset(args.out, counts, config, seed=args.seed, bit_depth=args.bit_depth,
                             workers=args.workers, progress=not args.no_progress)
    print(f"wrote {args.out} (train {args.train}, val {args.val}, test {args.test}); manifest {manifest}")
    return 0


def _cmd_train(args: argparse.Namespace) -> int:
    from datetime import datetime
    from pathlib import Path

    from ifan.train.config import ConfigError, load_config
    from ifan.train.trainer import train

    if args.resume:
        run_dir = Path(args.resume)
        saved = run_dir / "config.yaml"
        if not saved.is_file():
            raise ConfigError(f"{run_dir} is not a run folder (no config.yaml)")
        if args.config:
            print(f"note: resuming {run_dir} with its saved config.yaml; {args.config} is ignored", file=sys.stderr)
        cfg = load_config(saved, args.set)
    else:
        if not args.config:
            raise ConfigError("give a recipe (e.g. configs/ifan-lite-cpu.yaml) or --resume RUN_DIR")
        overrides = list(args.set) + ([f"init.weights={args.init}"] if args.init else [])
        cfg = load_config(args.config, overrides)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = Path(args.out) if args.out else Path("runs") / f"{Path(args.config).stem}-{stamp}"
    result = train(cfg, run_dir, resume=bool(args.resume), stop_after=args.stop_after, device=args.device,
                   time_limit=args.time_limit, force=args.force)
    if result.finished:
        print(f"finished {result.step} steps; weights: {run_dir / 'model.safetensors'}")
    else:
        print(f"stopped at step {result.step}; continue with: ifan train --resume {run_dir}")
    return 0


def _cmd_evaluate(args: argparse.Namespace) -> int:
    from ifan.evaluate.runner import evaluate, markdown_table

    result = evaluate(args.model, args.dataset, args.root, protocol=args.protocol, out_dir=args.out,
                      baselines=args.baselines, figures=args.figures, device=args.device,
                      lpips_weights=args.lpips_weights, limit=args.limit, split=args.split,
                      save_float=args.save_float)
    s = result.summary
    print(f"{s['model']} on {s['dataset']} ({s['images']} images, protocol {s['protocol']}, {s['device']})")
    print(markdown_table(s))
    if s["lpips_note"]:
        print(f"LPIPS: {s['lpips_note']}")
    if args.out:
        print(f"wrote {args.out}/per_image.csv, summary.json, summary.md and outputs/")
    return 0


def _cmd_demo(args: argparse.Namespace) -> int:
    from ifan.demo import run_demo

    result = run_demo(args.out, model=args.model, image=args.image, sharp=args.sharp, device=args.device)
    print(f"deblurred {args.image or 'the bundled example'} with {result.model} in {result.seconds:.1f} s")
    print(f"wrote {result.out_dir}/input.png, deblurred.png, defocus.png and {result.figure}")
    return 0


def _cmd_deblur(args: argparse.Namespace) -> int:
    from tqdm import tqdm

    from ifan.batch import collect_inputs, deblur_file, find_collisions
    from ifan.inference import Deblurrer, parse_size
    from ifan.models.official import CheckpointError

    collected = collect_inputs(args.inputs)
    for message in collected.errors:
        print(f"ifan deblur: error: {message}", file=sys.stderr)
    if not collected.files:
        print("ifan deblur: error: nothing to deblur", file=sys.stderr)
        return 1
    try:
        deblurrer = Deblurrer.from_pretrained(
            args.model, device=args.device, precision=args.precision, compile=args.compile,
            max_memory=None if args.max_memory is None else parse_size(args.max_memory),
            overlap=args.overlap, tile_size=args.tile)
    except (FileNotFoundError, CheckpointError, ValueError) as err:
        print(f"ifan deblur: error: model {args.model!r}: {err}", file=sys.stderr)
        return 1
    quiet = args.quiet
    if args.verbose:
        print(f"model {args.model}: {deblurrer.describe()}", file=sys.stderr)
    protected = frozenset(f.path.resolve() for f in collected.files)
    collisions = find_collisions(collected.files, args.output, args.format, args.defocus_map, args.defocus_raw)
    for message in collisions.values():
        print(f"ifan deblur: error: {message}", file=sys.stderr)
    counts = {"done": 0, "skipped": 0, "failed": len(collected.errors) + len(collisions)}
    claimed: set[str] = set()
    todo = [item for item in collected.files if item.path not in collisions]
    overall = tqdm(todo, desc="images", unit="img", disable=quiet or None, position=0)
    for item in overall:
        tiles = tqdm(total=1, desc=item.path.name, unit="tile", leave=False, disable=quiet or None, position=1)

        def progress(done: int, total: int, bar=tiles) -> None:
            bar.total = total
            bar.n = done
            bar.refresh()

        def on_plan(plan) -> None:
            if args.verbose:
                tqdm.write(f"{item.path}: {plan}", file=sys.stderr)

        report = deblur_file(deblurrer, item, args.output, fmt=args.format, defocus_map=args.defocus_map,
                             defocus_raw=args.defocus_raw, overwrite=args.overwrite, protected=protected,
                             claimed=claimed, max_pixels=args.max_pixels, quality=args.quality, on_plan=on_plan,
                             progress=progress)
        tiles.close()
        counts[report.status] += 1
        if report.status == "failed":
            tqdm.write(f"ifan deblur: error: {report.message}", file=sys.stderr)
        elif not quiet:
            tqdm.write(report.message, file=sys.stderr)
    overall.close()
    summary = f"{counts['done']} deblurred, {counts['skipped']} skipped, {counts['failed']} failed"
    print(f"ifan deblur: {summary}", file=sys.stderr)
    return 1 if counts["failed"] else 0


def _cmd_export(args: argparse.Namespace) -> int:
    from ifan.export import export_onnx

    report = export_onnx(args.model, args.onnx, height=args.height, width=args.width, opset=args.opset,
                         check=not args.no_check)
    print(report)
    return 0 if report.ok else 1


def _cmd_serve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ifan.inference import Deblurrer, parse_size
    from ifan.serve import Limits, require_gradio, serve

    limits = Limits(max_upload_bytes=parse_size(args.max_upload), max_pixels=args.max_pixels)
    require_gradio()
    try:
        deblurrer = Deblurrer.from_pretrained(
            args.model, device=args.device, max_memory=None if args.max_memory is None else parse_size(args.max_memory))
    except (FileNotFoundError, ValueError) as err:  # CheckpointError is a ValueError
        print(f"ifan serve: error: model {args.model!r}: {err}", file=sys.stderr)
        return 1
    serve(deblurrer, Path(args.model).name, args.host, args.port, workdir=args.workdir, limits=limits)
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ifan", description="IFAN single-image defocus deblurring")
    parser.add_argument("--version", action="version", version=_version())
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("list-models", help="list the named model configurations")
    p.set_defaults(func=_cmd_list_models)

    p = sub.add_parser("convert", help="convert a weights file (e.g. the authors' IFAN.pytorch) to ifan safetensors")
    p.add_argument("src", help="source weights: official .pytorch/.pth, a state dict, or ifan safetensors")
    p.add_argument("dst", help="destination .safetensors file")
    p.set_defaults(func=_cmd_convert)

    from ifan.inference import DEFAULT_OVERLAP, DEFAULT_PRECISION, PRECISIONS
    from ifan.io import DEFAULT_MAX_PIXELS, WRITE_FORMATS
    from ifan.models.zoo import DEFAULT_MODEL

    p = sub.add_parser(
        "deblur", help="deblur images, folders or globs",
        description="Deblur photos of any size. photo.jpg -> photo_deblurred.jpg beside it, or under -o OUT "
                    "(folders keep their structure); existing outputs are skipped unless --overwrite.")
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (searched recursively) or globs")
    p.add_argument("-o", "--output", metavar="OUT", help="output folder (default: beside each input)")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"model name or weights file (default: {DEFAULT_MODEL})")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N")
    p.add_argument("--max-memory", metavar="SIZE",
                   help="peak memory to stay under, e.g. 4G (GiB) or 4GB; larger images are tiled "
                        "(default: memory in use + 60%% of what is available)")
    p.add_argument("--defocus-map", action="store_true", help="also write NAME_defocus.png (colour-mapped |disparity|)")
    p.add_argument("--defocus-raw", choices=["npy", "png16"],
                   help="also write the signed defocus map in pixels: NAME_defocus.npy (float32) or "
                        "NAME_defocus16.png (uint16 = 32768 + 256 * pixels)")
    p.add_argument("--format", choices=sorted(WRITE_FORMATS), help="output format (default: the input's)")
    p.add_argument("--overwrite", action="store_true", help="replace existing outputs (never an input)")
    p.add_argument("--precision", default=DEFAULT_PRECISION, choices=sorted(PRECISIONS),
                   help="fp32 (default); auto = bf16 on CPUs with native bf16 / fp16 on CUDA; bf16; fp16 (CUDA)")
    p.add_argument("--compile", action="store_true", help="torch.compile the network (pays off on many same-size tiles)")
    p.add_argument("--overlap", type=int, default=DEFAULT_OVERLAP, help=f"minimum tile overlap in pixels (default {DEFAULT_OVERLAP})")
    p.add_argument("--tile", type=int, metavar="PX", help="force square tiles of this side (default: from the memory plan)")
    p.add_argument("--max-pixels", type=int,
                   help="refuse larger images (default: what the memory of the run holds at 48 bytes per pixel, "
                        f"120 with defocus maps; at most {DEFAULT_MAX_PIXELS}, a decompression-bomb guard)")
    p.add_argument("--quality", type=int, default=95, help="JPEG/WebP quality (default 95)")
    p.add_argument("-v", "--verbose", action="store_true", help="show the device, precision and each memory plan")
    p.add_argument("-q", "--quiet", action="store_true", help="only errors and the summary")
    p.set_defaults(func=_cmd_deblur)

    p = sub.add_parser("export", help="export a model to ONNX (needs the optional extra ifan[onnx])")
    p.add_argument("model", help="model name with bundled weights, or a weights file")
    p.add_argument("--onnx", required=True, metavar="OUT.onnx", help="the ONNX file to write")
    p.add_argument("--height", type=int, default=256, help="example input height for tracing (multiple of 8)")
    p.add_argument("--width", type=int, default=256, help="example input width for tracing (multiple of 8)")
    p.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime parity check")
    p.set_defaults(func=_cmd_export)

    p = sub.add_parser("synth", help="render a synthetic dual-pixel defocus dataset in the DPDD layout")
    p.add_argument("--out", help="output folder (an interrupted run resumes; larger counts extend it)")
    p.add_argument("--train", type=int, default=0, help="training samples (default 0)")
    p.add_argument("--val", type=int, default=0, help="validation samples (default 0)")
    p.add_argument("--test", type=int, default=0, help="test samples (default 0)")
    p.add_argument("--size", type=_parse_size, default=(512, 512), metavar="WxH", help="image size (default 512x512)")
    p.add_argument("--seed", type=int, default=0, help="dataset seed (default 0)")
    p.add_argument("--bit-depth", type=int, choices=(8, 16), default=8, help="PNG bit depth (default 8)")
    p.add_argument("--workers", type=int, default=os.cpu_count() or 1,
                   help="rendering processes (default: all CPU cores)")
    p.add_argument("--max-blur", type=float, default=20.0, help="largest blur radius in px (default 20)")
    p.add_argument("--noise", action="store_true", help="add sensor shot and read noise to L and R")
    p.add_argument("--mixture", action="store_true",
                   help="the documented training mixture (docs/synth.md: PSF families, cat's eye, gamma-space "
                        "blur, camera pipeline, portraits, night, sharp samples, rich textures, noise); the "
                        "options below override its parts")
    p.add_argument("--kinds", type=_parse_mix, metavar="K=W,...",
                   help="scene kinds and weights, e.g. layers=0.6,planes=0.25,stereo=0.15,portrait=0,night=0")
    p.add_argument("--psf", type=_parse_mix, metavar="F=W,...",
                   help="aperture families and weights: disc, polygon, rim, soft, gaussian (default disc=1)")
    p.add_argument("--cateye-p", type=float, help="probability of cat's-eye vignetting (default 0)")
    p.add_argument("--gamma-blur-p", type=float, help="probability of blurring sRGB-encoded values (default 0)")
    p.add_argument("--pipeline-p", type=float,
                   help="probability of a camera pipeline: tone, sharpening, resizing, JPEG (default 0)")
    p.add_argument("--sharp-p", type=float, help="probability of a sample without blur (default 0)")
    p.add_argument("--content", choices=("classic", "rich"), help="texture mixture (default classic)")
    p.add_argument("--preview", metavar="PNG", help="write a figure of a few samples (C, L, R, target, blur map)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.set_defaults(func=_cmd_synth)

    p = sub.add_parser("train", help="train a model from a YAML recipe (resumable; torchrun for several processes)")
    p.add_argument("config", nargs="?", help="recipe, e.g. configs/ifan.yaml or configs/ifan-lite-cpu.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set train.steps=1000 (repeatable)")
    p.add_argument("--out", help="run folder, new or empty (default: runs/RECIPE-TIMESTAMP)")
    p.add_argument("--init", metavar="MODEL_OR_FILE",
                   help="start from trained weights (a bundled model such as ifan-lite, or a safetensors file): "
                        "weights only, a fresh optimiser (same as --set init.weights=...)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--force", action="store_true",
                   help="start a new run in an --out folder that holds one: its checkpoints, config, metrics, "
                        "TensorBoard logs and weights are deleted first")
    p.add_argument("--stop-after", type=int, metavar="N", help="stop with a checkpoint after N steps of this call")
    p.add_argument("--time-limit", type=float, metavar="SECONDS",
                   help="stop (with a checkpoint) after this many seconds of training in this invocation")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=_cmd_train)

    p = sub.add_parser("evaluate", help="score a model (and baselines) on a dataset by a stated protocol")
    p.add_argument("--model", default="ifan-lite", help="model name with bundled weights, or a weights file")
    p.add_argument("--dataset", required=True, help="DPDD, RealDOF, CUHK, PixelDP or folder")
    p.add_argument("--root", required=True, help="the dataset folder")
    p.add_argument("--protocol", default="official", choices=["official", "full"])
    p.add_argument("--out", help="folder for per_image.csv, summary.json/.md, outputs/ and figures/")
    p.add_argument("--baselines", action="store_true", help="also score the input itself and Wiener deconvolution")
    p.add_argument("--figures", action="store_true", help="write input | output | target | defocus-map figures")
    p.add_argument("--save-float", action="store_true", help="also save outputs as float32 .npy, as scored")
    p.add_argument("--split", default="test", help="DPDD split (default: test)")
    p.add_argument("--limit", type=int, help="only the first N images")
    p.add_argument("--lpips-weights", help="LPIPS weights file(s) (default: $IFAN_LPIPS_WEIGHTS)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.set_defaults(func=_cmd_evaluate)

    p = sub.add_parser("demo", help="deblur the bundled example (or --image) and write a comparison figure")
    p.add_argument("--out", default="outputs/demo", help="output folder (default: outputs/demo)")
    p.add_argument("--model", help="model name or weights file (default: the bundled model)")
    p.add_argument("--image", help="a photo to use instead of the bundled example")
    p.add_argument("--sharp", help="a sharp reference of the same size, shown in the crop row")
    p.add_argument("--device", default="auto", help="auto, cpu or cuda")
    p.set_defaults(func=_cmd_demo)

    from ifan.serve import DEFAULT_HOST, DEFAULT_MAX_PIXELS, DEFAULT_MAX_UPLOAD, DEFAULT_PORT

    p = sub.add_parser(
        "serve", help="a local web page that deblurs photos (needs the optional extra ifan[demo])",
        description="Serve a page to upload a photo (or pick the bundled example), watch the progress, compare "
                    "before/after and at 100%, see the defocus map and download the result at full size and "
                    "bit depth. Listens on 127.0.0.1 only unless --host says otherwise.")
    p.add_argument("--model", default=DEFAULT_MODEL, help=f"model name or weights file (default: {DEFAULT_MODEL})")
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST}: this machine only)")
    p.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    p.add_argument("--device", default="auto", help="auto (CUDA if available), cpu, cuda or cuda:N")
    p.add_argument("--max-memory", metavar="SIZE", help="peak memory of a run, as for `ifan deblur`; larger images are tiled")
    p.add_argument("--max-upload", default=f"{DEFAULT_MAX_UPLOAD // 2**20}MiB", metavar="SIZE",
                   help=f"largest upload accepted, e.g. 20MiB or 20MB (default {DEFAULT_MAX_UPLOAD // 2**20}MiB)")
    p.add_argument("--max-pixels", type=int, default=DEFAULT_MAX_PIXELS,
                   help=f"largest image accepted, in pixels (default {DEFAULT_MAX_PIXELS})")
    p.add_argument("--workdir", metavar="DIR",
                   help="where to create the working folder for uploads and results (default: the system's "
                        "temporary folder); the server works in a new subfolder of DIR, serves and deletes "
                        "nothing else there, and removes that subfolder on exit")
    p.set_defaults(func=_cmd_serve)
    return parser


def _version() -> str:
    from ifan import __version__

    return f"ifan {__version__}"


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError, OSError, ImportError) as err:
        print(f"ifan {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
