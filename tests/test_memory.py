"""Memory: size parsing, the memory model, and glibc heap allocation."""

from __future__ import annotations

import pytest

from ifan import create_model
from ifan.inference import memory
from ifan.inference.memory import memory_model, parse_size


def test_parse_size():
    assert parse_size("4G") == parse_size("4GiB") == 4 * 2**30
    assert parse_size("4GB") == 4 * 10**9
    assert parse_size("512m") == 512 * 2**20 and parse_size("1.5K") == 1536 and parse_size("100") == 100
    for bad in ("", "4X", "-1G", "0"):
        with pytest.raises(ValueError):
            parse_size(bad)


def test_memory_model_grows_with_width_and_size():
    small = memory_model(create_model("ifan", channels=8).config)
    large = memory_model(create_model("ifan", channels=32).config)
    assert large.per_pixel > small.per_pixel
    assert large.estimate(720, 1280) > large.estimate(360, 640) > 0


_HEAP_PROBE = """
import resource, torch
from ifan.inference import memory

def faults_of_second_allocation():
    torch.empty(20 * 2**20).fill_(1.0)  # 80 MiB, touched, freed (larger: an aligned 64 MiB block fits in it)
    before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
    torch.empty(16 * 2**20).fill_(2.0)
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before

torch.set_num_threads(1)
counts = [faults_of_second_allocation()]
with memory.heap_allocation():
    with memory.heap_allocation():  # nested users share one setting
        counts.append(faults_of_second_allocation())
    counts.append(memory._heap_users)
counts.append(memory._heap_users)
counts.append(faults_of_second_allocation())
print(*counts)
"""


@pytest.mark.slow
@pytest.mark.skipif(memory._LIBC is None, reason="glibc only")
def test_heap_allocation_reuses_freed_blocks_without_page_faults():
    # in a fresh process: how glibc serves a block depends on the allocation history
    import os
    import subprocess
    import sys
    from pathlib import Path

    env = {**os.environ, "PYTHONPATH": str(Path(memory.__file__).parents[2])}
    out = subprocess.run([sys.executable, "-c", _HEAP_PROBE], capture_output=True, text=True, env=env, check=True)
    before, inside, users_inner, users_after, after = (int(v) for v in out.stdout.split())
    pages = 64 * 2**20 // 4096
    assert before > pages // 2  # glibc's default: a fresh mmap, faulted in again
    assert inside < pages // 10  # heap mode: the freed block is reused as it is
    assert (users_inner, users_after) == (1, 0)
    assert after > pages // 2  # defaults restored
