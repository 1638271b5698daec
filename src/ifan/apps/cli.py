"""The ``ifan`` command line: one entry point, a few lines per subcommand over the library.

Each subcommand is a pair of functions: ``_NAME_arguments(parser)`` declares its options (with
the library's own defaults) and ``_NAME(args)`` runs it; those that make data and models (``synth``,
``train``, ``curves``) live in :mod:`ifan.apps.training_cli`, options shared by several in
:mod:`ifan.apps.options`. Only the chosen subcommand's options
are built, so ``ifan --help`` imports nothing heavy (no torch, numpy, OpenCV or Gradio).
Every option that names an output is ``-o/--output`` (the older spelling stays as an alias), and
every ``--device`` takes the same forms.
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from ifan.apps import training_cli, weights_cli
from ifan.apps.options import (blend_arguments, blend_settings, check_new_file, device_argument, integer,
                               load_deblurrer, max_memory_argument, model_argument, output_argument,
                               overwrite_argument, precision_argument)


# subcommands --------------------------------------------------------------------------------------
def _list_models(args: argparse.Namespace) -> int:
    from ifan.models.hub import status
    from ifan.models.zoo import MODELS

    for name, spec in MODELS.items():
        c = spec.config
        state = status(name).state
        weights = {"not installed": "fetched on use"}.get(state, state)
        print(f"{name:<10} ch={c.channels:<3} N={c.iterations:<3} {weights:<15} {spec.description}")
    return 0


def _convert_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("src", help="source weights: official .pytorch/.pth, a state dict, or ifan safetensors")
    p.add_argument("dst", help="destination .safetensors file")
    overwrite_argument(p, "the destination (never the source)")


def _convert(args: argparse.Namespace) -> int:
    from ifan.models.zoo import convert_weights

    check_new_file(args.dst, args.overwrite, args.src)
    config = convert_weights(args.src, args.dst)
    print(f"wrote {args.dst}: ch={config.channels} N={config.iterations} dual={config.dual_pixel_input} "
          f"iac_form={config.iac_form}")
    return 0


def _deblur_arguments(p: argparse.ArgumentParser) -> None:
    from ifan.apps.files import RAW_KINDS
    from ifan.apps.manifest import MANIFEST_NAME
    from ifan.apps.pipeline import DEFAULT_GPU_BATCH
    from ifan.inference import DEFAULT_OVERLAP, DEFAULT_PRECISION
    from ifan.inference.memory import FILE_BYTES_PER_PIXEL
    from ifan.io import DEFAULT_MAX_PIXELS, DEFAULT_QUALITY, WRITE_FORMATS
    from ifan.io.image import DEFAULT_LIMIT_NOTE

    p.add_argument("inputs", nargs="+", metavar="INPUT", help="image files, folders (searched recursively) or globs")
    output_argument(p, help="output folder (default: beside each input)")
    model_argument(p)
    device_argument(p)
    precision_argument(p, DEFAULT_PRECISION)
    max_memory_argument(p)
    p.add_argument("--defocus-map", action="store_true", help="also write NAME_defocus.png (colour-mapped |disparity|)")
    p.add_argument("--defocus-raw", choices=sorted(RAW_KINDS),
                   help="also write the signed defocus map in pixels: NAME_defocus.npy (float32) or "
                        "NAME_defocus16.png (uint16 = 32768 + 256 * pixels)")
    p.add_argument("--format", choices=sorted(WRITE_FORMATS),
                   help="output format (default: the input's; 16-bit TIFF for camera RAW)")
    blend_arguments(p)
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing outputs, and a --manifest FILE that is not a manifest (never an input)")
    p.add_argument("--compile", action="store_true", help="torch.compile the network (pays off on many equal tiles)")
    p.add_argument("--overlap", type=integer(0), default=DEFAULT_OVERLAP,
                   help=f"minimum tile overlap in pixels (default {DEFAULT_OVERLAP})")
    p.add_argument("--tile", type=integer(1), metavar="PX",
                   help="force square tiles of this side, larger than the overlap (default: the memory plan's)")
    p.add_argument("--max-pixels", type=integer(1),
                   help="refuse larger images (default: what the memory of the run holds at "
                        f"{FILE_BYTES_PER_PIXEL[False]} bytes per pixel, {FILE_BYTES_PER_PIXEL[True]} with defocus "
                        f"maps; at most {DEFAULT_MAX_PIXELS}, a {DEFAULT_LIMIT_NOTE})")
    p.add_argument("--quality", type=integer(1, 100), help=f"JPEG/WebP quality, 1-100 (default {DEFAULT_QUALITY})")
    p.add_argument("--manifest", type=Path, metavar="FILE",
                   help=f"write the run's manifest (a JSON line per input and a summary) here (default: "
                        f"OUT/{MANIFEST_NAME} with -o OUT, else none)")
    p.add_argument("--retry-failed", type=Path, metavar="MANIFEST",
                   help="of the inputs, deblur only those this manifest lists as failed")
    p.add_argument("--threads", type=integer(1), metavar="N",
                   help="CPU threads per process (default: PyTorch's; under torchrun on CPUs, the CPU's threads "
                        "divided between the processes of each machine)")
    p.add_argument("--batch", type=integer(1), metavar="N",
                   help=f"same-size photos per forward pass (default {DEFAULT_GPU_BATCH} on a GPU, 1 on a CPU)")
    p.add_argument("--sequential-io", action="store_true",
                   help="read, deblur and write one photo after the other (default: the next photo is read and "
                        "the previous one written while the network runs)")
    p.add_argument("-v", "--verbose", action="store_true", help="show the device, precision and each memory plan")
    p.add_argument("-q", "--quiet", action="store_true", help="only errors and the summary")


def _deblur(args: argparse.Namespace) -> int:
    from ifan.apps.archive import ArchiveOptions, run_archive
    from ifan.apps.files import OutputOptions
    from ifan.inference.tiling import check_tile_size

    try:
        check_tile_size(args.tile, args.overlap)
    except ValueError as err:
        raise ValueError(f"--tile {args.tile}: {err}; choose a larger --tile or a smaller --overlap") from None
    options = OutputOptions(args.output, args.format, args.defocus_map, args.defocus_raw, args.overwrite,
                            args.max_pixels, args.quality, blend_settings(args), args.save_mask)
    run = ArchiveOptions(model=args.model, device=args.device, manifest=args.manifest, retry_failed=args.retry_failed,
                         threads=args.threads, batch=args.batch, overlap=not args.sequential_io, quiet=args.quiet,
                         verbose=args.verbose)
    return run_archive(args.inputs, options, run, lambda device: load_deblurrer(
        args, device=device, compile=args.compile, overlap=args.overlap, tile_size=args.tile))


def _export_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("model", help="model name (see `ifan weights list`) or weights file")
    output_argument(p, "--onnx", required=True, metavar="OUT.onnx", help="the ONNX file to write")
    p.add_argument("--height", type=integer(8), default=256, help="example input height for tracing (multiple of 8)")
    p.add_argument("--width", type=integer(8), default=256, help="example input width for tracing (multiple of 8)")
    p.add_argument("--opset", type=integer(7), default=17, help="ONNX opset (default 17)")
    p.add_argument("--no-check", action="store_true", help="skip the onnxruntime parity check")
    overwrite_argument(p, "the ONNX file")


def _export(args: argparse.Namespace) -> int:
    from ifan.export import export_onnx

    check_new_file(args.output, args.overwrite, args.model)
    report = export_onnx(args.model, args.output, height=args.height, width=args.width, opset=args.opset,
                         check=not args.no_check)
    print(report)
    return 0 if report.ok else 1


def _evaluate_arguments(p: argparse.ArgumentParser) -> None:
    from ifan.evaluate.metrics import PROTOCOLS
    from ifan.evaluate.runner import EVALUATE_PRECISION

    model_argument(p)
    p.add_argument("--dataset", required=True, help="DPDD, RealDOF, CUHK, PixelDP or folder")
    p.add_argument("--root", required=True, help="the dataset folder")
    p.add_argument("--protocol", default="official", choices=sorted(PROTOCOLS))
    output_argument(p, "--out", help="folder for per_image.csv, summary.json/.md, outputs/ and figures/")
    p.add_argument("--baselines", action="store_true", help="also score the input itself and Wiener deconvolution")
    p.add_argument("--figures", action="store_true", help="write input | output | target | defocus-map figures")
    p.add_argument("--save-float", action="store_true", help="also save outputs as float32 .npy, as scored")
    p.add_argument("--split", default="test", help="DPDD split (default: test)")
    p.add_argument("--limit", type=integer(1), help="only the first N images")
    p.add_argument("--lpips-weights", help="LPIPS weights file(s) (default: $IFAN_LPIPS_WEIGHTS)")
    device_argument(p, default="cpu")
    precision_argument(p, EVALUATE_PRECISION)
    max_memory_argument(p)


def _evaluate(args: argparse.Namespace) -> int:
    from ifan.evaluate.runner import evaluate, markdown_table

    result = evaluate(args.model, args.dataset, args.root, protocol=args.protocol, out_dir=args.output,
                      baselines=args.baselines, figures=args.figures, device=args.device,
                      lpips_weights=args.lpips_weights, limit=args.limit, split=args.split,
                      save_float=args.save_float, precision=args.precision, max_memory=args.max_memory)
    s = result.summary
    print(f"{s['model']} on {s['dataset']} ({s['images']} images, protocol {s['protocol']}, {s['device']}, "
          f"precision {s['precision']})")
    print(markdown_table(s))
    if s["lpips_note"]:
        print(f"LPIPS: {s['lpips_note']}")
    if args.output:
        print(f"wrote {args.output}/per_image.csv, summary.json, summary.md and outputs/")
    return 0


def _demo_arguments(p: argparse.ArgumentParser) -> None:
    from ifan.inference import DEFAULT_PRECISION

    output_argument(p, "--out", default="outputs/demo", help="output folder (default: outputs/demo)")
    model_argument(p)
    p.add_argument("--image", help="a photo to use instead of the bundled example")
    p.add_argument("--sharp", help="a sharp reference of the same size, shown in the crop row")
    device_argument(p)
    precision_argument(p, DEFAULT_PRECISION)


def _demo(args: argparse.Namespace) -> int:
    from ifan.apps.demo import run_demo

    result = run_demo(args.output, model=args.model, image=args.image, sharp=args.sharp, device=args.device,
                      precision=args.precision)
    print(f"deblurred {args.image or 'the bundled example'} with {result.model} in {result.seconds:.1f} s")
    print(f"wrote {result.output}, {result.defocus} and {result.figure}")
    return 0


def _serve_arguments(p: argparse.ArgumentParser) -> None:
    from ifan.apps.options import size_text
    from ifan.apps.serve import DEFAULT_HOST, DEFAULT_PORT
    from ifan.apps.service import DEFAULT_MAX_UPLOAD_BYTES, DEFAULT_MAX_UPLOAD_PIXELS
    from ifan.inference import DEFAULT_PRECISION

    model_argument(p)
    p.add_argument("--host", default=DEFAULT_HOST, help=f"address to listen on (default {DEFAULT_HOST}: this machine)")
    p.add_argument("--port", type=integer(0, 65535), default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT})")
    device_argument(p)
    precision_argument(p, DEFAULT_PRECISION)
    max_memory_argument(p)
    p.add_argument("--max-upload", default=f"{DEFAULT_MAX_UPLOAD_BYTES // 2**20}MiB", metavar="SIZE", type=size_text,
                   help=f"largest upload accepted, e.g. 20MiB or 20MB (default {DEFAULT_MAX_UPLOAD_BYTES // 2**20}MiB)")
    p.add_argument("--max-pixels", type=integer(1), default=DEFAULT_MAX_UPLOAD_PIXELS,
                   help=f"largest image accepted, in pixels (default {DEFAULT_MAX_UPLOAD_PIXELS})")
    p.add_argument("--workdir", metavar="DIR",
                   help="where to create the working folder for uploads and results (default: the system's "
                        "temporary folder); the server works in a new subfolder of DIR, serves and deletes "
                        "nothing else there, and removes that subfolder on exit")


def _serve(args: argparse.Namespace) -> int:
    from pathlib import Path

    from ifan.apps import serve
    from ifan.apps.serve_models import ModelMenu
    from ifan.apps.service import Limits
    from ifan.inference import Deblurrer, parse_size

    limits = Limits(max_upload_bytes=parse_size(args.max_upload), max_pixels=args.max_pixels)
    serve.require_gradio()
    deblurrer = load_deblurrer(args)
    if deblurrer is None:
        return 1
    menu = ModelMenu(args.model, deblurrer, lambda name: Deblurrer.from_pretrained(
        name, device=args.device, precision=args.precision, max_memory=args.max_memory))
    serve.serve(deblurrer, Path(args.model).name, args.host, args.port, workdir=args.workdir, limits=limits,
                menu=menu)
    return 0


def _lpips_arguments(p: argparse.ArgumentParser) -> None:
    from ifan.evaluate.lpips import ENV_VAR, HOW_TO_GET_WEIGHTS

    p.epilog, p.formatter_class = HOW_TO_GET_WEIGHTS, argparse.RawDescriptionHelpFormatter
    sub = p.add_subparsers(dest="action", required=True, metavar="ACTION")
    pack = sub.add_parser("pack", help="merge the AlexNet trunk and the LPIPS heads into one safetensors file")
    pack.add_argument("sources", nargs="+", metavar="FILE")
    output_argument(pack, required=True, metavar="DST")
    overwrite_argument(pack, "DST")
    check = sub.add_parser("check", help=f"check that files (default: ${ENV_VAR}) hold the right tensors")
    check.add_argument("sources", nargs="*", metavar="FILE")


def _lpips(args: argparse.Namespace) -> int:
    from ifan.evaluate.lpips import pack_lpips_weights, read_lpips_weights

    if args.action == "pack":
        check_new_file(args.output, args.overwrite, *args.sources)
        print(f"wrote {pack_lpips_weights(args.sources, args.output)}")
    else:
        state = read_lpips_weights(args.sources or None)
        print(f"ok: {len(state)} tensors, {sum(v.numel() for v in state.values())} values")
    return 0


# the parser ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Command:
    """A subcommand: its one-line help, its options and what it runs."""

    help: str
    arguments: Callable[[argparse.ArgumentParser], None] | None
    run: Callable[[argparse.Namespace], int]
    description: str | None = None


COMMANDS: dict[str, Command] = {
    "deblur": Command(
        "deblur images, folders or globs", _deblur_arguments, _deblur,
        "Deblur photos of any size. photo.jpg -> photo_deblurred.jpg beside it, or under -o OUT (folders keep "
        "their structure); existing outputs are skipped unless --overwrite, so a rerun goes on where a run "
        "stopped. Archives: torchrun --nproc_per_node K -m ifan deblur ARCHIVE -o OUT splits the inputs over K "
        "processes (GPUs); docs/archive.md."),
    "serve": Command(
        "a local web page that deblurs photos (needs the optional extra ifan[demo])", _serve_arguments, _serve,
        "Serve a page to upload a photo (or pick the bundled example), watch the progress, compare before/after "
        "and at 100%, see the defocus map and download the result at full size and bit depth. Listens on "
        "127.0.0.1 only unless --host says otherwise."),
    "demo": Command("deblur the bundled example (or --image) and write a comparison figure", _demo_arguments, _demo),
    "evaluate": Command("score a model (and baselines) on a dataset by a stated protocol (fp32 by default)",
                        _evaluate_arguments, _evaluate),
    "train": Command("train a model from a YAML recipe (resumable; torchrun for several processes)",
                     training_cli.train_arguments, training_cli.train),
    "run-files": Command("print where a training run's folder holds its files, one path per name given "
                         "(checkpoint: the one a resume starts from)",
                         training_cli.run_files_arguments, training_cli.run_files),
    "grow": Command("widen trained weights into a larger model that computes the same function",
                    training_cli.grow_arguments, training_cli.grow,
                    "Grow trained weights to a larger width (ifan.models.grow): the old channels keep their "
                    "weights, new ones start from the usual initialisation with zero weights into the old "
                    "channels, so the output is unchanged and training goes on from there."),
    "curves": Command("draw a training run's validation PSNR, losses and learning rate as a PNG",
                      training_cli.curves_arguments, training_cli.curves),
    "synth": Command("render a synthetic dual-pixel defocus dataset in the DPDD layout",
                     training_cli.synth_arguments, training_cli.synth),
    "weights": Command("list, fetch, install and remove the weights that model names load (the authors' "
                       "IFAN by name)", weights_cli.arguments, weights_cli.run,
                       "Weights by name: `--model ifan` loads the authors' weights (AGPL-3.0), fetched, checked and "
                       "cached on first use; this command lists, fetches, installs (from a file, without "
                       "network), locates and removes them."),
    "list-models": Command("list the named model configurations", None, _list_models),
    "convert": Command("convert a weights file (e.g. the authors' IFAN.pytorch) to ifan safetensors",
                       _convert_arguments, _convert),
    "export": Command("export a model to ONNX (needs the optional extra ifan[onnx])", _export_arguments, _export),
    "lpips": Command("pack or check local LPIPS weights files (ifan never downloads them)", _lpips_arguments, _lpips),
}


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The ``ifan`` parser; only ``command``'s options are added (they import what their help shows)."""
    from ifan import __version__

    parser = argparse.ArgumentParser(prog="ifan", description="IFAN single-image defocus deblurring")
    parser.add_argument("--version", action="version", version=f"ifan {__version__}")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for name, cmd in COMMANDS.items():
        p = sub.add_parser(name, help=cmd.help, description=cmd.description or cmd.help)
        p.set_defaults(func=cmd.run)
        if name == command and cmd.arguments is not None:
            cmd.arguments(p)
    return parser


class Terminated(KeyboardInterrupt):
    """SIGTERM, raised in the main thread: the way out is Ctrl+C's (writes in flight are finished or their
    temporary files removed, locks released), then exit code 143."""


def _terminate(signum, frame):
    raise Terminated()


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    command = next((a for a in argv if not a.startswith("-")), None)  # the top level has no valued options
    args = build_parser(command).parse_args(argv)
    in_main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, _terminate) if in_main_thread else None
    try:
        return args.func(args)
    except Terminated:
        print(f"ifan {args.command}: terminated", file=sys.stderr)
        return 128 + signal.SIGTERM
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except (FileNotFoundError, ValueError, OSError, ImportError) as err:
        print(f"ifan {args.command}: error: {err}", file=sys.stderr)
        return 1
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
