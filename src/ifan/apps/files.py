"""The rules of the file loop of ``ifan deblur``, ``ifan serve`` and ``ifan demo``: inputs (files,
folders, globs), output naming, skip rules, protected inputs, collisions, pixel limits, one error line
per file.

:func:`deblur_file` takes four steps, which :mod:`ifan.apps.pipeline` runs apart so that I/O overlaps
the network: :func:`read_job` (the skip rule, the pixel limit, the read), :func:`claim_job` (protected
inputs, files another input writes), the network, :func:`write_job` (durable atomic writes). A
:class:`Listener` hears each step (the command line shows progress bars, the web page reports
fractions and draws previews, the demo draws its figure from the arrays it is handed).

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
format that cannot hold it (JPEG, or WebP for 16 bits) is written as PNG instead, with a note.
Folders are searched recursively for image files (hidden entries and files whose names already
end in ``_deblurred``/``_defocus``/``_defocus16`` are left out); files named explicitly are always
tried when their suffix is one of :data:`INPUT_SUFFIXES` (others are refused by name). Globs
follow links to folders but enter each real folder once (:func:`ifan.fileutil.expand_glob`).

What is never overwritten: an input (even with ``overwrite``); an existing file, unless
``overwrite`` (an input whose outputs all exist is skipped; when some exist, only the missing
ones are written); and a file another input of the same run writes: inputs whose outputs
would collide are refused up front, naming each other (:func:`find_collisions`). Every file is
written atomically and durably.
"""

from __future__ import annotations

import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ifan.fileutil import GLOB_CHARS, expand_glob, fit_name, shown, split_glob
from ifan.inference import Deblurrer, TilePlan, format_bytes
from ifan.inference.blend import BlendSettings
from ifan.inference.memory import DEFAULT_BUDGET_FRACTION, available_ram
from ifan.io import (DEFAULT_MAX_PIXELS, READ_SUFFIXES, WRITE_FORMATS, Image, ImageReadError, ImageWriteError,
                     read_image, write_image, write_like)
from ifan.io_raw import RAW_OUTPUT_SUFFIX, RAW_SUFFIXES, is_raw
from ifan.viz import save_defocus

SUFFIX = "_deblurred"
DEFOCUS_SUFFIX = "_defocus"
MASK_SUFFIX = "_mask"
RAW_KINDS = {"npy": ("_defocus", ".npy"), "png16": ("_defocus16", ".png")}
_OWN_SUFFIXES = (SUFFIX, DEFOCUS_SUFFIX, "_defocus16", MASK_SUFFIX)
INPUT_SUFFIXES = READ_SUFFIXES | RAW_SUFFIXES
SUPPORTED = f"{', '.join(sorted(READ_SUFFIXES))} and camera RAW ({', '.join(sorted(RAW_SUFFIXES))})"
# Peak memory of deblurring a file, per pixel of the image, beyond one tile's forward: reading, the
# float image, the blend buffers, the result and its encoding. Measured with a tiny model under forced
# 768 px tiles (peak RSS of 3000x3000 minus 768x768 PNGs): 36 (8-bit) and 45 (16-bit) bytes per
# pixel, 112 and 115 with --defocus-map. The default --max-pixels is the memory of a run over this.
BYTES_PER_PIXEL = {False: 48, True: 120}  # with defocus maps -> bytes


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
            ext = WRITE_FORMATS[fmt]
        else:
            own = named.suffix.lower()
            writable = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".webp"}
            ext = named.suffix if own in writable else RAW_OUTPUT_SUFFIX if is_raw(named) else ".png"
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
        max_pixels: refuse larger images (None: what the memory of the run holds, :func:`pixel_limit`).
        quality: JPEG/WebP quality.
        blend: how the result is recomposed from the input and the model's (``--strength``,
            ``--keep-bokeh``, ``--mask``); save_mask: also write ``NAME_mask.png``, the mask used.
    """

    out_dir: Path | None = None
    fmt: str | None = None
    defocus_map: bool = False
    defocus_raw: str | None = None
    overwrite: bool = False
    max_pixels: int | None = None
    quality: int = 95
    blend: BlendSettings = BlendSettings()
    save_mask: bool = False


@dataclass
class FileReport:
    """The outcome of one input: ``status`` is ``"done"``, ``"skipped"`` or ``"failed"``.

    Attributes:
        target: where its result image goes (None when unknown).
        error: what made it fail (None otherwise), for callers with their own wording.
        seconds: time spent deblurring (not reading or writing).
        notes: for ``-v``: how the input was decoded and what of its metadata was carried (camera RAW),
            what was not kept (metadata a format cannot hold).
    """

    path: Path
    status: str
    message: str = ""
    outputs: list[Path] = field(default_factory=list)
    plan: TilePlan | None = None
    error: Exception | None = None
    seconds: float = 0.0
    target: Path | None = None
    notes: list[str] = field(default_factory=list)


class Listener:
    """What a caller of :func:`deblur_file` or :func:`ifan.apps.pipeline.deblur_files` hears; every
    method does nothing unless overridden."""

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


def planned_outputs(item: InputFile, options: OutputOptions) -> list[tuple[Path, str]]:
    """The files :func:`deblur_file` writes for ``item``, as ``(path, kind)``: the image (kind
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


@dataclass
class Job:
    """An input read by :func:`read_job`: its image, its outputs (the result image first) and, once
    :func:`claim_job` has passed it, those still to write."""

    item: InputFile
    image: Image
    planned: list[tuple[Path, str]]
    note: str = ""
    fallback: bool = False  # the result goes to PNG, not its planned format: a name known only once read
    todo: list[tuple[Path, str]] = field(default_factory=list)
    blend_map: bool = False  # the blend mask is computed from the defocus map (--keep-bokeh)

    @property
    def target(self) -> Path:
        return self.planned[0][0]

    @property
    def defocus(self) -> bool:
        """The run needs the defocus map: one is to be written, or the blend mask comes from it."""
        return self.blend_map or any(kind not in ("image", "mask") for _, kind in self.todo)


def failure(path: Path, err: Exception, **fields) -> FileReport:
    """The report of ``path`` failing with ``err``, in one line naming the file."""
    if isinstance(err, (ImageReadError, ImageWriteError)):
        message = str(err)
    elif isinstance(err, MemoryError):  # MemoryBudgetError, or the allocator ran out
        message = f"{shown(path)}: out of memory ({err or 'allocation failed'}); try a smaller --max-memory so that it is tiled"
    elif isinstance(err, OSError) and err.strerror:  # e.g. a folder removed meanwhile: the cause, and its file
        where = f" ({shown(err.filename)})" if err.filename and str(err.filename) != str(path) else ""
        message = f"{shown(path)}: {err.strerror}{where}"
    else:
        message = f"{shown(path)}: {type(err).__name__}: {err}"
    return FileReport(path, "failed", message, error=err, **fields)


FILE_ERRORS = (OSError, ValueError, RuntimeError, MemoryError)  # what deblur_file fails a file with


def read_job(deblurrer: Deblurrer, item: InputFile, options: OutputOptions) -> Job | FileReport:
    """Read ``item`` unless the skip rule says otherwise (without ``overwrite``, an input whose outputs
    all exist is skipped): its :class:`Job`, or the report of a skip or a failure. Writes nothing."""
    path, fmt = item.path, options.fmt
    planned = planned_outputs(item, options)
    target = planned[0][0]
    if not options.overwrite and all(os.path.lexists(p) for p, _ in planned):  # a link there counts: kept
        return FileReport(path, "skipped", f"{shown(path)}: skipped, {shown(target)} already exists (use --overwrite)",
                          target=target)
    try:
        blend_map = options.blend.needs_defocus
        limit, limit_note = (options.max_pixels, "--max-pixels") if options.max_pixels is not None else \
            pixel_limit(deblurrer, blend_map or any(kind not in ("image", "mask") for _, kind in planned))
        img = read_image(path, max_pixels=limit, limit_note=limit_note)
    except FILE_ERRORS as err:
        return failure(path, err, target=target)
    if (why := options.blend.size_error(img.size)) is not None:
        return FileReport(path, "failed", f"{shown(path)}: not deblurred: {why}", target=target)
    out_fmt = fmt or _format_of(target)
    frames = f" (only the first of its {img.frames} frames: one image per file)" if img.frames > 1 else ""
    # a RAW decode is 16-bit by choice, not by content: an asked-for JPEG or WebP gets 8 bits
    if _holds(out_fmt, img.bit_depth, img.alpha is not None) or (fmt is not None and is_raw(path)):
        return Job(item, img, planned, frames, blend_map=blend_map)
    why = "16-bit" if img.bit_depth == 16 else "transparent"
    planned[0] = (target.with_suffix(".png"), "image")
    return Job(item, img, planned, f"{frames} (written as PNG: {out_fmt.upper()} cannot hold this {why} image)", True,
               blend_map=blend_map)


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


def claim_job(job: Job, options: OutputOptions, protected: frozenset[Path] = frozenset(),
              claims: Claims | None = None) -> Job | FileReport:
    """Refuse a job that would write an input or a file another input of this run writes, and claim
    the outputs it is to write (``job.todo``: all with ``overwrite``, else those that do not exist).

    Args:
        protected: resolved paths that must never be written (the inputs).
        claims: the run's claims (updated here); None: no other input to mind.
    """
    path = job.item.path

    def refused(p: Path, why: str) -> FileReport:
        return FileReport(path, "failed", f"{shown(path)}: refusing to write {shown(p)}: {why}", target=job.target)

    try:
        for p, _ in job.planned:
            if p.resolve() in protected:
                return refused(p, "it is one of the inputs")
            if claims is not None and claims.held(path_key(p)):
                return refused(p, "another input of this run writes it")
        if claims is not None and job.fallback and path_key(job.target) in claims.planned:
            return refused(job.target, "it is the output of another input of this run")
        job.todo = [(p, kind) for p, kind in job.planned if options.overwrite or not os.path.lexists(p)]
    except OSError as err:
        return failure(path, err, target=job.target)
    if not job.todo:
        return FileReport(path, "skipped", f"{shown(path)}: skipped, {shown(job.target)} already exists (use --overwrite)",
                          target=job.target)
    for p, _ in job.todo if claims is not None else ():
        if not claims.claim(path_key(p), str(path)):
            return refused(p, "another input of this run writes it")
    return job


def write_job(job: Job, rgb: np.ndarray, defocus: np.ndarray | None, options: OutputOptions,
              plan: TilePlan | None = None, seconds: float = 0.0, mask: np.ndarray | None = None) -> FileReport:
    """Write the job's outputs (without ``overwrite``, none that appeared meanwhile): its report,
    which names what was written even when a later output fails."""
    path, written, notes = job.item.path, [], [job.image.description] if job.image.description else []
    kept = [p for p, kind in job.planned if (p, kind) not in job.todo]
    try:
        for p, kind in job.todo:
            if not options.overwrite and os.path.lexists(p):  # appeared while the image was deblurred
                kept.append(p)
            elif kind == "image":
                written.append(write_like(p, rgb, job.image, quality=options.quality, notes=notes))
            elif kind == "mask":
                ones = np.ones(job.image.size, np.float32)  # --save-mask with --strength alone: all deblurred
                written.append(write_image(p, ones if mask is None else mask, bit_depth=8, grayscale=True))
            else:
                written.append(save_defocus(p, np.asarray(defocus), kind))
    except FILE_ERRORS as err:
        return failure(path, err, outputs=written, plan=plan, seconds=seconds, target=job.target)
    message = f"{shown(path)} -> {', '.join(map(shown, written))}{job.note}" if written else f"{shown(path)}: skipped"
    if kept:
        message += f"; kept the existing {', '.join(map(shown, kept))} (use --overwrite to replace)"
    return FileReport(path, "done" if written else "skipped", message, written, plan, seconds=seconds,
                      target=job.target, notes=notes)


def deblur_file(deblurrer: Deblurrer, item: InputFile, options: OutputOptions = OutputOptions(), *,
                protected: frozenset[Path] = frozenset(), claims: Claims | None = None,
                listener: Listener = Listener()) -> FileReport:
    """Deblur one file (and write its defocus maps): :func:`read_job`, :func:`claim_job`, the network,
    :func:`write_job`. Problems come back in the report, not raised.

    Without ``overwrite`` no existing file is replaced: when all outputs exist the file is skipped,
    when some do only the others are written.

    Args:
        protected: resolved paths that must never be written (the inputs).
        claims: the files the inputs of this run write (updated here); none is written twice.
        listener: hears the plan, the tiles and the result.
    """
    job = read_job(deblurrer, item, options)
    if isinstance(job, Job):
        job = claim_job(job, options, protected, claims)
    if isinstance(job, FileReport):
        return job
    try:
        h, w = job.image.size
        plan = deblurrer.plan(h, w, defocus=job.defocus)
        listener.planned(item, plan)
        start = time.perf_counter()
        result = deblurrer.deblur(job.image.rgb, return_defocus=job.defocus, plan=plan, progress=listener.tile)
        rgb, defocus = result if job.defocus else (result, None)
        rgb, mask = options.blend.apply(job.image.rgb, rgb, defocus, deblurrer.calibration)  # strength, bokeh, mask
        seconds = time.perf_counter() - start
    except FILE_ERRORS as err:
        return failure(item.path, err, target=job.target)
    report = write_job(job, rgb, defocus, options, plan, seconds, mask)
    if report.status != "failed":
        listener.result(item, job.image, rgb, defocus)
    return report
