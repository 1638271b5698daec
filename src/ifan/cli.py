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
