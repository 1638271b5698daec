"""The file loop over many inputs: reading and writing beside the network, batches of same-size
photos, and the memory the I/O in flight may take."""

from __future__ import annotations

import time

import numpy as np
import pytest
import torch
from helpers import make_archive

from ifan.apps.files import OutputOptions, collect_inputs
from ifan.apps import pipeline
from ifan.apps.pipeline import deblur_files
from ifan.inference import Deblurrer, MemoryBudgetError


def archive_items(tmp_path):
    """The files of the test archive (``helpers.make_archive``), in the order the loop takes them."""
    make_archive(tmp_path / "archive")
    return collect_inputs([tmp_path / "archive"]).files


def record_batch_sizes(deblurrer: Deblurrer, monkeypatch) -> list[int]:
    """Patch ``deblurrer.deblur_batch`` to record how many photos each call takes; returns the record."""
    seen, real = [], deblurrer.deblur_batch
    monkeypatch.setattr(deblurrer, "deblur_batch", lambda images, **kw: seen.append(len(images)) or real(images, **kw))
    return seen


def test_overlapped_io_and_batches_give_the_outputs_of_the_plain_loop(tmp_path, weights):
    items = archive_items(tmp_path)
    deblurrer = Deblurrer.from_pretrained(weights, device="cpu", precision="fp32")
    results = {}
    for overlap, batch in ((False, 1), (True, 1), (True, 3)):
        out = tmp_path / f"out-{overlap}-{batch}"
        counts = deblur_files(deblurrer, items, OutputOptions(out_dir=out, defocus_raw="npy"), overlap=overlap,
                              batch=batch)
        assert (counts.done, counts.skipped, counts.failed) == (8, 0, 0)
        results[overlap, batch] = {p.relative_to(out): np.load(p) for p in out.rglob("*.npy")}
    assert len(results[False, 1]) == 8
    assert all(np.array_equal(results[False, 1][k], v) for k, v in results[True, 1].items())
    assert all(np.allclose(results[False, 1][k], v, atol=1e-5) for k, v in results[True, 3].items())


def test_same_size_photos_go_through_the_network_together(tmp_path, weights, monkeypatch):
    items = archive_items(tmp_path)
    deblurrer = Deblurrer.from_pretrained(weights, device="cpu")
    seen = record_batch_sizes(deblurrer, monkeypatch)
    counts = deblur_files(deblurrer, items, OutputOptions(out_dir=tmp_path / "out"), batch=4)
    # in order: 2019/p1 p2 p4 p5 p7, 2020/p0 p3 p6, where p1, p5, p7 and p3 are 24x32: p5 and p7 are neighbours
    assert counts.done == 8 and seen == [2]


def test_the_memory_plan_leaves_room_for_the_io_in_flight_or_waits_for_it(tmp_path, weights, monkeypatch):
    deblurrer = Deblurrer.from_pretrained(weights, device="cpu")
    reserves, real = [], deblurrer.plan

    def plan(h, w, defocus=False, *, batch=1, reserve=0):
        reserves.append(reserve)
        if reserve:
            raise MemoryBudgetError("no room beside the reads and writes in flight")
        return real(h, w, defocus, batch=batch)

    monkeypatch.setattr(deblurrer, "plan", plan)
    real_read = pipeline.read_job
    monkeypatch.setattr(pipeline, "read_job", lambda *a: time.sleep(0.05) or real_read(*a))  # reads in flight
    items = archive_items(tmp_path)
    counts = deblur_files(deblurrer, items, OutputOptions(out_dir=tmp_path / "out"))
    assert counts.done == 8 and any(reserves) and 0 in reserves  # the I/O yielded instead of failing a file


@pytest.mark.cuda
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA device")
def test_on_a_gpu_same_size_photos_are_batched_by_default(tmp_path, weights, monkeypatch):
    items = archive_items(tmp_path)
    gpu = Deblurrer.from_pretrained(weights, device="cuda")
    seen = record_batch_sizes(gpu, monkeypatch)
    assert deblur_files(gpu, items, OutputOptions(out_dir=tmp_path / "gpu", defocus_raw="npy")).done == 8
    assert seen == [2]  # p5 and p7, neighbours of one size
    cpu = Deblurrer.from_pretrained(weights, device="cpu", precision="fp32")
    assert deblur_files(cpu, items, OutputOptions(out_dir=tmp_path / "cpu", defocus_raw="npy")).done == 8
    for path in (tmp_path / "cpu").rglob("*.npy"):
        assert np.allclose(np.load(path), np.load(tmp_path / "gpu" / path.relative_to(tmp_path / "cpu")), atol=0.05)
