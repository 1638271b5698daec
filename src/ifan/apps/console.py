"""What ``ifan deblur`` shows on the terminal: progress bars and one line per input (:class:`ConsoleListener`)."""

from __future__ import annotations

import sys

from ifan.apps.files import FileReport, InputFile, Listener
from ifan.inference import TilePlan

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
            self._tqdm.write(f"{item.path}: {plan}", file=sys.stderr)

    def tile(self, done: int, total: int) -> None:
        if self.tiles is not None:
            self.tiles.total, self.tiles.n = total, done
            self.tiles.refresh()
            if done >= total:
                self._close_tiles()

    def finished(self, report: FileReport) -> None:
        if report.status == "failed":
            self._tqdm.write(f"{self.prog}: error: {report.message}", file=sys.stderr)
        elif not self.quiet:
            self._tqdm.write(report.message, file=sys.stderr)
        self.images.update(1)

    def _close_tiles(self) -> None:
        if self.tiles is not None:
            self.tiles.close()
            self.tiles = None

    def close(self) -> None:
        self._close_tiles()
        self.images.close()
