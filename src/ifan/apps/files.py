"""The rules of the file loop of ``ifan deblur``, ``ifan serve`` and ``ifan demo``: inputs (files,
folders, globs), output naming, skip rules, protected inputs, collisions and claims. The steps each
input takes are :mod:`ifan.apps.steps`; the loop is :mod:`ifan.apps.pipeline`.

Naming rule (``SUFFIX`` = ``_deblurred``)::

    photo.jpg                   -> photo_deblurred.jpg              (beside the input)
    photo.jpg -o OUT            -> OUT/photo_deblurred.jpg
    shoot/ (a folder) -o OUT    -> OUT/<path inside shoot>/<name>_deblurred.<ext>
    "shoot/**/*.jpg" -o OUT     -> the same, relative to the glob's fixed prefix (shoot/)
    --defocus-map               -> <name>_defocus.png beside the result (colour), and with
                                   --defocus-raw npy|png16 <name>_defocus.npy / <name>_defocus16.png
    --save-mask                 -> <name>_mask.png: the blend mask of --keep-bokeh (8-bit grey)
    photo.nef (camera RAW)      -> photo_deblurred.tif (16-bit), unless --format says otherwise

The output format is the input's (``.jpeg`` stays ``.jpeg``; formats that cannot be written, such
as BMP, become PNG) unless ``--format`` names one; a 16-bit or transparent image asked to go into a
format that cannot hold it (JPEG, or WebP for 16 bits) is written as PNG instead, with a note
(the format table: :mod:`ifan.io.formats`).
Folders are searched recursively for image files (hidden entries and files whose names already
end in ``_deblurred``/``_defocus``/``_defocus16`` are left out); files named explicitly are always
tried when their suffix is one of :data:`INPUT_SUFFIXES` (others are refused by name). Globs
follow links to folders but enter each real folder once (:func:`ifan.fileutil.expand_glob`).

What is never overwritten: an input (even with ``overwrite``); an existing file, unless
``overwrite`` (an input whose outputs all exist is skipped; when some exist, only the missing
ones are written); and a file another input of the same run writes: inputs whose outputs
would collide are refused up front, naming each other (:func:`find_collisions`), and each file
is claimed by one input (:class:`Claims`). Every file is written atomically and durably.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

from ifan.fileutil import GLOB_CHARS, expand_glob, fit_name, shown, split_glob
from ifan.inference.blend import BlendSettings
from ifan.io.formats import FALLBACK, FORMATS, READ_SUFFIXES, format_of_suffix
from ifan.io.raw import RAW_OUTPUT_SUFFIX, RAW_SUFFIXES, is_raw

SUFFIX = "_deblurred"
DEFOCUS_SUFFIX = "_defocus"
MASK_SUFFIX = "_mask"
RAW_KINDS = {"npy": ("_defocus", ".npy"), "png16": ("_defocus16", ".png")}
_OWN_SUFFIXES = (SUFFIX, DEFOCUS_SUFFIX, "_defocus16", MASK_SUFFIX)
INPUT_SUFFIXES = READ_SUFFIXES | RAW_SUFFIXES
SUPPORTED = f"{', '.join(sorted(READ_SUFFIXES))} and camera RAW ({', '.join(sorted(RAW_SUFFIXES))})"


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
    return p.suffix.lower() in INPUT_SUFFIXES and not p.stem.endswith(_OWN_SUFFIXES) and not p.name.startswith(".")


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
            if path.suffix.lower() in INPUT_SUFFIXES:
                add(path, None)
            else:
                out.errors.append(f"{shown(path)}: unsupported format {path.suffix or '(no suffix)'!r}; "
                                  f"supported: {SUPPORTED}")
        elif path.is_dir():
            found = sorted(p for p in path.rglob("*")
                           if p.is_file() and _is_image_name(p)
                           and not any(part.startswith(".") for part in p.relative_to(path).parts))
            if not found:
                out.errors.append(f"{shown(path)}: no image files in this folder ({SUPPORTED})")
            for p in found:
                add(p, path)
        elif GLOB_CHARS & set(text):
            base = split_glob(text)[0]
            found = [p for p in expand_glob(text) if p.is_file() and _is_image_name(p)]
            if not found:
                out.errors.append(f"{text}: the pattern matches no image files")
            for p in found:
                add(p, base)
        else:
            out.errors.append(f"{shown(path)}: no such file or folder")
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
            ext = FORMATS[fmt].suffix
        elif format_of_suffix(named.suffix) is not None:
            ext = named.suffix
        else:
            ext = RAW_OUTPUT_SUFFIX if is_raw(named) else FALLBACK.suffix
    name = fit_name(named.stem + suffix + ext, keep=suffix + ext)  # too long a name is shortened
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
        overwrite: replace existing outputs (never an input, never a file written earlier in the run).
        max_pixels: refuse larger images (None: what the memory of the run holds,
            :func:`ifan.inference.memory.pixel_limit`).
        quality: JPEG/WebP quality (None: the format's, :data:`ifan.io.formats.DEFAULT_QUALITY`).
        blend: how the result is recomposed from the input and the model's (``--strength``,
            ``--keep-bokeh``, ``--mask``); save_mask: also write ``NAME_mask.png``, the mask used.
    """

    out_dir: Path | None = None
    fmt: str | None = None
    defocus_map: bool = False
    defocus_raw: str | None = None
    overwrite: bool = False
    max_pixels: int | None = None
    quality: int | None = None
    blend: BlendSettings = BlendSettings()
    save_mask: bool = False


def planned_outputs(item: InputFile, options: OutputOptions) -> list[tuple[Path, str]]:
    """The files the file loop writes for ``item``, as ``(path, kind)``: the image (kind
    ``"image"``) first, then the defocus maps (``"color"``, ``"npy"``, ``"png16"``) and the mask (``"mask"``)."""
    out_dir = options.out_dir
    planned = [(output_path(item, out_dir, options.fmt), "image")]
    if options.defocus_map:
        planned.append((output_path(item, out_dir, suffix=DEFOCUS_SUFFIX, ext=".png"), "color"))
    if options.defocus_raw is not None:
        suffix, ext = RAW_KINDS[options.defocus_raw]
        planned.append((output_path(item, out_dir, suffix=suffix, ext=ext), options.defocus_raw))
    if options.save_mask:
        planned.append((output_path(item, out_dir, suffix=MASK_SUFFIX, ext=".png"), "mask"))
    return planned


def path_key(path: str | os.PathLike) -> str:
    """What makes two paths the same file to be written (absolute, normalised, case folded where the OS does)."""
    return os.path.normcase(os.path.abspath(path))


def find_collisions(files: Iterable[InputFile], options: OutputOptions) -> dict[Path, str]:
    """Inputs of one run that would write the same file (``a.jpg`` and ``a.png`` -> ``a_defocus.png``;
    ``d1/a.jpg`` and ``d2/a.jpg`` into one flat folder): each input's path -> one line naming the other."""
    writers: dict[str, list[tuple[InputFile, Path]]] = {}
    for item in files:
        for p, _ in planned_outputs(item, options):
            claims = writers.setdefault(path_key(p), [])
            if item not in (other for other, _ in claims):
                claims.append((item, p))
    refused: dict[Path, str] = {}
    for claims in writers.values():
        for item, p in claims if len(claims) > 1 else ():
            others = " and ".join(shown(other.path) for other, _ in claims if other is not item)
            refused.setdefault(item.path, f"{shown(item.path)}: not deblurred: {others} would write the same {shown(p)}; "
                                          "rename one of them or deblur them into different -o folders")
    return refused


class Claims:
    """Which input of a run writes which file, so that none is written twice (even with ``overwrite``):
    a set in one process; :class:`ifan.apps.archive.StoreClaims` shares them between processes.

    Args:
        planned: :func:`path_key` of the outputs the run's inputs are planned to write (their names,
            free of collisions): a result that falls back to another name after reading may not take one.
    """

    def __init__(self, planned: Iterable[str] = ()) -> None:
        self.planned = frozenset(planned)
        self._held: set[str] = set()

    def held(self, key: str) -> bool:
        """An input has claimed ``key``."""
        return key in self._held

    def claim(self, key: str, owner: str) -> bool:
        """Claim ``key`` for ``owner`` (the input's path); False when another input has it."""
        if key in self._held:
            return False
        self._held.add(key)
        return True


