"""`ifan serve`'s core without a browser: limits, bit depth, tiling, one job at a time, the request guard."""

from __future__ import annotations

import importlib.util
import os
import socket
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch

from ifan import create_model
from ifan.apps.cli import main
from ifan.inference import Deblurrer
from ifan.io import read_image, write_image
from ifan.models.serialization import save_weights
from ifan.apps.guard import RequestGuard, is_loopback, served_file_headers
from ifan.apps.service import DeblurService, Limits, UploadError


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return create_model("ifan", channels=2, iterations=2)


@pytest.fixture
def service(model, tmp_path):
    return DeblurService(Deblurrer(model, device="cpu"), tmp_path / "work")


def pattern(h, w, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx / w, yy / h, 0.5 + 0.3 * np.sin(xx / 5.0)], axis=2)
    return np.clip(base + 0.05 * rng.standard_normal((h, w, 3)), 0, 1).astype(np.float32)


def test_16bit_png_gives_the_deblurrers_output_at_16_bits(service, tmp_path):
    src = write_image(tmp_path / "in" / "photo.png", pattern(48, 64), bit_depth=16)
    steps = []
    job = service.process(src, progress=lambda fraction, text: steps.append((fraction, text)))

    assert job.output.name == "photo_deblurred.png" and job.output.parent.parent == service.jobs
    out = read_image(job.output)
    assert out.bit_depth == 16 and out.size == (48, 64)
    expected = service.deblurrer.deblur(read_image(src).rgb)
    np.testing.assert_array_equal(np.round(out.rgb * 65535), np.round(np.clip(expected, 0, 1) * 65535))
    assert read_image(job.defocus).size == (48, 64)
    assert read_image(job.crop_before).size == read_image(job.crop_after).size == (48, 48)
    assert read_image(job.before).size == read_image(job.after).size == (48, 64)
    assert job.crop_box[2] == 48 and not job.plan.tiled
    assert steps[0][0] == 0.0 and steps[-1] == (1.0, "done")
    assert [f for f, _ in steps] == sorted(f for f, _ in steps)
    assert "64x48 px, 16-bit" in job.summary()
    assert not list((tmp_path / "in").glob("*_deblurred*"))  # nothing next to the input


def test_previews_are_downscaled_and_the_download_is_not(service, tmp_path, monkeypatch):
    monkeypatch.setattr("ifan.apps.service.PREVIEW_SIDE", 32)
    job = service.process(write_image(tmp_path / "p.png", pattern(48, 64)))
    assert read_image(job.before).size == read_image(job.after).size == read_image(job.defocus_preview).size == (24, 32)
    assert read_image(job.output).size == read_image(job.defocus).size == (48, 64)


def test_jpeg_stays_jpeg_and_bmp_becomes_png(service, tmp_path):
    jpg = write_image(tmp_path / "a.jpg", pattern(20, 28))
    assert service.process(jpg).output.name == "a_deblurred.jpg"
    bmp = tmp_path / "b.bmp"
    from PIL import Image

    Image.fromarray((pattern(20, 28) * 255).astype(np.uint8)).save(bmp)
    job = service.process(bmp, name="holiday.bmp")
    assert job.output.name == "holiday_deblurred.png" and read_image(job.output).bit_depth == 8


def test_the_users_file_name_cannot_leave_the_job_folder(service, tmp_path):
    src = write_image(tmp_path / "x.png", pattern(16, 16))
    job = service.process(src, name="../../etc/.evil name.png")
    assert job.output.parent.parent == service.jobs and job.output.name == "evil_name_deblurred.png"


def test_limits_give_clear_messages(model, tmp_path):
    big = write_image(tmp_path / "big.png", pattern(40, 50))
    service = DeblurService(Deblurrer(model, device="cpu"), tmp_path / "w", Limits(max_upload_bytes=2048))
    with pytest.raises(UploadError, match=r"upload\.png is [\d.]+ KiB; this server accepts files up to 2 KiB"):
        service.process(big, name="upload.png")

    service = DeblurService(Deblurrer(model, device="cpu"), tmp_path / "w", Limits(max_pixels=1999))
    with pytest.raises(UploadError) as err:
        service.process(big, name="upload.png")
    message = str(err.value)
    assert message.startswith("upload.png: 50x40") and "exceeds the limit" in message and "--max-pixels" in message
    assert str(tmp_path) not in message

    junk = tmp_path / "junk.png"
    junk.write_bytes(b"not an image at all")
    with pytest.raises(UploadError, match="junk.png: not a recognised image"):
        service.process(junk)
    assert not service.jobs.exists() or not any(service.jobs.iterdir())


def test_large_images_are_tiled_with_the_deblur_plan(model, tmp_path):
    deblurrer = Deblurrer(model, device="cpu", tile_size=48, overlap=16)
    service = DeblurService(deblurrer, tmp_path / "w")
    src = write_image(tmp_path / "wide.png", pattern(56, 96))
    texts = []
    job = service.process(src, progress=lambda fraction, text: texts.append(text))
    plan = job.plan
    assert plan.tiled and plan.tiles() == deblurrer.plan(56, 96, defocus=True).tiles()
    assert f"deblurring: tile {plan.num_tiles} of {plan.num_tiles}" in texts
    assert f"{plan.num_tiles} tiles of {plan.tile[1]}x{plan.tile[0]} px" in job.summary()
    expected = deblurrer.deblur(read_image(src).rgb, plan=job.plan)
    np.testing.assert_array_equal(read_image(job.output).rgb, np.round(np.clip(expected, 0, 1) * 255) / 255)


def test_one_job_at_a_time(service, tmp_path):
    running, most = [0], [0]
    inner = service.deblurrer.deblur

    def deblur(*args, **kwargs):
        running[0] += 1
        most[0] = max(most[0], running[0])
        time.sleep(0.2)
        try:
            return inner(*args, **kwargs)
        finally:
            running[0] -= 1

    service.deblurrer.deblur = deblur
    srcs = [write_image(tmp_path / f"{i}.png", pattern(16, 24, seed=i)) for i in range(3)]
    threads = [threading.Thread(target=service.process, args=(p,)) for p in srcs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert most[0] == 1 and len(list(service.jobs.iterdir())) == 3


def scope(path="/", host="127.0.0.1:7860", method="GET", kind="http", scheme=None, **headers):
    pairs = [(b"host", host.encode())] + [(k.replace("_", "-").encode(), v.encode()) for k, v in headers.items()]
    return {"type": kind, "path": path, "method": method, "headers": pairs,
            "scheme": scheme or ("ws" if kind == "websocket" else "http")}


def test_request_guard():
    local, anywhere = RequestGuard(None, local_only=True), RequestGuard(None, local_only=False)
    for host in ("127.0.0.1:7860", "localhost:7860", "[::1]:7860", "localhost"):
        assert local.refusal(scope(host=host)) is None
    assert "unexpected Host" in local.refusal(scope(host="attacker.example:7860"))
    assert anywhere.refusal(scope(host="192.168.1.5:7860")) is None
    for path in ("/gradio_api/file=https://example.com/a.png", "/gradio_api/file=http%3A//example.com/a",
                 "/gradio_api/file/https://example.com", "/gradio_api/proxy=https://x.hf.space/a"):
        assert local.refusal(scope(path)) == "this server fetches no URLs"
        assert anywhere.refusal(scope(path)) == "this server fetches no URLs"
    assert local.refusal(scope("/gradio_api/file=/tmp/ifan-serve-1/jobs/a.png")) is None
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.5") and not is_loopback("example.com")


def test_cli_names_the_extra_when_gradio_is_missing(monkeypatch, capsys):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "gradio" else real(name, *a))
    assert main(["serve"]) == 1
    assert "pip install 'ifan[demo]'" in capsys.readouterr().err


@pytest.mark.skipif(importlib.util.find_spec("gradio") is None, reason="Gradio is not installed (ifan[demo])")
def test_cli_reports_a_model_that_cannot_be_loaded(tmp_path, capsys):
    assert main(["serve", "--model", str(tmp_path / "missing.safetensors")]) == 1
    assert "ifan serve: error: model" in capsys.readouterr().err


def test_cli_serves_a_weights_file(model, tmp_path, monkeypatch):
    weights = save_weights(tmp_path / "tiny.safetensors", model.config, model.state_dict())
    seen = {}
    monkeypatch.setattr("ifan.apps.serve.require_gradio", lambda: None)
    monkeypatch.setattr("ifan.apps.serve.serve", lambda deblurrer, label, host, port, **kw: seen.update(
        label=label, host=host, port=port, **kw))
    argv = ["serve", "--model", str(weights), "--port", "9999", "--max-upload", "2MB", "--max-pixels", "1000"]
    assert main(argv) == 0
    menu = seen.pop("menu")
    assert seen == {"label": "tiny.safetensors", "host": "127.0.0.1", "port": 9999, "workdir": None,
                    "limits": Limits(max_upload_bytes=2_000_000, max_pixels=1000)}
    assert menu.choices == ["tiny.safetensors", "ifan-lite"] and menu.current == "tiny.safetensors"


def test_only_job_folders_it_made_are_ever_deleted(model, tmp_path, monkeypatch):
    work = tmp_path / "work"
    theirs = work / "jobs" / "holiday"  # a user's folder where the jobs go, untouched for two hours
    theirs.mkdir(parents=True)
    (theirs / "photo.jpg").write_bytes(b"the user's photo")
    long_ago = time.time() - 7200
    os.utime(theirs, (long_ago, long_ago))
    monkeypatch.setattr("ifan.apps.service.KEEP_SECONDS", 0)  # every earlier job is old at once
    service = DeblurService(Deblurrer(model, device="cpu"), work)
    src = write_image(tmp_path / "p.png", pattern(16, 16))
    first = service.process(src).output.parent
    second = service.process(src).output.parent
    assert not first.exists() and second.is_dir()  # its own old job went
    assert (theirs / "photo.jpg").read_bytes() == b"the user's photo"


@pytest.mark.skipif(importlib.util.find_spec("gradio") is None, reason="Gradio is not installed (ifan[demo])")
@pytest.mark.parametrize("existing", [True, False])
def test_serve_works_in_a_new_subfolder_of_workdir_and_removes_only_that(model, tmp_path, monkeypatch, existing):
    import uvicorn

    from ifan.apps.serve import serve

    for key in ("GRADIO_ANALYTICS_ENABLED", "GRADIO_TEMP_DIR", "GRADIO_EXAMPLES_CACHE", "GRADIO_SHARE",
                "HF_HUB_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
        monkeypatch.delenv(key, raising=False)  # serve() sets them; put them back afterwards
    workdir = tmp_path / "mine"
    if existing:
        (workdir / "jobs" / "old").mkdir(parents=True)
        (workdir / "jobs" / "old" / "a.png").write_bytes(b"kept")
        (workdir / "private.png").write_bytes(b"kept")
    seen = {}

    def run(app, host, port, **kwargs):
        folder = Path(os.environ["GRADIO_TEMP_DIR"]).parent
        seen.update(folder=folder, listing=sorted(p.name for p in workdir.iterdir()))
        (folder / "jobs" / "x").mkdir(parents=True)  # as a job would

    monkeypatch.setattr(uvicorn, "run", run)
    serve(Deblurrer(model, device="cpu"), "tiny", workdir=workdir)
    folder = seen["folder"]
    assert folder.parent == workdir.resolve() and folder.name.startswith("ifan-serve-")
    assert seen["listing"] == sorted((["jobs", "private.png"] if existing else []) + [folder.name])
    assert not folder.exists()
    if existing:
        assert (workdir / "private.png").read_bytes() == (workdir / "jobs" / "old" / "a.png").read_bytes() == b"kept"
    else:
        assert not workdir.exists()  # made for this server, removed with it


def test_request_guard_refuses_state_changes_from_other_sites():
    guard = RequestGuard(None, local_only=True)
    own = "http://127.0.0.1:7860"
    allowed = [
        scope("/gradio_api/upload", method="POST"),  # curl, scripts: no Origin
        scope("/gradio_api/upload", method="POST", origin=own, sec_fetch_site="same-origin"),
        scope("/gradio_api/upload", method="POST", host="localhost:7860", origin="http://localhost:7860"),
        scope("/", sec_fetch_site="cross-site", sec_fetch_mode="navigate"),  # following a link to the page
        scope("/", sec_fetch_site="none", sec_fetch_mode="navigate"),  # typed in or bookmarked
        scope("/gradio_api/queue/data", sec_fetch_site="same-origin", sec_fetch_mode="cors"),
    ]
    for request in allowed:
        assert guard.refusal(request) is None, request
    refused = [
        ("another origin (https://evil.example)", scope("/gradio_api/upload", method="POST",
                                                         origin="https://evil.example")),
        ("another origin (null)", scope("/gradio_api/upload", method="POST", origin="null")),
        ("another origin (http://127.0.0.1:8000)", scope("/gradio_api/queue/join", method="POST",
                                                          origin="http://127.0.0.1:8000")),
        ("another origin (https://evil.example)", scope("/gradio_api/ws", kind="websocket",
                                                         origin="https://evil.example")),
        ("another site (Sec-Fetch-Site: cross-site)", scope("/gradio_api/upload", method="POST",
                                                             sec_fetch_site="cross-site")),
        ("another site (Sec-Fetch-Site: same-site)",
         scope("/gradio_api/upload", method="POST", origin="http://localhost:8000", sec_fetch_site="same-site")),
        ("another site (Sec-Fetch-Site: cross-site)", scope("/gradio_api/file=/tmp/a.png", sec_fetch_site="cross-site",
                                                             sec_fetch_mode="no-cors")),  # e.g. <img src=...>
    ]
    for why, request in refused:
        assert guard.refusal(request) == f"refused: a request from {why}", request


def test_uploads_and_results_are_served_as_images_or_downloads_never_sniffed():
    def served(content_type, disposition=None):
        headers = [(b"content-type", content_type.encode()), (b"content-length", b"10")]
        if disposition:
            headers.append((b"content-disposition", disposition.encode()))
        return {k.decode(): v.decode() for k, v in served_file_headers(headers)}

    png = served("image/png", 'inline; filename="a_deblurred.png"')
    assert png == {"content-type": "image/png", "content-disposition": 'inline; filename="a_deblurred.png"',
                   "content-length": "10", "x-content-type-options": "nosniff"}
    for kind in ("text/html; charset=utf-8", "image/svg+xml", "application/xml", "image/tiff", "text/plain"):
        got = served(kind, 'inline; filename="evil.html"')
        assert got["content-type"] == "application/octet-stream", kind
        assert got["content-disposition"] == 'attachment; filename="evil.html"'
        assert got["x-content-type-options"] == "nosniff"
    assert served("text/html")["content-disposition"] == "attachment"


def test_an_origin_with_another_scheme_is_another_origin():
    guard = RequestGuard(None, local_only=True)
    for origin, kind in [("https://127.0.0.1:7860", "http"), ("https://127.0.0.1:7860", "websocket"),
                         ("http://127.0.0.1:7860", "https")]:
        request = scope("/gradio_api/queue/join", method="POST", origin=origin, kind="http" if kind != "websocket"
                        else kind, scheme="https" if kind == "https" else None)
        assert guard.refusal(request) == f"refused: a request from another origin ({origin})", (origin, kind)
    assert guard.refusal(scope("/gradio_api/queue/join", method="POST", origin="http://127.0.0.1:7860")) is None
    assert guard.refusal(scope("/gradio_api/ws", kind="websocket", origin="http://127.0.0.1:7860")) is None


def test_a_300_character_upload_name_is_shortened(service, tmp_path):
    src = write_image(tmp_path / "in" / "photo.png", pattern(16, 24))
    name = "z" * 296 + ".png"
    job = service.process(src, name=name)
    assert job.output.name.endswith("_deblurred.png") and len(job.output.name.encode()) <= 255
    assert job.defocus.name.endswith("_defocus.png") and len(job.defocus.name.encode()) <= 255
    assert job.output.name.startswith("z" * 100) and read_image(job.output).size == (16, 24)
    assert len(job.name.encode()) <= 128 and job.name.endswith(".png")


@pytest.fixture
def page_client(model, tmp_path, monkeypatch):
    """The real page (Gradio) behind its guard, in this process, with every DNS lookup and outgoing
    connection recorded (and refused): ``(client, calls, working folder)``."""
    pytest.importorskip("gradio")
    from starlette.testclient import TestClient

    from ifan.apps.serve import _quiet_environment, create_app

    work = tmp_path / "work"
    work.mkdir()
    for key in ("GRADIO_ANALYTICS_ENABLED", "GRADIO_TEMP_DIR", "GRADIO_EXAMPLES_CACHE", "GRADIO_SHARE",
                "HF_HUB_OFFLINE", "HF_HUB_DISABLE_TELEMETRY"):
        monkeypatch.delenv(key, raising=False)  # restored after the test
    _quiet_environment(work)
    calls = []

    def refuse(name):
        def call(*args, **kwargs):
            calls.append((name, args[:2]))
            raise OSError(f"{name} refused by the test")
        return call

    app = create_app(DeblurService(Deblurrer(model, device="cpu"), work), "tiny")
    monkeypatch.setattr(socket, "getaddrinfo", refuse("getaddrinfo"))
    monkeypatch.setattr(socket, "create_connection", refuse("create_connection"))
    with TestClient(app, base_url="http://127.0.0.1:7860") as client:
        yield client, calls, work


def test_a_file_payload_that_is_not_an_upload_is_refused_before_any_connection(page_client, tmp_path):
    client, calls, work = page_client
    private = write_image(tmp_path / "private.png", pattern(8, 8))
    for path in ("http://example.com/p.png", "https://example.com/p.png", "//example.com/p.png",
                 "ftp://example.com/p.png", str(private), "../private.png"):
        payload = {"data": [{"path": path, "meta": {"_type": "gradio.FileData"}}]}
        for route, body in [("/gradio_api/call/deblur", payload),
                            ("/gradio_api/queue/join", {**payload, "fn_index": 0, "session_hash": "abc"})]:
            response = client.post(route, json=body)
            if response.status_code == 200 and route.endswith("deblur"):  # the call went through: see what it did
                client.get(f"/gradio_api/call/deblur/{response.json()['event_id']}")
            assert not calls, (path, route, calls)
            assert response.status_code == 403, (path, route, response.text)
            assert response.text == f"refused: {path!r} is not a file uploaded to this server", response.text
    nested = {"data": [{"image": {"path": "http://example.com/p.png", "meta": {"_type": "gradio.FileData"}}}]}
    assert client.post("/gradio_api/call/deblur", json=nested).status_code == 403
    # an upload of this server passes the guard, and is deblurred
    stored = client.post("/gradio_api/upload", files={"files": ("a.png", private.read_bytes(), "image/png")}).json()[0]
    assert Path(stored).is_relative_to(work)
    event = client.post("/gradio_api/call/deblur", json={"data": [{"path": stored, "orig_name": "a.png",
                                                                   "meta": {"_type": "gradio.FileData"}}]})
    assert event.status_code == 200
    stream = client.get(f"/gradio_api/call/deblur/{event.json()['event_id']}").text
    assert "event: complete" in stream and "a_deblurred.png" in stream and not calls


def test_the_page_says_when_only_the_first_frame_of_a_file_was_deblurred(service, tmp_path):
    from PIL import Image as PILImage

    frames = [PILImage.fromarray((pattern(16, 24, seed=i) * 255).astype(np.uint8)) for i in range(4)]
    frames[0].save(tmp_path / "moving.webp", save_all=True, append_images=frames[1:], lossless=True)
    job = service.process(tmp_path / "moving.webp")
    assert "Only the first of its 4 frames was deblurred." in job.summary()
    still = service.process(write_image(tmp_path / "still.png", pattern(16, 24)))
    assert "frames" not in still.summary()
