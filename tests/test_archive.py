"""Archives: the split over ranks, the manifest, --retry-failed, claims and progress shared through
torch.distributed's store, and 2-process torchrun runs (gloo, CPU), one of them killed and resumed."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.distributed as dist
from helpers import make_archive

from ifan.apps.archive import StoreClaims, shard, threads_per_process
from ifan.apps.cli import main
from ifan.apps.console import RunProgress
from ifan.apps.files import InputFile
from ifan.apps.manifest import MANIFEST_NAME, read_manifest
from ifan.io import write_image
from ifan.inference.distributed import DistInfo

ROOT = Path(__file__).resolve().parents[1]


def deblur(argv: list[str]) -> int:
    return main(["deblur", *argv, "--threads", "1", "-q"])


def outputs_on_disk(out: Path) -> set[str]:
    """The deblurred files in ``out`` (not the manifest or its parts)."""
    return {str(p) for p in out.rglob("*") if p.is_file() and p.suffix != ".jsonl"}


def check_manifest_matches_disk(out: Path, inputs: list[Path]) -> list[dict]:
    """Every input has one record; every record's files exist and every file in ``out`` is some record's."""
    records, summary = read_manifest(out / MANIFEST_NAME)
    assert sorted(r["input"] for r in records) == sorted(str(p.resolve()) for p in inputs)
    for r in records:
        if r["status"] == "done":
            assert r["outputs"] and all(Path(p).is_file() for p in r["outputs"]) and r["error"] is None
        elif r["status"] == "skipped":
            assert Path(r["output"]).is_file() and not r["outputs"]
        else:
            assert r["error"] and not Path(r["output"]).exists()
    assert outputs_on_disk(out) == {r["output"] for r in records if r["status"] != "failed"}
    assert summary["files"] == len(records) == summary["done"] + summary["skipped"] + summary["failed"]
    assert not list(out.rglob("*.tmp")) and not list(out.glob("*.part.jsonl"))
    return records


# -- the split and the parts of a run ------------------------------------------------------------------
def test_the_split_gives_every_input_to_exactly_one_rank():
    files = [InputFile(Path(f"/a/{i:02d}.jpg")) for i in range(11)]
    shares = [shard(files, DistInfo(rank=r, world_size=3)) for r in range(3)]
    assert sorted((f for s in shares for f in s), key=str) == files
    assert [len(s) for s in shares] == [4, 4, 3] and shares[1][:2] == [files[1], files[4]]
    assert shard(files, DistInfo(rank=1, world_size=3)) == shares[1]  # deterministic


def test_threads_are_divided_between_the_processes_of_a_machine(monkeypatch):
    cpu = DistInfo(rank=1, world_size=2, device=torch.device("cpu"))
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(16)), raising=False)
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "4")
    assert threads_per_process(None, cpu) == 4 and threads_per_process(3, cpu) == 3
    assert threads_per_process(None, DistInfo(device=torch.device("cuda", 0))) is None  # a GPU per rank
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "1")
    assert threads_per_process(None, cpu) is None  # one process: PyTorch's own default
    with pytest.raises(ValueError, match="--threads"):
        threads_per_process(0, cpu)


def test_claims_in_the_store_go_to_one_input_of_any_rank():
    store = dist.HashStore()
    rank0, rank1 = StoreClaims(store, ["/out/a_deblurred.png"]), StoreClaims(store, ["/out/a_deblurred.png"])
    assert rank1.claim("/out/b_deblurred.png", "/in/b.jpg") and not rank0.held("/out/c_deblurred.png")
    assert rank0.held("/out/b_deblurred.png") and not rank0.claim("/out/b_deblurred.png", "/in/b.png")
    assert "/out/a_deblurred.png" in rank0.planned


def test_one_bar_counts_the_inputs_of_every_rank():
    store = dist.HashStore()
    main_bar, other = RunProgress(store, 0, total=5, quiet=True), RunProgress(store, 1, total=5, quiet=True)
    other.add(3)
    main_bar.add(2)
    assert other.close() is None and main_bar.close() == 5


# -- one process ------------------------------------------------------------------------------------------
def test_the_manifest_accounts_for_every_file_and_a_rerun_skips_what_is_done(tmp_path, weights, capsys):
    inputs = make_archive(tmp_path / "archive", corrupt=True)
    out = tmp_path / "out"
    assert deblur([str(tmp_path / "archive"), "-o", str(out), "--model", weights]) == 1  # one corrupt file
    records = check_manifest_matches_disk(out, inputs)
    failed = [r for r in records if r["status"] == "failed"]
    assert [r["input"] for r in failed] == [str(tmp_path / "archive" / "2020" / "bad.jpg")]
    assert failed[0]["error"].startswith(f"{tmp_path / 'archive' / '2020' / 'bad.jpg'}: ")
    done = next(r for r in records if r["input"].endswith("p4.png"))
    assert done["size"] == [56, 40] and done["bytes"] == (tmp_path / "archive" / "2019" / "p4.png").stat().st_size
    assert done["seconds"] > 0 and done["rank"] == 0
    summary = read_manifest(out / MANIFEST_NAME)[1]
    assert (summary["done"], summary["failed"], summary["ranks"]) == (8, 1, 1) and summary["photos_per_hour"] > 0
    assert "8 deblurred, 0 skipped, 1 failed" in capsys.readouterr().err

    assert deblur([str(tmp_path / "archive"), "-o", str(out), "--model", weights]) == 1
    rerun = check_manifest_matches_disk(out, inputs)
    assert sorted(r["status"] for r in rerun) == ["failed"] + ["skipped"] * 8

    photo = inputs[0].read_bytes()  # a manifest never replaces an input (or an output)
    assert deblur([str(tmp_path / "archive"), "-o", str(out), "--model", weights, "--manifest", str(inputs[0])]) == 1
    assert "that is an input or an output of this run" in capsys.readouterr().err and inputs[0].read_bytes() == photo


def test_retry_failed_deblurs_only_the_failures_and_keeps_the_other_records(tmp_path, weights, capsys):
    make_archive(tmp_path / "archive", corrupt=True)
    out = tmp_path / "out"
    assert deblur([str(tmp_path / "archive"), "-o", str(out), "--model", weights]) == 1
    first = {r["input"]: r for r in read_manifest(out / MANIFEST_NAME)[0]}
    stamps = {p: os.stat(p).st_mtime_ns for p in outputs_on_disk(out)}
    (out / "2019" / "p1_deblurred.jpg").unlink()  # would be deblurred again by a plain rerun, not by a retry
    write_image(tmp_path / "archive" / "2020" / "bad.jpg", np.full((16, 16, 3), 0.5, np.float32))  # repaired
    saved = tmp_path / "first.jsonl"
    saved.write_bytes((out / MANIFEST_NAME).read_bytes())
    capsys.readouterr()
    assert deblur([str(tmp_path / "archive"), "-o", str(out), "--model", weights, "--retry-failed", str(saved)]) == 0
    assert "1 deblurred, 0 skipped, 0 failed" in capsys.readouterr().err
    records, summary = read_manifest(out / MANIFEST_NAME)
    assert summary["carried"] == 8 and summary["done"] == 9 and summary["failed"] == 0
    retried = [r for r in records if r != first[r["input"]]]
    assert [r["input"] for r in retried] == [str(tmp_path / "archive" / "2020" / "bad.jpg")]
    assert retried[0]["status"] == "done" and (out / "2020" / "bad_deblurred.jpg").is_file()
    assert not (out / "2019" / "p1_deblurred.jpg").exists()
    assert all(os.stat(p).st_mtime_ns == t for p, t in stamps.items() if Path(p).exists())

    assert deblur([str(tmp_path / "archive"), "-o", str(out), "--model", weights, "--retry-failed",
                   str(out / MANIFEST_NAME)]) == 0
    assert "nothing to retry: no input failed in" in capsys.readouterr().err
    (tmp_path / "broken.jsonl").write_text('{"input": "a.jpg", "status": "done"}\nnot json\n')
    assert deblur([str(tmp_path / "archive"), "-o", str(out), "--model", weights, "--retry-failed",
                   str(tmp_path / "broken.jsonl")]) == 1
    assert f"{tmp_path / 'broken.jsonl'}:2: not a manifest line" in capsys.readouterr().err


def test_a_run_removes_what_a_killed_run_left_of_its_own_writes_only(tmp_path, weights):
    inputs = make_archive(tmp_path / "archive")
    out = tmp_path / "out"
    (out / "2019").mkdir(parents=True)
    stale = out / "2019" / ".p1_deblurred.jpg.0a1b2c3d.tmp"
    foreign = out / "2019" / ".notes.txt.0a1b2c3d.tmp"  # not a file of this run: not ours to delete
    stale.write_bytes(b"half")
    foreign.write_bytes(b"someone else's")
    (out / "ifan-manifest.rank3.part.jsonl").write_text("")  # a part left by a killed run of 4 processes
    assert deblur([str(tmp_path / "archive"), "-o", str(out), "--model", weights]) == 0
    assert not stale.exists() and foreign.read_bytes() == b"someone else's"
    foreign.unlink()
    check_manifest_matches_disk(out, inputs)


# -- several processes ---------------------------------------------------------------------------------
def torchrun(args: list[str], tmp_path: Path, worker: str | None = None, env: dict | None = None):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           *([str(ROOT / "tests" / worker)] if worker else ["-m", "ifan"]), "deblur", *args, "--threads", "1", "-q"]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")]), **(env or {}))
    return subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300, cwd=tmp_path)


def read_all(out: Path) -> dict[str, bytes]:
    return {str(Path(p).relative_to(out)): Path(p).read_bytes() for p in outputs_on_disk(out)}


@pytest.mark.slow
def test_two_processes_deblur_every_file_once_like_one_process(tmp_path, weights):
    inputs = make_archive(tmp_path / "archive", corrupt=True)
    assert deblur([str(tmp_path / "archive"), "-o", str(tmp_path / "single"), "--model", weights]) == 1
    proc = torchrun([str(tmp_path / "archive"), "-o", str(tmp_path / "two"), "--model", weights], tmp_path)
    assert proc.returncode != 0 and "8 deblurred, 0 skipped, 1 failed" in proc.stderr  # the corrupt file
    bad = tmp_path / "archive" / "2020" / "bad.jpg"
    assert f"ifan deblur [rank {inputs.index(bad) % 2}]: error: {bad}: " in proc.stderr
    records = check_manifest_matches_disk(tmp_path / "two", inputs)
    by_input = {r["input"]: r for r in records}
    assert [by_input[str(p)]["rank"] for p in inputs] == [i % 2 for i in range(len(inputs))]  # the sorted split
    assert sum(len(r["outputs"]) for r in records) == 8  # each written once, by one rank
    assert read_all(tmp_path / "two") == read_all(tmp_path / "single")  # byte for byte
    assert read_manifest(tmp_path / "two" / MANIFEST_NAME)[1]["devices"] == ["cpu", "cpu"]


@pytest.mark.slow
def test_a_run_with_a_killed_rank_resumes_to_completion(tmp_path, weights):
    inputs = make_archive(tmp_path / "archive")
    assert deblur([str(tmp_path / "archive"), "-o", str(tmp_path / "single"), "--model", weights]) == 0
    out, args = tmp_path / "out", [str(tmp_path / "archive"), "-o", str(tmp_path / "out"), "--model", weights]
    killed = torchrun(args, tmp_path, worker="archive_worker.py",
                      env={"IFAN_TEST_KILL_RANK": "1", "IFAN_TEST_KILL_AFTER": "2"})
    assert killed.returncode != 0 and not (out / MANIFEST_NAME).exists()
    part = [json.loads(line) for line in (out / "ifan-manifest.rank1.part.jsonl").read_text().splitlines()]
    assert [r["status"] for r in part] == ["done"]  # what rank 1 finished and reported before it died
    rank1 = [p for i, p in enumerate(inputs) if i % 2 == 1]
    assert (out / rank1[1].relative_to(tmp_path / "archive")).with_name(f"{rank1[1].stem}_deblurred{rank1[1].suffix}").is_file()
    assert not any((out / p.relative_to(tmp_path / "archive")).with_name(f"{p.stem}_deblurred{p.suffix}").exists()
                   for p in rank1[2:])
    before = {p: (os.stat(p).st_ino, os.stat(p).st_mtime_ns) for p in outputs_on_disk(out)}

    resumed = torchrun(args, tmp_path)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    records = check_manifest_matches_disk(out, inputs)
    assert {r["output"] for r in records if r["status"] == "skipped"} == set(before)  # not written again
    assert all((os.stat(p).st_ino, os.stat(p).st_mtime_ns) == stamp for p, stamp in before.items())
    assert sum(r["status"] == "done" for r in records) == 8 - len(before) > 0
    assert read_all(out) == read_all(tmp_path / "single")


@pytest.mark.slow
@pytest.mark.cuda
@pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA devices")
def test_each_rank_takes_the_gpu_of_its_local_rank(tmp_path, weights):
    inputs = make_archive(tmp_path / "archive")
    proc = torchrun([str(tmp_path / "archive"), "-o", str(tmp_path / "out"), "--model", weights], tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    check_manifest_matches_disk(tmp_path / "out", inputs)
    assert read_manifest(tmp_path / "out" / MANIFEST_NAME)[1]["devices"] == ["cuda:0", "cuda:1"]
