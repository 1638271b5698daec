"""Fetching the authors' weights: the archive from its mirrors, then :mod:`ifan.models.install`.

The download is pooch's (``pooch.HTTPDownloader`` over requests): a progress bar on a terminal, a
time-out on every connection and read, retries of transient failures (a dropped connection, a time-out,
a truncated body, a server error) but not of a refusal (HTTP 4xx), and the proxy variables
(``HTTPS_PROXY``, ``HTTP_PROXY``, ``NO_PROXY``) honoured. Each archive goes to a new file in the cache's
``downloads/`` and is removed once read, so a partial download is never used. The mirrors are tried in
order until every requested name is installed; each failure becomes a part of one error line.

The whole fetch holds the cache's lock: a second process (another rank of ``torchrun``, another shell)
waits, then finds the weights installed and downloads nothing.
"""

from __future__ import annotations

import os
import re
import time
from collections.abc import Sequence
from pathlib import Path
from urllib.parse import urlsplit

import pooch

from ifan.models import cache, install
from ifan.models.cache import FetchError, Say

DEFAULT_TIMEOUT = 60.0  # seconds without a byte before a connection counts as dead
DEFAULT_RETRIES = 2  # further attempts at a mirror after a transient failure
CHUNK = 2**20
ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


class _Refused(RuntimeError):
    """An HTTP answer that a retry will not change (4xx): pooch retries only ValueError and requests' errors."""


class _Downloader(pooch.HTTPDownloader):
    """pooch's HTTP downloader that does not retry a refusal."""

    def __call__(self, url, output_file, pooch, check_only=False):
        import requests

        try:
            return super().__call__(url, output_file, pooch, check_only)
        except requests.exceptions.HTTPError as err:
            response = err.response
            if response is not None and 400 <= response.status_code < 500 and response.status_code not in (408, 429):
                raise _Refused(f"HTTP {response.status_code} {response.reason}".strip()) from None
            raise


def _describe(err: Exception, timeout: float) -> str:
    """One short phrase for a download error."""
    import requests

    text = str(err)
    if isinstance(err, _Refused):
        return text
    if isinstance(err, requests.exceptions.HTTPError) and err.response is not None:
        return f"HTTP {err.response.status_code} {err.response.reason}".strip()
    if isinstance(err, requests.exceptions.Timeout) or "timed out" in text.lower():
        return f"no data for {timeout:g} s (timed out)"
    if isinstance(err, requests.exceptions.ChunkedEncodingError) or "IncompleteRead" in text or "broken" in text:
        return "the download broke off before the end (a truncated body)"
    if isinstance(err, requests.exceptions.TooManyRedirects):
        return "too many redirects"
    if isinstance(err, requests.exceptions.ConnectionError):
        reasons = re.findall(r"\[Errno -?\d+\] ([^'\")\]]+)", text)  # urllib3 nests the OS error's text
        return f"cannot connect ({reasons[-1].strip() if reasons else text[-120:]})"
    return " ".join(text.split())[:200] or type(err).__name__


def _check_zip(path: Path) -> None:
    """Refuse what is not a zip archive, naming what it is when it is an HTML page."""
    with open(path, "rb") as f:
        head = f.read(512)
    if head[:4] in ZIP_MAGIC:
        return
    if head.lstrip()[:1] == b"<" and b"html" in head.lower():
        raise FetchError("the server sent an HTML page, not the zip archive (an expired link, a login or a "
                         "quota page?)")
    raise FetchError(f"not a zip archive ({len(head)} first bytes: {head[:16]!r})" if head else "an empty file")


def download(url: str, name: str, timeout: float = DEFAULT_TIMEOUT, retries: int = DEFAULT_RETRIES,
             progress: bool | None = None) -> Path:
    """Download ``url`` into a new file in the cache's ``downloads/`` (named after ``name``); its path.

    Raises:
        FetchError: the download failed (after ``retries`` further attempts at transient failures) or
            what came is not a zip archive; nothing is left behind.
    """
    import requests

    folder = cache.downloads_dir()
    target = f"{os.getpid()}-{time.monotonic_ns()}-{name}"
    pooch.get_logger().setLevel("WARNING")  # pooch's own lines repeat ours (and the hash of each download)
    fetcher = pooch.create(path=folder, base_url="", registry={target: None}, urls={target: url},
                           retry_if_failed=retries)
    bar = os.isatty(2) if progress is None else progress
    downloader = _Downloader(progressbar=bar, chunk_size=CHUNK, timeout=timeout)
    try:
        path = Path(fetcher.fetch(target, downloader=downloader))
    except (_Refused, requests.exceptions.RequestException) as err:
        raise FetchError(_describe(err, timeout)) from None
    try:
        _check_zip(path)
    except FetchError:
        path.unlink(missing_ok=True)
        raise
    return path


def _short(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _fetch_names(names: list[str], urls: Sequence[str], archive: str, timeout: float, retries: int,
                 progress: bool | None, tell: Say) -> None:
    """Install ``names`` from the first mirrors that give each of them; FetchError listing every failure."""
    remaining, failures = list(names), []
    for i, url in enumerate(urls):
        tell(f"downloading {archive} from {_short(url)}")
        failed = []
        try:
            path = download(url, archive, timeout, retries, progress)
        except FetchError as err:
            failed.append(str(err))
        else:
            try:
                digest = cache.sha256_file(path)
                for name in list(remaining):
                    try:
                        dst = install.install_from_archive(name, path, source=url, archive_sha=digest, tell=tell)
                    except FetchError as err:
                        failed.append(f"{name}: {err}" if len(names) > 1 else str(err))
                        continue
                    remaining.remove(name)
                    tell(f"installed {name}: {dst} ({dst.stat().st_size / 1e6:.1f} MB)")
            finally:
                path.unlink(missing_ok=True)
        failures += [f"{_short(url)}: {reason}" for reason in failed]
        if not remaining:
            return
        if failed and i + 1 < len(urls):
            tell(f"{_short(url)}: {'; '.join(failed)}; trying the next mirror")
    raise FetchError(f"could not fetch {', '.join(remaining)}: " + "; ".join(failures))


def fetch(names: Sequence[str], urls: Sequence[str] | None = None, *, force: bool = False,
          timeout: float = DEFAULT_TIMEOUT, retries: int = DEFAULT_RETRIES, progress: bool | None = None,
          tell: Say = cache.say) -> list[Path]:
    """Fetch, check and cache the authors' weights of ``names``; the cached files, in the same order.

    Names already installed (and unchanged) are not fetched again unless ``force``. The licence and the
    origin are printed once, before the download.

    Args:
        urls: mirrors to use instead of the registry's (an internal mirror, a test server).
        timeout: seconds without data before a connection is given up.
        retries: further attempts at a mirror after a transient failure.
        progress: a progress bar (default: when stderr is a terminal).

    Raises:
        FileNotFoundError: ``IFAN_OFFLINE`` is set (nothing is opened).
        FetchError: some name could not be fetched; nothing of it is cached.
    """
    names = list(dict.fromkeys(names))
    releases = {name: install.release_of(name) for name in names}
    if cache.offline():
        raise FileNotFoundError(f"{cache.ENV_OFFLINE}=1 forbids downloading; install {' and '.join(names)} by hand: "
                                + "; ".join(cache.how_to_get(n) for n in names))
    with cache.cache_lock(tell):
        todo = [n for n in names if force or not _installed(n)]
        if todo:
            cache.clear_downloads()
            groups: dict[tuple[str, tuple[str, ...]], list[str]] = {}
            for name in todo:
                release = releases[name]
                groups.setdefault((release.archive, tuple(urls or release.urls)), []).append(name)
            first = releases[todo[0]]
            tell(f"fetching {', '.join(todo)}: the authors' weights, licensed {first.licence} by them; published at "
                 f"{first.origin}")
            try:
                for (archive, mirrors), group in groups.items():
                    _fetch_names(group, mirrors, archive, timeout, retries, progress, tell)
            finally:
                cache.clear_downloads()
        return [cache.verified_path(n) for n in names]


def _installed(name: str) -> bool:
    """Installed and unchanged (a changed or missing file is fetched again)."""
    try:
        return cache.verified_path(name) is not None
    except cache.CacheError:
        return False


def install_local(name: str, file: str | os.PathLike, *, force: bool = False, tell: Say = cache.say) -> Path:
    """Install ``name`` from a file downloaded by hand (the authors' archive, or its one checkpoint)."""
    release = install.release_of(name)
    file = Path(file).expanduser()
    if not file.is_file():
        raise FileNotFoundError(f"{file}: no such file (expected the authors' {release.archive}, or {release.member})")
    with cache.cache_lock(tell):
        if not force and _installed(name):
            tell(f"{name} is installed already ({cache.weights_file(name)}); --force replaces it")
            return cache.weights_file(name)
        tell(f"installing {name}: the authors' weights, licensed {release.licence} by them; published at "
             f"{release.origin}")
        cache.clear_downloads()
        try:
            return install.install_file(name, file, tell)
        finally:
            cache.clear_downloads()
