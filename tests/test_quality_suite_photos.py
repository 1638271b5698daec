"""The quality suite refuses to run with its photos missing, naming them and where they come from."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))
import bench_quality  # noqa: E402
import quality_sets  # noqa: E402


def test_missing_debian_photos_are_named_with_their_package(monkeypatch, tmp_path):
    monkeypatch.setattr(quality_sets, "DEBIAN_BACKGROUNDS", tmp_path)  # an empty /usr/share/backgrounds
    missing = quality_sets.missing_photos()
    assert {"aitzgorri", "picos", "creek", "fig", "dandelions", "ladybird", "marigold", "seeds"} <= missing.keys()
    assert "apt install lomiri-wallpapers-16.04" in missing["fig"]
    assert "apt install mate-backgrounds" in missing["ladybird"]
    assert "china" not in missing and "flower" not in missing  # shipped in this repository
    assert "fig" not in quality_sets.eval_photo_paths()


def test_bench_quality_refuses_a_partial_suite_unless_told(monkeypatch, tmp_path, capsys):
    monkeypatch.setattr(quality_sets, "DEBIAN_BACKGROUNDS", tmp_path)
    with pytest.raises(SystemExit) as stop:
        bench_quality.require_photos(partial=False)
    assert "fig: Debian's lomiri-wallpapers-16.04" in str(stop.value) and "--partial" in str(stop.value)
    bench_quality.require_photos(partial=True)  # goes on, with a warning
    assert "scoring without" in capsys.readouterr().err


def test_complete_suite_passes_the_check(monkeypatch):
    monkeypatch.setattr(quality_sets, "missing_photos", lambda: {})
    bench_quality.require_photos(partial=False)
