"""Deblurring files: inputs (files, folders, globs), output naming, skipping, one error line per file.

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
tried when their suffix is one of :data:`ifan.io.READ_SUFFIXES` (others are refused by name). Globs
follow links to folders but enter each real folder once (:func:`expand_glob`).

What is never overwritten: an input (even with ``overwrite``); an existing file, unless
``overwrite`` (an input whose outputs all exist is skipped; when some exist, only the missing
ones are written); and a file another input of the same run writes: inputs whose outputs
would collide are refused up front, naming each other (:func:`find_collisions`). Every file is
written atomically and durably.
"""

from __future__ import annotations

import fnmatch
import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ifan.inference import (DEFAULT_BUDGET_FRACTION, Deblurrer, ProgressCallback, TilePlan, available_ram,
                             format_bytes, save_defocus)
from ifan.io import DEFAULT_MAX_PIXELS, READ_SUFFIXES, WRITE_FORMATS, ImageReadError, ImageWriteError, read_image, write_like

SUFFIX = "_deblurred"
DEFOCUS_SUFFIX = "_defocus"
RAW_KINDS = {"npy": ("_defocus", ".npy"), "png16": ("_defocus16", ".png")}
_OWN_SUFFIXES = (SUFFIX, DEFOCUS_SUFFIX, "_defocus16")
_GLOB_CHARS = frozenset("*?[")
# Peak memory of deblurring a file, per pixel of the image, beyond one tile's forward: reading, the
# float image, the blend buffers, the result and its encoding. Measured with a tiny model under forced
# 768 px tiles (peak RSS of 3000x3000 minus 768x768 PNGs): 36 (8-bit) and 45 (16-bit) bytes per
# pixel, 112 and 115 with --defocus-map. The default --max-pixels is the memory of a run over this.
BYTES_PER_PIXEL = {False: 48, True: 120}  # with defocus maps -> bytes


@dataclass(frozen=True)
class InputFile:
    """An input and the folder its output keeps its relative path from (None: flat)."""

    path: Path
    base: Path | None = None


@dataclass
class Collected:
    """What the command line's INPUT arguments resolved to."""

    files: list[InputFile] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def _is_image_name(p: Path) -> bool:
    return p.suffix.lower() in READ_SUFFIXES and not p.stem.endswith(_OWN_SUFFIXES) and not p.name.startswith(".")


def _split_glob(pattern: str) -> tuple[Path, tuple[str, ...]]:
    """A glob's fixed leading folder and the parts from the first one with a wildcard on."""
    parts = Path(pattern).parts
    n = next((i for i, part in enumerate(parts) if _GLOB_CHARS & set(part)), len(parts))
    return (Path(*parts[:n]) if n else Path(".")), parts[n:]


def _glob_base(pattern: str) -> Path:
    return _split_glob(pattern)[0]


def _matches(name: str, part: str) -> bool:
    """``glob``'s rule for one path part: wildcards match hidden names only when ``part`` starts with a dot."""
    return (not name.startswith(".") or part.startswith(".")) and fnmatch.fnmatch(name, part)


def _expand(base: Path, parts: tuple[str, ...], visited: dict[int, set[tuple[int, int]]]):
    """Paths below ``base`` matching ``parts``; ``visited[len(parts)]``: the real folders that ``**`` entered."""
    if not parts:
        yield base
        return
    head, rest = parts[0], parts[1:]
    if head == "**":
        try:
            st = os.stat(base)
        except OSError:
            return
        entered = visited.setdefault(len(parts), set())
        entered.add((st.st_dev, st.st_ino))
        yield from _expand(base, rest, visited)  # ** matches no folder, or one more below
        for entry in _scandir(base):
            try:
                if entry.name.startswith(".") or not entry.is_dir():
                    continue
                st = entry.stat()  # follows a link: the real folder
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in entered:
                yield from _expand(base / entry.name, parts, visited)
    elif _GLOB_CHARS & set(head):
        for entry in _scandir(base):
            if _matches(entry.name, head):
                yield from _expand(base / entry.name, rest, visited)
    elif os.path.lexists(base / head):
        yield from _expand(base / head, rest, visited)


def _scandir(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError:  # not a folder, gone, or unreadable: nothing matches below it
        return []


def expand_glob(pattern: str) -> list[Path]:
    """The paths matching ``pattern`` (``*``, ``?``, ``[...]`` within a name, ``**`` for any folders
    below), sorted, once each. As :func:`glob.glob` with ``recursive=True``, but ``**`` enters each
    real folder once, so links that loop back (``a/b -> a``) end the walk instead of repeating it."""
    base, parts = _split_glob(pattern)
    return sorted(set(_expand(base, parts, {})))


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
            found = [p for p in expand_glob(text) if p.is_file() and _is_image_name(p)]
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
    if ext is None:
        if fmt is not None:
            ext = WRITE_FORMATS[fmt]
        else:
            own = item.path.suffix.lower()
            writable = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp"}
            ext = item.path.suffix if own in writable else ".png"
    name = item.path.stem + suffix + ext
    if out_dir is None:
        return item.path.parent / name
    rel = item.path.relative_to(item.base).parent if item.base is not None else Path()
    return Path(out_dir) / rel / name


@dataclass
class FileReport:
    """The outcome of one input: ``status`` is ``"done"``, ``"skipped"`` or ``"failed"``."""

    path: Path
    status: str
    message: str = ""
    outputs: list[Path] = field(default_factory=list)
    plan: TilePlan | None = None


def _holds(fmt: str, bit_depth: int, alpha: bool) -> bool:
    if fmt == "jpg":
        return bit_depth == 8 and not alpha
    if fmt == "webp":
        return bit_depth == 8
    return True


def _format_of(path: Path) -> str:
    s = path.suffix.lower()
    return {".jpeg": "jpg", ".jpg": "jpg", ".tif": "tiff", ".tiff": "tiff", ".webp": "webp"}.get(s, "png")


def planned_outputs(item: InputFile, out_dir: str | os.PathLike | None, fmt: str | None = None,
                    defocus_map: bool = False, defocus_raw: str | None = None) -> list[tuple[Path, str]]:
    """The files :func:`deblur_file` writes for ``item``, as ``(path, kind)``: the image (kind
    ``"image"``) first, then the defocus maps (``"color"``, ``"npy"``, ``"png16"``)."""
    planned = [(output_path(item, out_dir, fmt), "image")]
    if defocus_map:
        planned.append((output_path(item, out_dir, suffix=DEFOCUS_SUFFIX, ext=".png"), "color"))
    if defocus_raw is not None:
        suffix, ext = RAW_KINDS[defocus_raw]
        planned.append((output_path(item, out_dir, suffix=suffix, ext=ext), defocus_raw))
    return planned


def path_key(path: str | os.PathLike) -> str:
    """What makes two paths the same file to be written (absolute, normalised, case folded where the OS does)."""
    return os.path.normcase(os.path.abspath(path))


def find_collisions(files: Iterable[InputFile], out_dir: str | os.PathLike | None, fmt: str | None = None,
                    defocus_map: bool = False, defocus_raw: str | None = None) -> dict[Path, str]:
    """Inputs of one run that would write the same file (``a.jpg`` and ``a.png`` -> ``a_defocus.png``;
    ``d1/a.jpg`` and ``d2/a.jpg`` into one flat folder): each input's path -> one line naming the other."""
    writers: dict[str, list[tuple[InputFile, Path]]] = {}
    for item in files:
        for p, _ in planned_outputs(item, out_dir, fmt, defocus_map, defocus_raw):
            claims = writers.setdefault(path_key(p), [])
            if item not in (other for other, _ in claims):
                claims.append((item, p))
    refused: dict[Path, str] = {}
    for claims in writers.values():
        for item, p in claims if len(claims) > 1 else ():
            others = " and ".join(str(other.path) for other, _ in claims if other is not item)
            refused.setdefault(item.path, f"{item.path}: not deblurred: {others} would write the same {p}; "
                                          "rename one of them or deblur them into different -o folders")
    return refused


def pixel_limit(deblurrer: Deblurrer, defocus: bool) -> tuple[int, str]:
    """The default ``max_pixels`` of a file: what the memory this run may use holds at
    :data:`BYTES_PER_PIXEL` (at most :data:`ifan.io.DEFAULT_MAX_PIXELS`), and why, for the error."""
    if deblurrer.device.type == "cpu":
        budget = deblurrer.budget()
    else:  # the image-sized buffers stay in host memory
        avail = available_ram()
        budget = None if avail is None else int(DEFAULT_BUDGET_FRACTION * avail)
    per_pixel = BYTES_PER_PIXEL[defocus]
    if budget is None or budget <= 0 or budget // per_pixel >= DEFAULT_MAX_PIXELS:  # <= 0: the plan says so
        return DEFAULT_MAX_PIXELS, "decompression-bomb guard"
    return budget // per_pixel, (f"what the {format_bytes(budget)} of memory this run may use holds at "
                                 f"{per_pixel} bytes per pixel; --max-memory sets it")


def deblur_file(deblurrer: Deblurrer, item: InputFile, out_dir: str | os.PathLike | None = None, *,
                fmt: str | None = None, defocus_map: bool = False, defocus_raw: str | None = None,
                overwrite: bool = False, protected: frozenset[Path] = frozenset(),
                claimed: set[str] | None = None, max_pixels: int | None = None, quality: int = 95,
                on_plan: Callable[[TilePlan], None] | None = None,
                progress: ProgressCallback | None = None) -> FileReport:
    """Deblur one file (and write its defocus maps). Problems come back in the report, not raised.

    Without ``overwrite`` no existing file is replaced: when all outputs exist the file is skipped,
    when some do only the others are written.

    Args:
        protected: resolved paths that must never be written (the inputs).
        claimed: :func:`path_key` of every file written earlier in this run (updated here); none is
            written twice, even with ``overwrite``.
        max_pixels: refuse larger images (default: :func:`pixel_limit`).
        on_plan: called with the memory plan before the image is run.
    """
    path = item.path
    planned = planned_outputs(item, out_dir, fmt, defocus_map, defocus_raw)
    if not overwrite and all(p.exists() for p, _ in planned):
        return FileReport(path, "skipped", f"{path}: skipped, {planned[0][0]} already exists (use --overwrite)")
    limit, limit_note = (max_pixels, "--max-pixels") if max_pixels is not None else \
        pixel_limit(deblurrer, any(kind != "image" for _, kind in planned))
    try:
        img = read_image(path, max_pixels=limit, limit_note=limit_note)
        note = ""
        target = planned[0][0]
        out_fmt = fmt or _format_of(target)
        if not _holds(out_fmt, img.bit_depth, img.alpha is not None):
            why = "16-bit" if img.bit_depth == 16 else "transparent"
            target = target.with_suffix(".png")
            planned[0] = (target, "image")
            note = f" (written as PNG: {out_fmt.upper()} cannot hold this {why} image)"
        for p, _ in planned:
            if p.resolve() in protected:
                return FileReport(path, "failed", f"{path}: refusing to write {p}: it is one of the inputs")
            if claimed is not None and path_key(p) in claimed:
                return FileReport(path, "failed", f"{path}: refusing to write {p}: another input of this run "
                                                  "wrote it already")
        todo = [(p, kind) for p, kind in planned if overwrite or not p.exists()]
        if not todo:
            return FileReport(path, "skipped", f"{path}: skipped, {target} already exists (use --overwrite)")
        maps = [kind for _, kind in todo if kind != "image"]
        h, w = img.size
        plan = deblurrer.plan(h, w, defocus=bool(maps))
        if on_plan is not None:
            on_plan(plan)
        result = deblurrer.deblur(img.rgb, return_defocus=bool(maps), plan=plan, progress=progress)
        rgb, defocus = result if maps else (result, None)
        written, kept = [], [p for p, kind in planned if (p, kind) not in todo]
        for p, kind in todo:
            if not overwrite and p.exists():  # appeared while the image was deblurred
                kept.append(p)
                continue
            if kind == "image":
                written.append(write_like(p, rgb, img, quality=quality))
            else:
                written.append(save_defocus(p, np.asarray(defocus), kind))
            if claimed is not None:
                claimed.add(path_key(p))
        message = f"{path} -> {', '.join(map(str, written))}{note}" if written else f"{path}: skipped"
        if kept:
            message += f"; kept the existing {', '.join(map(str, kept))} (use --overwrite to replace)"
        return FileReport(path, "done" if written else "skipped", message, written, plan)
    except (ImageReadError, ImageWriteError) as err:
        return FileReport(path, "failed", str(err))
    except MemoryError as err:  # MemoryBudgetError, or the allocator ran out
        return FileReport(path, "failed", f"{path}: out of memory ({err or 'allocation failed'}); "
                                          "try a smaller --max-memory so that it is tiled")
    except (OSError, ValueError, RuntimeError) as err:
        return FileReport(path, "failed", f"{path}: {type(err).__name__}: {err}")
