"""The run manifest of ``ifan deblur``: one JSON line per input, then one summary line.

::

    {"input": "/photos/2019/a.jpg", "status": "done", "output": "/out/2019/a_deblurred.jpg",
     "outputs": ["/out/2019/a_deblurred.jpg"], "seconds": 31.2, "size": [4000, 3000], "bytes": 5123456,
     "rank": 1, "error": null}
    {"summary": {"files": 1, "done": 1, "skipped": 0, "failed": 0, "carried": 0, "seconds": 35.0,
                 "photos_per_hour": 102.9, "ranks": 2, ...}}

A record: ``input`` (absolute path), ``status`` (``done``, ``skipped`` or ``failed``), ``output`` (the
result image: written, existing (why it was skipped) or planned), ``outputs`` (every file this run
wrote for it: the result and its defocus maps), ``seconds`` (in the network), ``size`` (``[width,
height]`` once read), ``bytes`` (of the input file), ``rank`` (the process that took it), ``error``
(the one-line message of a failure, else null). The summary counts the records, ``carried`` of them
unchanged from the manifest a ``--retry-failed`` run retried, and gives this run's wall time and the
photos it deblurred per hour.

While a run goes, each rank appends its records to its own part file beside the manifest
(:func:`part_path`, flushed per input: a killed run leaves what it finished); at the end rank 0
writes the manifest (every rank's records, sorted by input) atomically and the parts are removed.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from pathlib import Path

from ifan.apps.steps import FileReport
from ifan.fileutil import atomic_write_bytes, open_new

MANIFEST_NAME = "ifan-manifest.jsonl"
STATUSES = ("done", "skipped", "failed")


def record(report: FileReport, rank: int) -> dict:
    """The manifest record of one input's report."""
    try:
        size_bytes: int | None = os.path.getsize(report.path)
    except OSError:
        size_bytes = None
    return {
        "input": os.path.abspath(report.path),
        "status": report.status,
        "output": None if report.target is None else os.path.abspath(report.target),
        "outputs": [os.path.abspath(p) for p in report.outputs],
        "seconds": round(report.seconds, 3),
        "size": None if report.plan is None else [report.plan.width, report.plan.height],
        "bytes": size_bytes,
        "rank": rank,
        "error": report.message if report.status == "failed" else None,
    }


def summarize(records: list[dict], seconds: float, **extra) -> dict:
    """The summary line's fields: counts of ``records`` by status, ``seconds`` of this run and the
    photos it deblurred per hour (``extra["done_now"]`` of them; default: all done records)."""
    counts = {status: sum(r["status"] == status for r in records) for status in STATUSES}
    done_now = extra.pop("done_now", counts["done"])
    return {"files": len(records), **counts, **extra, "seconds": round(seconds, 2),
            "photos_per_hour": round(3600 * done_now / seconds, 1) if seconds > 0 else None}


def part_path(manifest: Path, rank: int) -> Path:
    """Where ``rank`` appends its records while the run goes: ``NAME.rankR.part.jsonl``."""
    return manifest.with_name(f"{manifest.stem}.rank{rank}.part{manifest.suffix}")


def remove_parts(manifest: Path) -> None:
    """Delete the part files beside ``manifest`` (this run's, merged, and any a killed run left)."""
    for part in manifest.parent.glob(f"{manifest.stem}.rank*.part{manifest.suffix}"):
        part.unlink(missing_ok=True)


class PartWriter:
    """Appends one rank's records to its part file, one line per input, written at once (a new file, which
    replaces a link at its name rather than follow it: :func:`ifan.fileutil.open_new`).

    A line that cannot be written (a full disk) is cut back out, and no more are tried: ``saved`` counts the
    records the file holds, ``error`` says why the others are not there. A part that holds no record is
    removed when closed.

    Raises:
        OSError: the file cannot be made.
    """

    def __init__(self, manifest: Path, rank: int) -> None:
        self.path = part_path(manifest, rank)
        self.saved, self.error = 0, None
        self._size = 0
        self._file = open_new(self.path)

    def add(self, rec: dict) -> None:
        if self.error is not None:
            return
        line = (json.dumps(rec) + "\n").encode()
        try:
            done = 0
            while done < len(line):
                done += self._file.write(line[done:])
        except OSError as err:
            self.error = err.strerror or str(err)
            try:
                os.ftruncate(self._file.fileno(), self._size)  # no torn last line
            except OSError:
                pass
            return
        self._size += len(line)
        self.saved += 1

    def close(self) -> None:
        try:
            os.fsync(self._file.fileno())
        except OSError as err:
            self.error = self.error or err.strerror or str(err)
        self._file.close()
        if not self.saved:
            self.path.unlink(missing_ok=True)

    def state(self) -> tuple[str, int, str | None]:
        """``(path, records saved, why not all)`` for the summary line."""
        return str(self.path), self.saved, self.error


def write_manifest(path: Path, records: Iterable[dict], summary: dict) -> Path:
    """Write the records and the summary line to ``path``, atomically and durably."""
    lines = [json.dumps(r) for r in records] + [json.dumps({"summary": summary})]
    return atomic_write_bytes(path, ("\n".join(lines) + "\n").encode())


def read_manifest(path: str | os.PathLike) -> tuple[list[dict], dict | None]:
    """The records and the summary (None for a part file or a manifest cut short) of a manifest.

    Raises:
        ValueError: the file cannot be read, or a line is not a record of this format (one line naming
            the file, the line and what is expected).
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as err:
        raise ValueError(f"{path}: cannot read it as a manifest ({getattr(err, 'strerror', None) or err})") from None
    records, summary = [], None
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        obj, kind = _parse_line(line)
        if kind == "summary":
            summary = obj["summary"]
        elif kind == "record":
            records.append(obj)
        else:
            raise ValueError(f"{path}:{number}: not a manifest line (expected a JSON record with 'input' and "
                             f"'status' {'/'.join(STATUSES)}, or the summary, as ifan deblur writes them)")
    return records, summary


def _parse_line(line: str | bytes) -> tuple[object, str | None]:
    """A manifest line's object and kind (``"record"``, ``"summary"``, or None: not a manifest line, which
    includes JSON nested too deeply to parse)."""
    try:
        obj = json.loads(line)
    except (ValueError, RecursionError):
        return None, None
    if isinstance(obj, dict) and isinstance(obj.get("summary"), dict):
        return obj, "summary"
    if isinstance(obj, dict) and isinstance(obj.get("input"), str) and obj.get("status") in STATUSES:
        return obj, "record"
    return obj, None


def is_manifest(path: str | os.PathLike) -> bool:
    """Whether ``path`` is a manifest (or a part file) of ``ifan deblur``, judged by its first line; an empty
    file counts too (replacing it loses nothing)."""
    try:
        with open(path, "rb") as f:
            first = f.readline(1 << 20)
    except OSError:
        return False
    return not first or _parse_line(first)[1] is not None

