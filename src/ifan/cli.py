"""The ``ifan`` command line: one entry point, a few lines per subcommand over the public API."""

from __future__ import annotations

import argparse
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
        cfg = load_config(args.config, args.set)
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        run_dir = Path(args.out) if args.out else Path("runs") / f"{Path(args.config).stem}-{stamp}"
    result = train(cfg, run_dir, resume=bool(args.resume), stop_after=args.stop_after, device=args.device)
    if result.finished:
        print(f"finished {result.step} steps; weights: {run_dir / 'model.safetensors'}")
    else:
        print(f"stopped at step {result.step}; continue with: ifan train --resume {run_dir}")
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

    p = sub.add_parser("train", help="train a model from a YAML recipe (resumable; torchrun for several processes)")
    p.add_argument("config", nargs="?", help="recipe, e.g. configs/ifan.yaml or configs/ifan-lite-cpu.yaml")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                   help="override a recipe value, e.g. --set train.steps=1000 (repeatable)")
    p.add_argument("--out", help="run folder (default: runs/RECIPE-TIMESTAMP)")
    p.add_argument("--resume", metavar="RUN_DIR", help="continue the run in RUN_DIR from its last checkpoint")
    p.add_argument("--stop-after", type=int, metavar="N", help="stop with a checkpoint after N steps of this call")
    p.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
    p.set_defaults(func=_cmd_train)
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
    except (FileNotFoundError, ValueError, OSError) as err:
        print(f"ifan {args.command}: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
