"""Make docs/images/serve.png: `ifan serve` deblurring the bundled example, seen in headless Chromium.

    python docs/make_serve_screenshot.py                      # the bundled model (ifan-lite)
    python docs/make_serve_screenshot.py --model run/best.safetensors

Needs ``ifan[test]`` (Gradio and the Playwright client) and a Chromium (Debian's ``chromium``,
or ``--chromium PATH``). The server runs on a free local port and is stopped afterwards.
"""

from __future__ import annotations

import argparse
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="ifan-lite", help="model name or weights file (default ifan-lite)")
    parser.add_argument("--out", default=str(ROOT / "docs" / "images" / "serve.png"))
    parser.add_argument("--chromium", default=shutil.which("chromium") or shutil.which("chromium-browser"))
    parser.add_argument("--width", type=int, default=1280, help="window width in CSS pixels")
    parser.add_argument("--keep-bokeh", default="6", help="the keep-the-bokeh slider's value shown (0: off; default 6)")
    args = parser.parse_args()
    if not args.chromium:
        parser.error("no Chromium found: apt-get install chromium, or pass --chromium PATH")
    from playwright.sync_api import expect, sync_playwright

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with tempfile.TemporaryDirectory(prefix="ifan-screenshot-") as work:
        server = subprocess.Popen([sys.executable, "-m", "ifan", "serve", "--model", args.model, "--port", str(port),
                                   "--workdir", work])
        url = f"http://127.0.0.1:{port}/"
        try:
            for _ in range(240):
                if server.poll() is not None:
                    return 1
                try:
                    urllib.request.urlopen(url, timeout=5).close()
                    break
                except OSError:
                    time.sleep(0.5)
            with sync_playwright() as p:
                browser = p.chromium.launch(executable_path=args.chromium, args=CHROMIUM_ARGS)
                page = browser.new_page(viewport={"width": args.width, "height": 900})
                page.goto(url)
                page.locator("#examples img").first.click()
                page.click("#run")
                expect(page.locator("#download")).to_be_visible(timeout=600_000)
                if float(args.keep_bokeh) > 0:
                    box = page.locator("#keep-bokeh input[type=number]")
                    box.fill(args.keep_bokeh)
                    box.press("Tab")  # released: the page recomposes without the network
                    expect(page.locator("#download")).to_contain_text("bokeh kept", timeout=120_000)
                page.wait_for_timeout(1000)  # let the images finish loading
                page.screenshot(path=args.out, full_page=True)
                browser.close()
        finally:
            server.terminate()
            server.wait(timeout=30)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
