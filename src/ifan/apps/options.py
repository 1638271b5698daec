"""Options shared by several ``ifan`` subcommands (imported when a subcommand's parser is built), the
value checks of every option (once, up front, one line each: ``argument --quality: expected an integer
from 1 to 100, got 0``), and the rule for single output files (none replaced without ``--overwrite``,
never the command's own input)."""

from __future__ import annotations

import argparse
import math
import os
import sys


def integer(low: int | None = None, high: int | None = None):
    """An argparse type: an integer in ``[low, high]`` (either bound may be open)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if (low is not None and value < low) or (high is not None and value > high):
            what = (f"an integer from {low} to {high}" if high is not None else
                    "a positive integer" if low == 1 else f"an integer >= {low}")
            raise argparse.ArgumentTypeError(f"expected {what}, got {value}")
        return value

    return parse


def number(low: float, high: float, what: str | None = None):
    """An argparse type: a finite number in ``[low, high]`` (``what``: how the error names it)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if not low <= value <= high:  # NaN fails this too
            raise argparse.ArgumentTypeError(f"expected {what or f'a number from {low:g} to {high:g}'}, got {text}")
        return value

    return parse


def size_text(text: str) -> str:
    """An argparse type: a memory size as ``ifan.inference.parse_size`` reads it (kept as given)."""
    from ifan.inference.memory import parse_size

    try:
        parse_size(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err)) from None
    return text


def overwrite_argument(p: argparse.ArgumentParser, what: str = "the output") -> None:
    p.add_argument("--overwrite", action="store_true", help=f"replace {what} if it exists")


def check_new_file(path: str | os.PathLike, overwrite: bool, *sources: str | os.PathLike) -> None:
    """Refuse (ValueError, one line) to write ``path`` over one of the command's ``sources``, even with
    ``overwrite``, or over any existing file (a link too) without it."""
    for source in sources:
        if os.path.exists(path) and os.path.exists(source) and os.path.samefile(path, source):
            raise ValueError(f"{path} is the source ({source}); name another file")
    if os.path.lexists(path) and not overwrite:
        raise ValueError(f"{path} exists; add --overwrite to replace it")


def device_argument(p: argparse.ArgumentParser, default: str = "auto") -> None:
    from ifan.inference.runtime import DEVICE_HELP, check_device_name

    def device(text: str) -> str:
        try:
            return check_device_name(text)
        except ValueError as err:
            raise argparse.ArgumentTypeError(str(err)) from None

    p.add_argument("--device", type=device, default=default, help=f"{DEVICE_HELP} (default {default})")


def precision_argument(p: argparse.ArgumentParser, default: str) -> None:
    from ifan.inference.runtime import PRECISIONS

    p.add_argument("--precision", default=default, choices=sorted(PRECISIONS),
                   help=f"default {default}; auto = bf16 on CPUs with native bf16, fp16 on CUDA, fp32 elsewhere; "
                        "fp32 = strict float32")


def model_argument(p: argparse.ArgumentParser) -> None:
    from ifan.models.zoo import DEFAULT_MODEL

    p.add_argument("--model", default=DEFAULT_MODEL, help=f"model name or weights file (default: {DEFAULT_MODEL})")


def output_argument(p: argparse.ArgumentParser, *aliases: str, **kwargs) -> None:
    p.add_argument("-o", "--output", *aliases, dest="output", metavar=kwargs.pop("metavar", "OUT"), **kwargs)


def max_memory_argument(p: argparse.ArgumentParser) -> None:
    from ifan.inference.memory import DEFAULT_BUDGET_FRACTION

    share = f"{DEFAULT_BUDGET_FRACTION * 100:.0f}%%"  # argparse help: %% is a percent sign
    p.add_argument("--max-memory", metavar="SIZE", type=size_text,
                   help="peak memory to stay under, e.g. 4G (GiB) or 4GB; larger images are tiled "
                        f"(default: memory in use + {share} of what is available)")


def blend_arguments(p: argparse.ArgumentParser) -> None:
    """``--strength``, ``--keep-bokeh``, ``--mask`` and ``--save-mask`` (:mod:`ifan.inference.blend`)."""
    from ifan.inference.blend import DEFAULT_KEEP_BOKEH, DEFAULT_TRANSITION, MAX_STRENGTH

    p.add_argument("--strength", type=number(0, MAX_STRENGTH),
                   default=1.0, metavar="S",
                   help=f"how much of the model's change to apply: 0 = the input, 1 = the model (default), up to "
                        f"{MAX_STRENGTH:g} exaggerates it")
    p.add_argument("--keep-bokeh", type=number(1e-3, 1e4, "a blur radius in pixels above 0"),
                   metavar="R",
                   help=f"leave regions blurred by more than R px of blur radius (the model's calibrated estimate) "
                        f"as they were, with a smooth transition ({DEFAULT_TRANSITION:g} px wide); the subject and "
                        f"anything less blurred is deblurred. {DEFAULT_KEEP_BOKEH:g} is a good start")
    p.add_argument("--mask", metavar="FILE",
                   help="a grey mask of the photo's size (white = deblur, black = keep the input; 8 or 16 bits); "
                        "overrides --keep-bokeh")
    p.add_argument("--save-mask", action="store_true",
                   help="also write NAME_mask.png, the mask --keep-bokeh used (8-bit grey), to refine in an editor "
                        "and give back with --mask")


def blend_settings(args: argparse.Namespace):
    """The :class:`~ifan.inference.blend.BlendSettings` of the parsed options (reads ``--mask``).

    Raises:
        ValueError: ``--save-mask`` without a mask to save, or an unreadable or colour ``--mask``.
    """
    from ifan.inference.blend import BlendSettings, read_mask

    if args.save_mask and args.keep_bokeh is None and args.mask is None:
        raise ValueError("--save-mask writes the mask of --keep-bokeh (or --mask): give one of them")
    mask = None if args.mask is None else read_mask(args.mask)
    return BlendSettings(args.strength, args.keep_bokeh, mask=mask, mask_name=str(args.mask or "the mask"))


def load_deblurrer(args: argparse.Namespace, device=None, **options):
    """The Deblurrer of ``--model`` on ``device`` (default ``--device``), or an error line (naming
    ``args.command``) and None."""
    from pathlib import Path

    from ifan.inference import Deblurrer
    from ifan.models.official import CheckpointError
    from ifan.models.zoo import MODELS

    spec = MODELS.get(str(args.model))
    if spec is not None and spec.config.dual_pixel_input and not Path(args.model).is_file():  # before any fetch
        print(f"ifan {args.command}: error: model {args.model!r} reads the dual-pixel views of each photo, which "
              "single photos do not have; ifan evaluate runs it on DPDD", file=sys.stderr)
        return None
    try:
        return Deblurrer.from_pretrained(args.model, device=args.device if device is None else device,
                                         precision=args.precision, max_memory=args.max_memory, **options)
    except (FileNotFoundError, CheckpointError, ValueError) as err:
        print(f"ifan {args.command}: error: model {args.model!r}: {err}", file=sys.stderr)
        return None
