"""Nothing lost: what `ifan deblur` (and every writer of ifan) does with links, a second run into the same
folder, a full disk, a read-only folder, long names, SIGTERM and names that would break a log line."""

from __future__ import annotations

import builtins
import errno
import io
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from ifan.apps.cli import main
from ifan.apps.manifest import MANIFEST_NAME, read_manifest
from ifan.io import read_image, write_image

ROOT = Path(__file__).resolve().parents[1]


def pattern(h=24, w=32, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((h, w, 3), dtype=np.float32)


def deblur(argv: list[str]) -> int:
    return main(["deblur", *argv, "--threads", "1", "-q"])


def no_temporaries(folder: Path) -> bool:
    return not [p for p in folder.rglob("*") if p.name.endswith(".tmp")]


# -- 3: links ---------------------------------------------------------------------------------------------
def test_no_writer_follows_a_symlink_at_the_name_it_writes(tmp_path, weights):
    photo = write_image(tmp_path / "in" / "a.png", pattern())
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    for name in ("ifan-manifest.rank0.part.jsonl", MANIFEST_NAME, "a_deblurred.png"):
        (out / name).symlink_to(victim)
    made = tmp_path / "made_through_a_link.png"
    (out / "a_defocus.png").symlink_to(made)  # dangling: following it would create a file there
    assert deblur([str(photo.parent), "-o", str(out), "--model", weights, "--defocus-map", "--overwrite"]) == 0
    assert victim.read_text() == "precious" and not made.exists()
    assert not any(p.is_symlink() for p in out.iterdir())  # the links were replaced by ifan's own files
    assert read_image(out / "a_deblurred.png").size == (24, 32)
    assert [r["status"] for r in read_manifest(out / MANIFEST_NAME)[0]] == ["done"]

    # without --overwrite a link at an output's name is an existing file: kept, not replaced or followed
    other = tmp_path / "out2"
    other.mkdir()
    (other / "a_deblurred.png").symlink_to(made)
    assert deblur([str(photo.parent), "-o", str(other), "--model", weights]) == 0
    assert (other / "a_deblurred.png").is_symlink() and not made.exists()
    assert [r["status"] for r in read_manifest(other / MANIFEST_NAME)[0]] == ["skipped"]


def test_logs_checkpoints_weights_and_atomic_writes_do_not_follow_links(tmp_path):
    from ifan import create_model
    from ifan.fileutil import atomic_write_bytes
    from ifan.models.serialization import save_weights
    from ifan.train.checkpoint import checkpoint_path, save_checkpoint
    from ifan.train.run import METRICS_FILE, append_metrics

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    run = tmp_path / "run"
    run.mkdir()
    (run / METRICS_FILE).symlink_to(victim)
    with pytest.raises(OSError, match="symbolic link"):
        append_metrics(run, {"step": 1, "kind": "train", "loss": 1.0})
    checkpoint_path(run, 5).parent.mkdir()
    checkpoint_path(run, 5).symlink_to(victim)
    save_checkpoint(run, 5, {"step": 5}, keep_last=2)
    (tmp_path / "w.safetensors").symlink_to(victim)
    model = create_model("ifan", channels=2, iterations=1)
    save_weights(tmp_path / "w.safetensors", model.config, model.state_dict())
    (tmp_path / "a.txt").symlink_to(victim)
    atomic_write_bytes(tmp_path / "a.txt", b"new")
    assert victim.read_text() == "precious"
    assert not checkpoint_path(run, 5).is_symlink() and not (tmp_path / "w.safetensors").is_symlink()
    assert (tmp_path / "a.txt").read_bytes() == b"new"


def test_the_photo_writers_do_not_follow_links(tmp_path, weights):
    """--save-mask, a 16-bit TIFF with its EXIF (ifan.io.tiff), the page's slider data and the rewrite of
    a weights file's metadata (calibrate_defocus --write) go through the same atomic writes."""
    from ifan import create_model
    from ifan.apps.adjust import VIEWS_FILE, save_views
    from ifan.inference.calibration import UNCALIBRATED
    from ifan.models.serialization import save_weights, update_metadata

    victim = tmp_path / "victim.txt"
    victim.write_text("precious")
    photo = write_image(tmp_path / "in" / "a.png", pattern(), bit_depth=16)
    out = tmp_path / "out"
    out.mkdir()
    for name in ("a_deblurred.tif", "a_mask.png"):
        (out / name).symlink_to(victim)
    assert deblur([str(photo), "-o", str(out), "--model", weights, "--format", "tiff", "--keep-bokeh", "6",
                   "--save-mask", "--overwrite"]) == 0
    assert victim.read_text() == "precious" and not any(p.is_symlink() for p in out.iterdir())
    assert read_image(out / "a_deblurred.tif").bit_depth == 16 and read_image(out / "a_mask.png").grayscale

    model = create_model("ifan", channels=2, iterations=1)
    src = save_weights(tmp_path / "w.safetensors", model.config, model.state_dict())
    (tmp_path / "calibrated.safetensors").symlink_to(victim)
    update_metadata(src, tmp_path / "calibrated.safetensors", {"note": "x"})
    views = tmp_path / "view"
    views.mkdir()
    (views / VIEWS_FILE).symlink_to(victim)
    rgb = pattern(16, 16)
    save_views(views, {"before": rgb, "after": rgb}, np.zeros((16, 16), np.float32), UNCALIBRATED, (16, 16),
               (0, 0, 16))
    assert victim.read_text() == "precious"
    assert not (tmp_path / "calibrated.safetensors").is_symlink() and not (views / VIEWS_FILE).is_symlink()
    assert no_temporaries(tmp_path)


# -- 4: two runs into one folder --------------------------------------------------------------------------
_STALLED_RUN = """
import sys, time
from pathlib import Path
import ifan.fileutil as fileutil
from ifan.apps.cli import main

signal_file, go_file = Path(sys.argv[1]), Path(sys.argv[2])
real = fileutil.atomic_write

def atomic_write(path, write):
    def stalled(target):
        write(target)
        if Path(path).name.endswith("_deblurred.png"):  # in flight: the temporary file exists
            signal_file.write_text("writing")
            while not go_file.exists():
                time.sleep(0.05)
    return real(path, stalled)

fileutil.atomic_write = atomic_write
sys.exit(main(["deblur", *sys.argv[3:], "--threads", "1", "-q"]))
"""


@pytest.mark.slow  # a second process
def test_a_second_run_into_the_same_folder_is_refused_and_deletes_nothing(tmp_path, weights, capsys):
    photo = write_image(tmp_path / "in" / "a.png", pattern())
    out, signal_file, go_file = tmp_path / "out", tmp_path / "writing", tmp_path / "go"
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    first = subprocess.Popen([sys.executable, "-c", _STALLED_RUN, str(signal_file), str(go_file),
                              str(photo.parent), "-o", str(out), "--model", weights],
                             env=env, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 120
        while not signal_file.exists():
            assert first.poll() is None and time.monotonic() < deadline, first.stderr.read() if first.poll() else ""
            time.sleep(0.05)
        in_flight = [p for p in out.iterdir() if p.name.endswith(".tmp")]
        assert len(in_flight) == 1
        capsys.readouterr()
        assert deblur([str(photo.parent), "-o", str(out), "--model", weights]) == 1
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and f"is in use by another ifan deblur run (pid {first.pid}" in err[0]
        assert [p for p in out.iterdir() if p.name.endswith(".tmp")] == in_flight  # not deleted
    finally:
        go_file.write_text("go")
        _, stderr = first.communicate(timeout=120)
    assert first.returncode == 0, stderr
    records, summary = read_manifest(out / MANIFEST_NAME)
    assert [r["status"] for r in records] == ["done"] and summary["failed"] == 0
    assert no_temporaries(out) and not list(out.glob("*.part.jsonl")) and not list(out.glob(".*lock"))


def test_a_killed_writers_temporaries_are_removed_and_a_live_ones_kept(tmp_path):
    from ifan.fileutil import atomic_write, remove_stale_temps

    stale = tmp_path / ".a_deblurred.png.0a1b2c3d.tmp"  # left by a killed run: nobody holds it
    stale.write_bytes(b"half")
    seen = []

    def write(f):
        f.write(b"data")
        live = [p for p in tmp_path.iterdir() if p.name.startswith(".b_deblurred.png.")]
        seen.append((remove_stale_temps(tmp_path), [p.exists() for p in live]))

    atomic_write(tmp_path / "b_deblurred.png", write)
    assert seen == [([stale], [True])]  # the stale one went, the one being written stayed
    assert (tmp_path / "b_deblurred.png").read_bytes() == b"data"


# -- 5 and 12e: a full disk, a read-only folder -------------------------------------------------------------
class _NoSpace:
    """A file on a full disk: every write fails with ENOSPC."""

    def __init__(self, f):
        self._f = f

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def _under(target, root: Path) -> bool:
    if isinstance(target, int):
        try:
            target = os.readlink(f"/proc/self/fd/{target}")
        except OSError:
            return False
    return isinstance(target, (str, os.PathLike)) and Path(os.path.abspath(target)).is_relative_to(root)


def fail_writes_under(monkeypatch, root: Path, error: int) -> None:
    """Make every file opened for writing under ``root`` fail as on a full disk (ENOSPC on write) or a
    read-only file system (EROFS on open and mkdir)."""
    real_open, real_os_open, real_mkdir = io.open, os.open, os.mkdir
    writing = os.O_WRONLY | os.O_RDWR | os.O_CREAT

    def fake_open(file, mode="r", *args, **kwargs):
        if not any(c in mode for c in "wax+") or not _under(file, root):
            return real_open(file, mode, *args, **kwargs)
        if error == errno.EROFS:
            raise OSError(error, os.strerror(error), str(file))
        return _NoSpace(real_open(file, mode, *args, **kwargs))

    def fake_os_open(path, flags, *args, **kwargs):
        if error == errno.EROFS and flags & writing and _under(path, root):
            raise OSError(error, os.strerror(error), str(path))
        return real_os_open(path, flags, *args, **kwargs)

    def fake_mkdir(path, *args, **kwargs):
        if error == errno.EROFS and _under(path, root) and not os.path.isdir(path):
            raise OSError(error, os.strerror(error), str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(io, "open", fake_open)
    monkeypatch.setattr(builtins, "open", fake_open)
    monkeypatch.setattr(os, "open", fake_os_open)
    monkeypatch.setattr(os, "mkdir", fake_mkdir)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name an open file's path")
def test_a_full_disk_fails_each_file_with_its_line_and_the_run_ends_with_a_clear_summary(
        tmp_path, weights, monkeypatch, capsys):
    for i in range(3):
        write_image(tmp_path / "in" / f"p{i}.png", pattern(seed=i))
    out = tmp_path / "out"
    out.mkdir()
    fail_writes_under(monkeypatch, out, errno.ENOSPC)
    code = main(["deblur", str(tmp_path / "in"), "-o", str(out), "--model", weights, "--threads", "1"])
    err = capsys.readouterr().err
    assert code == 1
    for i in range(3):
        assert f"ifan deblur: error: {out / f'p{i}_deblurred.png'}: cannot write (No space left on device)" in err
    assert "0 deblurred, 0 skipped, 3 failed" in err
    last = err.strip().splitlines()[-1]
    assert f"the manifest could not be written ({out / MANIFEST_NAME}: No space left on device)" in last
    assert "stay in" not in last and "no record of this run could be saved" in last
    assert "Traceback" not in err and not list(out.iterdir())  # no empty part file, no temporaries


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to name an open file's path")
def test_a_read_only_output_folder_is_reported_without_claiming_records_were_kept(
        tmp_path, weights, monkeypatch, capsys):
    write_image(tmp_path / "in" / "a.png", pattern())
    out = tmp_path / "out"
    out.mkdir()
    fail_writes_under(monkeypatch, out, errno.EROFS)
    assert deblur([str(tmp_path / "in"), "-o", str(out), "--model", weights]) == 1
    err = capsys.readouterr().err
    assert "Read-only file system" in err and "0 deblurred, 0 skipped, 1 failed" in err
    last = err.strip().splitlines()[-1]
    assert "stay in" not in last and "no record of this run could be saved" in last
    assert not list(out.iterdir())


def _mount_tmpfs(folder: Path, size: str) -> bool:
    folder.mkdir()
    try:
        return subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                              capture_output=True).returncode == 0
    except OSError:
        return False


def test_a_real_full_disk_tmpfs(tmp_path, weights, capsys):
    out = tmp_path / "small"
    if not _mount_tmpfs(out, "256k"):
        pytest.skip("cannot mount a tmpfs here (needs root or CAP_SYS_ADMIN); the simulated full disk is tested above")
    try:
        for i in range(3):
            write_image(tmp_path / "in" / f"p{i}.png", pattern(seed=i))
        filler = out / "filler"
        with open(filler, "wb", buffering=0) as f:  # the disk is full before the run starts
            try:
                while f.write(b"x" * 4096):
                    pass
            except OSError as err:
                assert err.errno == errno.ENOSPC
        code = main(["deblur", str(tmp_path / "in"), "-o", str(out), "--model", weights, "--threads", "1"])
        err = capsys.readouterr().err
        assert code == 1 and "Traceback" not in err
        assert err.count("No space left on device") >= 3 and "0 deblurred, 0 skipped, 3 failed" in err
        assert "the manifest could not be written" in err.strip().splitlines()[-1]
        assert sorted(p.name for p in out.iterdir()) == ["filler"]  # no temporaries, no empty part file
        filler.unlink()  # space again: the same command does the rest
        assert deblur([str(tmp_path / "in"), "-o", str(out), "--model", weights]) == 0
        assert [r["status"] for r in read_manifest(out / MANIFEST_NAME)[0]] == ["done"] * 3
    finally:
        subprocess.run(["umount", "-l", str(out)], check=False)


# -- 7: long names ------------------------------------------------------------------------------------------
def test_long_names_are_written_and_names_that_cannot_fit_are_shortened(tmp_path, weights):
    src = tmp_path / "in"
    names = ["x" * 236 + ".png",  # its result's name is 250 bytes: fits, but not with 14 more for a temporary
             "y" * 251 + ".png",  # 255 bytes: its result's name cannot fit
             "y" * 250 + "z.png",  # differs from the one before only where a shortened name is cut
             "é" * 125 + ".png"]  # 254 bytes of UTF-8 in 129 characters
    for i, name in enumerate(names):
        write_image(src / name, pattern(seed=i))
    out = tmp_path / "out"
    assert deblur([str(src), "-o", str(out), "--model", weights, "--defocus-map"]) == 0
    records = read_manifest(out / MANIFEST_NAME)[0]
    assert [r["status"] for r in records] == ["done"] * 4
    written = [Path(p).name for r in records for p in r["outputs"]]
    assert len(set(written)) == 8 and all(len(n.encode()) <= 255 for n in written)
    assert sum(n.endswith("_deblurred.png") for n in written) == 4 and sum(n.endswith("_defocus.png") for n in written) == 4
    assert "x" * 236 + "_deblurred.png" in written  # what fits keeps its name
    assert no_temporaries(out)
    assert deblur([str(src), "-o", str(out), "--model", weights, "--defocus-map"]) == 0  # the rerun finds them
    assert [r["status"] for r in read_manifest(out / MANIFEST_NAME)[0]] == ["skipped"] * 4


# -- 12b: SIGTERM -------------------------------------------------------------------------------------------
_TERMINATED_RUN = """
import os, signal, sys
from pathlib import Path
import ifan.fileutil as fileutil
from ifan.apps.cli import main

real = fileutil.atomic_write

def atomic_write(path, write):
    def terminated(target):
        write(target)
        if Path(path).name.endswith("_deblurred.png"):
            os.kill(os.getpid(), signal.SIGTERM)  # as `kill PID` would, while the result is half written
    return real(path, terminated)

fileutil.atomic_write = atomic_write
sys.exit(main(["deblur", *sys.argv[1:], "--threads", "1", "-q"]))
"""


@pytest.mark.slow  # a process of its own, terminated
@pytest.mark.parametrize("io_mode", ["overlap", "sequential"])
def test_sigterm_leaves_no_temporary_file(tmp_path, weights, io_mode):
    for i in range(2):
        write_image(tmp_path / "in" / f"p{i}.png", pattern(seed=i))
    out = tmp_path / "out"
    extra = ["--sequential-io"] if io_mode == "sequential" else []
    env = dict(os.environ, PYTHONPATH=str(ROOT / "src"), OMP_NUM_THREADS="1")
    proc = subprocess.run([sys.executable, "-c", _TERMINATED_RUN, str(tmp_path / "in"), "-o", str(out), "--model",
                           weights, *extra], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 128 + signal.SIGTERM and "ifan deblur: terminated" in proc.stderr, proc.stderr
    assert no_temporaries(out)
    for p in out.glob("*_deblurred.png"):  # whatever is there is whole
        assert read_image(p).size == (24, 32)


# -- 12c, 12d: what the log says ----------------------------------------------------------------------------
def test_a_name_with_a_newline_is_quoted_in_the_log(tmp_path, weights, capsys):
    src = tmp_path / "in"
    good = write_image(src / "two\nlines.png", pattern())
    bad = src / "ifan deblur: 9 deblurred\nbad.png"
    bad.write_bytes(b"not a png")
    assert main(["deblur", str(src), "-o", str(tmp_path / "out"), "--model", weights, "--threads", "1"]) == 1
    err = capsys.readouterr().err
    assert repr(str(good)) in err and f"ifan deblur: error: {repr(str(bad))}: " in err
    lines = err.splitlines()
    assert not any(line.startswith(("lines.png", "bad.png", "ifan deblur: 9")) for line in lines)


def test_only_the_first_frame_of_an_animated_or_multi_page_file_is_deblurred_and_the_line_says_so(
        tmp_path, weights, capsys):
    from PIL import Image as PILImage

    src = tmp_path / "in"
    src.mkdir()
    frames = [PILImage.fromarray((pattern(seed=i) * 255).astype(np.uint8)) for i in range(3)]
    frames[0].save(src / "pages.tif", save_all=True, append_images=frames[1:])
    frames[0].save(src / "moving.webp", save_all=True, append_images=frames[1:], lossless=True)
    frames[0].save(src / "moving.png", save_all=True, append_images=frames[1:])
    write_image(src / "still.png", pattern())
    assert main(["deblur", str(src), "-o", str(tmp_path / "out"), "--model", weights, "--threads", "1"]) == 0
    err = capsys.readouterr().err
    for name in ("pages.tif", "moving.webp", "moving.png"):
        line = next(line for line in err.splitlines() if line.startswith(str(src / name)))
        assert "only the first of its 3 frames" in line, line
    assert "frames" not in next(line for line in err.splitlines() if line.startswith(str(src / "still.png")))
