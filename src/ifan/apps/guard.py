"""What ``ifan serve`` accepts, and how it sends the files it serves: an ASGI guard in front of the page.

* No request may make the server fetch a URL (Gradio's ``file=<URL>`` and ``proxy=`` routes) or read a
  file that is not its own: every file payload of a JSON body (``{"path": ...}``) must name a file in the
  server's working folder (an upload, a result), checked before the request reaches Gradio, which would
  otherwise download a URL given as a payload's path.
* When the server listens on this machine only, the ``Host`` must be this machine (DNS rebinding).
* Requests that change state (any method but GET and HEAD, websockets) from another origin or
  another site are refused, and other requests from another site too, except following a link.
* Uploads and results go out as images of a safe type inline, or as downloads, never sniffed.
"""

from __future__ import annotations

import ipaddress
import json
import re
from pathlib import Path
from urllib.parse import unquote, urlsplit

_LOCAL_NAMES = frozenset({"localhost", "127.0.0.1", "::1"})
# /gradio_api/file=<URL> makes Gradio fetch that URL and /proxy=<URL> forwards to Spaces: neither is wanted here
_OUTBOUND = re.compile(r"/(?:proxy=|file[=/]\s*[a-z][a-z0-9+.-]+:)", re.IGNORECASE)
_FILE_ROUTE = re.compile(r"^(?:/gradio_api)?/file[=/]")  # where Gradio serves uploads and results
# served inline (with nosniff); any other type is sent as application/octet-stream, as an attachment
_INLINE_TYPES = frozenset({"image/png", "image/jpeg", "image/webp", "image/gif"})
MAX_JSON_BODY = 2**20  # the page's calls are a few hundred bytes; a larger body that is not an upload is refused
_WEB_SCHEMES = {"ws": "http", "wss": "https"}


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) only listens on this machine."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _host_name(header: str) -> str:
    """The name in a ``Host`` header, without the port (``[::1]:80`` -> ``::1``)."""
    if header.startswith("["):
        return header[1:].split("]", 1)[0]
    return header.rsplit(":", 1)[0] if header.count(":") == 1 else header


def same_origin(origin: str, host: str, scheme: str = "http") -> bool:
    """Whether an ``Origin`` header names the site a request's ``Host`` header addresses over ``scheme``
    (the request's: ``http`` or ``https``; a websocket's ``ws``/``wss`` count as those)."""
    theirs, ours = urlsplit(origin), urlsplit(f"//{host}")
    scheme = _WEB_SCHEMES.get(scheme, scheme)
    default = 443 if scheme == "https" else 80
    try:
        return (theirs.scheme == scheme and theirs.hostname is not None
                and theirs.hostname == ours.hostname and (theirs.port or default) == (ours.port or default))
    except ValueError:  # a port that is not a number
        return False


def foreign_payload(body: bytes, workdir: Path) -> str | None:
    """The first file payload (a JSON object with a ``"path"``) of a request body that does not name a file
    in ``workdir``, e.g. a URL Gradio would download; None when there is none, or the body is not JSON."""
    try:
        value = json.loads(body)
    except (ValueError, RecursionError):  # not JSON (the app refuses it), or nested beyond parsing
        return None
    stack = [value]
    while stack:  # no recursion: a body nested ten thousand deep is walked like any other
        item = stack.pop()
        if isinstance(item, dict):
            path = item.get("path")
            if isinstance(path, str) and not _in_folder(path, workdir):
                return path
            stack.extend(item.values())
        elif isinstance(item, list):
            stack.extend(item)
    return None


def _in_folder(path: str, folder: Path) -> bool:
    """Whether ``path`` is an absolute local path of a file inside ``folder`` (links resolved, nothing fetched)."""
    candidate = Path(path)
    try:
        return candidate.is_absolute() and "://" not in path and candidate.resolve().is_relative_to(folder)
    except (OSError, ValueError, RuntimeError):
        return False


def served_file_headers(headers: list[tuple[bytes, bytes]]) -> list[tuple[bytes, bytes]]:
    """The response headers of a served upload or result: an image of a safe type stays inline,
    anything else (HTML, SVG, TIFF, ...) becomes an ``application/octet-stream`` attachment, and
    the browser is told not to sniff (``X-Content-Type-Options: nosniff``)."""
    found = {k.lower(): v for k, v in headers}
    kind = found.get(b"content-type", b"").split(b";")[0].strip().lower()
    kept = [(k, v) for k, v in headers
            if k.lower() not in (b"content-type", b"content-disposition", b"x-content-type-options")]
    disposition = found.get(b"content-disposition", b"")
    if kind.decode("latin-1") in _INLINE_TYPES:
        kept.append((b"content-type", kind))
        if disposition:
            kept.append((b"content-disposition", disposition))
    else:
        kept.append((b"content-type", b"application/octet-stream"))
        kept.append((b"content-disposition", re.sub(rb"^\s*inline\b", b"attachment", disposition)
                     if disposition.strip().lower().startswith((b"inline", b"attachment")) else b"attachment"))
    return kept + [(b"x-content-type-options", b"nosniff")]


class RequestGuard:
    """ASGI middleware in front of the page.

    It refuses requests that would make the server fetch a URL; when ``local_only``, requests
    whose ``Host`` is not this machine (DNS rebinding); requests that change state (any method
    but GET and HEAD, and websockets) whose ``Origin`` is another origin or whose
    ``Sec-Fetch-Site`` says another site; and any other request from another site except
    following a link to the page. Requests without those headers (curl, scripts) pass. Uploads
    and results go out with :func:`served_file_headers`.
    """

    def __init__(self, app, local_only: bool, workdir: Path | None = None) -> None:
        self.app = app
        self.local_only = local_only
        self.workdir = None if workdir is None else Path(workdir).resolve()

    def refusal(self, scope) -> str | None:
        """Why a request is refused, or None."""
        if _OUTBOUND.search(unquote(scope.get("path", ""))):
            return "this server fetches no URLs"
        headers = {k.lower(): v.decode("latin-1") for k, v in scope.get("headers") or []}
        host = headers.get(b"host", "")
        if self.local_only and _host_name(host).lower() not in _LOCAL_NAMES:
            return f"unexpected Host {host!r}: this server answers only on localhost"
        changes_state = scope["type"] == "websocket" or scope.get("method", "GET") not in ("GET", "HEAD")
        site = headers.get(b"sec-fetch-site", "").lower()
        if site in ("cross-site", "same-site") and (changes_state or headers.get(b"sec-fetch-mode") != "navigate"):
            return f"refused: a request from another site (Sec-Fetch-Site: {site})"
        origin = headers.get(b"origin")
        if changes_state and origin is not None and not same_origin(origin, host, scope.get("scheme", "http")):
            return f"refused: a request from another origin ({origin})"
        return None

    def _with_body(self, scope) -> bool:
        """A request whose body is read here first: one with a body that is not an upload (multipart)."""
        if self.workdir is None or scope["type"] != "http" or scope.get("method", "GET") in ("GET", "HEAD"):
            return False
        kind = dict(scope.get("headers") or []).get(b"content-type", b"")
        return not kind.lower().startswith(b"multipart/")

    async def __call__(self, scope, receive, send):
        reason = self.refusal(scope) if scope["type"] in ("http", "websocket") else None
        if reason is None and self._with_body(scope):
            body, receive = await _read_body(receive)
            if body is None:
                reason = f"refused: a request body over {MAX_JSON_BODY} bytes that is not an upload"
            elif (path := foreign_payload(body, self.workdir)) is not None:
                reason = f"refused: {path!r} is not a file uploaded to this server"
        if reason is None:
            if scope["type"] == "http" and _FILE_ROUTE.match(scope.get("path", "")):
                inner = send

                async def send(message):
                    if message["type"] == "http.response.start" and message.get("status", 200) < 300:
                        message = {**message, "headers": served_file_headers(list(message.get("headers", [])))}
                    await inner(message)
            await self.app(scope, receive, send)
        elif scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
        else:
            body = reason.encode()
            await send({"type": "http.response.start", "status": 403,
                        "headers": [(b"content-type", b"text/plain; charset=utf-8"),
                                    (b"content-length", str(len(body)).encode())]})
            await send({"type": "http.response.body", "body": body})


async def _read_body(receive):
    """The whole body of a request (None when over :data:`MAX_JSON_BODY`), and a ``receive`` that hands
    it to the app again."""
    chunks, size, more = [], 0, True
    while more:
        message = await receive()
        if message["type"] != "http.request":
            return b"", receive  # the client went away
        chunks.append(message.get("body", b""))
        size += len(chunks[-1])
        more = message.get("more_body", False)
        if size > MAX_JSON_BODY:
            return None, receive
    body, given = b"".join(chunks), False

    async def replay():
        nonlocal given
        if given:
            return await receive()
        given = True
        return {"type": "http.request", "body": body, "more_body": False}

    return body, replay

