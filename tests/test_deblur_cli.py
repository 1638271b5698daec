"""`ifan deblur`: a mixed folder in one command, naming, skipping, and one clear line per bad input."""

from __future__ import annotations

import numpy as np
import torch
from PIL import Image as PILImage

from ifan import create_model
from ifan.apps.files import InputFile, collect_inputs, output_path
from ifan.apps.cli import main
from ifan.io import read_image, write_image
from ifan.models.serialization import save_weights


def pattern(h, w, seed=0):
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([(xx / w), (yy / h), 0.5 + 0.3 * np.sin(xx / 5.0)], axis=2)
    return np.clip(base + 0.05 * rng.standard_normal((h, w, 3)), 0, 1).astype(np.float32)


def make_shoot(root):
    """The issue's folder: 16-bit PNG, rotated JPEG, grey, RGBA, 37x53 and a corrupt file."""
    root.mkdir(parents=True, exist_ok=True)
    write_image(root / "sixteen.png", pattern(24, 40), bit_depth=16)
    arr = (pattern(20, 36) * 255).astype(np.uint8)
    pil = PILImage.fromarray(arr)
    exif = pil.getexif()
    exif[0x0112] = 6  # displayed rotated by 90 degrees
    exif[0x010F] = "TestCam"
    pil.save(root / "rotated.jpg", exif=exif.tobytes(), quality=95)
    write_image(root / "grey.png", pattern(30, 20), grayscale=True)
    alpha = np.linspace(0, 1, 26 * 18, dtype=np.float32).reshape(26, 18)
    write_image(root / "rgba.png", pattern(26, 18), alpha=alpha)
    write_image(root / "small.png", pattern(37, 53))
    good = write_image(root / "tmp.jpg", pattern(64, 64))
    (root / "corrupt.jpg").write_bytes(good.read_bytes()[:400])
    good.unlink()
    return alpha


def run(argv, capsys):
    code = main(argv)
    captured = capsys.readouterr()
    return code, captured.err


def test_the_issue_folder_in_one_command(tmp_path, weights, capsys):
    shoot = tmp_path / "shoot"
    alpha = make_shoot(shoot)
    out = tmp_path / "out"
    code, err = run(["deblur", str(shoot), "-o", str(out), "--model", weights, "-q"], capsys)
    assert code == 1
    errors = [line for line in err.splitlines() if "error" in line]
    assert len(errors) == 1 and "corrupt.jpg" in errors[0]
    assert "5 deblurred, 0 skipped, 1 failed" in err

    img = read_image(out / "sixteen_deblurred.png")
    assert img.bit_depth == 16 and img.size == (24, 40)
    img = read_image(out / "rotated_deblurred.jpg")
    assert img.size == (36, 20)  # upright: the EXIF rotation applied
    back = PILImage.open(out / "rotated_deblurred.jpg").getexif()
    assert back.get(0x0112, 1) == 1 and back[0x010F] == "TestCam"
    img = read_image(out / "grey_deblurred.png")
    assert img.grayscale and img.size == (30, 20) and PILImage.open(out / "grey_deblurred.png").mode == "L"
    img = read_image(out / "rgba_deblurred.png")
    assert img.alpha is not None and np.abs(img.alpha - alpha).max() <= 0.5 / 255 + 1e-6
    assert read_image(out / "small_deblurred.png").size == (37, 53)
    assert not (out / "corrupt_deblurred.jpg").exists()
    assert sorted(p.name for p in out.iterdir()) == sorted(
        ["sixteen_deblurred.png", "rotated_deblurred.jpg", "grey_deblurred.png", "rgba_deblurred.png",
         "small_deblurred.png", "ifan-manifest.jsonl"])  # no temporary files left


def test_naming_beside_inputs_nested_folders_and_globs(tmp_path, weights, capsys):
    (tmp_path / "a" / "b").mkdir(parents=True)
    write_image(tmp_path / "a" / "one.png", pattern(16, 16))
    write_image(tmp_path / "a" / "b" / "two.jpeg", pattern(16, 24))
    code, _ = run(["deblur", str(tmp_path / "a" / "one.png"), "--model", weights, "-q"], capsys)
    assert code == 0 and (tmp_path / "a" / "one_deblurred.png").is_file()
    code, _ = run(["deblur", str(tmp_path / "a"), "-o", str(tmp_path / "out"), "--model", weights, "-q"], capsys)
    assert code == 0
    assert (tmp_path / "out" / "one_deblurred.png").is_file()
    assert (tmp_path / "out" / "b" / "two_deblurred.jpeg").is_file()
    assert not (tmp_path / "out" / "one_deblurred_deblurred.png").exists()  # own outputs are not inputs
    code, _ = run(["deblur", str(tmp_path / "a" / "**" / "*.jpeg"), "-o", str(tmp_path / "g"), "--model", weights,
                   "--format", "tiff", "-q"], capsys)
    assert code == 0 and (tmp_path / "g" / "b" / "two_deblurred.tif").is_file()


def test_output_path_rule(tmp_path):
    item = InputFile(tmp_path / "x" / "photo.JPG")
    assert output_path(item, None) == tmp_path / "x" / "photo_deblurred.JPG"
    assert output_path(item, tmp_path / "o", "png") == tmp_path / "o" / "photo_deblurred.png"
    nested = InputFile(tmp_path / "x" / "y" / "p.bmp", base=tmp_path / "x")
    assert output_path(nested, tmp_path / "o") == tmp_path / "o" / "y" / "p_deblurred.png"  # BMP -> PNG
    assert output_path(nested, None, suffix="_defocus", ext=".npy") == tmp_path / "x" / "y" / "p_defocus.npy"
    found = collect_inputs([tmp_path / "nothing-here", str(tmp_path / "*.png")])
    assert not found.files and len(found.errors) == 2


def test_existing_outputs_are_skipped_unless_overwrite(tmp_path, weights, capsys):
    src = write_image(tmp_path / "p.png", pattern(16, 16))
    target = tmp_path / "p_deblurred.png"
    target.write_bytes(b"old")
    code, err = run(["deblur", str(src), "--model", weights], capsys)
    assert code == 0 and "skipped" in err and target.read_bytes() == b"old"
    assert "0 deblurred, 1 skipped, 0 failed" in err
    code, err = run(["deblur", str(src), "--model", weights, "--overwrite", "-q"], capsys)
    assert code == 0 and read_image(target).size == (16, 16)


def test_an_input_is_never_overwritten(tmp_path, weights, capsys):
    a = write_image(tmp_path / "a.png", pattern(16, 16))
    b = write_image(tmp_path / "a_deblurred.png", pattern(16, 16, seed=1))
    before = b.read_bytes()
    code, err = run(["deblur", str(a), str(b), "--model", weights, "--overwrite", "-q"], capsys)
    assert code == 1 and "refusing to write" in err and "it is one of the inputs" in err
    assert b.read_bytes() == before
    assert (tmp_path / "a_deblurred_deblurred.png").is_file()  # the other input still done


def test_sixteen_bit_into_jpeg_becomes_png(tmp_path, weights, capsys):
    src = write_image(tmp_path / "deep.png", pattern(16, 16), bit_depth=16)
    code, err = run(["deblur", str(src), "--model", weights, "--format", "jpg"], capsys)
    assert code == 0 and "written as PNG" in err
    assert read_image(tmp_path / "deep_deblurred.png").bit_depth == 16


def test_bad_inputs_each_get_one_line_and_the_rest_is_done(tmp_path, weights, capsys):
    good = write_image(tmp_path / "good.png", pattern(16, 16))
    one = write_image(tmp_path / "one.png", pattern(1, 1))
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    gif = tmp_path / "anim.gif"
    PILImage.fromarray((pattern(8, 8) * 255).astype(np.uint8)).save(gif)
    big = write_image(tmp_path / "big.png", pattern(64, 64))
    missing = tmp_path / "missing.png"
    args = [str(p) for p in (good, one, empty, text, gif, big, missing)]
    code, err = run(["deblur", *args, "--model", weights, "--max-pixels", "1000", "-q"], capsys)
    assert code == 1
    lines = [line for line in err.splitlines() if "error" in line]
    for name, why in [("empty.png", "empty file"), ("notes.png", "not a recognised image"),
                      ("anim.gif", "unsupported format '.gif'"),
                      ("big.png", "64x64 = 0.0041 MP exceeds the limit of 0.001 MP (--max-pixels)"),
                      ("missing.png", "no such file")]:
        assert sum(name in line and why in line for line in lines) == 1, (name, err)
    assert "2 deblurred, 0 skipped, 5 failed" in err
    assert read_image(tmp_path / "one_deblurred.png").size == (1, 1)
    assert (tmp_path / "good_deblurred.png").is_file()


def test_unwritable_output(tmp_path, weights, capsys):
    src = write_image(tmp_path / "p.png", pattern(16, 16))
    blocker = tmp_path / "file"
    blocker.write_text("x")
    code, err = run(["deblur", str(src), "-o", str(blocker / "sub"), "--model", weights, "-q"], capsys)
    assert code == 1 and "cannot write" in err and "1 failed" in err


def test_missing_or_mismatched_model_is_one_line(tmp_path, capsys):
    src = write_image(tmp_path / "p.png", pattern(16, 16))
    code, err = run(["deblur", str(src), "--model", str(tmp_path / "none.safetensors")], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "none.safetensors" in err
    wrong = create_model("ifan", channels=2, iterations=2).state_dict()
    wrong["reconstructor.out.0.weight"] = torch.zeros(5, 5, 3, 3)
    bad = save_weights(tmp_path / "bad.safetensors", create_model("ifan", channels=2, iterations=2).config, wrong)
    code, err = run(["deblur", str(src), "--model", str(bad)], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "shape mismatch" in err
    garbage = tmp_path / "garbage.safetensors"
    garbage.write_bytes(b"\x00" * 64)
    code, err = run(["deblur", str(src), "--model", str(garbage)], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "garbage.safetensors" in err
    assert not (tmp_path / "p_deblurred.png").exists()


def test_default_model_without_weights_is_one_clear_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setattr("ifan.models.zoo.bundled_weights_path", lambda name: None)
    src = write_image(tmp_path / "p.png", pattern(16, 16))
    code, err = run(["deblur", str(src)], capsys)
    assert code == 1 and len(err.strip().splitlines()) == 1 and "no weights ship" in err


def test_defocus_maps_and_verbose_plan_with_tiling(tmp_path, weights, capsys):
    src = write_image(tmp_path / "p.png", pattern(100, 72))
    code, err = run(["deblur", str(src), "--model", weights, "--defocus-map", "--defocus-raw", "npy",
                     "--tile", "48", "--overlap", "16", "-v", "-q"], capsys)
    assert code == 0
    assert "tiles: 3 x 2" in err and "ch=2 N=2" in err
    colour = read_image(tmp_path / "p_defocus.png")
    assert colour.size == (100, 72) and not colour.grayscale
    raw = np.load(tmp_path / "p_defocus.npy")
    assert raw.shape == (100, 72) and raw.dtype == np.float32
    code, _ = run(["deblur", str(src), "--model", weights, "--defocus-raw", "png16", "--overwrite", "-q"], capsys)
    assert code == 0 and read_image(tmp_path / "p_defocus16.png").bit_depth == 16


def test_memory_budget_too_small_fails_that_file_only(tmp_path, weights, capsys):
    src = write_image(tmp_path / "p.png", pattern(64, 64))
    code, err = run(["deblur", str(src), "--model", weights, "--max-memory", "1M", "-q"], capsys)
    assert code == 1 and "memory budget" in err and "too small" in err


def test_the_file_loop_reports_each_step_to_its_listener(tmp_path, weights):
    from ifan.apps.files import OutputOptions
    from ifan.apps.pipeline import deblur_files
    from ifan.apps.steps import Listener
    from ifan.inference import Deblurrer

    class Recorder(Listener):
        def __init__(self):
            self.events = []

        def started(self, item, index, total):
            self.events.append(("started", item.path.name, index, total))

        def planned(self, item, plan):
            self.events.append(("planned", plan.num_tiles))

        def tile(self, done, total):
            self.events.append(("tile", done, total))

        def result(self, item, image, deblurred, defocus):
            self.events.append(("result", deblurred.shape, defocus.shape))

        def finished(self, report):
            self.events.append(("finished", report.status))

    good = write_image(tmp_path / "a.png", pattern(16, 24))
    (tmp_path / "b.png").write_bytes(b"broken")
    items = collect_inputs([good, tmp_path / "b.png"]).files
    deblurrer = Deblurrer.from_pretrained(weights, device="cpu")
    for overlap in (True, False):  # the same events in the same order: a's write is behind when b starts
        recorder = Recorder()
        counts = deblur_files(deblurrer, items, OutputOptions(defocus_map=True, overwrite=True), listener=recorder,
                              overlap=overlap)
        assert (counts.done, counts.skipped, counts.failed) == (1, 0, 1)
        assert str(counts) == "1 deblurred, 0 skipped, 1 failed"
        assert recorder.events == [("started", "a.png", 0, 2), ("planned", 1), ("tile", 1, 1),
                                   ("started", "b.png", 1, 2), ("result", (16, 24, 3), (16, 24)),
                                   ("finished", "done"), ("finished", "failed")]
        assert (tmp_path / "a_deblurred.png").is_file() and (tmp_path / "a_defocus.png").is_file()


def test_a_missing_defocus_map_does_not_let_the_existing_result_be_replaced(tmp_path, weights, capsys):
    src = write_image(tmp_path / "a.jpg", pattern(16, 16))
    own = tmp_path / "a_deblurred.jpg"
    own.write_bytes(b"the user's own file")
    code, err = run(["deblur", str(src), "--model", weights, "--defocus-map"], capsys)
    assert code == 0 and own.read_bytes() == b"the user's own file"
    assert read_image(tmp_path / "a_defocus.png").size == (16, 16)  # the missing output is written
    assert f"kept the existing {own}" in err and "1 deblurred" in err


def test_inputs_that_would_write_one_file_are_refused_naming_each_other(tmp_path, weights, capsys):
    write_image(tmp_path / "a.jpg", pattern(16, 16))
    write_image(tmp_path / "a.png", pattern(16, 16, seed=1))
    write_image(tmp_path / "b.png", pattern(16, 16, seed=2))
    code, err = run(["deblur", str(tmp_path), "--model", weights, "--defocus-map", "-q"], capsys)
    assert code == 1 and "1 deblurred, 0 skipped, 2 failed" in err
    assert f"{tmp_path / 'a.jpg'}: not deblurred: {tmp_path / 'a.png'} would write the same" in err
    assert f"{tmp_path / 'a.png'}: not deblurred: {tmp_path / 'a.jpg'} would write the same" in err
    assert not (tmp_path / "a_defocus.png").exists() and not (tmp_path / "a_deblurred.jpg").exists()
    assert (tmp_path / "b_defocus.png").is_file()

    for d in ("d1", "d2"):
        write_image(tmp_path / d / "a.jpg", pattern(16, 16, seed=len(d)))
    flat = tmp_path / "flat"
    code, err = run(["deblur", str(tmp_path / "d1" / "a.jpg"), str(tmp_path / "d2" / "a.jpg"), "-o", str(flat),
                     "--model", weights, "--overwrite", "-q"], capsys)
    assert code == 1 and "0 deblurred, 0 skipped, 2 failed" in err
    assert f"would write the same {flat / 'a_deblurred.jpg'}" in err
    assert [p.name for p in flat.iterdir()] == ["ifan-manifest.jsonl"]  # the account of the run, no image


def test_no_file_is_written_twice_in_one_run(tmp_path, weights, capsys):
    from ifan.apps.files import Claims, OutputOptions
    from ifan.apps.pipeline import deblur_file
    from ifan.inference import Deblurrer

    deblurrer = Deblurrer.from_pretrained(weights, device="cpu")
    png = write_image(tmp_path / "a.png", pattern(16, 16))
    disguised = tmp_path / "a.jpg"  # a 16-bit PNG named .jpg: its result falls back to a_deblurred.png
    write_image(tmp_path / "deep.png", pattern(16, 16, seed=1), bit_depth=16).rename(disguised)
    claims = Claims()
    first = deblur_file(deblurrer, InputFile(png), OutputOptions(overwrite=True), claims=claims)
    second = deblur_file(deblurrer, InputFile(disguised), OutputOptions(overwrite=True), claims=claims)
    assert first.status == "done" and second.status == "failed"
    assert "another input of this run writes it" in second.message
    assert read_image(tmp_path / "a_deblurred.png").bit_depth == 8
    # in one run the name that a.png plans is a.png's, whichever input comes first
    (tmp_path / "a_deblurred.png").unlink()
    code, err = run(["deblur", str(disguised), str(png), "--model", weights, "-q"], capsys)
    assert code == 1 and "1 deblurred, 0 skipped, 1 failed" in err
    assert f"refusing to write {tmp_path / 'a_deblurred.png'}: it is the output of another input" in err
    assert read_image(tmp_path / "a_deblurred.png").bit_depth == 8


def _counting_scandir(monkeypatch, limit):
    import os

    real, calls = os.scandir, []

    def scandir(path="."):
        calls.append(path)
        if len(calls) > limit:
            raise RuntimeError(f"more than {limit} folders listed: the walk repeats itself")
        return real(path)

    monkeypatch.setattr(os, "scandir", scandir)
    return calls


def test_a_glob_over_symlink_loops_lists_each_real_folder_once(tmp_path, monkeypatch):
    root = tmp_path / "dir"
    (root / "sub" / "deep").mkdir(parents=True)
    write_image(root / "a.jpg", pattern(8, 8))
    write_image(root / "sub" / "deep" / "b.jpg", pattern(8, 8))
    (root / "sub" / "up").symlink_to("..")  # two loops back to dir
    (root / "sub" / "deep" / "top").symlink_to("../..")
    calls = _counting_scandir(monkeypatch, limit=50)
    found = collect_inputs([str(root / "**" / "*.jpg")])
    assert [f.path for f in found.files] == [root / "a.jpg", root / "sub" / "deep" / "b.jpg"]
    assert all(f.base == root for f in found.files) and not found.errors
    assert len(calls) <= 2 * 3  # dir, sub, deep: each listed by ** and by *.jpg at most


def test_the_default_pixel_limit_is_what_the_memory_of_the_run_holds(tmp_path, weights, monkeypatch):
    from ifan.apps.files import OutputOptions
    from ifan.apps.pipeline import deblur_file
    from ifan.inference import Deblurrer

    deblurrer = Deblurrer.from_pretrained(weights, device="cpu")
    monkeypatch.setattr(deblurrer, "budget", lambda: 100 * 2**20)  # 100 MiB: 2.18 MP at 48 bytes per pixel
    big = write_image(tmp_path / "big.png", pattern(1500, 1500))
    report = deblur_file(deblurrer, InputFile(big))
    assert report.status == "failed" and report.message == (
        f"{big}: 1500x1500 = 2.25 MP exceeds the limit of 2.18 MP (what the 100.00 MiB of memory this run may use "
        "holds at 48 bytes per pixel; --max-memory sets it); raise it with --max-pixels if the file is trusted "
        "and the memory is there")
    mid = write_image(tmp_path / "mid.png", pattern(1000, 1000))
    assert "the limit of 0.874 MP" in deblur_file(deblurrer, InputFile(mid), OutputOptions(defocus_map=True)).message  # 120 B/px
    assert "(--max-pixels)" in deblur_file(deblurrer, InputFile(mid), OutputOptions(max_pixels=1000)).message
    assert deblur_file(deblurrer, InputFile(write_image(tmp_path / "small.png", pattern(64, 64)))).status == "done"


def test_exif_too_large_for_jpeg_is_cut_down_and_verbose_says_what_went(tmp_path, weights, capsys):
    from PIL import ExifTags

    exif = PILImage.Exif()
    exif[0x010F] = "TestCam"
    exif.get_ifd(ExifTags.IFD.Exif)[0x9286] = b"ASCII\0\0\0" + b"x" * 70_000  # 70 KB: more than JPEG holds
    src = tmp_path / "big_exif.png"
    PILImage.fromarray((pattern(24, 32) * 255).astype(np.uint8)).save(src, exif=exif.tobytes())
    code, err = run(["deblur", str(src), "-o", str(tmp_path / "out"), "--format", "jpg", "--model", weights, "-v"],
                    capsys)
    assert code == 0, err
    out = tmp_path / "out" / "big_exif_deblurred.jpg"
    assert PILImage.open(out).getexif()[0x010F] == "TestCam"
    assert f"{src}: note: EXIF cut from " in err and "dropped UserComment" in err
