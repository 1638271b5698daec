"""``ifan synth``: the DPDD layout, reading it back, maps, manifest, resume, workers, CLI."""

from __future__ import annotations

import hashlib
import json
from dataclasses import replace

import cv2
import numpy as np
import pytest

pytest.importorskip("skimage")

from ifan.apps.cli import main  # noqa: E402
from ifan.data.datasets import open_dataset  # noqa: E402
from ifan.synth.color import linear_to_srgb, srgb_to_linear  # noqa: E402
from ifan.synth.optics import ThinLensCamera  # noqa: E402
from ifan.synth.psf import ApertureProfile, disparity_from_coc  # noqa: E402
from ifan.synth.sampling import SynthConfig  # noqa: E402
from ifan.synth.writer import sample_paths, write_dataset  # noqa: E402

CONFIG = SynthConfig(width=64, height=48, max_blur=10.0)
COUNTS = {"train": 3, "val": 1, "test": 2}
FOLDERS = ("{}_c/source", "{}_c/target", "{}_l/source", "{}_r/source")


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    root = tmp_path_factory.mktemp("synth")
    write_dataset(root, COUNTS, CONFIG, seed=11, progress=False)
    return root


def _digests(root) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file() and p.name != "manifest.json"}


def test_layout_is_dpdd_with_identical_names_in_every_folder(dataset):
    for split, n in COUNTS.items():
        names = [f"{i:06d}" for i in range(n)]
        for folder in FOLDERS:
            assert sorted(p.stem for p in (dataset / folder.format(split)).iterdir()) == names
            for p in (dataset / folder.format(split)).iterdir():
                image = cv2.imread(str(p), cv2.IMREAD_UNCHANGED)
                assert p.suffix == ".png" and image.dtype == np.uint8 and image.shape == (48, 64, 3)
        assert sorted(p.stem for p in (dataset / f"{split}_meta").glob("*.npz")) == names
    assert not list(dataset.rglob("*.tmp"))


def test_a_dpdd_loader_reads_it_back_and_c_is_the_mean_of_l_and_r(dataset):
    for split, n in COUNTS.items():
        data = open_dataset("dpdd", dataset, split)
        assert len(data) == n
        for item in data:
            assert item["bit_depth"] == 8
            c, left, right = (item[k].numpy().transpose(1, 2, 0) for k in ("c", "l", "r"))
            assert c.shape == item["gt"].shape[1:] + (3,) == (48, 64, 3)
            # C = (L + R) / 2 in linear light, up to 8-bit rounding of the three files
            mean = linear_to_srgb(0.5 * (srgb_to_linear(left) + srgb_to_linear(right)))
            assert np.abs(mean - c).max() <= 1.6 / 255


def test_maps_hold_depth_coc_and_disparity_consistent_with_the_manifest(dataset):
    manifest = json.loads((dataset / "manifest.json").read_text())
    for split, n in COUNTS.items():
        for entry in manifest["samples"][split]:
            with np.load(sample_paths(dataset, split, int(entry["name"])).meta) as maps:
                assert sorted(maps.files) == ["coc", "depth", "disparity"]
                depth, coc, disparity = maps["depth"], maps["coc"], maps["disparity"]
            assert depth.dtype == coc.dtype == disparity.dtype == np.float32
            assert depth.shape == coc.shape == disparity.shape == (48, 64) and depth.min() > 0
            cam = entry["camera"]
            camera = ThinLensCamera(cam["focal_length_mm"], cam["f_number"], cam["focus_distance_m"],
                                    cam["pixel_pitch_um"])
            # maps keep 14 mantissa bits: depth to 3e-5 relative, i.e. coc = K (1 - S/Z) to K * 2**-14 px
            np.testing.assert_allclose(coc, camera.coc_radius_px(depth), rtol=1e-4,
                                       atol=camera.radius_at_infinity_px * 2.0 ** -14)
            np.testing.assert_allclose(disparity, disparity_from_coc(coc, ApertureProfile(**entry["profile"])),
                                       rtol=2e-4, atol=1e-4)
            assert np.abs(coc).max() <= entry["max_abs_coc_px"] * 1.05 + 0.05


def test_manifest_records_every_parameter(dataset):
    manifest = json.loads((dataset / "manifest.json").read_text())
    assert manifest["format"] == "ifan-synth/1"
    assert manifest["parameters"] == {"seed": 11, "bit_depth": 8, "config": CONFIG.to_dict()}
    assert manifest["counts"] == COUNTS and set(manifest["conventions"]) >= {"coc", "disparity", "images"}
    assert all(p["licence"] for p in manifest["photos"].values())
    for split, n in COUNTS.items():
        entries = manifest["samples"][split]
        assert [e["name"] for e in entries] == [f"{i:06d}" for i in range(n)]
        for e in entries:
            assert {"kind", "seed", "camera", "profile", "noise", "focus", "depth_near_m", "depth_far_m"} <= set(e)


def test_interrupted_run_resumes_and_rewrites_only_missing_samples(tmp_path):
    write_dataset(tmp_path, {"train": 3}, CONFIG, seed=4, progress=False)
    before = _digests(tmp_path)
    victim = sample_paths(tmp_path, "train", 1)
    victim.meta.unlink()  # as if killed before the sample's last file
    victim.left.unlink()
    kept = [p for i in (0, 2) for p in (*sample_paths(tmp_path, "train", i).images,
                                       sample_paths(tmp_path, "train", i).meta)]
    mtimes = {p: p.stat().st_mtime_ns for p in kept}
    write_dataset(tmp_path, {"train": 3}, CONFIG, seed=4, progress=False)
    assert _digests(tmp_path) == before  # the missing sample comes back identical
    assert {p: p.stat().st_mtime_ns for p in kept} == mtimes  # the others are not rewritten


def test_a_crash_inside_a_sample_leaves_it_incomplete_and_the_next_run_completes_it(tmp_path, monkeypatch):
    import ifan.synth.writer as writer

    def crash(path, maps):
        (path.parent / f".{path.name}.leftover.tmp").parent.mkdir(parents=True, exist_ok=True)
        (path.parent / f".{path.name}.leftover.tmp").write_bytes(b"half")  # as a killed process would leave
        raise KeyboardInterrupt

    monkeypatch.setattr(writer, "_write_maps", crash)
    with pytest.raises(KeyboardInterrupt):
        write_dataset(tmp_path, {"train": 2}, CONFIG, seed=8, progress=False)
    first = sample_paths(tmp_path, "train", 0)
    assert first.center.exists() and not first.meta.exists() and not first.complete()
    monkeypatch.undo()
    write_dataset(tmp_path, {"train": 2}, CONFIG, seed=8, progress=False)
    assert all(sample_paths(tmp_path, "train", i).complete() for i in range(2))
    assert not list(tmp_path.rglob("*.tmp"))


@pytest.mark.slow
def test_same_seed_gives_identical_files_whatever_the_worker_count(tmp_path):
    write_dataset(tmp_path / "one", {"train": 3}, CONFIG, seed=5, workers=1, progress=False)
    write_dataset(tmp_path / "two", {"train": 3}, CONFIG, seed=5, workers=2, progress=False)
    assert _digests(tmp_path / "one") == _digests(tmp_path / "two")
    write_dataset(tmp_path / "other", {"train": 3}, CONFIG, seed=6, progress=False)
    assert _digests(tmp_path / "other") != _digests(tmp_path / "one")


def test_larger_counts_extend_and_other_parameters_are_refused(tmp_path):
    write_dataset(tmp_path, {"train": 1}, CONFIG, seed=3, progress=False)
    first = _digests(tmp_path)
    write_dataset(tmp_path, {"train": 2, "test": 1}, CONFIG, seed=3, progress=False)
    grown = _digests(tmp_path)
    assert all(grown[k] == v for k, v in first.items()) and len(grown) == 3 * 5
    assert json.loads((tmp_path / "manifest.json").read_text())["counts"] == {"train": 2, "test": 1}
    with pytest.raises(ValueError, match="other parameters"):
        write_dataset(tmp_path, {"train": 2}, CONFIG, seed=4, progress=False)
    with pytest.raises(ValueError, match="bit depth"):
        write_dataset(tmp_path / "x", {"train": 1}, CONFIG, bit_depth=12, progress=False)
    with pytest.raises(ValueError, match="splits"):
        write_dataset(tmp_path / "x", {"training": 1}, CONFIG, progress=False)


def test_sixteen_bit_output_is_read_back_at_full_precision(tmp_path):
    write_dataset(tmp_path, {"test": 1}, CONFIG, seed=2, bit_depth=16, progress=False)
    for path in sample_paths(tmp_path, "test", 0).images:
        assert cv2.imread(str(path), cv2.IMREAD_UNCHANGED).dtype == np.uint16
    item = open_dataset("dpdd", tmp_path, "test")[0]
    assert item["bit_depth"] == 16
    values = np.unique(np.round(item["c"].numpy() * 65535))
    assert np.any(values % 257 != 0)  # not 8-bit values in a 16-bit file


def test_cli_writes_a_dataset_and_a_preview(tmp_path, capsys):
    preview = tmp_path / "preview.png"
    rc = main(["synth", "--out", str(tmp_path / "ds"), "--train", "2", "--val", "1", "--size", "40x32",
               "--seed", "1", "--workers", "1", "--max-blur", "6", "--noise", "--no-progress",
               "--preview", str(preview)])
    assert rc == 0
    assert len(open_dataset("dpdd", tmp_path / "ds", "train")) == 2
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["parameters"]["config"]["noise"] is True
    assert all(e["noise"]["full_well_e"] > 0 for e in manifest["samples"]["train"])
    figure = cv2.imread(str(preview))
    assert figure.shape[1] == 6 * 40 and figure.shape[0] > 3 * 32
    assert main(["synth", "--out", str(tmp_path / "ds"), "--train", "2", "--size", "40x32", "--seed", "2",
                 "--no-progress"]) == 1
    assert "other parameters" in capsys.readouterr().err


def test_cli_soft_lens_option_reaches_the_samples_and_bad_values_are_refused(tmp_path, capsys):
    rc = main(["synth", "--out", str(tmp_path / "ds"), "--train", "6", "--size", "40x32", "--seed", "1",
               "--workers", "1", "--max-blur", "6", "--soft-lens-p", "0.5", "--no-progress"])
    assert rc == 0
    manifest = json.loads((tmp_path / "ds" / "manifest.json").read_text())
    assert manifest["parameters"]["config"]["soft_lens_p"] == 0.5
    sigmas = [e["lens_sigma"] for e in manifest["samples"]["train"]]
    assert any(s > 0 for s in sigmas) and any(s == 0 for s in sigmas)
    assert main(["synth", "--out", str(tmp_path / "bad"), "--train", "1", "--soft-lens-p", "1.5"]) == 2
    assert "soft_lens_p must be a probability" in capsys.readouterr().err


def test_maps_are_rounded_to_14_mantissa_bits_and_no_further():
    from ifan.synth.writer import _round_mantissa

    x = np.random.default_rng(0).normal(0, 10, 10000).astype(np.float32)
    r = _round_mantissa(x)
    assert r.dtype == np.float32
    rel = np.abs(r - x) / np.abs(x)
    assert rel.max() <= 2.0 ** -15 and rel.max() > 2.0 ** -17  # to nearest at 14 bits
    assert np.all(r.view(np.uint32) & np.uint32(0x1FF) == 0)  # the 9 dropped bits are zero
    np.testing.assert_array_equal(_round_mantissa(np.float32([0.0, 1.0, -2.5, 20.0])), [0.0, 1.0, -2.5, 20.0])


def test_a_dataset_made_before_the_new_options_is_extended_not_refused(tmp_path):
    # ifan 0.1 manifests record no PSF families, pipeline, ... : they count as their defaults
    write_dataset(tmp_path, {"train": 1}, CONFIG, seed=3, progress=False)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    for key in ("psf", "cateye_p", "gamma_blur_p", "pipeline_p", "sharp_p", "soft_lens_p", "content", "noise_on_target"):
        del manifest["parameters"]["config"][key]
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    first = _digests(tmp_path)
    write_dataset(tmp_path, {"train": 2}, CONFIG, seed=3, progress=False)
    assert all(_digests(tmp_path)[k] == v for k, v in first.items())
    with pytest.raises(ValueError, match="other parameters"):  # but a mixture is not that dataset
        write_dataset(tmp_path, {"train": 3}, replace(CONFIG, pipeline_p=0.5), seed=3, progress=False)


def test_a_size_the_memory_cannot_render_is_one_line_before_anything(tmp_path, capsys):
    assert main(["synth", "-o", str(tmp_path / "ds"), "--train", "1", "--size", "100000x100000",
                 "--preview", str(tmp_path / "p.png"), "--no-progress"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("ifan synth: error: --size 100000x100000: a sample of 1e+04 MP needs "
                                               "up to 9536.7 GiB to render (1024 bytes per pixel)"), err
    assert not (tmp_path / "ds").exists() and not (tmp_path / "p.png").exists()
    from ifan.synth.writer import check_render_memory

    with pytest.raises(ValueError, match="with 8 workers needs up to 8.0 GiB .* use --workers 3 or fewer"):
        check_render_memory(SynthConfig(width=1024, height=1024), workers=8, available=3 * 2**30 + 2**29)
    check_render_memory(SynthConfig(width=1024, height=1024), workers=3, available=3 * 2**30 + 2**29)


def test_the_first_sample_is_rendered_before_any_other_sample_is_drawn(tmp_path, monkeypatch):
    """A huge count starts at once: the manifest's per-sample settings are not built up front."""
    import ifan.synth.writer as writer

    drawn, seen = [], []
    real_spec = writer.sample_spec_for

    def spec_for(*args):
        drawn.append(args[1:3])
        return real_spec(*args)

    class Stop(Exception):
        pass

    def render_and_write(out, split, index, *rest):
        seen.append(len(drawn))
        raise Stop

    monkeypatch.setattr(writer, "sample_spec_for", spec_for)
    monkeypatch.setattr(writer, "_render_and_write", render_and_write)
    with pytest.raises(Stop):
        write_dataset(tmp_path, {"train": 20_000}, CONFIG, progress=False)
    assert seen == [0]  # nothing drawn for the manifest before the first sample (was 20,000 specs)
    header = json.loads((tmp_path / "manifest.json").read_text())
    assert header["counts"] == {"train": 20_000} and "samples" not in header and "parameters" in header


@pytest.mark.slow  # 2,400 samples' settings drawn under tracemalloc
def test_the_manifest_is_streamed_in_bounded_memory(tmp_path):
    import tracemalloc

    from ifan.synth.writer import _header, _write_manifest

    counts = {"train": 1800, "test": 600}
    _write_manifest(tmp_path / "warm.json", _header(CONFIG, 5, 8, {"train": 50}), 5, CONFIG)  # loads the assets
    tracemalloc.start()
    _write_manifest(tmp_path / "manifest.json", _header(CONFIG, 5, 8, counts), 5, CONFIG)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    size = (tmp_path / "manifest.json").stat().st_size
    assert peak < 2**19 < size / 3, (peak, size)  # what is held is a sample's worth, not the manifest
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert [len(manifest["samples"][s]) for s in counts] == [1800, 600]
    assert manifest["samples"]["test"][599]["name"] == "000599"
