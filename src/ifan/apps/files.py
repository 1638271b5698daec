"""The file loop of ``ifan deblur``, ``ifan serve`` and ``ifan demo``: inputs (files, folders, globs),
output naming, skip rules, protected inputs, progress, counts, one error line per file.

:func:`deblur_files` reads, deblurs and writes a list of files; :func:`deblur_file` does one;
a :class:`Listener` hears each step (the command line shows progress bars with
:class:`ConsoleListener`, the web page reports fractions and draws previews, the demo draws its
figure from the arrays it is handed).

Naming rule (``SUFFIX`` = ``_deblurred``)::

    photo.jpg                   -> photo_deblurred.jpg              (beside the input)
    photo.jpg -o OUT            -> OUT/photo_deblurred.jpg
    shoot/ (a folder) -o OUT    -> OUT/<path inside shoot>/<name>_deblurred.<ext>
    "shoot/**/*.jpg" -o OUT     -> the same, relative to the glob's fixed prefix (shoot/)
    --defocus-map               -> <name>_defocus.png beside the result (colour), and with
                                   --defocus-raw npy|png16 <name>_defocus.npy / <name>_defocus16.png

The output format is the input's (``.jpeg`` stays ``.jpeg``; formats that cannot be written, such
as BMP, become PNG) unless ``--format`` names one; a 16-bit or transparent image asked to go into a
format that cannot hold it (JPEG, or WebP for 16 bits) is written as PNG instead, with a note.
Folders are searched recursively for image files (hidden entries and files whose names already
end in ``_deblurred``/``_defocus``/``_defocus16`` are left out); files named explicitly are always
tried when their suffix is one of :data:`ifan.io.READ_SUFFIXES` (others are refused by name).
An input is never overwritten, existing outputs are skipped unless ``overwrite``, and every
file is written atomically.
"""

from __future__ import annotations

import glob
import os
import sys
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ifan.inference import Deblurrer, TilePlan
from ifan.io import (DEFAULT_MAX_PIXELS, READ_SUFFIXES, WRITE_FORMATS, Image, ImageReadError, ImageWriteError,
                     read_image, write_like)
from ifan.viz import save_defocus

SUFFIX = "_deblurred"
DEFOCUS_SUFFIX = "_defocus"
RAW_KINDS = {"npy": ("_defocus", ".npy"), "png16": ("_defocus16", ".png")}
_OWN_SUFFIXES = (SUFFIX, DEFOCUS_SUFFIX, "_defocus16")
_GLOB_CHARS = frozenset("*?[")


@dataclass(frozen=True)
class InputFile:
    """An input, the folder its output keeps its relative path from (None: flat), and the file
    name its outputs are named after (None: its own; the web page gives the user's name)."""

    path: Path
    base: Path | None = None
    name: str | None = None


@dataclass
class Collected:
    """What the command line's INPUT arguments resolved to."""

    files: list[InputFile] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _is_image_name(p: Path) -> bool:
    return p.suffix.lower() in READ_SUFFIXES and not p.stem.endswith(_OWN_SUFFIXES) and not p.name.startswith(".")


def _glob_base(pattern: str) -> Path:
    parts = Path(pattern).parts
    fixed = []
    for part in parts:
        if _GLOB_CHARS & set(part):
            break
        fixed.append(part)
    return Path(*fixed) if fixed else Path(".")


def collect_inputs(args: Iterable[str | os.PathLike]) -> Collected:
    """Resolve files, folders (recursively) and glob patterns to a list of inputs, in order, once each."""
    out, seen = Collected(), set()

    def add(path: Path, base: Path | None) -> None:
        key = path.resolve()
        if key not in seen:
            seen.add(key)
            out.files.append(InputFile(path, base))

    for arg in args:
        text = str(arg)
        path = Path(text)
        if path.is_file():
            if path.suffix.lower() in READ_SUFFIXES:
                add(path, None)
            else:
                out.errors.append(f"{path}: unsupported format {path.suffix or '(no suffix)'!r}; "
                                  f"supported: {', '.join(sorted(READ_SUFFIXES))}")
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*")
                           if p.is_file() and _is_image_name(p)
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not found:
                out.errors.append(f"{path}: no image files in this folder ({', '.join(sorted(READ_SUFFIXES))})")
            for p in found:
                add(p, path)
        elif _GLOB_CHARS & set(text):
            base = _glob_base(text)
            found = sorted(Path(p) for p in glob.glob(text, recursive=True))
            found = [p for p in found if p.is_file() and _is_image_name(p)]
            if not found:
                out.errors.append(f"{text}: the pattern matches no image files")
            for p in found:
                add(p, base)
        else:
            out.errors.append(f"{path}: no such file or folder")
    return out


def output_path(item: InputFile, out_dir: str | os.PathLike | None, fmt: str | None = None,
                suffix: str = SUFFIX, ext: str | None = None) -> Path:
    """Where the result of ``item`` goes (see the module docstring).

    Args:
        out_dir: the output folder, or None for beside the input.
        fmt: output format (png, jpg, tiff, webp) or None for the input's own.
        suffix: appended to the file's stem.
        ext: force this extension (for the defocus maps).
    """
    named = Path(item.name or item.path.name)
    if ext is None:
        if fmt is not None:
            ext = WRITE_FORMATS[fmt]
        else:
            own = named.suffix.lower()
            writable = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp"}
            ext = named.suffix if own in writable else ".png"
    name = named.stem + suffix + ext
    if out_dir is None:
        return item.path.parent / name
    rel = item.path.relative_to(item.base).parent if item.base is not None else Path()
    return Path(out_dir) / rel / name


@dataclass(frozen=True)
class OutputOptions:
    """What the file loop writes, and when.

    Attributes:
        out_dir: the output folder (None: beside each input).
        fmt: output format (png, jpg, tiff, webp; None: the input's own).
        defocus_map: also write ``NAME_defocus.png`` (colour).
        defocus_raw: also write the signed map as ``"npy"`` or ``"png16"``.
        overwrite: replace existing outputs (never an input).
        max_pixels: refuse larger images (decompression-bomb guard).
        quality: JPEG/WebP quality.
    """

    out_dir: Path | None = None
    fmt: str | None = None
    defocus_map: bool = False
    defocus_raw: str | None = None
    overwrite: bool = False
    max_pixels: int = DEFAULT_MAX_PIXELS
    quality: int = 95


@dataclass
class FileReport:
    """The outcome of one input: ``status`` is ``"done"``, ``"skipped"`` or ``"failed"``.

    Attributes:
        error: what made it fail (None otherwise), for callers with their own wording.
        seconds: time spent deblurring (not reading or writing).
    """

    path: Path
    status: str
    message: str = ""
    outputs: list[Path] = field(default_factory=list)
    plan: TilePlan | None = None
    error: Exception | None = None
    seconds: float = 0.0


@dataclass
class Counts:
    """How many inputs were deblurred, skipped and failed."""

    done: int = 0
    skipped: int = 0
    failed: int = 0

    def add(self, status: str) -> None:
        setattr(self, status, getattr(self, status) + 1)

    def __str__(self) -> str:
        return f"{self.done} deblurred, {self.skipped} skipped, {self.failed} failed"


class Listener:
    """What a caller of :func:`deblur_files` hears; every method does nothing unless overridden."""

    def started(self, item: InputFile, index: int, total: int) -> None:
        """Input ``index`` (from 0) of ``total`` is next."""

    def planned(self, item: InputFile, plan: TilePlan) -> None:
        """The image was read and its memory plan made; deblurring starts."""

    def tile(self, done: int, total: int) -> None:
        """``done`` of ``total`` tiles of the current image are deblurred."""

    def result(self, item: InputFile, image: Image, deblurred: np.ndarray, defocus: np.ndarray | None) -> None:
        """The arrays, after the outputs are written: ``(H, W, 3)`` float32 input and result, ``(H, W)`` map."""

    def finished(self, report: FileReport) -> None:
        """The input is done, skipped or failed."""


def _holds(fmt: str, bit_depth: int, alpha: bool) -> bool:
    if fmt == "jpg":
        return bit_depth == 8 and not alpha
    if fmt == "webp":
        return bit_depth == 8
    return True


def _format_of(path: Path) -> str:
    s = path.suffix.lower()
    return {".jpeg": "jpg", ".jpg": "jpg", ".tif": "tiff", ".tiff": "tiff", ".webp": "webp"}.get(s, "png")


def deblur_file(deblurrer: Deblurrer, item: InputFile, options: OutputOptions = OutputOptions(), *,
                protected: frozenset[Path] = frozenset(), listener: Listener = Listener()) -> FileReport:
    """Deblur one file (and write its defocus maps). Problems come back in the report, not raised.

    Args:
        protected: resolved paths that must never be written (the inputs).
        listener: hears the plan, the tiles and the result.
    """
    path, out_dir, fmt = item.path, options.out_dir, options.fmt
    target = output_path(item, out_dir, fmt)
    map_targets: list[tuple[Path, str]] = []
    if options.defocus_map:
        map_targets.append((output_path(item, out_dir, suffix=DEFOCUS_SUFFIX, ext=".png"), "color"))
    if options.defocus_raw is not None:
        suffix, ext = RAW_KINDS[options.defocus_raw]
        map_targets.append((output_path(item, out_dir, suffix=suffix, ext=ext), options.defocus_raw))
    outputs = [target] + [p for p, _ in map_targets]
    if not options.overwrite and all(p.exists() for p in outputs):
        return FileReport(path, "skipped", f"{path}: skipped, {target} already exists (use --overwrite)")
    try:
        img = read_image(path, max_pixels=options.max_pixels)
        note = ""
        out_fmt = fmt or _format_of(target)
        if not _holds(out_fmt, img.bit_depth, img.alpha is not None):
            why = "16-bit" if img.bit_depth == 16 else "transparent"
            target = target.with_suffix(".png")
            outputs[0] = target
            note = f" (written as PNG: {out_fmt.upper()} cannot hold this {why} image)"
            if not options.overwrite and all(p.exists() for p in outputs):
                return FileReport(path, "skipped", f"{path}: skipped, {target} already exists (use --overwrite)")
        for p in outputs:
            if p.resolve() in protected:
                return FileReport(path, "failed", f"{path}: refusing to write {p}: it is one of the inputs")
        h, w = img.size
        plan = deblurrer.plan(h, w, defocus=bool(map_targets))
        listener.planned(item, plan)
        start = time.perf_counter()
        result = deblurrer.deblur(img.rgb, return_defocus=bool(map_targets), plan=plan, progress=listener.tile)
        seconds = time.perf_counter() - start
        rgb, defocus = result if map_targets else (result, None)
        written = [write_like(target, rgb, img, quality=options.quality)]
        for p, kind in map_targets:
            written.append(save_defocus(p, np.asarray(defocus), kind))
        listener.result(item, img, rgb, defocus)
        return FileReport(path, "done", f"{path} -> {target}{note}", written, plan, seconds=seconds)
    except (ImageReadError, ImageWriteError) as err:
        return FileReport(path, "failed", str(err), error=err)
    except MemoryError as err:  # MemoryBudgetError, or the allocator ran out
        return FileReport(path, "failed", f"{path}: out of memory ({err or 'allocation failed'}); "
                                          "try a smaller --max-memory so that it is tiled", error=err)
    except (OSError, ValueError, RuntimeError) as err:
        return FileReport(path, "failed", f"{path}: {type(err).__name__}: {err}", error=err)


def deblur_files(deblurrer: Deblurrer, items: Sequence[InputFile], options: OutputOptions = OutputOptions(), *,
                 listener: Listener = Listener()) -> Counts:
    """Deblur ``items`` one after the other (see :func:`deblur_file`); no input is ever written.

    Returns:
        How many were deblurred, skipped and failed.
    """
    protected = frozenset(item.path.resolve() for item in items)
    counts = Counts()
    for index, item in enumerate(items):
        listener.started(item, index, len(items))
        report = deblur_file(deblurrer, item, options, protected=protected, listener=listener)
        counts.add(report.status)
        listener.finished(report)
    return counts


class ConsoleListener(Listener):
    """Progress bars on stderr (images, and tiles of the current image) and one line per input.

    Args:
        total: how many inputs will come.
        quiet: only errors (and no bars).
        verbose: also each memory plan.
        prog: the command's name in error lines.
    """

    def __init__(self, total: int, quiet: bool = False, verbose: bool = False, prog: str = "ifan deblur") -> None:
        from tqdm import tqdm

        self._tqdm, self.quiet, self.verbose, self.prog = tqdm, quiet, verbose, prog
        self.images = tqdm(total=total, desc="images", unit="img", disable=quiet or None, position=0)
        self.tiles = None

    def started(self, item: InputFile, index: int, total: int) -> None:
        self.tiles = self._tqdm(total=1, desc=item.path.name, unit="tile", leave=False, disable=self.quiet or None,
                                position=1)

    def planned(self, item: InputFile, plan: TilePlan) -> None:
        if self.verbose:
            self._tqdm.write(f"{item.path}: {plan}", file=sys.stderr)

    def tile(self, done: int, total: int) -> None:
        self.tiles.total, self.tiles.n = total, done
        self.tiles.refresh()

    def finished(self, report: FileReport) -> None:
        self.tiles.close()
        if report.status == "failed":
            self._tqdm.write(f"{self.prog}: error: {report.message}", file=sys.stderr)
        elif not self.quiet:
            self._tqdm.write(report.message, file=sys.stderr)
        self.images.update(1)

    def close(self) -> None:
        self.images.close()
