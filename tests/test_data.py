"""Dataset layouts, file matching, clear errors, and augmentations with shared random draws."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from ifan.data import AugmentConfig, DatasetError, augment, open_dataset
from ifan.data.augment import official_gray
from ifan.io import write_image

from helpers import make_dpdd


@pytest.mark.parametrize("bit_depth", [8, 16])
def test_dpdd_reads_back_all_views(tmp_path, bit_depth):
    make_dpdd(tmp_path, "test", bit_depth=bit_depth)
    ds = open_dataset("dpdd", tmp_path, split="test")
    assert len(ds) == 2
    item = ds[0]
    assert item["name"] == "a" and item["bit_depth"] == bit_depth
    for view in ("c", "gt", "l", "r"):
        assert item[view].shape == (3, 40, 48) and item[view].dtype == torch.float32
    assert not torch.equal(item["l"], item["r"])


def test_unmatched_missing_and_mismatched_files_are_named(tmp_path):
    make_dpdd(tmp_path)
    (tmp_path / "train_l/source/b.png").unlink()
    with pytest.raises(DatasetError, match=r"train_l/source lacks 1 file.*\bb\b"):
        open_dataset("dpdd", tmp_path, split="train")
    write_image(tmp_path / "train_l/source/b.png", np.zeros((40, 50, 3), np.float32))
    with pytest.raises(DatasetError, match=r"sample 'b' differ in size.*b.png \(l\) 50x40"):
        open_dataset("dpdd", tmp_path, split="train")
    (tmp_path / "train_l/source/b.png").write_bytes(b"\x89PNG broken")
    with pytest.raises(DatasetError, match=r"train_l/source/b.png: unreadable image"):
        open_dataset("dpdd", tmp_path, split="train")
    with pytest.raises(DatasetError, match="missing folder"):
        open_dataset("dpdd", tmp_path, split="val")
    with pytest.raises(DatasetError, match="unknown dataset kind"):
        open_dataset("nyu", tmp_path)
    with pytest.raises(DatasetError, match="smaller than 64x64"):
        make_dpdd(tmp_path / "small", "train")
        open_dataset("dpdd", tmp_path / "small", split="train", crop=64)


def test_realdof_cuhk_folder_and_pixeldp_layouts(tmp_path):
    rng = np.random.default_rng(1)
    for sub in ("source", "target"):
        for n in ("x", "y"):
            write_image(tmp_path / "realdof" / sub / f"{n}.png", rng.random((16, 24, 3), dtype=np.float32))
    ds = open_dataset("realdof", tmp_path / "realdof")
    assert [ds[i]["name"] for i in range(len(ds))] == ["x", "y"] and "gt" in ds[0]
    assert "gt" in open_dataset("folder", tmp_path / "realdof")[1]
    write_image(tmp_path / "cuhk" / "sub" / "m.jpg", rng.random((16, 24, 3), dtype=np.float32))
    item = open_dataset("cuhk", tmp_path / "cuhk")[0]
    assert "gt" not in item and item["c"].shape == (3, 16, 24)
    for view in ("c", "l", "r"):
        write_image(tmp_path / "pixeldp" / f"test_{view}" / "source" / "p.png", rng.random((16, 24, 3), dtype=np.float32))
    item = open_dataset("pixeldp", tmp_path / "pixeldp")[0]
    assert item["rotated"] and item["c"].shape == (3, 24, 16)  # rotated 90 degrees counter-clockwise
    original = open_dataset("pixeldp", tmp_path / "pixeldp", rotate=False)[0]["c"]
    torch.testing.assert_close(item["c"], torch.rot90(original, 1, (1, 2)))


def test_same_key_same_sample_and_crops_move_with_the_seed(tmp_path):
    make_dpdd(tmp_path, size=(64, 64))
    ds = open_dataset("dpdd", tmp_path, split="train", crop=32, augment_cfg=AugmentConfig())
    a, b = ds[(0, 123)], ds[(0, 123)]
    for view in ("c", "gt", "l", "r"):
        assert torch.equal(a[view], b[view])
    crops = {ds[(0, s)]["c"][:, 0, 0].sum().item() for s in range(8)}
    assert len(crops) > 1


def _views(value_l=0.2, value_r=0.8, h=50, w=60):
    rng = np.random.default_rng(0)
    base = rng.random((h, w, 3), dtype=np.float32)
    return {"c": base.copy(), "gt": base.copy(), "l": np.clip(base + value_l, 0, 1), "r": np.clip(base * value_r, 0, 1)}


def test_augment_uses_the_same_draws_for_every_view():
    views = _views()
    cfg = AugmentConfig(noise_p=1.0, gray_p=1.0, scale_p=1.0, flip_v_p=1.0)
    out = augment(views, np.random.default_rng(5), cfg, crop=32)
    assert out["c"].shape == (32, 32, 3)
    torch.testing.assert_close(torch.from_numpy(out["c"]), torch.from_numpy(out["gt"]))  # same noise on target
    assert np.allclose(out["c"][..., 0], out["c"][..., 1])  # grey on every view
    cfg_clean_target = replace(cfg, noise_on_target=False)
    out2 = augment(views, np.random.default_rng(5), cfg_clean_target, crop=32)
    assert not np.allclose(out2["c"], out2["gt"])


def test_horizontal_flip_swaps_left_and_right():
    views = _views()
    cfg = AugmentConfig(noise_p=0, gray_p=0, scale_p=0, flip_h_p=1.0)
    out = augment(views, np.random.default_rng(0), cfg, crop=None)
    np.testing.assert_array_equal(out["l"], views["r"][:, ::-1])
    np.testing.assert_array_equal(out["r"], views["l"][:, ::-1])
    np.testing.assert_array_equal(out["c"], views["c"][:, ::-1])


def test_downscale_never_goes_below_the_crop():
    views = _views(h=40, w=100)
    cfg = AugmentConfig(noise_p=0, gray_p=0, scale_p=1.0, scale_min=0.1)
    for seed in range(10):
        assert augment(views, np.random.default_rng(seed), cfg, crop=36)["c"].shape == (36, 36, 3)
    with pytest.raises(ValueError, match="smaller than the 64x64"):
        augment(views, np.random.default_rng(0), cfg, crop=64)


def test_official_gray_formula():
    px = np.array([[[0.5, 0.25, 1.0]]], dtype=np.float32)
    y = 0.2126 * 0.5 + 0.7152 * 0.25 + 0.07228 * 1.0
    expected = 1.055 * y ** (1 / 2.4) - 0.055
    assert np.allclose(official_gray(px), expected)
    assert np.allclose(official_gray(np.full((1, 1, 3), 0.001, np.float32)), 12.92 * 0.001 * (0.2126 + 0.7152 + 0.07228))


def test_cached_datasets_over_the_same_files_decode_them_once(tmp_path, monkeypatch):
    import ifan.data.datasets as datasets

    make_dpdd(tmp_path, "train", names=("a", "b"), size=(32, 40))
    reads = []
    real = datasets.read_image
    monkeypatch.setattr(datasets, "read_image", lambda path: reads.append(path) or real(path))
    first = open_dataset("dpdd", tmp_path, "train", cache=True)
    items = [first[i] for i in range(len(first))]
    assert len(reads) == 8  # 2 samples x (c, gt, l, r)
    second = open_dataset("dpdd", tmp_path, "train", cache=True)  # e.g. the next run of an ablation
    for i, item in enumerate(items):
        assert torch.equal(second[i]["c"], item["c"])
    assert len(reads) == 8
    open_dataset("dpdd", tmp_path, "train")[0]  # without cache: read from disk
    assert len(reads) == 12
