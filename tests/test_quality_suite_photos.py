"""The quality suite refuses to run with its photos missing, naming them and where they come from."""

from __future__ import annotations

import warnings

import pytest

from ifan.evaluate import suite


def test_missing_debian_photos_are_named_with_their_package(monkeypatch, tmp_path):
    monkeypatch.setattr(suite, "DEBIAN_BACKGROUNDS", tmp_path)  # an empty /usr/share/backgrounds
    missing = suite.missing_photos()
    assert {"aitzgorri", "picos", "creek", "fig", "dandelions", "ladybird", "marigold", "seeds"} <= missing.keys()
    assert "apt install lomiri-wallpapers-16.04" in missing["fig"]
    assert "apt install mate-backgrounds" in missing["ladybird"]
    assert "china" not in missing and "flower" not in missing  # shipped in this repository
    assert "fig" not in suite.eval_photo_paths()


def test_a_partial_suite_is_refused_unless_told(monkeypatch, tmp_path):
    monkeypatch.setattr(suite, "DEBIAN_BACKGROUNDS", tmp_path)
    with pytest.raises(suite.SuitePhotosMissing) as stop:
        suite.require_photos(partial=False)
    assert "fig: Debian's lomiri-wallpapers-16.04" in str(stop.value) and "--partial" in str(stop.value)
    with pytest.warns(UserWarning, match=r"scoring without \d+ photo\(s\) of suite 2:(.|\n)*fig: Debian's"):
        suite.require_photos(partial=True)  # goes on, with a warning


def test_complete_suite_passes_the_check_silently(monkeypatch, tmp_path):
    present = tmp_path / "photo.jpg"
    present.write_bytes(b"")
    monkeypatch.setattr(suite, "_locate", lambda where, parts: present)  # every photo found
    assert suite.missing_photos() == {}
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # not even a warning
        assert suite.require_photos(partial=False) is None
    monkeypatch.setattr(suite, "_locate", lambda where, parts: None)  # and the check can fail
    with pytest.raises(suite.SuitePhotosMissing, match="china"):
        suite.require_photos(partial=False)
