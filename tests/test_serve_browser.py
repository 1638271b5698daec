"""`ifan serve` end to end: a real server process, driven by headless Chromium through Playwright.

Skips with the reason when Gradio, the Playwright client or a Chromium browser is missing
(``.ci/run`` installs Debian's chromium; ``IFAN_CHROMIUM`` may name another executable). The
page's screenshot is kept as ``serve_test.png`` in the test's tmp folder and, when
``IFAN_SCREENSHOT_DIR`` is set, copied there.
"""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import numpy as np
import pytest
import torch

from ifan import create_model
from ifan.inference import Deblurrer
from ifan.io import read_image, write_image
from ifan.models.serialization import save_weights

# Chromium as root, headless, with nothing that phones home (no component updates, sync or field trials)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-default-apps", "--disable-quic"]
MAX_PIXELS = 4000  # the server's --max-pixels: 64x48 passes, 80x64 is refused

pytestmark = pytest.mark.slow  # a server process and a browser


def chromium_executable() -> str | None:
    """``IFAN_CHROMIUM``, else the first Chromium or Chrome on PATH."""
    names = [os.environ.get("IFAN_CHROMIUM"), "chromium", "chromium-browser", "google-chrome"]
    return next((found for name in names if name and (found := shutil.which(name))), None)


def pattern(h, w, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx / w, yy / h, 0.5 + 0.3 * np.sin(xx / 5.0)], axis=2)
    return np.clip(base + 0.05 * rng.standard_normal((h, w, 3)), 0, 1).astype(np.float32)


@dataclass
class Server:
    url: str
    host: str
    workdir: Path
    cwd: Path
    weights: Path


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _status(url: str, headers: dict | None = None) -> int:
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {}), timeout=10) as r:
            return r.status
    except urllib.error.HTTPError as err:
        return err.code


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    if importlib.util.find_spec("gradio") is None:
        pytest.skip("Gradio is not installed (pip install 'ifan[demo]')")
    root = tmp_path_factory.mktemp("serve")
    torch.manual_seed(0)
    model = create_model("ifan", channels=2, iterations=2)
    weights = save_weights(root / "tiny.safetensors", model.config, model.state_dict())
    port = _free_port()
    cwd = root / "cwd"
    cwd.mkdir()
    work = root / "work"  # --workdir: a folder of the user's that already holds files
    write_image(work / "private.png", pattern(8, 8))
    old_job = write_image(work / "jobs" / "old" / "photo.png", pattern(8, 8)).parent
    long_ago = time.time() - 7200
    os.utime(old_job, (long_ago, long_ago))
    log = root / "server.log"
    cmd = [sys.executable, "-m", "ifan", "serve", "--model", str(weights), "--port", str(port),
           "--workdir", str(work), "--max-pixels", str(MAX_PIXELS)]
    with open(log, "w") as out:
        proc = subprocess.Popen(cmd, cwd=cwd, stdout=out, stderr=subprocess.STDOUT,
                                env=dict(os.environ, OMP_NUM_THREADS="1"))
    url = f"http://127.0.0.1:{port}/"
    deadline = time.monotonic() + 120
    while True:
        try:
            if _status(url) == 200:
                break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            pytest.fail(f"ifan serve did not come up:\n{log.read_text()}")
        time.sleep(0.25)
    yield Server(url, f"127.0.0.1:{port}", work, cwd, weights)
    proc.terminate()
    proc.wait(timeout=30)


@pytest.fixture(scope="module")
def browser():
    if importlib.util.find_spec("playwright") is None:
        pytest.skip("the Playwright client is not installed (pip install playwright; it is in ifan[test])")
    executable = chromium_executable()
    if executable is None:
        pytest.skip("no Chromium browser found (apt-get install chromium, or set IFAN_CHROMIUM); .ci/run installs it")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        chromium = p.chromium.launch(executable_path=executable, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def _call_deblur(server: Server, path: Path | str) -> str:
    """The event stream of one call of the page's deblur function through Gradio's HTTP API (or the
    refusal: ``403 <why>``)."""
    body = json.dumps({"data": [{"path": str(path), "meta": {"_type": "gradio.FileData"}}]}).encode()
    request = urllib.request.Request(f"{server.url}gradio_api/call/deblur", data=body,
                                     headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            event = json.load(r)["event_id"]
    except urllib.error.HTTPError as err:
        return f"{err.code} {err.read().decode()}"
    with urllib.request.urlopen(f"{server.url}gradio_api/call/deblur/{event}", timeout=60) as r:
        return r.read().decode()


def _upload(server: Server, name: str, data: bytes, headers: dict | None = None) -> tuple[int, str]:
    """POST one file to Gradio's upload route: (status, the path it was stored at or the refusal)."""
    body = (b"--b\r\nContent-Disposition: form-data; name=\"files\"; filename=\"" + name.encode() +
            b"\"\r\nContent-Type: application/octet-stream\r\n\r\n" + data + b"\r\n--b--\r\n")
    request = urllib.request.Request(f"{server.url}gradio_api/upload", data=body, method="POST",
                                     headers={"Content-Type": "multipart/form-data; boundary=b", **(headers or {})})
    try:
        with urllib.request.urlopen(request, timeout=10) as r:
            return r.status, json.load(r)[0]
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


def _headers(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=10) as r:
        return {k.lower(): v for k, v in r.headers.items()}


def test_serves_and_reads_only_its_own_files_for_local_hosts(server, tmp_path):
    assert _status(server.url) == 200
    assert _status(server.url, {"Host": "attacker.example"}) == 403
    for path in ("/etc/passwd", str(server.weights), str(server.cwd), str(server.workdir / "private.png"),
                 str(server.workdir / "jobs" / "old" / "photo.png")):
        assert _status(f"{server.url}gradio_api/file={path}") == 403
    assert _status(f"{server.url}gradio_api/file=https://example.com/a.png") == 403
    private = write_image(tmp_path / "private.png", pattern(16, 16))  # an image that was never uploaded
    assert _call_deblur(server, private) == f"403 refused: {str(private)!r} is not a file uploaded to this server"
    url = "http://example.com/p.png"  # never fetched: refused before Gradio sees it
    assert _call_deblur(server, url) == f"403 refused: {url!r} is not a file uploaded to this server"
    assert [p.relative_to(server.workdir) for p in server.workdir.rglob("private*")] == [Path("private.png")]


def test_cross_site_uploads_are_refused_and_uploads_come_back_as_images_or_downloads(server):
    png = (server.workdir / "private.png").read_bytes()
    evil = {"Origin": "https://evil.example"}
    assert _upload(server, "a.png", png, evil) == (403, "refused: a request from another origin (https://evil.example)")
    assert _upload(server, "a.png", png, {"Sec-Fetch-Site": "cross-site"})[0] == 403
    page = b"<html><script>fetch('/gradio_api/upload')</script></html>"
    own = {"Origin": server.url.rstrip("/"), "Sec-Fetch-Site": "same-origin"}
    for name, data in [("page.html", page), ("drawing.svg", b"<svg xmlns='http://www.w3.org/2000/svg'/>")]:
        status, stored = _upload(server, name, data, own)
        assert status == 200 and Path(stored).is_relative_to(server.workdir)
        got = _headers(f"{server.url}gradio_api/file={stored}")
        assert got["content-type"] == "application/octet-stream" and got["x-content-type-options"] == "nosniff"
        assert got["content-disposition"].startswith("attachment")
    status, stored = _upload(server, "photo.png", png)  # curl-like: no Origin
    got = _headers(f"{server.url}gradio_api/file={stored}")
    assert status == 200 and got["content-type"] == "image/png" and got["x-content-type-options"] == "nosniff"


def test_upload_deblur_and_download_in_chromium(server, browser, tmp_path):
    from playwright.sync_api import expect

    src = write_image(tmp_path / "sixteen.png", pattern(48, 64), bit_depth=16)
    page = browser.new_page(viewport={"width": 1280, "height": 900}, accept_downloads=True)
    hosts = set()
    page.on("request", lambda request: hosts.add(urlsplit(request.url).netloc))
    page.goto(server.url)
    page.locator("#photo input[type=file]").set_input_files(src)
    page.click("#run")
    download = page.locator("#download")
    expect(download).to_be_visible(timeout=60_000)
    expect(download).to_contain_text("16-bit PNG")
    expect(page.locator("#info")).to_contain_text("64x48 px, 16-bit")
    with page.expect_download() as info:
        download.click()
    assert info.value.suggested_filename == "sixteen_deblurred.png"
    saved = tmp_path / "downloaded.png"
    info.value.save_as(saved)

    got = read_image(saved)
    assert got.bit_depth == 16 and got.size == (48, 64)
    expected = Deblurrer.from_pretrained(str(server.weights), device="cpu").deblur(read_image(src).rgb)
    np.testing.assert_array_equal(np.round(got.rgb * 65535), np.round(np.clip(expected, 0, 1) * 65535))

    shot = page.screenshot(path=str(tmp_path / "serve_test.png"), full_page=True)
    if os.environ.get("IFAN_SCREENSHOT_DIR"):
        out = Path(os.environ["IFAN_SCREENSHOT_DIR"])
        out.mkdir(parents=True, exist_ok=True)
        (out / "serve_test.png").write_bytes(shot)

    page.get_by_role("button", name="Remove Image").click()
    page.locator("#photo input[type=file]").set_input_files(write_image(tmp_path / "big.png", pattern(64, 80)))
    page.click("#run")
    expect(page.get_by_text("exceeds the limit")).to_be_visible(timeout=30_000)
    page.close()

    assert hosts == {server.host}  # nothing but this server was asked for anything
    assert not any(server.cwd.iterdir())  # and it wrote nothing outside its working folder
    assert any(server.workdir.glob("ifan-serve-*/jobs/*/sixteen_deblurred.png"))  # in its own subfolder
    assert (server.workdir / "jobs" / "old" / "photo.png").is_file()  # the user's old folder is still there


def test_sliders_recompose_without_the_network_in_chromium(server, browser, tmp_path):
    """Strength and keep-bokeh sliders: the previews, the mask and the full-size download change, and no
    new job (a network run) is made; strength 0 downloads the photo itself, bit for bit."""
    from playwright.sync_api import expect

    src = write_image(tmp_path / "knobs.png", pattern(48, 64, seed=3), bit_depth=16)
    page = browser.new_page(viewport={"width": 1280, "height": 1100}, accept_downloads=True)
    page.goto(server.url)
    page.locator("#photo input[type=file]").set_input_files(src)
    page.click("#run")
    download = page.locator("#download")
    expect(download).to_contain_text("knobs_deblurred.png", timeout=60_000)
    jobs = sorted(server.workdir.glob("ifan-serve-*/jobs/*"))

    def set_knob(elem_id: str, value: str) -> None:
        box = page.locator(f"#{elem_id} input[type=number]")
        box.fill(value)
        box.press("Tab")  # the release event

    set_knob("strength", "0")
    expect(download).to_contain_text("strength 0", timeout=30_000)
    with page.expect_download() as info:
        download.click()
    saved = tmp_path / "strength0.png"
    info.value.save_as(saved)
    got, photo = read_image(saved), read_image(src)
    assert got.bit_depth == 16
    np.testing.assert_array_equal(np.round(got.rgb * 65535), np.round(photo.rgb * 65535))

    set_knob("strength", "1")
    set_knob("keep-bokeh", "6")
    expect(download).to_contain_text("bokeh kept beyond 6 px", timeout=30_000)
    expect(page.locator("#mask img")).to_be_visible()
    assert sorted(server.workdir.glob("ifan-serve-*/jobs/*")) == jobs  # no network run for the sliders
    page.screenshot(path=str(tmp_path / "serve_sliders.png"), full_page=True)
    page.close()


def test_the_model_menu_switches_models_and_says_how_to_add_others(server, browser, tmp_path):
    from playwright.sync_api import expect

    page = browser.new_page(viewport={"width": 1280, "height": 900})
    page.goto(server.url)
    menu = page.locator("#model")
    expect(menu).to_contain_text("ifan weights fetch ifan")  # the names not installed, and the command
    for i, choice in enumerate(("ifan-lite", server.weights.name)):  # and back, for this server's other tests
        menu.locator("input").click()
        page.get_by_role("option", name=choice).click()
        expect(menu.locator("input")).to_have_value(choice)
        src = write_image(tmp_path / f"photo{i}.png", pattern(40, 48, seed=i))
        page.locator("#photo input[type=file]").set_input_files(src)
        page.click("#run")
        expect(page.locator("#download")).to_contain_text(f"photo{i}_deblurred.png", timeout=60_000)
        with page.expect_download() as info:
            page.locator("#download").click()
        info.value.save_as(tmp_path / f"got{i}.png")
        model = "ifan-lite" if choice == "ifan-lite" else str(server.weights)
        expected = Deblurrer.from_pretrained(model, device="cpu").deblur(read_image(src).rgb)
        got = read_image(tmp_path / f"got{i}.png").rgb
        np.testing.assert_array_equal(np.round(got * 255), np.round(np.clip(expected, 0, 1) * 255))
        page.get_by_role("button", name="Remove Image").click()
    page.close()
