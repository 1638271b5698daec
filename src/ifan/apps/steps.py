"""The steps one input takes through the file loop (:mod:`ifan.apps.pipeline`), by the rules of
:mod:`ifan.apps.files`: :func:`read_job` (the skip rule, the pixel limit, the read), :func:`claim_job`
(protected inputs, files another input writes), the network (the loop's), :func:`write_job` (durable
atomic writes). Each input ends in one :class:`FileReport`, with one error line when it fails; a
:class:`Listener` hears each step (the command line shows progress bars, the web page reports
fractions and draws previews, the demo draws its figure from the arrays it is handed).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ifan.apps.files import Claims, InputFile, OutputOptions, path_key, planned_outputs
from ifan.fileutil import shown
from ifan.inference import Deblurrer, TilePlan
from ifan.inference.memory import pixel_limit
from ifan.io import Image, ImageReadError, ImageWriteError, read_image, write_image, write_like
from ifan.io.formats import FALLBACK, FORMATS, format_for_path
from ifan.io.image import DEFAULT_LIMIT_NOTE, DEFAULT_MAX_PIXELS
from ifan.io.raw import is_raw
from ifan.viz import save_defocus


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
    """What a caller of :func:`ifan.apps.pipeline.deblur_files` (or ``deblur_file``) hears; every
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
        return _needs_defocus(self.blend_map, self.todo)


def _needs_defocus(blend_map: bool, outputs: list[tuple[Path, str]]) -> bool:
    return blend_map or any(kind not in ("image", "mask") for _, kind in outputs)


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


FILE_ERRORS = (OSError, ValueError, RuntimeError, MemoryError)  # what a step fails a file with (not the run)


def _read_limit(deblurrer: Deblurrer, defocus: bool, max_pixels: int | None) -> tuple[int, str]:
    """The largest image to read and why: ``--max-pixels``, else what the memory of the run holds
    (:func:`ifan.inference.memory.pixel_limit`) where that is less than the reader's own limit."""
    if max_pixels is not None:
        return max_pixels, "--max-pixels"
    held = pixel_limit(deblurrer.device, deblurrer.budget(), defocus)
    return held if held is not None and held[0] < DEFAULT_MAX_PIXELS else (DEFAULT_MAX_PIXELS, DEFAULT_LIMIT_NOTE)


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
        limit, limit_note = _read_limit(deblurrer, _needs_defocus(blend_map, planned), options.max_pixels)
        img = read_image(path, max_pixels=limit, limit_note=limit_note)
    except FILE_ERRORS as err:
        return failure(path, err, target=target)
    if (why := options.blend.size_error(img.size)) is not None:
        return FileReport(path, "failed", f"{shown(path)}: not deblurred: {why}", target=target)
    out_format = FORMATS[fmt or format_for_path(target)]
    frames = f" (only the first of its {img.frames} frames: one image per file)" if img.frames > 1 else ""
    # a RAW decode is 16-bit by choice, not by content: an asked-for JPEG or WebP gets 8 bits
    if out_format.holds(img.bit_depth, img.alpha is not None) or (fmt is not None and is_raw(path)):
        return Job(item, img, planned, frames, blend_map=blend_map)
    why = "16-bit" if img.bit_depth == 16 else "transparent"
    planned[0] = (target.with_suffix(FALLBACK.suffix), "image")
    return Job(item, img, planned, f"{frames} (written as {FALLBACK.name.upper()}: {out_format.name.upper()} cannot hold "
               f"this {why} image)", True, blend_map=blend_map)


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
