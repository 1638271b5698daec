"""File-system helpers: durable atomic writes that follow no link, stale temporaries told from live ones,
locks, names that fit, and a glob that survives symbolic-link loops.

Every file ifan writes goes through here, and no writer follows a symbolic link at the name it writes:

* :func:`atomic_write`: a new temporary file beside the target (``O_EXCL | O_NOFOLLOW``), written through
  its own descriptor, flushed to the disk (fsync), renamed over the target (a rename replaces a link, it
  does not follow it), then the folder flushed;
* :func:`open_new`: a file a writer appends to for a while (a manifest's part file), made the same way and
  renamed into place at once;
* :func:`open_append`: an existing log appended to (``O_NOFOLLOW``: a link there is refused).

A temporary file is named ``.NAME.XXXXXXXX.tmp`` (eight random characters; ``NAME`` cut so that the whole
fits :data:`NAME_MAX`), created with mode ``0o666`` less the umask, and locked (``flock``) by its writer
while it lives: :func:`remove_stale_temps` deletes only those nobody holds, so a run never deletes the
temporaries of another live process, only what a killed one left. :func:`hold_lock` makes a job (a run's
manifest) one process's at a time.
"""

from __future__ import annotations

import errno
import fnmatch
import hashlib
import os
import re
import secrets
import socket
import time
from collections.abc import Callable, Container
from pathlib import Path
from typing import BinaryIO

try:
    import fcntl
except ImportError:  # not POSIX: no locks; temporaries are then taken for stale only after a day
    fcntl = None

GLOB_CHARS = frozenset("*?[")
TEMP_RE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # also the names of tempfile.mkstemp
NAME_MAX = 255  # bytes of one name in a folder (ext4, XFS, Btrfs, tmpfs, ZFS, APFS)
_TEMP_EXTRA = len("..12345678.tmp")
_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
UNLOCKED_STALE_SECONDS = 86400  # where locks are not available: a temporary this old is a killed writer's


def fit_name(name: str, limit: int = NAME_MAX, keep: str | None = None) -> str:
    """``name`` if its UTF-8 encoding fits ``limit`` bytes; else shortened, keeping its ending ``keep`` (default:
    its extension; ``_deblurred.png``): the part before it is cut at a character boundary and followed by
    ``~`` and eight hex digits of a hash of the whole name, so that names that differ only after the cut
    stay different, and the same name is always shortened the same way."""
    if len(name.encode()) <= limit:
        return name
    keep = Path(name).suffix if keep is None else keep
    keep = keep if keep and name.endswith(keep) else ""
    head = name[:len(name) - len(keep)]
    mark = "~" + hashlib.sha256(name.encode()).hexdigest()[:8]
    room = limit - len((mark + keep).encode())
    if room < 1:
        raise ValueError(f"{name[:40]}...: no room for a name in {limit} bytes keeping {keep!r}")
    return head.encode()[:room].decode(errors="ignore") + mark + keep


def shown(path: str | os.PathLike) -> str:
    """A path as a log line shows it: as is, or quoted with escapes (``'a\\nb.png'``) when it holds a line
    break or another character that cannot be printed, so that one name is always one line."""
    text = str(path)
    return text if text.isprintable() else repr(text)


def _lock(fd: int, wait: bool) -> bool | None:
    """Take ``fd``'s exclusive lock: True; False when another process holds it (``wait=False``); None where
    the file system (or the OS) has no locks."""
    if fcntl is None:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
    except BlockingIOError:
        return False
    except OSError as err:
        if err.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.EINVAL):
            return None
        raise
    return True


def _temp_name(name: str) -> str:
    """The part of a temporary file's name that comes from its target's ``name`` (cut to fit)."""
    return fit_name(name, NAME_MAX - _TEMP_EXTRA, keep="")


def _create_temp(path: Path) -> tuple[int, Path]:
    """A new, empty, locked temporary file beside ``path``: its descriptor and its path."""
    for _ in range(100):
        tmp = path.parent / f".{_temp_name(path.name)}.{secrets.token_hex(4)}.tmp"
        try:
            fd = os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | _NOFOLLOW | _CLOEXEC, 0o666)
        except FileExistsError:
            continue
        _lock(fd, wait=True)
        if os.fstat(fd).st_nlink:
            return fd, tmp
        os.close(fd)  # a clean-up took it for stale before it was locked: make another
    raise FileExistsError(errno.EEXIST, "could not create a temporary file", str(path))


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file, or a folder's entries, to the disk (folders: POSIX only)."""
    if os.name == "nt" and Path(path).is_dir():
        return
    fd = os.open(path, os.O_RDONLY | _CLOEXEC)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[BinaryIO], object]) -> Path:
    """Call ``write(f)`` with ``f`` a binary file open on a new temporary file beside ``path``, then rename it
    into place.

    The file is flushed to the disk before the rename and the folder after it, so once this returns the
    new file survives a power cut; a crash or an error leaves either the old file or the new one, never
    a half-written file, and the temporary file is removed. A link at ``path`` is replaced, never
    followed. An error names ``path``.
    """
    path = Path(path)
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_temp(path)
        with os.fdopen(fd, "wb") as f:  # the lock goes with the descriptor: held until renamed
            write(f)
            f.flush()
            os.fsync(f.fileno())
            os.replace(tmp, path)
        fsync_path(path.parent)
    except BaseException as err:
        if tmp is not None:
            _unlink(tmp)
        if isinstance(err, OSError) and err.filename != str(path) and err.errno is not None:
            raise OSError(err.errno, err.strerror, str(path)) from err
        raise
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and durably."""
    return atomic_write(path, lambda f: f.write(data))


def open_new(path: str | os.PathLike) -> BinaryIO:
    """A binary file at ``path`` (unbuffered) for a writer that goes on appending to it (a part file): made
    empty beside it and renamed over whatever was there (a link is replaced, not followed), written through
    its own descriptor, never reopened by name. It stays locked until it is closed."""
    path = Path(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = _create_temp(path)
    except OSError as err:
        raise OSError(err.errno, err.strerror, str(path)) from err
    try:
        os.replace(tmp, path)
    except BaseException:
        os.close(fd)
        _unlink(tmp)
        raise
    return os.fdopen(fd, "wb", buffering=0)


def _open_no_link(path: str | os.PathLike, flags: int) -> int:
    """``os.open`` of an existing or new file (mode ``0o666`` less the umask) that refuses a symbolic link
    at ``path`` with one clear error instead of following it."""
    try:
        return os.open(path, flags | os.O_CREAT | _NOFOLLOW | _CLOEXEC, 0o666)
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise OSError(errno.ELOOP, "a symbolic link: ifan does not write through links", str(path)) from None
        raise


def open_append(path: str | os.PathLike, encoding: str = "utf-8"):
    """``path`` opened to append text (created if missing); a symbolic link there is refused, not followed."""
    return os.fdopen(_open_no_link(path, os.O_WRONLY | os.O_APPEND), "a", encoding=encoding)


def _unlink(path: Path) -> None:
    try:
        os.unlink(path)
    except FileNotFoundError:
        pass


def _take_if_stale(path: Path) -> bool:
    """Delete the temporary file ``path`` if its writer is gone (nobody holds its lock): True when deleted."""
    try:
        fd = os.open(path, os.O_RDONLY | _NOFOLLOW | _CLOEXEC)
    except OSError:
        return False  # gone, or a link: not a temporary of ours
    try:
        locked = _lock(fd, wait=False)
        if locked is False:
            return False  # a live writer
        st = os.fstat(fd)
        if locked is None and time.time() - st.st_mtime < UNLOCKED_STALE_SECONDS:
            return False
        now = os.lstat(path)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            return False
        os.unlink(path)
        return True
    except OSError:
        return False
    finally:
        os.close(fd)


def remove_stale_temps(folder: str | os.PathLike, names: Container[str] | None = None) -> list[Path]:
    """Delete the temporary files that killed :func:`atomic_write` calls left in ``folder`` (not below it),
    never one a live process is writing (it holds its lock); with ``names``, only those of targets so named
    (the files one writer owns)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    wanted = None if names is None else {_temp_name(n) for n in names}
    stale = sorted(p for p in folder.iterdir() if TEMP_RE.match(p.name) and p.is_file() and not p.is_symlink()
                   and (wanted is None or p.name[1:-13] in wanted))  # .NAME.XXXXXXXX.tmp
    return [p for p in stale if _take_if_stale(p)]


class LockBusy(OSError):
    """The lock is held by another live process: ``strerror`` says which (``pid 12 on host, since 10:02:03``)."""


def hold_lock(path: str | os.PathLike, wait: bool = False) -> int | None:
    """Take the lock file ``path`` for this process: its descriptor, for :func:`release_lock`; None where
    locks are not available. A killed holder's lock goes with it (the kernel releases it); a link at
    ``path`` is refused. With ``wait``, wait for another holder to let go instead of raising.

    Raises:
        LockBusy: another live process holds it (without ``wait``).
    """
    path = Path(path)
    while True:
        fd = _open_no_link(path, os.O_RDWR)
        locked = _lock(fd, wait=wait)
        if locked is False:
            holder = os.read(fd, 200).decode(errors="replace").strip() or "another process"
            os.close(fd)
            raise LockBusy(errno.EBUSY, holder, str(path))
        if locked is None:
            os.close(fd)
            return None
        try:
            same = os.fstat(fd).st_ino == os.lstat(path).st_ino
        except FileNotFoundError:
            same = False
        if same:  # not a file its last holder removed after this process opened it
            note = f"pid {os.getpid()} on {socket.gethostname()}, since {time.strftime('%H:%M:%S')}"
            try:  # who holds it, for the message another process gets (a full disk may refuse it: no matter)
                os.ftruncate(fd, 0)
                os.write(fd, note.encode())
            except OSError:
                pass
            return fd
        os.close(fd)


def release_lock(path: str | os.PathLike, fd: int | None, remove: bool = True) -> None:
    """Give up a lock from :func:`hold_lock`, and remove its file (unless not ``remove``)."""
    if fd is not None:
        if remove:
            _unlink(Path(path))
        os.close(fd)


def split_glob(pattern: str) -> tuple[Path, tuple[str, ...]]:
    """A glob's fixed leading folder and the parts from the first one with a wildcard on."""
    parts = Path(pattern).parts
    n = next((i for i, part in enumerate(parts) if GLOB_CHARS & set(part)), len(parts))
    return (Path(*parts[:n]) if n else Path(".")), parts[n:]


def _matches(name: str, part: str) -> bool:
    """``glob``'s rule for one path part: wildcards match hidden names only when ``part`` starts with a dot."""
    return (not name.startswith(".") or part.startswith(".")) and fnmatch.fnmatch(name, part)


def _expand(base: Path, parts: tuple[str, ...], visited: dict[int, set[tuple[int, int]]]):
    """Paths below ``base`` matching ``parts``; ``visited[len(parts)]``: the real folders that ``**`` entered."""
    if not parts:
        yield base
        return
    head, rest = parts[0], parts[1:]
    if head == "**":
        try:
            st = os.stat(base)
        except OSError:
            return
        entered = visited.setdefault(len(parts), set())
        entered.add((st.st_dev, st.st_ino))
        yield from _expand(base, rest, visited)  # ** matches no folder, or one more below
        for entry in _scandir(base):
            try:
                if entry.name.startswith(".") or not entry.is_dir():
                    continue
                st = entry.stat()  # follows a link: the real folder
            except OSError:
                continue
            if (st.st_dev, st.st_ino) not in entered:
                yield from _expand(base / entry.name, parts, visited)
    elif GLOB_CHARS & set(head):
        for entry in _scandir(base):
            if _matches(entry.name, head):
                yield from _expand(base / entry.name, rest, visited)
    elif os.path.lexists(base / head):
        yield from _expand(base / head, rest, visited)


def _scandir(folder: Path) -> list[os.DirEntry]:
    try:
        with os.scandir(folder) as it:
            return sorted(it, key=lambda e: e.name)
    except OSError:  # not a folder, gone, or unreadable: nothing matches below it
        return []


def expand_glob(pattern: str) -> list[Path]:
    """The paths matching ``pattern`` (``*``, ``?``, ``[...]`` within a name, ``**`` for any folders
    below), sorted, once each. As :func:`glob.glob` with ``recursive=True``, but ``**`` enters each
    real folder once, so links that loop back (``a/b -> a``) end the walk instead of repeating it."""
    base, parts = split_glob(pattern)
    return sorted(set(_expand(base, parts, {})))
