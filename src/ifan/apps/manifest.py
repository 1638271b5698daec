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

from ifan.apps.files import FileReport
from ifan.fileutil import atomic_write_bytes, fsync_path

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
    """Appends one rank's records to its part file, one flushed line per input."""

    def __init__(self, manifest: Path, rank: int) -> None:
        self.path = part_path(manifest, rank)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = open(self.path, "w", encoding="utf-8")  # noqa: SIM115 - open for the whole run

    def add(self, rec: dict) -> None:
        self._file.write(json.dumps(rec) + "\n")
        self._file.flush()

    def close(self) -> None:
        self._file.close()
        fsync_path(self.path)


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
        try:
            obj = json.loads(line)
        except json.JSONDecodeError:
            obj = None
        if isinstance(obj, dict) and isinstance(obj.get("summary"), dict):
            summary = obj["summary"]
        elif isinstance(obj, dict) and isinstance(obj.get("input"), str) and obj.get("status") in STATUSES:
            records.append(obj)
        else:
            raise ValueError(f"{path}:{number}: not a manifest line (expected a JSON record with 'input' and "
                             f"'status' {'/'.join(STATUSES)}, or the summary, as ifan deblur writes them)")
    return records, summary
