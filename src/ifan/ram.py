"""The RAM probes, without torch (``ifan synth`` checks its sizes with them and never imports torch):
this process's resident memory and the memory available to it. :mod:`ifan.inference.memory` plans
with them."""

from __future__ import annotations

import os


def process_rss() -> int | None:
    """Resident memory of this process in bytes (Linux ``/proc``), or None where unknown."""
    try:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError, AttributeError):
        return None


def available_ram() -> int | None:
    """``MemAvailable`` (Linux), else total physical memory, else None."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (OSError, ValueError, AttributeError):
        return None
