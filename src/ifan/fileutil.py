"""Durable atomic file writes: a temporary file beside the target, fsync, rename, fsync the folder.

The temporary file is named ``.NAME.XXXXXXXX.tmp`` (eight random characters) and created with mode
``0o666`` less the umask, as any new file (and the target gets that mode, whatever the writer
did); :func:`remove_stale_temps` deletes the ones a killed
process left behind.
"""

from __future__ import annotations

import os
import re
import secrets
import stat
from collections.abc import Callable
from pathlib import Path

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


def remove_stale_temps(folder: str | os.PathLike) -> list[Path]:
    """Delete the temporary files of interrupted :func:`atomic_write` calls in ``folder`` (not below it)."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    stale = [p for p in folder.iterdir() if TEMP_RE.match(p.name) and p.is_file() and not p.is_symlink()]
    for p in stale:
        p.unlink(missing_ok=True)
    return stale
