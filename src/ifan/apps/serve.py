"""``ifan serve``: a local web page that deblurs photos (needs the optional extra ``ifan[demo]``).

Three layers:

* :class:`~ifan.apps.service.DeblurService`, the functional core (no web library): checks an upload
  against its limits and deblurs it with the file loop of ``ifan deblur`` into a job folder, with
  previews and 100 % crops beside the results. One job at a time.
* :func:`build_page`, a thin Gradio page over it: upload or example, progress, before/after
  slider, crops side by side at 100 %, defocus map, downloads; a queue runs one job at a time.
  Sliders for the strength and ``--keep-bokeh`` recompose the result without running the network
  again (:class:`Sliders`; the arithmetic is :mod:`ifan.apps.adjust`).
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
import shutil
import signal
import sys
import tempfile
import threading
from pathlib import Path

from ifan.apps.adjust import KEEP_BOKEH_OFF
from ifan.apps.guard import RequestGuard, is_loopback
from ifan.apps.serve_models import ModelMenu
from ifan.apps.service import CROP_SIDE, KEEP_SECONDS, DeblurService, Job, Limits, UploadError, fmt_size
from ifan.examples import example_path
from ifan.inference import Deblurrer
from ifan.inference.blend import DEFAULT_KEEP_BOKEH, DEFAULT_TRANSITION, MAX_STRENGTH

DEFAULT_HOST = "127.0.0.1"
DEFAULT_PORT = 7860
DEFAULT_QUEUE_SIZE = 16


# ----------------------------------------------------------------------------------------------
# The page
# ----------------------------------------------------------------------------------------------

_CSS = """
.actual-size img { object-fit: none !important; image-rendering: pixelated; }
"""


class Sliders:
    """The page's strength and keep-the-bokeh sliders, the mask view and the job they act on (built
    inside a ``gr.Blocks``; the mask view where :meth:`mask_view` is called)."""

    def __init__(self) -> None:
        import gradio as gr

        self.strength = gr.Slider(0, MAX_STRENGTH, value=1.0, step=0.05, elem_id="strength",
                                  label="Strength: 0 = the photo, 1 = the model, 2 = twice its change")
        self.bokeh = gr.Slider(KEEP_BOKEH_OFF, 20, value=KEEP_BOKEH_OFF, step=0.5, elem_id="keep-bokeh",
                               label=f"Keep the bokeh: leave what is blurred beyond this radius (px) as it was; "
                                     f"0 = off, {DEFAULT_KEEP_BOKEH:g} is a good start ({DEFAULT_TRANSITION:g} px "
                                     "transition)")
        self.job = gr.State(None)

    def mask_view(self, height: int) -> None:
        import gradio as gr

        self.mask = gr.Image(label="Blend mask of 'keep the bokeh' (white = deblurred)", interactive=False,
                             height=height, elem_id="mask", buttons=["fullscreen"])

    def attach(self, service, fail, deblurred, slider, crop_after, download, download_button) -> None:
        """After ``deblurred`` (the deblur event) and on each slider's release: the previews (``slider``,
        ``crop_after``, the mask), then the full-size ``download`` (``download_button(job, path, how)``)."""
        import gradio as gr

        def preview(job, strength: float, keep_bokeh: float):  # no network
            if job is None:
                return gr.skip(), gr.skip(), gr.skip()
            try:
                adjusted = service.adjust(job, strength, keep_bokeh)
            except UploadError as err:
                raise fail(str(err)) from None
            return ((str(job.before), str(adjusted.after)), str(adjusted.crop_after),
                    None if adjusted.mask is None else str(adjusted.mask))

        def full_size(job, strength: float, keep_bokeh: float):
            if job is None:
                return gr.skip()
            try:
                path = service.adjust(job, strength, keep_bokeh, full=True)
            except UploadError as err:
                raise fail(str(err)) from None
            kept = f", bokeh kept beyond {keep_bokeh:g} px" if keep_bokeh > KEEP_BOKEH_OFF else ""
            return download_button(job, path, "" if path == job.output else f"; strength {strength:g}{kept}")

        knobs = [self.job, self.strength, self.bokeh]
        for event in (deblurred.success, self.strength.release, self.bokeh.release):
            event(preview, knobs, [slider, crop_after, self.mask], api_name=False
                  ).success(full_size, knobs, download, api_name=False)


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
                    f"{fmt_size(limits.max_upload_bytes)} and {limits.max_pixels / 1e6:g} MP; one photo is "
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
            return gr.DownloadButton(f"Download {path.name} ({kind}, {fmt_size(path.stat().st_size)}{how})",
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
