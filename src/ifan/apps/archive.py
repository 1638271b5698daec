"""``ifan deblur`` as one run over an archive, in one process or several under ``torchrun``::

    ifan deblur ARCHIVE -o OUT                                   # one process
    torchrun --nproc_per_node K -m ifan deblur ARCHIVE -o OUT    # K processes (ranks); several machines
                                                                 # through torchrun's rendezvous

Every rank collects the same inputs, sorts them by path and takes every K-th (input ``i`` goes to rank
``i mod K``): a fixed split, checked to be the same list on every rank before anything is written.
Each rank runs the file loop (:func:`ifan.apps.pipeline.deblur_files`) over its share on its own
device (``cuda:LOCAL_RANK`` where there are GPUs, else its share of the CPU's threads), under the rules
of :mod:`ifan.apps.files` for the whole run: no rank writes an input, inputs whose outputs collide are
refused on every rank alike, each input belongs to one rank, and the outputs are claimed in the
process group's store (:class:`StoreClaims`), so no two ranks write one file. A rerun continues where
a run stopped (existing outputs are skipped); one failing file never stops the others.

The ranks talk through ``torch.distributed`` (gloo: only small Python objects cross) at the start (the
list check, the failures to retry) and at the end, when rank 0 gathers every rank's records into the
manifest (:mod:`ifan.apps.manifest`); a counter in the store keeps one progress bar for the whole run
(:class:`~ifan.apps.console.RunProgress`).
"""

from __future__ import annotations

import hashlib
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import torch
import torch.distributed as dist

from ifan.apps.console import ConsoleListener, RankListener, RunProgress, printable
from ifan.apps.files import Claims, InputFile, OutputOptions, collect_inputs, path_key, planned_outputs
from ifan.apps.manifest import MANIFEST_NAME, PartWriter, is_manifest, read_manifest, record, remove_parts, \
    summarize, write_manifest
from ifan.apps.pipeline import Counts, deblur_files
from ifan.apps.steps import FileReport, Listener
from ifan.fileutil import LockBusy, hold_lock, release_lock, remove_stale_temps, shown
from ifan.inference import Deblurrer
from ifan.inference.calibration import KAPPA
from ifan.inference.distributed import DistInfo, broadcast, setup, teardown

# The collectives at the end wait for the slowest rank's whole share (hours on a resumed archive whose
# unfinished files are all one rank's); a rank that dies ends the run through torchrun instead.
COLLECTIVE_TIMEOUT = timedelta(days=365)
PROG = "ifan deblur"


@dataclass(frozen=True)
class ArchiveOptions:
    """How ``ifan deblur`` runs (what it writes: :class:`~ifan.apps.files.OutputOptions`).

    Attributes:
        model: the model's name or file, for messages.
        device: ``auto``, ``cpu``, ``cuda``, ``cuda:N`` (under torchrun CUDA means ``cuda:LOCAL_RANK``).
        manifest: where the manifest goes (None: ``OUT/ifan-manifest.jsonl`` with an output folder, else none).
        retry_failed: a manifest: only the inputs it lists as failed are deblurred.
        threads: CPU threads per process (None: PyTorch's default in one process; under torchrun on
            CPUs, the CPU's threads divided between the processes of each machine).
        batch: photos per forward pass (None: :func:`ifan.apps.pipeline.default_batch`).
        overlap: read and write while the network runs.
        quiet: only errors and the summary; verbose: also the device and each memory plan.
    """

    model: str = ""
    device: str = "auto"
    manifest: Path | None = None
    retry_failed: Path | None = None
    threads: int | None = None
    batch: int | None = None
    overlap: bool = True
    quiet: bool = False
    verbose: bool = False


class StoreClaims(Claims):
    """The run's claims kept in the process group's store, shared by every rank: a file is claimed by
    the first input to set its key (``compare_set``, atomic in the store)."""

    def __init__(self, store: dist.Store, planned: Iterable[str]) -> None:
        super().__init__(planned)
        self.store = dist.PrefixStore("ifan-deblur/claims/", store)

    def held(self, key: str) -> bool:
        return self.store.check([key])

    def claim(self, key: str, owner: str) -> bool:
        return self.store.compare_set(key, "", owner).decode() == owner


def threads_per_process(requested: int | None, info: DistInfo) -> int | None:
    """CPU threads for this process: ``requested``; else, under torchrun on CPUs, the CPU's threads
    divided between this machine's processes (torchrun's ``LOCAL_WORLD_SIZE``); else None (PyTorch's)."""
    if requested is not None:
        if requested < 1:
            raise ValueError(f"--threads must be at least 1, got {requested}")
        return requested
    local = int(os.environ.get("LOCAL_WORLD_SIZE", "1"))
    if info.device.type != "cpu" or local <= 1:
        return None
    cpus = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
    return max(1, cpus // local)


def shard(files: Sequence[InputFile], info: DistInfo) -> list[InputFile]:
    """This rank's share of the sorted inputs: every ``world_size``-th, from its rank."""
    return list(files[info.rank::info.world_size])


def _say(info: DistInfo, message: str, everyone: bool = False) -> None:
    """A line on stderr from rank 0 (or from every rank, naming it)."""
    if info.enabled and everyone:
        print(printable(f"{PROG} [rank {info.rank}]: {message}"), file=sys.stderr, flush=True)
    elif info.is_main:
        print(printable(f"{PROG}: {message}"), file=sys.stderr, flush=True)


def _check_same_inputs(files: Sequence[InputFile], info: DistInfo) -> None:
    """Refuse to start unless every rank sees the same sorted list of inputs."""
    if not info.enabled:
        return
    digest = hashlib.sha256("\n".join(str(f.path) for f in files).encode()).hexdigest()
    views: list = [None] * info.world_size
    dist.all_gather_object(views, (len(files), digest))
    if len(set(views)) > 1:
        seen = ", ".join(f"rank {r}: {n} files" for r, (n, _) in enumerate(views))
        raise ValueError(f"the ranks see different inputs ({seen}); every machine must see the same archive "
                         "at the same path, and be started from the same folder")


def _check_manifest_path(manifest: Path | None, files: Sequence[InputFile], options: OutputOptions) -> None:
    """Refuse a manifest that would replace an input or an output of the run, or, without ``--overwrite``, a
    file that is not a manifest (a rerun replaces its own manifest)."""
    if manifest is None:
        return
    key = path_key(manifest)
    if any(path_key(p) == key for f in files for p in (f.path, *(q for q, _ in planned_outputs(f, options)))):
        raise ValueError(f"--manifest {shown(manifest)}: that is an input or an output of this run; name another file")
    if not options.overwrite and os.path.lexists(manifest) and not is_manifest(manifest):
        raise ValueError(f"{shown(manifest)} exists and is not an ifan deblur manifest: this run's manifest would "
                         "replace it; give another --manifest, or add --overwrite to replace it")


def _to_retry(files: list[InputFile], manifest: Path, info: DistInfo) -> tuple[list[InputFile], list[dict], list[str]]:
    """The inputs ``manifest`` lists as failed; on rank 0 also its other records (kept in the new
    manifest as they were) and a line for each failed input that is no longer among the inputs."""
    records: list[dict] = []
    if info.is_main:
        try:
            records = read_manifest(manifest)[0]
            failed: set[str] | str = {path_key(r["input"]) for r in records if r["status"] == "failed"}
        except ValueError as err:
            failed = str(err)
    failed = broadcast(failed if info.is_main else None, info)
    if isinstance(failed, str):
        raise ValueError(failed)
    chosen = [f for f in files if path_key(f.path) in failed]
    keys = {path_key(f.path) for f in chosen}
    carried = [r for r in records if path_key(r["input"]) not in keys]
    missing = [f"{r['input']}: listed as failed in {manifest} but not among the inputs; it stays failed"
               for r in carried if r["status"] == "failed"]
    return chosen, carried, missing


def _clean_temps(files: Sequence[InputFile], options: OutputOptions) -> None:
    """Remove what a killed run left of this rank's writes: temporary files of its outputs' names."""
    names: dict[Path, set[str]] = {}
    for item in files:
        for p, kind in planned_outputs(item, options):
            names.setdefault(p.parent, set()).add(p.name)
            if kind == "image":
                names[p.parent].add(p.with_suffix(".png").name)  # a result that fell back to PNG
    for folder, owned in names.items():
        remove_stale_temps(folder, owned)


class _Recorder(Listener):
    """Keeps each report as a manifest record (and appends it to this rank's part file)."""

    def __init__(self, inner: Listener, rank: int, part: PartWriter | None) -> None:
        self.inner, self.rank, self.part, self.records = inner, rank, part, []

    def started(self, item, index, total):
        self.inner.started(item, index, total)

    def planned(self, item, plan):
        self.inner.planned(item, plan)

    def tile(self, done, total):
        self.inner.tile(done, total)

    def finished(self, report: FileReport) -> None:
        rec = record(report, self.rank)
        self.records.append(rec)
        if self.part is not None:
            self.part.add(rec)
        self.inner.finished(report)


def run_archive(inputs: Sequence[str], options: OutputOptions, run: ArchiveOptions,
                load: Callable[[torch.device], Deblurrer | None]) -> int:
    """Deblur ``inputs`` as this process's part of the run (the whole run outside torchrun).

    Args:
        load: makes the Deblurrer on a device (None after printing why it cannot).

    Returns:
        The exit code, the same on every rank: 0 when nothing failed, else 1.
    """
    info = setup(run.device, backend="gloo", timeout=COLLECTIVE_TIMEOUT)
    try:
        return _run(inputs, options, run, load, info)
    finally:
        teardown()


def _run(inputs, options: OutputOptions, run: ArchiveOptions, load, info: DistInfo) -> int:
    threads = threads_per_process(run.threads, info)
    if threads is not None:
        torch.set_num_threads(threads)
    collected = collect_inputs(inputs)
    errors = list(collected.errors)
    files = sorted(collected.files, key=lambda f: str(f.path))
    manifest = run.manifest or (Path(options.out_dir) / MANIFEST_NAME if options.out_dir is not None else None)
    carried: list[dict] = []
    if run.retry_failed is not None and files:
        files, carried, missing = _to_retry(files, run.retry_failed, info)
        errors += missing
        if not files:
            for message in errors:
                _say(info, f"error: {message}")
            _say(info, f"nothing to retry: no input failed in {run.retry_failed}")
            return broadcast(1 if errors else 0, info)
    _check_same_inputs(files, info)
    _check_manifest_path(manifest, files, options)
    for message in errors:
        _say(info, f"error: {message}")
    if not files:
        _say(info, "error: nothing to deblur")
        return 1
    refused, lock = _lock_manifest(manifest, info)
    if refused:
        _say(info, f"error: {refused}")
        return 1
    try:
        deblurrer = load(info.device)
        if deblurrer is None:
            return 1
        if run.verbose:
            _say(info, f"model {run.model}: {deblurrer.describe()}", everyone=True)
            if not options.blend.plain:
                _say(info, f"blend: {options.blend.describe(deblurrer.calibration)}")
        if options.blend.needs_defocus and not deblurrer.calibration.calibrated:
            _say(info, f"note: {run.model} has no defocus calibration, so --keep-bokeh takes the blur radius as "
                       f"|defocus| / {KAPPA} (an ideal dual-pixel split), which may be off for this model; check "
                       "the mask with --save-mask (python -m benchmarks.calibrate_defocus --model FILE --write "
                       "calibrates it)")
        mine = shard(files, info)
        _clean_temps(mine, options)
        records, seconds, part = _deblur_share(deblurrer, mine, files, options, run, info, manifest)
        return _finish(records, seconds, errors, carried, manifest, run, info, deblurrer, part)
    finally:
        release_lock(*lock)


def lock_path(manifest: Path) -> Path:
    """The lock a run holds on its manifest (and its part files) while it goes: ``.NAME.lock`` beside it."""
    return manifest.with_name(f".{manifest.name}.lock")


def _lock_manifest(manifest: Path | None, info: DistInfo) -> tuple[str | None, tuple[Path, int | None]]:
    """Rank 0 takes the lock of the run's manifest, so that one run at a time writes a manifest and its part
    files: why this run is refused (another live run holds it), or None; and the lock to release."""
    refused, held = None, None
    path = lock_path(manifest) if manifest is not None else Path()
    if manifest is not None and info.is_main:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            held = hold_lock(path)
        except LockBusy as err:
            refused = (f"{shown(manifest)} is in use by another ifan deblur run ({err.strerror}); wait for it to "
                       "end, or give this run another -o or --manifest")
        except OSError:  # a folder that cannot be written: every output will fail, each with its line
            held = None
    return broadcast(refused, info), (path, held)


def _deblur_share(deblurrer: Deblurrer, mine: list[InputFile], files: list[InputFile], options: OutputOptions,
                  run: ArchiveOptions, info: DistInfo, manifest: Path | None):
    """Run the file loop over this rank's share: its records, the seconds the run took, and what its part
    file holds (``(path, records saved, why not all)``; None without a manifest)."""
    part, state = None, None
    try:
        part = PartWriter(manifest, info.rank) if manifest is not None else None
    except OSError as err:  # the outputs beside it will fail too, each with its line
        state = (None, 0, err.strerror or str(err))
        _say(info, f"error: {shown(err.filename)}: cannot write this rank's part of the manifest ({state[2]}); "
                   "going on without it", everyone=True)
    claims, progress = None, None
    if info.enabled:
        store = dist.distributed_c10d._get_default_store()  # the process group's own (torchrun's rendezvous)
        planned = (path_key(p) for item in files for p, _ in planned_outputs(item, options))
        claims, progress = StoreClaims(store, planned), RunProgress(store, info.rank, len(files), run.quiet)
        inner: Listener = RankListener(progress, info.rank, run.verbose)
    else:
        inner = ConsoleListener(len(files), quiet=run.quiet, verbose=run.verbose)
    recorder = _Recorder(inner, info.rank, part)
    if info.enabled:
        dist.barrier()  # every rank has cleaned up after a killed run before any writes
    start = time.perf_counter()
    try:
        deblur_files(deblurrer, mine, options, listener=recorder, run_items=files, claims=claims,
                     overlap=run.overlap, batch=run.batch)
    finally:
        if part is not None:
            part.close()
            state = part.state()
        if isinstance(inner, ConsoleListener):
            inner.close()
    if part is not None and part.error is not None:
        _say(info, f"error: {shown(part.path)}: cannot write this rank's part of the manifest after {part.saved} "
                   f"records ({part.error}); the records are kept for the manifest", everyone=True)
    if info.enabled:
        dist.barrier()  # the slowest rank is done (rank 0's bar keeps counting meanwhile)
        progress.close()
    return recorder.records, time.perf_counter() - start, state


def _finish(records: list[dict], seconds: float, errors: list[str], carried: list[dict],
            manifest: Path | None, run: ArchiveOptions, info: DistInfo, deblurrer: Deblurrer, part) -> int:
    """Gather the records on rank 0, write the manifest and say the summary; the exit code of every rank."""
    devices, parts = [str(deblurrer.device)], [(part, len(records))]
    if info.enabled:
        gathered: list | None = [None] * info.world_size if info.is_main else None
        dist.gather_object((records, str(deblurrer.device), part), gathered, dst=0)
        if info.is_main:
            records = [r for share, _, _ in gathered for r in share]
            devices = [device for _, device, _ in gathered]
            parts = [(state, len(share)) for share, _, state in gathered]
    failed, written = 0, False
    if info.is_main:
        total = Counts(*(sum(r["status"] == s for r in records) for s in ("done", "skipped", "failed")))
        total.failed += len(errors)
        failed = total.failed
        line = f"{total} in {seconds:.1f} s ({3600 * total.done / max(seconds, 1e-9):.0f} photos/hour"
        line += f", {info.world_size} ranks)" if info.enabled else ")"
        if manifest is not None:
            merged = sorted(carried + records, key=lambda r: r["input"])
            summary = summarize(merged, seconds, carried=len(carried), done_now=total.done, ranks=info.world_size,
                                devices=devices, errors=errors, model=run.model, deblurrer=deblurrer.describe())
            try:
                write_manifest(manifest, merged, summary)
                written, line = True, f"{line}; manifest {shown(manifest)}"
            except OSError as err:
                failed += 1
                line += f"; the manifest could not be written ({shown(manifest)}: {err.strerror or err}); "
                line += _what_parts_hold(parts)
        _say(info, line)
    failed, written = broadcast((failed, written), info)
    if written:
        remove_parts(manifest)  # on every machine: each rank's part is merged
    return 1 if failed else 0


def _what_parts_hold(parts: list) -> str:
    """What the part files hold of a run whose manifest could not be written (``parts``: each rank's
    ``((path, saved, error) or None, records)``), for the summary line."""
    states = [state for state, _ in parts if state is not None]
    kept = [(path, saved) for path, saved, _ in states if saved]
    total = sum(n for _, n in parts)
    why = next((error for _, _, error in states if error), None)
    if not kept:
        return ("no record of this run could be saved" + (f" (its part file: {why})" if why else "")
                + "; the lines above are its only account")
    held = sum(saved for _, saved in kept)
    where = ", ".join(shown(path) for path, _ in kept)
    if held == total:
        return f"the records stay in {where}"
    return f"{held} of its {total} records are in {where}; the others could not be saved ({why})"

