"""What ``ifan deblur`` shows on the terminal: progress bars and one line per input
(:class:`ConsoleListener`); in a run of several processes, one bar for the whole run on rank 0 and the
errors of every rank (:class:`RankListener`, :class:`RunProgress`).
"""

from __future__ import annotations

import sys
import threading

from ifan.apps.files import InputFile
from ifan.apps.steps import FileReport, Listener
from ifan.fileutil import shown
from ifan.inference import TilePlan

PROGRESS_KEY = "ifan-deblur/finished"  # the run's counter of finished inputs in torch.distributed's store
POLL_SECONDS = 0.5


def printable(line: str) -> str:
    """``line`` with every character a terminal would not print as itself (a line break, an escape) written
    as its escape (``\\n``, ``\\x1b``): one message is one line, and a name cannot drive the terminal."""
    return line if line.isprintable() else "".join(c if c.isprintable() else repr(c)[1:-1] for c in line)


def _tqdm():
    from tqdm import tqdm

    return tqdm


class ConsoleListener(Listener):
    """Progress bars on stderr (inputs, and the tiles of the photo in the network) and one line per input.

    Args:
        total: how many inputs will come.
        quiet: only errors (and no bars).
        verbose: also each memory plan.
        prog: the command's name in error lines.
    """

    def __init__(self, total: int, quiet: bool = False, verbose: bool = False, prog: str = "ifan deblur") -> None:
        self._tqdm, self.quiet, self.verbose, self.prog = _tqdm(), quiet, verbose, prog
        self.images = self._tqdm(total=total, desc="images", unit="img", disable=quiet or None, position=0)
        self.tiles = None

    def planned(self, item: InputFile, plan: TilePlan) -> None:
        self._close_tiles()
        self.tiles = self._tqdm(total=plan.num_tiles, desc=item.path.name, unit="tile", leave=False,
                                disable=self.quiet or None, position=1)
        if self.verbose:
            self._tqdm.write(f"{shown(item.path)}: {plan}", file=sys.stderr)

    def tile(self, done: int, total: int) -> None:
        if self.tiles is not None:
            self.tiles.total, self.tiles.n = total, done
            self.tiles.refresh()
            if done >= total:
                self._close_tiles()

    def finished(self, report: FileReport) -> None:
        if report.status == "failed":
            self._tqdm.write(printable(f"{self.prog}: error: {report.message}"), file=sys.stderr)
        elif not self.quiet:
            self._tqdm.write(printable(report.message), file=sys.stderr)
        for note in report.notes if self.verbose else ():
            self._tqdm.write(printable(f"{shown(report.path)}: note: {note}"), file=sys.stderr)
        self.images.update(1)

    def _close_tiles(self) -> None:
        if self.tiles is not None:
            self.tiles.close()
            self.tiles = None

    def close(self) -> None:
        self._close_tiles()
        self.images.close()


class RunProgress:
    """One bar for a run of several processes: each rank adds its finished inputs to a counter in the
    process group's key-value store (:data:`PROGRESS_KEY`); rank 0 shows the total.

    Rank 0's bar is kept up by a thread that alone talks to the store, every :data:`POLL_SECONDS`
    (also while rank 0 waits for the others at the end).

    Args:
        store: a ``torch.distributed.Store`` every rank shares.
        rank: this process's rank.
        total: the inputs of the whole run.
        quiet: no bar.
    """

    def __init__(self, store, rank: int, total: int, quiet: bool = False) -> None:
        self.store, self.rank = store, rank
        self._pending, self._lock, self._stop = 0, threading.Lock(), threading.Event()
        self.bar, self._thread = None, None
        if rank == 0:
            self.bar = _tqdm()(total=total, desc="images (all ranks)", unit="img", disable=quiet or None)
            self._thread = threading.Thread(target=self._poll, name="ifan-progress", daemon=True)
            self._thread.start()

    def add(self, n: int = 1) -> None:
        """``n`` more inputs of this rank are finished."""
        if self.rank != 0:
            self.store.add(PROGRESS_KEY, n)
            return
        with self._lock:
            self._pending += n

    def _sync(self) -> int:
        with self._lock:
            pending, self._pending = self._pending, 0
        total = self.store.add(PROGRESS_KEY, pending)
        self.bar.n = total
        self.bar.refresh()
        return total

    def _poll(self) -> None:
        while not self._stop.wait(POLL_SECONDS):
            self._sync()

    def close(self) -> int | None:
        """Stop; on rank 0 the run's total of finished inputs (None elsewhere)."""
        if self._thread is None:
            return None
        self._stop.set()
        self._thread.join()
        total = self._sync()
        self.bar.close()
        return total


class RankListener(Listener):
    """A rank of a run of several processes: its errors (and with ``verbose`` its memory plans) as
    lines naming the rank, its finished inputs counted into the run's :class:`RunProgress`."""

    def __init__(self, progress: RunProgress, rank: int, verbose: bool = False, prog: str = "ifan deblur") -> None:
        self.progress, self.verbose, self.prefix = progress, verbose, f"{prog} [rank {rank}]"

    def planned(self, item: InputFile, plan: TilePlan) -> None:
        if self.verbose:
            _tqdm().write(f"{self.prefix}: {shown(item.path)}: {plan}", file=sys.stderr)

    def finished(self, report: FileReport) -> None:
        if report.status == "failed":  # through tqdm: rank 0's bar stays whole
            _tqdm().write(printable(f"{self.prefix}: error: {report.message}"), file=sys.stderr)
        for note in report.notes if self.verbose else ():
            _tqdm().write(printable(f"{self.prefix}: {shown(report.path)}: note: {note}"), file=sys.stderr)
        self.progress.add(1)
