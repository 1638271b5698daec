"""File-system helpers: durable atomic writes, and a glob that survives symbolic-link loops.

Atomic writes: a temporary file beside the target, fsync, rename, fsync the folder.

The temporary file is named ``.NAME.XXXXXXXX.tmp`` (eight random characters) and created with mode
``0o666`` less the umask, as any new file (and the target gets that mode, whatever the writer
did); :func:`remove_stale_temps` deletes the ones a killed
process left behind.
"""

from __future__ import annotations

import fnmatch
import os
import re
import secrets
import stat
from collections.abc import Callable, Container
from pathlib import Path

GLOB_CHARS = frozenset("*?[")
TEMP_RE = re.compile(r"^\..+\.[a-z0-9_]{8}\.tmp$")  # also the names of tempfile.mkstemp


def _create_temp(path: Path) -> Path:
    """Create an empty, new temporary file beside ``path`` (mode 0o666 less the umask)."""
    for _ in range(100):
        tmp = path.parent / f".{path.name}.{secrets.token_hex(4)}.tmp"
        try:
            os.close(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666))
        except FileExistsError:
            continue
        return tmp
    raise FileExistsError(f"{path.parent}: could not create a temporary file for {path.name}")


def fsync_path(path: str | os.PathLike) -> None:
    """Flush a file, or a folder's entries, to the disk (folders: POSIX only)."""
    if os.name == "nt" and Path(path).is_dir():
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def atomic_write(path: str | os.PathLike, write: Callable[[str], object]) -> Path:
    """Call ``write(tmp_path)`` on a temporary file beside ``path``, then rename it into place.

    The file is flushed to the disk before the rename and the folder after it, so once this
    returns the new file survives a power cut; a crash or an error leaves either the old file
    or the new one, never a half-written file, and the temporary file is removed.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _create_temp(path)
    mode = stat.S_IMODE(tmp.stat().st_mode)
    try:
        write(str(tmp))
        if stat.S_IMODE(tmp.stat().st_mode) != mode:  # a writer that made its own file (safetensors does)
            os.chmod(tmp, mode)
        fsync_path(tmp)
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_path(path.parent)
    return path


def atomic_write_bytes(path: str | os.PathLike, data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically and durably."""
    return atomic_write(path, lambda tmp: Path(tmp).write_bytes(data))


def remove_stale_temps(folder: str | os.PathLike, names: Container[str] | None = None) -> list[Path]:
    """Delete the temporary files of interrupted :func:`atomic_write` calls in ``folder`` (not below it);
    with ``names``, only those of targets so named (the files one writer owns)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if TEMP_RE.match(p.name) and p.is_file() and not p.is_symlink()
             and (names is None or p.name[1:-13] in names)]  # .NAME.XXXXXXXX.tmp
    for p in stale:
        p.unlink(missing_ok=True)
    return stale


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
