"""Bad values and hostile files get one clear line, once, up front: option values, deeply nested JSON,
files that would be replaced without --overwrite, NaN or infinity given to the Deblurrer."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from PIL import Image as PILImage

from ifan import create_model
from ifan.apps.cli import main
from ifan.apps.manifest import MANIFEST_NAME
from ifan.inference import Deblurrer
from ifan.io import write_image

DEEP = "[" * 100_000 + "]" * 100_000  # JSON that Python's parser cannot follow (RecursionError)


def photo(tmp_path, name="a.png"):
    return write_image(tmp_path / "in" / name, np.random.default_rng(0).random((24, 32, 3), dtype=np.float32))


def error_lines(err: str) -> list[str]:
    return [line for line in err.splitlines() if "error" in line]


# -- 8: deeply nested JSON --------------------------------------------------------------------------------
def test_deeply_nested_json_is_one_line_like_other_malformed_input(tmp_path, weights, capsys):
    from safetensors import safe_open
    from safetensors.torch import load_file, save_file

    nested = tmp_path / "nested.safetensors"
    save_file(load_file(weights), nested, metadata={"format": "ifan-weights/1", "config": DEEP})
    assert main(["deblur", str(photo(tmp_path)), "-o", str(tmp_path / "out"), "--model", str(nested)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(error_lines(err)) == 1 and "invalid config in metadata" in err

    with safe_open(weights, "pt") as f:
        meta = f.metadata()
    save_file(load_file(weights), nested, metadata={**meta, "defocus_calibration": DEEP})  # --keep-bokeh's
    assert main(["deblur", str(photo(tmp_path)), "-o", str(tmp_path / "out"), "--model", str(nested)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(error_lines(err)) == 1 and "invalid defocus calibration" in err

    manifest = tmp_path / "nested.jsonl"
    manifest.write_text(DEEP + "\n")
    assert main(["deblur", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", weights, "--retry-failed",
                 str(manifest)]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and f"{manifest}:1: not a manifest line" in err

    run = tmp_path / "run"
    run.mkdir()
    (run / "metrics.jsonl").write_text(DEEP + "\n")
    assert main(["curves", str(run), "-o", str(tmp_path / "c.png")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "metrics.jsonl:1: not a metrics line" in err


def test_a_synth_manifest_nested_too_deeply_is_one_line(tmp_path, capsys):
    pytest.importorskip("skimage")
    (tmp_path / "ds").mkdir()
    (tmp_path / "ds" / "manifest.json").write_text(DEEP)
    assert main(["synth", "-o", str(tmp_path / "ds"), "--train", "1", "--size", "32x32", "--workers", "1",
                 "--no-progress"]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "manifest.json: not a dataset manifest" in err


# -- 10: nothing replaced without --overwrite -------------------------------------------------------------
def test_a_manifest_is_not_written_over_a_file_that_is_not_one(tmp_path, weights, capsys):
    src = photo(tmp_path)
    existing = write_image(tmp_path / "existing.png", np.zeros((4, 4, 3), np.float32))
    before = existing.read_bytes()
    assert main(["deblur", str(src), "-o", str(tmp_path / "out"), "--model", weights, "--manifest", str(existing)]) == 1
    err = capsys.readouterr().err
    assert f"{existing} exists and is not an ifan deblur manifest: this run's manifest would replace it" in err
    assert "--overwrite" in err
    assert existing.read_bytes() == before and not (tmp_path / "out").exists()
    assert main(["deblur", str(src), "-o", str(tmp_path / "out"), "--model", weights, "--manifest", str(existing),
                 "--overwrite"]) == 0
    assert existing.read_text().startswith('{"input": ')
    # a run's own manifest is replaced by the next run, as always
    assert main(["deblur", str(src), "-o", str(tmp_path / "out2"), "--model", weights]) == 0
    assert main(["deblur", str(src), "-o", str(tmp_path / "out2"), "--model", weights]) == 0
    assert json.loads((tmp_path / "out2" / MANIFEST_NAME).read_text().splitlines()[0])["status"] == "skipped"


def test_convert_replaces_nothing_without_overwrite_and_never_its_source(tmp_path, weights, capsys):
    existing = tmp_path / "existing.safetensors"
    existing.write_bytes(b"the user's file")
    assert main(["convert", weights, str(existing)]) == 1
    assert "exists; add --overwrite to replace it" in capsys.readouterr().err
    assert existing.read_bytes() == b"the user's file"
    assert main(["convert", weights, str(existing), "--overwrite"]) == 0
    assert existing.read_bytes() != b"the user's file"
    source = tmp_path / "source.safetensors"
    source.write_bytes(open(weights, "rb").read())
    for flags in ([], ["--overwrite"]):
        assert main(["convert", str(source), str(source), *flags]) == 1
        assert "is the source" in capsys.readouterr().err
    assert source.read_bytes() == open(weights, "rb").read()


# -- 11: option values, NaN ----------------------------------------------------------------------------------
@pytest.mark.parametrize("option, value, expected", [
    ("--quality", "0", "--quality: expected an integer from 1 to 100, got 0"),
    ("--quality", "101", "--quality: expected an integer from 1 to 100, got 101"),
    ("--quality", "-5", "--quality: expected an integer from 1 to 100, got -5"),
    ("--max-pixels", "-1", "--max-pixels: expected a positive integer, got -1"),
    ("--max-pixels", "0", "--max-pixels: expected a positive integer, got 0"),
    ("--overlap", "-8", "--overlap: expected an integer >= 0, got -8"),
    ("--threads", "0", "--threads: expected a positive integer, got 0"),
    ("--batch", "0", "--batch: expected a positive integer, got 0"),
])
def test_bad_option_values_are_refused_up_front_in_one_line(tmp_path, weights, capsys, option, value, expected):
    src = photo(tmp_path)
    with pytest.raises(SystemExit) as stop:
        main(["deblur", str(src), "-o", str(tmp_path / "out"), "--model", weights, option, value])
    assert stop.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].endswith(expected) and not (tmp_path / "out").exists()


def test_a_tile_size_that_cannot_work_is_one_line_before_any_file(tmp_path, weights, capsys):
    photo(tmp_path, "a.png"), photo(tmp_path, "b.png")
    code = main(["deblur", str(tmp_path / "in"), "-o", str(tmp_path / "out"), "--model", weights, "--tile", "7"])
    err = capsys.readouterr().err
    assert code != 0 and len(error_lines(err)) == 1, err
    assert "--tile 7" in err and "--overlap" in err and not (tmp_path / "out").exists()


def test_serve_and_synth_values_are_checked_up_front(capsys, monkeypatch):
    def serve(*args, **kwargs):
        raise AssertionError("the server was started with a bad value")

    monkeypatch.setattr("ifan.apps.serve.serve", serve)
    for argv, expected in [(["serve", "--max-pixels", "-1"], "--max-pixels: expected a positive integer, got -1"),
                           (["serve", "--port", "70000"], "--port: expected an integer from 0 to 65535, got 70000"),
                           (["synth", "--train", "-1"], "--train: expected an integer >= 0, got -1"),
                           (["synth", "--workers", "0"], "--workers: expected a positive integer, got 0"),
                           (["synth", "--max-blur", "nan"], "--max-blur: expected a number from 0 to 64, got nan")]:
        with pytest.raises(SystemExit):
            main(argv)
        assert capsys.readouterr().err.strip().splitlines()[-1].endswith(expected), argv


@pytest.fixture(scope="module")
def deblurrer():
    torch.manual_seed(0)
    return Deblurrer(create_model("ifan", channels=2, iterations=2), device="cpu")


@pytest.mark.parametrize("kind", ["numpy", "tensor", "pil"])
def test_nan_or_infinity_in_a_float_image_is_refused_with_a_clear_error(deblurrer, kind):
    image = np.full((16, 24, 3), 0.5, np.float32)
    image[2, 3], image[5, 6, 0], image[7, 8, 0] = np.nan, np.inf, -np.inf
    given = {"numpy": image, "tensor": torch.from_numpy(image).permute(2, 0, 1),
             "pil": PILImage.fromarray(image[:, :, 0])}[kind]
    expected = "1 NaN and 2 infinite values" if kind == "pil" else "3 NaN and 2 infinite values"
    with pytest.raises(ValueError, match=f"the image holds {expected}"):
        deblurrer.deblur(given)
    with pytest.raises(ValueError, match="NaN"):
        deblurrer.defocus_map(given)
    assert np.isfinite(deblurrer.deblur(np.nan_to_num(image, posinf=1.0, neginf=0.0))).all()
