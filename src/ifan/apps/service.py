"""The web page's functional core (no web library): :class:`DeblurService` checks an uploaded file
against the :class:`Limits` and deblurs it with the file loop of ``ifan deblur``
(:func:`ifan.apps.pipeline.deblur_file`: the same reading, memory plan, tiling and writing), which
writes the full-size, full-bit-depth result and the defocus map into a job folder; previews and 100 %
crops are drawn beside them, and what the sliders recompose from is kept (:mod:`ifan.apps.adjust`).
One job at a time.

Nothing lost, nothing exposed: the service works in the folder it is given and deletes only job
folders it made (:data:`KEEP_SECONDS` after it made them).
"""

from __future__ import annotations

import os
import re
import shutil
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ifan.apps.adjust import KEEP_BOKEH_OFF, adjust_file, adjust_views, save_views
from ifan.apps.files import InputFile, OutputOptions
from ifan.apps.pipeline import deblur_file
from ifan.apps.steps import Listener
from ifan.fileutil import fit_name, shown
from ifan.inference import Deblurrer, TilePlan
from ifan.io import Image, ImageReadError, write_image
from ifan.viz import colorize_defocus, most_defocused_box

DEFAULT_MAX_UPLOAD_BYTES = 50 * 2**20
DEFAULT_MAX_UPLOAD_PIXELS = 40_000_000  # smaller than what ifan deblur reads (ifan.io.DEFAULT_MAX_PIXELS)
PREVIEW_SIDE = 2048  # longest side of the images shown in the slider and the defocus view
CROP_SIDE = 320  # side of the 100 % crops
UPLOAD_NAME_MAX = 128  # bytes of an upload's name as the page shows it and names its results
KEEP_SECONDS = 3600  # jobs and cached files older than this are deleted (this server's own only)

Progress = Callable[[float, str], None]


class UploadError(ValueError):
    """An upload that cannot be processed (over a limit, not an image, out of memory): a message for the user."""


@dataclass(frozen=True)
class Limits:
    """What one upload may be: file size in bytes and pixel count."""

    max_upload_bytes: int = DEFAULT_MAX_UPLOAD_BYTES
    max_pixels: int = DEFAULT_MAX_UPLOAD_PIXELS


@dataclass
class Job:
    """The files one deblurred upload produced, all in the job's folder.

    Attributes:
        output: the result at full size and the input's bit depth and format (``NAME_deblurred.EXT``).
        defocus: the colour-mapped defocus map at full size (``NAME_defocus.png``).
        before, after, defocus_preview: 8-bit PNGs at most :data:`PREVIEW_SIDE` on a side.
        crop_before, crop_after: the same window of input and result at 100 %.
        crop_box: ``(top, left, side)`` of that window (where |defocus| x local contrast is largest).
        source: the upload; frames: how many frames (or pages) it holds (only the first is deblurred).
    """

    name: str
    size: tuple[int, int]
    bit_depth: int
    output: Path
    defocus: Path
    before: Path
    after: Path
    defocus_preview: Path
    crop_before: Path
    crop_after: Path
    crop_box: tuple[int, int, int]
    plan: TilePlan
    seconds: float
    source: Path
    frames: int = 1

    @property
    def folder(self) -> Path:
        return self.output.parent

    def summary(self) -> str:
        """One Markdown line: size, bit depth, how it was run, time."""
        h, w = self.size
        how = (f"{self.plan.num_tiles} tiles of {self.plan.tile[1]}x{self.plan.tile[0]} px" if self.plan.tiled
               else "the whole image at once")
        top, left, side = self.crop_box
        first = f" Only the first of its {self.frames} frames was deblurred." if self.frames > 1 else ""
        return (f"**{self.name}**: {w}x{h} px, {self.bit_depth}-bit; deblurred {how} in {self.seconds:.1f} s.{first} "
                f"100 % crops: {side}x{side} px at x={left}, y={top}, where defocus and detail are largest.")


def fmt_size(n: int) -> str:
    """``50 MiB``, ``2.5 KiB`` (binary units, as Gradio's own upload-limit message)."""
    return f"{n / 2**20:.3g} MiB" if n >= 2**20 else f"{n / 2**10:.3g} KiB"


def _preview(rgb: np.ndarray, side: int) -> np.ndarray:
    import cv2

    h, w = rgb.shape[:2]
    scale = side / max(h, w)
    if scale >= 1:
        return rgb
    return cv2.resize(rgb, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)


class DeblurService:
    """Deblur uploads into ``workdir/jobs/<job>/``, one at a time, within :class:`Limits`.

    Its own job folders are deleted :data:`KEEP_SECONDS` after it made them; nothing else in ``workdir`` is.

    Args:
        deblurrer: the model, device and memory budget (its plan tiles large images).
        workdir: the server's working folder.
        limits: upload size and pixel limits.
    """

    def __init__(self, deblurrer: Deblurrer, workdir: str | os.PathLike, limits: Limits = Limits()) -> None:
        self.deblurrer = deblurrer
        self.workdir = Path(workdir).resolve()
        self.jobs = self.workdir / "jobs"
        self.limits = limits
        self._lock = threading.Lock()
        self._made: list[tuple[float, Path]] = []  # (time.monotonic() when made, job folder)

    def _new_job_dir(self) -> Path:
        """A fresh job folder's path (made when the first output is written, so that a refused upload
        leaves nothing); this service's own job folders older than :data:`KEEP_SECONDS` are removed."""
        self.jobs.mkdir(parents=True, exist_ok=True)
        cutoff = time.monotonic() - KEEP_SECONDS
        for _, old in [job for job in self._made if job[0] < cutoff]:
            shutil.rmtree(old, ignore_errors=True)
        self._made = [job for job in self._made if job[0] >= cutoff]
        job = self.jobs / f"{time.strftime('%Y%m%d-%H%M%S')}-{uuid.uuid4().hex[:8]}"
        self._made.append((time.monotonic(), job))
        return job

    def process(self, path: str | os.PathLike, name: str | None = None, progress: Progress | None = None) -> Job:
        """Deblur the image file ``path`` (``name``: what the user called it; default its file name).

        Raises:
            UploadError: the file is over a limit, not a readable image, or does not fit in memory.
        """
        path = Path(path)
        name = fit_name(re.sub(r"[^\w.-]", "_", Path(name or path.name).name).lstrip(".") or "upload.png",
                        UPLOAD_NAME_MAX)  # a 300-character name is cut (keeping its extension), not refused
        report = progress or (lambda fraction, text: None)
        try:
            nbytes = path.stat().st_size
        except OSError as err:
            raise UploadError(f"{name}: cannot read the upload ({err.strerror or err})") from err
        if nbytes > self.limits.max_upload_bytes:
            raise UploadError(f"{name} is {fmt_size(nbytes)}; this server accepts files up to "
                              f"{fmt_size(self.limits.max_upload_bytes)} (ifan serve --max-upload)")
        with self._lock:
            report(0.0, "reading the image")
            job = self._new_job_dir()
            views = _JobViews(job, report, self.deblurrer)
            done = deblur_file(self.deblurrer, InputFile(path, name=name),
                               OutputOptions(out_dir=job, defocus_map=True, max_pixels=self.limits.max_pixels),
                               listener=views)
            if done.status != "done":
                raise UploadError(_upload_message(done.error, done.message, path, name)) from None
            report(1.0, "done")
            output, defocus_file = done.outputs
            return Job(name, views.size, views.bit_depth, output, defocus_file, crop_box=views.crop_box,
                       plan=done.plan, seconds=done.seconds, source=path, frames=views.frames, **views.paths)

    def adjust(self, job: Job, strength: float, keep_bokeh: float, full: bool = False):
        """Recompose ``job`` at ``strength`` and ``keep_bokeh`` (px; :data:`KEEP_BOKEH_OFF`: off) without
        the network: the previews (:class:`~ifan.apps.adjust.Adjusted`), or with ``full`` the full-size
        result's path (the job's own result when nothing changes).

        Raises:
            UploadError: the job's files are gone (older than :data:`KEEP_SECONDS`), or cannot be read.
        """
        if not job.folder.resolve().is_relative_to(self.jobs) or not job.folder.is_dir():
            raise UploadError(f"{job.name}: this result is no longer on the server; deblur the photo again")
        plain = strength == 1.0 and keep_bokeh <= KEEP_BOKEH_OFF
        try:
            if not full:
                out = job.folder / "view" / "adjusted" / uuid.uuid4().hex[:8]  # new names: browsers cache by URL
                return adjust_views(job.folder / "view", out, strength, keep_bokeh)
            if plain:
                return job.output
            with self._lock:
                out = job.folder / "adjusted" / uuid.uuid4().hex[:8]
                return adjust_file(job.folder / "view", job.source, job.output, out, strength, keep_bokeh)
        except (OSError, ValueError) as err:
            raise UploadError(f"{job.name}: could not recompose the result ({err})") from None


class _JobViews(Listener):
    """Reports the progress of one upload, and draws its previews and 100 % crops from the arrays."""

    def __init__(self, job: Path, report: Progress, deblurrer: Deblurrer) -> None:
        self.job, self.report, self.calibration = job, report, deblurrer.calibration

    def planned(self, item: InputFile, plan: TilePlan) -> None:
        self.report(0.05, "deblurring" if not plan.tiled else f"deblurring: tile 0 of {plan.num_tiles}")

    def tile(self, done: int, total: int) -> None:
        self.report(0.05 + 0.85 * done / total, f"deblurring: tile {done} of {total}" if total > 1 else "deblurring")

    def result(self, item: InputFile, image: Image, deblurred: np.ndarray, defocus: np.ndarray | None) -> None:
        self.report(0.9, "writing the result")
        self.size, self.bit_depth, self.frames = image.size, image.bit_depth, image.frames
        side = min(CROP_SIDE, *image.size)
        detail = np.hypot(*np.gradient(image.rgb.mean(axis=2)))  # a blurred sky shows no change: aim at detail
        top, left = most_defocused_box(np.abs(defocus) * detail, side)
        self.crop_box = (top, left, side)
        window = (slice(top, top + side), slice(left, left + side))
        defocus_rgb, _ = colorize_defocus(defocus)
        views = {
            "before": _preview(image.rgb, PREVIEW_SIDE), "after": _preview(deblurred, PREVIEW_SIDE),
            "defocus_preview": _preview(defocus_rgb, PREVIEW_SIDE),
            "crop_before": image.rgb[window], "crop_after": deblurred[window],
        }
        self.paths = {key: write_image(self.job / "view" / f"{key}.png", rgb) for key, rgb in views.items()}
        del views["defocus_preview"]  # what the sliders recompose from (ifan.apps.adjust)
        save_views(self.job / "view", views, defocus, self.calibration, image.size, self.crop_box)


def _upload_message(error: Exception | None, message: str, path: Path, name: str) -> str:
    """What the page says when the file loop failed on an upload (the server's paths left out)."""
    if isinstance(error, ImageReadError):
        return str(error).replace(shown(path), name, 1)
    if isinstance(error, MemoryError):
        return (f"{name}: out of memory ({error or 'allocation failed'}); start the server with a smaller "
                "--max-memory so that large images are tiled")
    if isinstance(error, OSError):  # ImageWriteError too: a full disk, a removed working folder
        return f"{name}: the result could not be written ({error.strerror or error})"
    return message.replace(shown(path), name)
