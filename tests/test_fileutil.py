"""Atomic writes are readable as any new file (the umask decides) and durable (fsync before and after the rename)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import numpy as np
import pytest
import torch

from ifan import create_model
from ifan.fileutil import atomic_write_bytes, remove_stale_temps
from ifan.io import write_image
from ifan.models.serialization import save_weights
from ifan.train.checkpoint import save_checkpoint


@pytest.fixture
def umask():
    def set_umask(mask: int) -> None:
        os.umask(mask)

    saved = os.umask(0o022)
    yield set_umask
    os.umask(saved)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


@pytest.mark.parametrize("mask", [0o022, 0o027, 0o077])
def test_outputs_checkpoints_and_weights_follow_the_umask(tmp_path, umask, mask):
    umask(mask)
    model = create_model("ifan", channels=2, iterations=1)
    written = [
        write_image(tmp_path / "photo_deblurred.png", np.zeros((4, 4, 3), np.float32)),
        save_weights(tmp_path / "w.safetensors", model.config, model.state_dict()),
        save_checkpoint(tmp_path / "run", 1, {"step": 1}, keep_last=1),
        atomic_write_bytes(tmp_path / "a.txt", b"x"),
    ]
    assert {p: mode(p) for p in written} == {p: 0o666 & ~mask for p in written}


def _record_disk_events(monkeypatch) -> list[tuple[str, str]]:
    """Record fsync (of which path), rename and unlink calls, in order."""
    events: list[tuple[str, str]] = []
    real_fsync, real_replace, real_unlink = os.fsync, os.replace, Path.unlink

    def fsync(fd):
        events.append(("fsync", os.readlink(f"/proc/self/fd/{fd}")))
        return real_fsync(fd)

    def replace(src, dst, **kw):
        events.append(("rename", f"{Path(src).name} -> {Path(dst).name}"))
        return real_replace(src, dst, **kw)

    def unlink(self, missing_ok=False):
        events.append(("unlink", self.name))
        return real_unlink(self, missing_ok=missing_ok)

    monkeypatch.setattr(os, "fsync", fsync)
    monkeypatch.setattr(os, "replace", replace)
    monkeypatch.setattr(Path, "unlink", unlink)
    return events


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name the fsync'ed files")
def test_a_new_checkpoint_is_durable_before_the_old_one_is_deleted(tmp_path, monkeypatch):
    run = tmp_path / "run"
    save_checkpoint(run, 1, {"step": 1, "w": torch.zeros(3)}, keep_last=1)
    events = _record_disk_events(monkeypatch)
    save_checkpoint(run, 2, {"step": 2, "w": torch.ones(3)}, keep_last=1)
    folder = str(run / "checkpoints")
    kinds = [kind for kind, _ in events]
    assert kinds == ["fsync", "rename", "fsync", "unlink"], events
    tmp = events[0][1]
    assert Path(tmp).parent == Path(folder) and Path(tmp).name.startswith(".step_000000002.pt.")
    assert events[1][1] == f"{Path(tmp).name} -> step_000000002.pt"
    assert events[2] == ("fsync", folder) and events[3] == ("unlink", "step_000000001.pt")
    assert sorted(p.name for p in Path(folder).iterdir()) == ["step_000000002.pt"]


def test_stale_temporary_files_are_recognised_and_removed(tmp_path):
    stale = [tmp_path / ".step_000000200.pt.k3j_x9q2.tmp", tmp_path / ".model.safetensors.0a1b2c3d.tmp"]
    keep = [tmp_path / "step_000000100.pt", tmp_path / "notes.tmp", tmp_path / ".hidden"]
    for p in stale + keep:
        p.write_bytes(b"x")
    assert sorted(remove_stale_temps(tmp_path)) == sorted(stale)
    assert sorted(tmp_path.iterdir()) == sorted(keep)


def test_only_the_temporary_files_of_named_targets_are_removed_when_names_are_given(tmp_path):
    mine, other = tmp_path / ".a_deblurred.jpg.0a1b2c3d.tmp", tmp_path / ".b_deblurred.jpg.0a1b2c3d.tmp"
    for p in (mine, other):
        p.write_bytes(b"x")
    assert remove_stale_temps(tmp_path, {"a_deblurred.jpg"}) == [mine]
    assert sorted(tmp_path.iterdir()) == [other]
