"""The cache of the authors' weights: where it is, what an installed name's record holds, the check of
every cached file, and the lock that one process at a time holds to change it.

The cache is ``$IFAN_HOME``, else the platform's user cache folder (``~/.cache/ifan`` on Linux)::

    weights/NAME.safetensors   the converted weights (ifan safetensors; official IAC form in the metadata)
    weights/NAME.json          its record: the file's SHA-256 and size, the archive's URL (or file) and
                               SHA-256, the member's path and SHA-256, licence, origin, when installed
    downloads/                 archives while they are read (removed after, and a killed fetch's
                               leftovers by the next fetch)
    .lock                      held while weights are fetched, installed or removed (one process at a time)

A name is installed when its record exists; every load checks the file's SHA-256 against the record
and refuses a changed file with one line that says how to fetch it again. Files are written atomically
(:mod:`ifan.fileutil`: the umask applies) and the record last, so an interrupted install leaves no
installed name. ``IFAN_OFFLINE=1`` forbids every download (:func:`offline`).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

from ifan.fileutil import LockBusy, atomic_write_bytes, hold_lock, release_lock
from ifan.models import zoo
from ifan.models.official import CheckpointError

ENV_HOME = "IFAN_HOME"
ENV_OFFLINE = "IFAN_OFFLINE"
RECORD_FORMAT = "ifan-weights-record/1"

Say = Callable[[str], None]


class CacheError(CheckpointError):
    """A cached weights file that changed since it was installed, or an unreadable record."""


class FetchError(ValueError):
    """Weights that could not be fetched or installed: the network, the archive or a check failed (one line)."""


def say(message: str) -> None:
    """A line on stderr."""
    print(f"ifan: {message}", file=sys.stderr, flush=True)


def cache_dir() -> Path:
    """``$IFAN_HOME``, else the platform's user cache folder for ifan (``~/.cache/ifan`` on Linux)."""
    home = os.environ.get(ENV_HOME, "").strip()
    if home:
        return Path(home).expanduser()
    import platformdirs

    return Path(platformdirs.user_cache_dir("ifan", appauthor=False))


def offline() -> bool:
    """True when ``IFAN_OFFLINE`` is set to 1/true/yes/on: no connection is ever opened."""
    return os.environ.get(ENV_OFFLINE, "").strip().lower() in ("1", "true", "yes", "on")


def weights_file(name: str) -> Path:
    return cache_dir() / "weights" / f"{name}.safetensors"


def record_file(name: str) -> Path:
    return cache_dir() / "weights" / f"{name}.json"


def downloads_dir() -> Path:
    return cache_dir() / "downloads"


def sha256_file(path: str | os.PathLike) -> str:
    """The SHA-256 of a file, read in 1 MiB blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(2**20):
            digest.update(block)
    return digest.hexdigest()


def how_to_get(name: str) -> str:
    """The commands that install ``name``, with and without a network."""
    release = zoo.get_spec(name).release
    archive = release.archive if release else "FILE"
    return (f"`ifan weights fetch {name}`, or on a machine without network download {archive} "
            f"({release.urls[0] if release else 'the weights'}) and run `ifan weights install {name} {archive}`")


def read_record(name: str) -> dict | None:
    """The record of an installed name, or None when none is installed."""
    path = record_file(name)
    try:
        record = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise CacheError(f"{path}: unreadable record of {name} ({err}); remove it with `ifan weights remove "
                         f"{name}` and install it again") from None
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT or "sha256" not in record:
        raise CacheError(f"{path}: not a record of ifan's cache; remove it with `ifan weights remove {name}`")
    return record


def write_record(name: str, record: dict) -> Path:
    return atomic_write_bytes(record_file(name), (json.dumps(record, indent=2, sort_keys=True) + "\n").encode())


def records() -> list[dict]:
    """The records of every installed name."""
    return [r for name in zoo.MODELS if (r := read_record(name)) is not None]


def verified_path(name: str) -> Path | None:
    """The cached weights of ``name`` after checking their SHA-256 against the record; None when not installed.

    Raises:
        CacheError: the file is missing or changed since it was installed.
    """
    record = read_record(name)
    if record is None:
        return None
    path = weights_file(name)
    if not path.is_file():
        raise CacheError(f"{path} is missing although {name} is recorded as installed; fetch it again: "
                         f"{how_to_get(name)}")
    digest = sha256_file(path)
    if digest != record["sha256"]:
        raise CacheError(f"{path} changed since it was installed (SHA-256 {digest[:16]}..., recorded "
                         f"{record['sha256'][:16]}...): refused; fetch it again: {how_to_get(name)}")
    return path


@contextlib.contextmanager
def cache_lock(tell: Say = say) -> Iterator[Path]:
    """Hold the cache's lock (a file lock, :func:`ifan.fileutil.hold_lock`: other processes, e.g. the ranks
    of ``torchrun``, wait; of the ranks only rank 0 says so. One process holds it at a time, so only the one
    that fetches prints the licence and a progress bar). The lock file stays, made as the umask says; a
    link at its name is refused, not followed."""
    root = cache_dir()
    root.mkdir(parents=True, exist_ok=True)
    path = root / ".lock"
    try:
        fd = hold_lock(path)
    except LockBusy:
        if os.environ.get("RANK", "0") == "0":
            tell(f"waiting for another process that is fetching or installing weights in {root}")
        fd = hold_lock(path, wait=True)
    try:
        yield root
    finally:
        release_lock(path, fd, remove=False)


def clear_downloads() -> None:
    """Remove what an interrupted fetch left in ``downloads/`` (call with the lock held)."""
    shutil.rmtree(downloads_dir(), ignore_errors=True)


def remove(name: str) -> bool:
    """Remove an installed name from the cache (the record first, so it stops counting as installed);
    False when it was not installed."""
    zoo.get_spec(name)
    with cache_lock():
        found = record_file(name).exists() or weights_file(name).exists()
        record_file(name).unlink(missing_ok=True)
        weights_file(name).unlink(missing_ok=True)
    return found
