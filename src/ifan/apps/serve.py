"""``ifan serve``: a local web page that deblurs photos (needs the optional extra ``ifan[demo]``).

Three layers:

* :class:`DeblurService`, the functional core (no web library): checks an uploaded file against
  the :class:`Limits` and deblurs it with the file loop of ``ifan deblur``
  (:func:`ifan.apps.files.deblur_file`: the same reading, memory plan, tiling and writing), which
  writes the full-size, full-bit-depth result and the defocus map into a job folder; previews
  and 100 % crops are drawn beside them. One job at a time.
* :func:`build_page`, a thin Gradio page over it: upload or example, progress, before/after
  slider, crops side by side at 100 %, defocus map, downloads; a queue runs one job at a time.
  Sliders for the strength and ``--keep-bokeh`` recompose the result without running the network
  again (:mod:`ifan.apps.adjust`).
* :func:`serve`, which mounts the page in a FastAPI app behind :class:`~ifan.apps.guard.RequestGuard` (what
  the server accepts and how it sends files) and runs it with uvicorn on 127.0.0.1 by default. Gradio's
  analytics, share links, run history, monitoring, MCP and server-side rendering are off.

Nothing lost, nothing exposed: the server works in a fresh folder it creates (in the system's temporary
folder, or inside ``--workdir``) and removes on exit; it deletes only job folders it made; it reads and
serves only that folder's files (safe images inline, the rest as downloads, never sniffed), fetches no
URL, and refuses requests that change state when they come from another site."""

from __future__ import annotations

import contextlib
import html
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ifan.apps.adjust import KEEP_BOKEH_OFF, Sliders, adjust_file, adjust_views, save_views
from ifan.apps.demo import example_path
from ifan.apps.files import InputFile, Listener, OutputOptions, deblur_file
from ifan.apps.guard import RequestGuard, is_loopback
from ifan.apps.serve_models import ModelMenu
from ifan.fileutil import fit_name, shown
from ifan.inference import Deblurrer, TilePlan
from ifan.io import Image, ImageReadError, write_image
from ifan.viz import colorize_defocus, most_defocused_box

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
DEFAULT_MAX_UPLOAD_BYTES = 50 * 2**20
DEFAULT_MAX_UPLOAD_PIXELS = 40_000_000  # smaller than what ifan deblur reads (ifan.io.DEFAULT_MAX_PIXELS)
DEFAULT_QUEUE_SIZE = 16
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


def _fmt_size(n: int) -> str:
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
            raise UploadError(f"{name} is {_fmt_size(nbytes)}; this server accepts files up to "
                              f"{_fmt_size(self.limits.max_upload_bytes)} (ifan serve --max-upload)")
        with self._lock:
            report(0.0, "reading the image")
            job = self._new_job_dir()
            views = _JobViews(job, report, self.deblurrer)
            done = deblur_file(self.deblurrer, InputFile(path, name=name),
                               OutputOptions(out_dir=job, defocus_map=True, max_pixels=self.limits.max_pixels),
                               protected=frozenset({path.resolve()}), listener=views)
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


# ----------------------------------------------------------------------------------------------
# The page
# ----------------------------------------------------------------------------------------------

_CSS = """
.actual-size img { object-fit: none !important; image-rendering: pixelated; }
"""


def build_page(service: DeblurService, model_label: str, examples: list[Path] | None = None,
               menu: ModelMenu | None = None):
    """The Gradio page over ``service`` (a ``gr.Blocks``, its queue one job at a time); ``menu``: the models offered."""
    import gradio as gr

    def fail(message: str):
        return gr.Error(html.escape(message), print_exception=False)

    limits = service.limits
    with gr.Blocks(title="ifan: defocus deblurring", analytics_enabled=False,
                   delete_cache=(KEEP_SECONDS // 4, KEEP_SECONDS)) as page:
        gr.Markdown(f"## ifan: defocus deblurring\nModel {model_label}. Files up to "
                    f"{_fmt_size(limits.max_upload_bytes)} and {limits.max_pixels / 1e6:g} MP; one photo is "
                    "deblurred at a time and others wait in the queue.")
        with gr.Row():
            with gr.Column(scale=1):
                if menu is not None:
                    menu.attach(service, fail)
                photo = gr.Image(label="Photo", type="filepath", image_mode=None, sources=["upload"],
                                 height=360, elem_id="photo")
                run = gr.Button("Deblur", variant="primary", elem_id="run")
                sliders = Sliders()
                if examples:
                    gr.Examples([[str(p)] for p in examples], inputs=photo, label="Bundled example",
                                elem_id="examples")
            with gr.Column(scale=2):
                slider = gr.ImageSlider(label="Before / after", type="filepath", elem_id="slider",
                                        buttons=["fullscreen"], interactive=False)
                info = gr.Markdown(elem_id="info")
                with gr.Row():
                    download = gr.DownloadButton("Download the result", visible=False, variant="primary",
                                                 elem_id="download")
                    download_map = gr.DownloadButton("Download the defocus map", visible=False,
                                                     elem_id="download-map")
        with gr.Row(equal_height=True):
            crop_before = gr.Image(label="Input at 100 %", interactive=False, elem_classes="actual-size",
                                   height=CROP_SIDE + 40, elem_id="crop-before", buttons=[])
            crop_after = gr.Image(label="Deblurred at 100 %", interactive=False, elem_classes="actual-size",
                                  height=CROP_SIDE + 40, elem_id="crop-after", buttons=[])
            defocus = gr.Image(label="Estimated defocus (bright = more blur)", interactive=False,
                               height=CROP_SIDE + 40, elem_id="defocus", buttons=["fullscreen"])
            sliders.mask_view(height=CROP_SIDE + 40)

        def deblur(photo: dict | None, progress=gr.Progress()):
            # Unprocessed (preprocess=False): Gradio would open the file with Pillow before the limits are
            # checked. It has still copied it into its upload folder, refusing other paths; the service
            # reads nothing outside the working folder whatever a later Gradio does.
            path = Path((photo or {}).get("path") or "")
            if not path.name:
                raise fail("Upload a photo (or pick the example) first.")
            if not path.resolve().is_relative_to(service.workdir):
                raise fail("That file was not uploaded to this server.")
            try:
                job = service.process(path, name=photo.get("orig_name"),
                                      progress=lambda fraction, text: progress(fraction, desc=text))
            except UploadError as err:
                raise fail(str(err)) from None
            return ((str(job.before), str(job.after)), job.summary(), _download(job, job.output),
                    gr.DownloadButton(f"Download {job.defocus.name}", value=str(job.defocus), visible=True),
                    str(job.crop_before), str(job.crop_after), str(job.defocus_preview), job)

        def _download(job: Job, path: Path, how: str = ""):
            kind = f"{job.bit_depth}-bit {path.suffix.lstrip('.').upper()}"
            return gr.DownloadButton(f"Download {path.name} ({kind}, {_fmt_size(path.stat().st_size)}{how})",
                                     value=str(path), visible=True)

        outputs = [slider, info, download, download_map, crop_before, crop_after, defocus, sliders.job]
        deblurred = run.click(deblur, inputs=photo, outputs=outputs, preprocess=False, concurrency_limit=1,
                              api_name="deblur", concurrency_id="job")
        sliders.attach(service, fail, deblurred, slider, crop_after, download, _download)
    page.queue(default_concurrency_limit=1, max_size=DEFAULT_QUEUE_SIZE)
    return page


# ----------------------------------------------------------------------------------------------
# The server
# ----------------------------------------------------------------------------------------------

def create_app(service: DeblurService, model_label: str, local_only: bool = True, menu: ModelMenu | None = None):
    """The ASGI app: the page at ``/`` behind :class:`RequestGuard`.

    Gradio's upload and cache folders must point into ``service.workdir`` before this is called
    (:func:`serve` sets ``GRADIO_TEMP_DIR`` and ``GRADIO_EXAMPLES_CACHE``).
    """
    import gradio as gr
    from fastapi import FastAPI

    page = build_page(service, model_label, examples=[example_path()], menu=menu)
    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    # Served: the results (allowed_paths) and Gradio's own upload and example folders, all inside workdir.
    app = gr.mount_gradio_app(
        app, page, path="/", allowed_paths=[str(service.jobs)], max_file_size=service.limits.max_upload_bytes,
        footer_links=[], run_history=False, enable_monitoring=False, mcp_server=False, ssr_mode=False, pwa=False,
        css=_CSS)
    # Gradio refuses input paths outside its upload folder only once a page counts as launched, which
    # mount_gradio_app never records: without this, an API call could name any image file on the disk.
    page.has_launched = True
    return RequestGuard(app, local_only, workdir=service.workdir)


def _quiet_environment(workdir: Path) -> None:
    """Point Gradio's folders into ``workdir`` and turn off its and Hugging Face Hub's network use."""
    os.environ.update({
        "GRADIO_ANALYTICS_ENABLED": "False",
        "GRADIO_TEMP_DIR": str(workdir / "uploads"),
        "GRADIO_EXAMPLES_CACHE": str(workdir / "examples"),
        "GRADIO_SHARE": "False",
        "HF_HUB_OFFLINE": "1",
        "HF_HUB_DISABLE_TELEMETRY": "1",
    })


def require_gradio() -> None:
    """Raise ImportError naming the extra to install when Gradio (or uvicorn) is missing."""
    import importlib.util

    if importlib.util.find_spec("gradio") is None or importlib.util.find_spec("uvicorn") is None:
        raise ImportError("Gradio is not installed; the web page needs the extra: pip install 'ifan[demo]'")


def serve(deblurrer: Deblurrer, model_label: str, host: str = DEFAULT_HOST, port: int = DEFAULT_PORT, *,
          workdir: str | os.PathLike | None = None, limits: Limits = Limits(),
          menu: ModelMenu | None = None) -> None:
    """Serve the page for ``deblurrer`` until interrupted (Ctrl+C or SIGTERM).

    Args:
        model_label: how the page names the model (its name or weights file); ``menu``: the models offered.
        workdir: where to create the working folder (default: the system's temporary folder): a new subfolder
            ``ifan-serve-XXXXXXXX`` of it, removed on exit; nothing else there is read, served or deleted.
    """
    require_gradio()
    parent = None if workdir is None else Path(workdir).expanduser().resolve()
    made_parent = parent is not None and not parent.exists()
    if parent is not None:
        parent.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix="ifan-serve-", dir=parent)).resolve()
    _quiet_environment(folder)
    import uvicorn

    local = is_loopback(host)
    if not local:
        print(f"ifan serve: warning: listening on {host}, so other machines can reach this page; it has no login",
              file=sys.stderr)
    cfg = deblurrer.config
    label = (f"`{model_label}` (ch {cfg.channels}, N {cfg.iterations}, {deblurrer.device})" if menu is None else
             f"chosen below, on {deblurrer.device}")

    def stop(signum, frame):  # uvicorn shuts down gracefully, then re-raises SIGTERM here
        raise SystemExit(0)

    main_thread = threading.current_thread() is threading.main_thread()
    previous = signal.signal(signal.SIGTERM, stop) if main_thread else None
    try:
        app = create_app(DeblurService(deblurrer, folder, limits), label, local_only=local, menu=menu)
        address = f"[{host}]" if ":" in host else host
        print(f"ifan serve: http://{address}:{port}/  (model {model_label}, working folder {folder}; Ctrl+C stops)",
              file=sys.stderr, flush=True)
        uvicorn.run(app, host=host, port=port, log_level="warning")
    finally:
        if main_thread:
            signal.signal(signal.SIGTERM, previous)
        shutil.rmtree(folder, ignore_errors=True)
        if made_parent:
            with contextlib.suppress(OSError):  # only if nothing else was put there meanwhile
                parent.rmdir()
