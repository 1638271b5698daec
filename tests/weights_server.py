"""A local HTTP server for the tests of fetching weights, and a small registered name to fetch.

The server listens on 127.0.0.1 only and answers each path as its route says: a file (optionally after
a delay), a redirect, an HTTP error, an HTML page, a body shorter than its Content-Length, or a body
that stalls. It counts the requests for each path; a proxy request (an absolute URL) counts under its
path too.
"""

from __future__ import annotations

import http.server
import threading
import time
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from ifan.models import zoo
from ifan.models.ifan import IFANConfig

# The official fixture (tests/fixtures/official_small.pytorch: ch 8, N 4, RBF_num 4, made by the authors'
# code) published under a name of its own, so that the tests fetch real official bytes in seconds.
SMALL = zoo.ModelSpec("ifan-small", IFANConfig(channels=8, iterations=4, reblur_iterations=4),
                      "the official test checkpoint", release=zoo.Release(member="IFAN_small.pytorch", paper="none"))


def register_small() -> None:
    """Add ``ifan-small`` to the registry of this process (tests use monkeypatch instead)."""
    zoo.MODELS[SMALL.name] = SMALL


def make_zip(path: Path, members: dict[str, bytes | Path], comment: bytes = b"") -> Path:
    """A zip (stored, not compressed) of ``members`` (archive name -> bytes or a file)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with zipfile.ZipFile(path, "w", zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data.read_bytes() if isinstance(data, Path) else data)
        zf.comment = comment
    return path


@dataclass
class Route:
    """How the server answers a path: ``kind`` is file, redirect, status, html, truncate or stall."""

    kind: str
    body: bytes = b""
    location: str = ""
    status: int = 200
    delay: float = 0.0


class _Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def log_message(self, *args) -> None:
        pass

    def do_GET(self) -> None:
        server: Server = self.server.owner
        path = urlsplit(self.path).path
        with server.lock:
            server.hits[path] += 1
        route = server.routes.get(path, Route("status", status=404))
        if route.kind == "redirect":
            self.send_response(302)
            self.send_header("Location", route.location)
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        if route.kind == "status":
            self.send_error(route.status)
            return
        kind = "text/html; charset=utf-8" if route.kind == "html" else "application/zip"
        self.send_response(200)
        self.send_header("Content-Type", kind)
        self.send_header("Content-Length", str(len(route.body)))
        self.end_headers()
        if route.kind == "stall":  # a little, then nothing for longer than the client waits
            self.wfile.write(route.body[:1024])
            self.wfile.flush()
            time.sleep(route.delay)
            self.close_connection = True
            return
        time.sleep(route.delay)
        if route.kind == "truncate":  # half the promised bytes, then the connection closes
            self.wfile.write(route.body[: len(route.body) // 2])
            self.close_connection = True
            return
        self.wfile.write(route.body)


class Server:
    """A threaded HTTP server on 127.0.0.1 (a context manager)."""

    def __init__(self) -> None:
        self.routes: dict[str, Route] = {}
        self.hits: Counter[str] = Counter()
        self.lock = threading.Lock()
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
        self.httpd.daemon_threads = True
        self.httpd.owner = self
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_port}{path}"

    def serve(self, path: str, kind: str = "file", **kwargs) -> str:
        self.routes[path] = Route(kind, **kwargs)
        return self.url(path)

    def __enter__(self) -> Server:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
