"""The file loop (:func:`deblur_files`): the next photo is read and the previous result written while
the network runs, and on a GPU same-size photos go through the network together. ``ifan deblur`` runs
it over its inputs; the web page and the demo over one photo (:func:`deblur_file`).

Each input takes the steps of :mod:`ifan.apps.steps` in input order; only reading and writing move to
a small pool of I/O threads (:data:`IO_THREADS`):

* reads run ``batch`` inputs ahead (one on a CPU): the next photo is decoded during the network;
* writes run one batch behind: the previous result is encoded and written during the network, and
  waited for before the next results are handed to the pool;
* claims (:func:`~ifan.apps.steps.claim_job`) and the network stay on the calling thread, in input
  order, so what a sequential loop guarantees holds (no input written, no file written twice).

Memory stays bounded: at most ``batch`` photos are read ahead and one batch of results waits for
its writes. On a CPU each memory plan leaves room for the reads and writes in flight
(:data:`IO_BYTES_PER_PIXEL`); where that does not fit, they are waited for and the plan is made again
without them. ``overlap=False`` takes the same steps one after the other (for measurements, and
for one photo).
"""

from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np

from ifan.apps.files import Claims, InputFile, OutputOptions, find_collisions, path_key, planned_outputs
from ifan.apps.steps import FileReport, Job, Listener, claim_job, failure, read_job, write_job
from ifan.inference import Deblurrer, MemoryBudgetError, TilePlan
from ifan.io import ImageReadError, read_size

IO_THREADS = 2
DEFAULT_GPU_BATCH = 4
# Memory of the I/O in flight beside the network, bytes per pixel: upper bounds from the layouts (16-bit
# RGBA), not measurements. A read holds the decoded samples and the float image it returns (8 + 16); a
# write holds its quantized samples, a grey copy and the encoded file (8 + 4 + 8) beside the result.
IO_BYTES_PER_PIXEL = {"read": 24, "write": 20}


@dataclass
class Counts:
    """How many inputs were deblurred, skipped and failed."""

    done: int = 0
    skipped: int = 0
    failed: int = 0

    def add(self, status: str) -> None:
        setattr(self, status, getattr(self, status) + 1)

    def __str__(self) -> str:
        return f"{self.done} deblurred, {self.skipped} skipped, {self.failed} failed"


class _Inline:
    """An executor that runs each call at once: the loop without overlap."""

    def submit(self, fn: Callable, *args) -> Future:
        future: Future = Future()
        future.set_result(fn(*args))
        return future

    def shutdown(self, wait: bool = True, cancel_futures: bool = False) -> None:
        """Nothing runs in the background."""


def _ready(report: FileReport) -> Future:
    future: Future = Future()
    future.set_result(report)
    return future


def _guarded(path, step: Callable, *args):
    """``step(*args)``, or the failure of ``path``: one file never stops the others."""
    try:
        return step(*args)
    except Exception as err:  # noqa: BLE001 - an unforeseen error fails that file, named, not the run
        return failure(path, err)


def default_batch(deblurrer: Deblurrer) -> int:
    """Photos per forward pass: :data:`DEFAULT_GPU_BATCH` on CUDA, 1 on a CPU (its threads already
    share one image)."""
    return DEFAULT_GPU_BATCH if deblurrer.device.type == "cuda" else 1


class _Loop:
    """The state of one :func:`deblur_files` call."""

    def __init__(self, deblurrer: Deblurrer, items: Sequence[InputFile], options: OutputOptions,
                 listener: Listener, run_items: Sequence[InputFile], claims: Claims | None, overlap: bool,
                 batch: int) -> None:
        self.deblurrer, self.items, self.options, self.listener = deblurrer, items, options, listener
        self.protected = frozenset(item.path.resolve() for item in run_items)
        self.refused = find_collisions(run_items, options)
        self.claims = claims if claims is not None else Claims(
            path_key(p) for item in run_items for p, _ in planned_outputs(item, options))
        self.batch = batch
        self.reserve_io = overlap and deblurrer.device.type == "cpu"  # a GPU's budget is its own memory
        self.pool = ThreadPoolExecutor(IO_THREADS, thread_name_prefix="ifan-io") if overlap else _Inline()
        self.reads: dict[int, Future] = {}
        self.next_read = 0
        self.held: tuple[int, Job | FileReport] | None = None  # taken, but not batched with the one before
        self.writes: deque[tuple[Job | None, np.ndarray | None, np.ndarray | None, Future]] = deque()
        self.counts = Counts()
        self.last: FileReport | None = None  # the report handed out last

    # -- reading and claiming, in input order -----------------------------------------------------
    def read_ahead(self, last: int) -> None:
        """Start reading every input up to index ``last``."""
        while self.next_read <= min(last, len(self.items) - 1):
            item = self.items[self.next_read]
            if item.path in self.refused:
                self.reads[self.next_read] = _ready(FileReport(item.path, "failed", self.refused[item.path]))
            else:
                self.reads[self.next_read] = self.pool.submit(_guarded, item.path, read_job, self.deblurrer, item,
                                                              self.options)
            self.next_read += 1

    def take(self, index: int) -> Job | FileReport:
        """Input ``index``, read and claimed (a job), or its report."""
        if self.held is not None and self.held[0] == index:
            got, self.held = self.held[1], None
            return got
        item = self.items[index]
        self.listener.started(item, index, len(self.items))
        got = self.reads.pop(index).result()
        if isinstance(got, Job):
            got = _guarded(item.path, claim_job, got, self.options, self.protected, self.claims)
        return got

    # -- the network ------------------------------------------------------------------------------
    def in_flight(self) -> int:
        """Bytes the reads and writes now in flight may still add (see :data:`IO_BYTES_PER_PIXEL`)."""
        reading = sum(self.pixels(i) for i, f in self.reads.items() if not f.done())
        writing = sum(job.image.rgb.shape[0] * job.image.rgb.shape[1]
                      for job, _, _, f in self.writes if job is not None and not f.done())
        return IO_BYTES_PER_PIXEL["read"] * reading + IO_BYTES_PER_PIXEL["write"] * writing

    def pixels(self, index: int) -> int:
        try:
            h, w = read_size(self.items[index].path)
        except ImageReadError:
            return 0  # its read fails too
        return h * w

    def plan(self, h: int, w: int, defocus: bool, count: int) -> TilePlan:
        """The memory plan of ``count`` images of ``h x w``, leaving room for the I/O in flight."""
        reserve = self.in_flight() if self.reserve_io else 0
        try:
            return self.deblurrer.plan(h, w, defocus, batch=count, reserve=reserve)
        except MemoryBudgetError:
            if not reserve:
                raise
        for future in self.reads.values():  # the I/O yields: its memory is in use, or freed, when planning
            future.result()
        self.drain(wait=True)
        return self.deblurrer.plan(h, w, defocus, batch=count)

    def deblur(self, jobs: list[Job]) -> None:
        """Run same-size jobs through the network (together when they fit whole) and queue their writes."""
        first = jobs[0]
        try:
            plan = self.plan(*first.image.size, first.defocus, len(jobs))
        except Exception as err:  # noqa: BLE001 - e.g. the budget is used up: these files fail, named
            for job in jobs:
                self.report(failure(job.item.path, err, target=job.target))
            return
        if plan.tiled and len(jobs) > 1:
            for job in jobs:
                self.deblur([job])
            return
        for job in jobs:
            self.listener.planned(job.item, plan)
        start = time.perf_counter()
        try:
            if len(jobs) == 1:
                results = [self.deblurrer.deblur(first.image.rgb, return_defocus=first.defocus, plan=plan,
                                                 progress=self.listener.tile)]
            else:
                results = self.deblurrer.deblur_batch([job.image.rgb for job in jobs], return_defocus=first.defocus,
                                                      plan=plan)
                self.listener.tile(1, 1)
            blended = []
            for job, result in zip(jobs, results):
                rgb, defocus = result if job.defocus else (result, None)
                blended.append((*self.options.blend.apply(job.image.rgb, rgb, defocus, self.deblurrer.calibration),
                                defocus))  # the recomposed result and its mask (a --mask's size is checked in read_job)
        except Exception as err:  # noqa: BLE001 - out of memory, a device error: these files fail, named
            for job in jobs:
                self.report(failure(job.item.path, err, plan=plan, target=job.target))
            return
        seconds = (time.perf_counter() - start) / len(jobs)
        self.drain(wait=True)  # the writes behind, done during the network as a rule
        for job, (rgb, mask, defocus) in zip(jobs, blended):
            future = self.pool.submit(_guarded, job.item.path, write_job, job, rgb, defocus, self.options, plan,
                                      seconds, mask)
            self.writes.append((job, rgb, defocus, future))

    # -- reports, in input order ------------------------------------------------------------------
    def report(self, report: FileReport) -> None:
        self.writes.append((None, None, None, _ready(report)))

    def drain(self, wait: bool) -> None:
        """Hand out the reports, oldest first: all (``wait`` for their writes), or those ready."""
        while self.writes and (wait or self.writes[0][3].done()):
            job, rgb, defocus, future = self.writes.popleft()
            report = future.result()
            if job is not None and report.status != "failed":
                self.listener.result(job.item, job.image, rgb, defocus)
            self.counts.add(report.status)
            self.last = report
            self.listener.finished(report)

    def run(self) -> Counts:
        index, n = 0, len(self.items)
        try:
            while index < n:
                self.read_ahead(index + self.batch)
                got = self.take(index)
                index += 1
                if isinstance(got, FileReport):
                    self.report(got)
                    self.drain(wait=False)
                    continue
                jobs = [got]
                while len(jobs) < self.batch and index < n:
                    self.read_ahead(index + self.batch)
                    more = self.take(index)
                    if not (isinstance(more, Job) and more.image.size == got.image.size
                            and more.defocus == got.defocus):
                        self.held = (index, more)
                        break
                    jobs.append(more)
                    index += 1
                self.deblur(jobs)
            self.drain(wait=True)
        finally:
            self.pool.shutdown(wait=True, cancel_futures=True)
        return self.counts


def deblur_files(deblurrer: Deblurrer, items: Sequence[InputFile], options: OutputOptions = OutputOptions(), *,
                 listener: Listener = Listener(), run_items: Sequence[InputFile] | None = None,
                 claims: Claims | None = None, overlap: bool = True, batch: int | None = None) -> Counts:
    """Deblur ``items`` in order by the rules of :mod:`ifan.apps.files`: no input is ever written, no
    file twice, and inputs whose outputs would collide are refused (:func:`~ifan.apps.files.find_collisions`).
    Without ``overwrite`` no existing file is replaced: an input whose outputs all exist is skipped,
    one whose outputs exist in part gets only the others.

    Args:
        listener: hears each step on the calling thread; ``started`` and ``finished`` come in input
            order, but an input may start before the one before it is finished (its write is behind).
        run_items: all the inputs of the run when ``items`` is one process's share of it (default:
            ``items``): none of them is written, and their collisions are refused.
        claims: the run's claims when it has several processes (default: this loop's own, from
            ``run_items``' planned outputs).
        overlap: read and write in I/O threads while the network runs.
        batch: same-size photos per forward pass (default :func:`default_batch`).

    Returns:
        How many were deblurred, skipped and failed.
    """
    batch = default_batch(deblurrer) if batch is None else batch
    if batch < 1:
        raise ValueError(f"batch must be at least 1, got {batch}")
    return _Loop(deblurrer, items, options, listener, items if run_items is None else run_items, claims, overlap,
                 batch).run()


def deblur_file(deblurrer: Deblurrer, item: InputFile, options: OutputOptions = OutputOptions(), *,
                claims: Claims | None = None, listener: Listener = Listener()) -> FileReport:
    """Deblur one file (and write its defocus maps and mask): :func:`deblur_files` over ``[item]``, its
    steps one after the other. Problems come back in the report, not raised.

    Args:
        claims: the files the inputs of this run write (updated here); none is written twice.
        listener: hears the plan, the tiles and the result.
    """
    loop = _Loop(deblurrer, [item], options, listener, [item], claims, overlap=False, batch=1)
    loop.run()
    return loop.last
