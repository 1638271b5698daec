"""Training: typed configs, the optimizer, losses switched off, bit-exact resume, DDP, feedback."""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from ifan.apps.cli import main as cli_main
from ifan.data import DatasetError
from ifan.data.datasets import DefocusDataset, dpdd_files
from ifan.models.reblur import ReblurNet
from ifan.models.hub import load_model
from ifan.models.zoo import create_model
from ifan.train.config import ConfigError, TrainConfig, from_dict, load_config
from ifan.train.losses import LossWeights
from ifan.train.run import resolve_run, save_config
from ifan.train.optim import build_optimizer, lr_at
from ifan.train.state import TrainingModule
from ifan.train.trainer import train

from helpers import make_dpdd

ROOT = Path(__file__).resolve().parents[1]


def tiny_config(data_root: Path, **train_overrides) -> dict:
    """A recipe small enough for CI: ch 2, N 2, 32 px crops."""
    return {
        "model": "ifan",
        "model_overrides": {"channels": 2, "iterations": 2, "reblur_iterations": 2},
        "seed": 3,
        "data": {"root": str(data_root), "val_count": 1, "val_crop": 32},
        "train": {"steps": 6, "batch_size": 2, "patch_size": 32, "lr": 1e-3, "lr_milestones": [4],
                  "channels_last": False, **train_overrides},
        "log": {"log_every": 1, "val_every": 3, "ckpt_every": 1, "keep_last": 2, "progress": False},
    }


@pytest.fixture(scope="module")
def data_root(tmp_path_factory):
    root = tmp_path_factory.mktemp("dpdd")
    make_dpdd(root, "train", names=("a", "b", "c"), size=(40, 48))
    make_dpdd(root, "val", names=("v",), size=(40, 48), seed=1)
    return root


def test_recipes_load_with_the_papers_numbers():
    cfg = load_config(ROOT / "configs" / "ifan.yaml")
    assert (cfg.model, cfg.train.batch_size, cfg.train.patch_size, cfg.train.steps) == ("ifan", 8, 256, 600_000)
    assert cfg.train.lr == 1e-4 and cfg.train.weight_decay == 0.01 and cfg.train.betas == [0.9, 0.999]
    assert cfg.train.lr_milestones == [500_000, 550_000] and cfg.train.lr_gamma == 0.5
    assert cfg.train.grad_clip == 0.5
    assert (cfg.init.gain, cfg.init.filter_gain, cfg.init.reblur_gain) == (1.0, 1.5, 1.0)
    assert (cfg.losses.image, cfg.losses.dme, cfg.losses.reblur) == (1.0, 1.0, 1.0)
    assert [lr_at(s, cfg.train) for s in (499_999, 500_000, 550_000)] == [1e-4, 5e-5, 2.5e-5]
    lite = load_config(ROOT / "configs" / "ifan-lite-cpu.yaml")
    assert lite.model == "ifan-lite"
    recipes = sorted((ROOT / "configs").glob("*.yaml"))
    assert len(recipes) >= 4
    for recipe in recipes:  # every shipped recipe loads (unknown keys and wrong types are refused)
        assert load_config(recipe).train.steps > 0, recipe


def test_unknown_keys_and_wrong_types_are_named(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("train:\n  stepz: 10\n")
    with pytest.raises(ConfigError, match="unknown key.*in train: stepz"):
        load_config(bad)
    bad.write_text("train:\n  steps: ten\n")
    with pytest.raises(ConfigError, match="train.steps: expected an integer"):
        load_config(bad)
    with pytest.raises(ConfigError, match="train.lr: expected a number"):
        load_config(None, ["train.lr=fast"])
    with pytest.raises(ConfigError, match="augment.gray_p must be a probability"):
        load_config(None, ["augment.gray_p=2"])
    with pytest.raises(ConfigError, match="losses.dme needs dual-pixel views"):
        load_config(None, ["data.kind=folder"])
    cfg = load_config(None, ["train.steps=12", "train.betas=[0.8, 0.99]", "data.val_count=null"])
    assert cfg.train.steps == 12 and cfg.train.betas == [0.8, 0.99] and cfg.data.val_count is None


def test_optimizer_is_the_recipes_radam_over_both_networks():
    cfg = load_config(ROOT / "configs" / "ifan.yaml")
    model = create_model("ifan", channels=2, iterations=2, reblur_iterations=2)
    reblur = ReblurNet(model.config)
    optimizer = build_optimizer(TrainingModule(model, reblur, LossWeights()), cfg.train)
    assert isinstance(optimizer, torch.optim.RAdam) and len(optimizer.param_groups) == 1
    group = optimizer.param_groups[0]
    assert (group["lr"], group["betas"], group["eps"], group["weight_decay"]) == (1e-4, (0.9, 0.999), 1e-8, 0.01)
    expected = [*model.parameters(), *reblur.parameters()]
    assert len(group["params"]) == len(expected) and {id(q) for q in group["params"]} == {id(q) for q in expected}
    # decoupled weight decay: with no gradient, the first step only shrinks the weights by lr * weight_decay
    before = model.filter_head.weight.detach().clone()
    for q in expected:
        q.grad = torch.zeros_like(q)
    optimizer.step()
    torch.testing.assert_close(model.filter_head.weight.detach(), before * (1 - 1e-4 * 0.01))
    assert [lr_at(s, cfg.train) for s in (0, 499_999, 500_000, 550_000)] == [1e-4, 1e-4, 5e-5, 2.5e-5]


def test_run_folder_policy(data_root, tmp_path):
    import yaml

    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_config(data_root)))
    new = resolve_run(recipe)
    assert new.run_dir.parent == Path("runs") and new.run_dir.name.startswith("tiny-") and not new.resume
    assert resolve_run(recipe, out=tmp_path / "run").run_dir == tmp_path / "run"
    with pytest.raises(ConfigError, match="give a recipe"):
        resolve_run()
    with pytest.raises(ConfigError, match="is not a run folder"):
        resolve_run(resume=tmp_path)
    save_config(tmp_path / "run", new.config)
    resumed = resolve_run(recipe, resume=tmp_path / "run", overrides=["train.steps=9"])
    assert resumed.resume and resumed.run_dir == tmp_path / "run" and resumed.config.train.steps == 9
    assert resumed.notes == (f"resuming {tmp_path / 'run'} with its saved config.yaml; {recipe} is ignored",)


def test_precision_follows_the_shared_policy(data_root, tmp_path):
    cfg = from_dict(TrainConfig, tiny_config(data_root, steps=1, precision="fp16"))
    with pytest.raises(ConfigError, match="train.precision: precision 'fp16' needs a CUDA device"):
        train(cfg, tmp_path / "run", device="cpu")
    assert not (tmp_path / "run").exists()


def test_validation_images_follow_image_every(data_root, tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    raw = tiny_config(data_root, steps=4)
    raw["log"].update(val_every=1, image_every=2)
    train(from_dict(TrainConfig, raw), tmp_path / "run", device="cpu")
    events = EventAccumulator(str(tmp_path / "run" / "tb")).Reload()
    assert [e.step for e in events.Scalars("val/psnr")] == [1, 2, 3, 4]
    assert [e.step for e in events.Images("val/input_output_target_defocus")] == [2, 4]


def _weights(path: Path) -> dict:
    return load_model(path).state_dict()


@pytest.mark.slow
def test_killed_and_resumed_run_ends_bit_identical(data_root, tmp_path):
    cfg = from_dict(TrainConfig, tiny_config(data_root))
    straight = train(cfg, tmp_path / "straight", device="cpu")
    assert straight.finished and straight.step == 6
    first = train(cfg, tmp_path / "resumed", stop_after=2, device="cpu")
    assert not first.finished and first.step == 2
    second = train(cfg, tmp_path / "resumed", resume=True, stop_after=3, device="cpu")
    assert second.step == 5
    final = train(cfg, tmp_path / "resumed", resume=True, device="cpu")
    assert final.finished and final.step == 6
    a, b = _weights(tmp_path / "straight" / "model.safetensors"), _weights(tmp_path / "resumed" / "model.safetensors")
    assert a.keys() == b.keys()
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # metrics: one row per step, no duplicates after the resumes; validation rows present
    rows = [json.loads(x) for x in (tmp_path / "resumed" / "metrics.jsonl").read_text().splitlines()]
    train_steps = [r["step"] for r in rows if r["kind"] == "train"]
    assert train_steps == [1, 2, 3, 4, 5, 6]
    assert [r["step"] for r in rows if r["kind"] == "val"] == [3, 6]
    assert all(math.isfinite(r["psnr"]) for r in rows if r["kind"] == "val")
    # last K checkpoints only; TensorBoard events written
    assert sorted(p.name for p in (tmp_path / "resumed" / "checkpoints").iterdir()) == \
        ["step_000000005.pt", "step_000000006.pt"]
    assert list((tmp_path / "resumed" / "tb").glob("events.out.tfevents.*"))


def test_refuses_to_overwrite_a_run_and_reports_missing_data(data_root, tmp_path):
    cfg = from_dict(TrainConfig, tiny_config(data_root, steps=1))
    train(cfg, tmp_path / "run", device="cpu")
    with pytest.raises(ConfigError, match="is not empty"):
        train(cfg, tmp_path / "run", device="cpu")
    missing = from_dict(TrainConfig, tiny_config(tmp_path / "nowhere"))
    with pytest.raises(ConfigError, match="does not exist"):
        train(missing, tmp_path / "run2", device="cpu")
    (tmp_path / "broken").mkdir()
    make_dpdd(tmp_path / "broken", "train", names=("a", "b"))
    (tmp_path / "broken" / "train_r" / "source" / "a.png").unlink()
    with pytest.raises(DatasetError, match="train_r/source lacks 1 file"):
        train(from_dict(TrainConfig, tiny_config(tmp_path / "broken")), tmp_path / "run3", device="cpu")
    assert not (tmp_path / "run3").exists()  # nothing written before the data check


def test_a_used_run_folder_is_refused_unless_resume_or_force(data_root, tmp_path, capsys):
    import shutil

    import yaml

    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(yaml.safe_dump(tiny_config(data_root, steps=3)))
    run = tmp_path / "run"
    assert cli_main(["train", str(recipe), "--out", str(run), "--device", "cpu"]) == 0
    shutil.rmtree(run / "checkpoints")  # a finished run whose checkpoints were deleted
    files = {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()}
    assert {"model.safetensors", "best.safetensors", "config.yaml", "metrics.jsonl"} <= files.keys()
    capsys.readouterr()

    assert cli_main(["train", str(recipe), "--out", str(run), "--device", "cpu"]) == 1
    err = capsys.readouterr().err
    assert f"{run} is not empty" in err and "--resume" in err and "--force" in err and err.count("\n") == 1
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == files  # nothing touched
    assert cli_main(["train", "--resume", str(run), "--device", "cpu"]) == 1
    assert f"{run}: no checkpoint to resume from" in capsys.readouterr().err
    assert cli_main(["train", "--resume", str(run), "--force", "--device", "cpu"]) == 1
    assert "cannot be combined with --resume" in capsys.readouterr().err

    (run / "notes.txt").write_text("mine")
    assert cli_main(["train", str(recipe), "--out", str(run), "--force", "--device", "cpu"]) == 0
    rows = [json.loads(x) for x in (run / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in rows if r["kind"] == "train"] == [1, 2, 3]  # the new run's rows only
    assert (run / "notes.txt").read_text() == "mine"  # --force deletes only what a run writes


def test_resume_falls_back_to_the_newest_checkpoint_that_loads(data_root, tmp_path, capsys):
    cfg = from_dict(TrainConfig, tiny_config(data_root))
    straight = train(cfg, tmp_path / "straight", device="cpu")
    run = tmp_path / "run"
    train(cfg, run, stop_after=4, device="cpu")
    ckpts = run / "checkpoints"
    newest = ckpts / "step_000000004.pt"
    newest.write_bytes(newest.read_bytes()[:1000])  # cut short, as by a full disk
    stale = [ckpts / ".step_000000005.pt.k3j_x9q2.tmp", run / ".metrics.jsonl.0a1b2c3d.tmp"]
    for p in stale:
        p.write_bytes(b"left by kill -9")
    capsys.readouterr()

    final = train(cfg, run, resume=True, device="cpu")
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "resuming from step_000000003.pt (step 3)" in err
    assert "step_000000004.pt: cannot read the checkpoint" in err
    assert final.finished and final.step == 6
    a, b = _weights(straight.run_dir / "model.safetensors"), _weights(run / "model.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert sorted(p.name for p in ckpts.iterdir()) == \
        ["step_000000004.pt.unreadable", "step_000000005.pt", "step_000000006.pt"]
    assert not any(p.exists() for p in stale)

    for name in ("step_000000005.pt", "step_000000006.pt"):
        (ckpts / name).write_bytes(b"junk")
    with pytest.raises(ConfigError, match="none of its 2 checkpoints can be read"):
        train(cfg, run, resume=True, device="cpu")


def test_losses_can_be_switched_off_for_data_without_views(tmp_path):
    from ifan.io import write_image
    import numpy as np

    rng = np.random.default_rng(0)
    for sub in ("source", "target"):
        for n in ("a", "b"):
            write_image(tmp_path / "pairs" / sub / f"{n}.png", rng.random((40, 40, 3), dtype=np.float32))
    raw = tiny_config(tmp_path / "pairs", steps=2)
    raw["data"]["kind"] = "folder"
    raw["losses"] = {"dme": 0.0, "reblur": 0.0}
    result = train(from_dict(TrainConfig, raw), tmp_path / "run", device="cpu")
    assert result.finished
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert "dme" not in rows[0] and "reblur" not in rows[0] and rows[0]["image"] > 0


def test_cli_train_resume_and_overrides(data_root, tmp_path, capsys):
    recipe = tmp_path / "tiny.yaml"
    import yaml

    recipe.write_text(yaml.safe_dump(tiny_config(data_root, steps=3)))
    run = tmp_path / "run"
    assert cli_main(["train", str(recipe), "--out", str(run), "--stop-after", "1", "--device", "cpu"]) == 0
    assert "continue with: ifan train --resume" in capsys.readouterr().out
    assert cli_main(["train", "--resume", str(run), "--set", "train.steps=4", "--device", "cpu"]) == 0
    assert "finished 4 steps" in capsys.readouterr().out
    assert load_config(run / "config.yaml").train.steps == 4
    assert cli_main(["train", str(tmp_path / "nope.yaml")]) == 1


def test_run_files_names_the_checkpoint_a_resume_takes_and_the_folders_files(data_root, tmp_path, capsys):
    run = tmp_path / "run"
    train(from_dict(TrainConfig, tiny_config(data_root, steps=3)), run, stop_after=2, device="cpu")
    (run / "checkpoints" / "step_000000002.pt").write_bytes(b"cut short")  # the newest cannot be read
    capsys.readouterr()
    assert cli_main(["run-files", str(run), "checkpoint", "best", "metrics", "config", "model", "tb"]) == 0
    assert capsys.readouterr().out.splitlines() == [
        str(run / "checkpoints" / "step_000000001.pt"), str(run / "best.safetensors"), str(run / "metrics.jsonl"),
        str(run / "config.yaml"), str(run / "model.safetensors"), str(run / "tb")]
    assert cli_main(["run-files", str(tmp_path / "empty"), "checkpoint"]) == 1
    assert "no checkpoint to resume from" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        cli_main(["run-files", str(run), "weights"])


@pytest.mark.slow
def test_two_processes_with_gloo_stay_identical_and_match_one_process(data_root, tmp_path):
    raw = tiny_config(data_root, steps=3, batch_size=4)
    raw["log"].update(val_every=100)
    cfg = from_dict(TrainConfig, raw)
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONPATH=os.pathsep.join([str(ROOT / "src"), str(ROOT / "tests")]))
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2",
           str(ROOT / "tests" / "ddp_worker.py"), json.dumps(cfg.to_dict()), str(tmp_path)]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    r0 = torch.load(tmp_path / "rank0.pt", weights_only=True)
    r1 = torch.load(tmp_path / "rank1.pt", weights_only=True)
    for k in r0:
        assert torch.equal(r0[k], r1[k]), f"replicas differ at {k}"
    single = train(cfg, tmp_path / "single", device="cpu").model.state_dict()
    worst = max(float((single[k] - r0[k]).abs().max()) for k in r0)
    assert worst < 1e-5, f"DDP and single-process weights differ by {worst}"


# ---- recipe options of ifan 0.2: schedules, precision auto, EMA, init from weights, image losses --------


def test_cosine_schedule_with_warmup_and_restarts():
    cfg = load_config(None, ["train.lr=1e-3", "train.steps=110", "train.schedule=cosine", "train.warmup_steps=10",
                             "train.min_lr=1e-5"]).train
    assert lr_at(0, cfg) == pytest.approx(1e-4) and lr_at(9, cfg) == pytest.approx(1e-3)  # linear warm-up
    assert lr_at(10, cfg) == pytest.approx(1e-3)
    assert lr_at(60, cfg) == pytest.approx(1e-5 + 0.5 * (1e-3 - 1e-5))  # half way down the cosine
    assert lr_at(109, cfg) < 2e-5 and all(lr_at(i, cfg) >= lr_at(i + 1, cfg) for i in range(10, 109))
    restarts = load_config(None, ["train.lr=1e-3", "train.steps=100", "train.schedule=cosine",
                                  "train.restart_every=25"]).train
    assert lr_at(24, restarts) < 1e-5 and lr_at(25, restarts) == pytest.approx(1e-3)  # a warm restart
    step = load_config(None, ["train.lr=1e-3", "train.lr_milestones=[5, 8]", "train.warmup_steps=2"]).train
    assert [round(lr_at(i, step), 6) for i in (0, 1, 4, 5, 8)] == [5e-4, 1e-3, 1e-3, 5e-4, 2.5e-4]
    with pytest.raises(ConfigError, match="schedule"):
        load_config(None, ["train.schedule=linear"])


def test_precision_auto_trains_in_bf16_exactly_where_the_cpu_has_native_bf16(data_root, tmp_path, monkeypatch):
    import ifan.inference.runtime as runtime
    import ifan.train.step as step

    seen = []
    real = step.autocast
    monkeypatch.setattr(step, "autocast", lambda dev, dtype: seen.append(dtype) or real(dev, dtype))
    for native, expected in ((True, torch.bfloat16), (False, None)):
        monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda native=native: native)
        seen.clear()
        train(from_dict(TrainConfig, tiny_config(data_root, steps=1, precision="auto")), tmp_path / str(native),
              device="cpu")
        assert seen and set(seen) == {expected}
    with pytest.raises(ConfigError, match="precision"):
        load_config(None, ["train.precision=fp8"])


def test_ema_weights_are_the_running_average_and_are_what_gets_exported(data_root, tmp_path):
    from ifan.train.optim import EMA

    net = torch.nn.Linear(2, 2)
    ema = EMA(net, decay=0.75)
    before = net.weight.detach().clone()
    with torch.no_grad():
        net.weight.add_(4.0)
    ema.update()
    torch.testing.assert_close(ema.model.weight, before + 1.0)  # 0.75 * w + 0.25 * (w + 4)
    cfg = from_dict(TrainConfig, tiny_config(data_root, ema=0.5))
    straight = train(cfg, tmp_path / "straight", device="cpu")
    exported = _weights(tmp_path / "straight" / "model.safetensors")
    raw = straight.model.state_dict()
    assert any(not torch.equal(exported[k], raw[k]) for k in raw)  # the average, not the last weights
    rows = [json.loads(x) for x in (tmp_path / "straight" / "metrics.jsonl").read_text().splitlines()]
    assert all("psnr_raw" in r for r in rows if r["kind"] == "val")
    # the average is part of the checkpoint: a resumed run ends with the same exported weights
    train(cfg, tmp_path / "resumed", stop_after=4, device="cpu")
    train(cfg, tmp_path / "resumed", resume=True, device="cpu")
    resumed = _weights(tmp_path / "resumed" / "model.safetensors")
    for k in exported:
        assert torch.equal(exported[k], resumed[k]), k


def test_init_from_weights_starts_from_them_and_refuses_another_architecture(data_root, tmp_path):
    cfg = from_dict(TrainConfig, tiny_config(data_root, steps=2))
    first = train(cfg, tmp_path / "first", device="cpu")
    source = tmp_path / "first" / "model.safetensors"
    raw = tiny_config(data_root, steps=1, lr=1e-12, warmup_steps=1)
    raw["init"] = {"weights": str(source)}
    second = train(from_dict(TrainConfig, raw), tmp_path / "second", device="cpu")
    start = _weights(source)
    for k, v in second.model.state_dict().items():  # one step at lr 1e-12 barely moves them
        torch.testing.assert_close(v, start[k], atol=1e-8, rtol=0)
    other = tiny_config(data_root, steps=1)
    other["model_overrides"] = {"channels": 4, "iterations": 2, "reblur_iterations": 2}
    other["init"] = {"weights": str(source)}
    with pytest.raises(ConfigError, match="architecture"):
        train(from_dict(TrainConfig, other), tmp_path / "third", device="cpu")
    assert first.finished


@pytest.mark.parametrize("kind", ["mse", "l1", "charbonnier"])
def test_image_losses_and_the_frequency_term(kind):
    from ifan.train.losses import CHARBONNIER_EPS, frequency_distance, image_distance

    a, b = torch.rand(2, 3, 8, 8), torch.rand(2, 3, 8, 8)
    d = a - b
    expected = {"mse": d.square().mean(), "l1": d.abs().mean(),
                "charbonnier": (d.square() + CHARBONNIER_EPS ** 2).sqrt().mean()}[kind]
    torch.testing.assert_close(image_distance(a, b, kind), expected)
    assert float(image_distance(a, a, kind)) <= CHARBONNIER_EPS + 1e-9
    # Parseval: the orthonormal spectrum of a pure DC offset c is c * sqrt(H W) at one frequency per channel
    offset = frequency_distance(a + 0.5, a)
    assert float(offset) == pytest.approx(0.5 * 8 / (8 * 5 * 2), rel=1e-5)
    with pytest.raises(ConfigError, match="image_loss"):
        load_config(None, ["losses.image_loss=huber"])


def test_the_true_disparity_warps_r_onto_l_with_the_sign_the_disparity_loss_uses(tmp_path):
    # the disparity loss's target, -(x_L - x_R) / 8, is the warp that the DME loss rewards: check it on a render
    from ifan.synth import SynthConfig, write_dataset
    from ifan.train.losses import area_downsample, horizontal_warp

    config = SynthConfig(width=128, height=128, max_blur=16.0, kinds=(("planes", 1.0),))
    write_dataset(tmp_path, {"train": 4}, config, seed=3, progress=False)
    data = DefocusDataset(dpdd_files(tmp_path, "train", maps=True))
    checked = 0
    for item in data:
        if float(item["disparity"].abs().max()) < 4.0:
            continue
        left, right = (area_downsample(item[k][None]) for k in ("l", "r"))
        truth = -area_downsample(item["disparity"][None]) / 8.0
        errors = {sign: float((horizontal_warp(right, sign * truth) - left).abs()[..., 2:-2].mean())
                  for sign in (1.0, -1.0, 0.0)}
        assert errors[1.0] < errors[0.0] < errors[-1.0], errors
        checked += 1
    assert checked >= 1


def test_disparity_maps_follow_crops_scaling_and_flips():
    from ifan.data.augment import AugmentConfig, augment

    h, w = 64, 96
    xx = np.broadcast_to(np.arange(w, dtype=np.float32), (h, w))
    views = {k: np.repeat((xx / w)[..., None], 3, axis=2).copy() for k in ("c", "gt", "l", "r")}
    views["l"] = views["l"] * 0.5
    views["disparity"] = (xx / 10.0)[..., None].copy()
    cfg = AugmentConfig(noise_p=0.0, gray_p=0.0, scale_p=1.0, scale_min=0.5, flip_h_p=1.0)
    out = augment(views, np.random.default_rng(0), cfg, crop=32)
    assert out["disparity"].shape == (32, 32, 1)
    # the map moved with the image: where c shows x / w, the disparity is x / 10 times the resize factor
    factor = out["disparity"][0, :, 0] / (out["c"][0, :, 0] * w / 10.0)
    assert np.ptp(factor) < 0.02 and 0.5 - 1e-3 <= factor.mean() <= 1.0 + 1e-3
    assert out["disparity"][0, 0, 0] > out["disparity"][0, -1, 0] > 0  # mirrored with the image, sign kept
    assert np.allclose(out["r"], out["c"] * 0.5, atol=1e-6)  # L and R swapped by the flip


def test_training_with_the_disparity_loss_reads_the_maps(tmp_path):
    from ifan.synth import SynthConfig, write_dataset

    write_dataset(tmp_path / "synth", {"train": 3, "val": 1}, SynthConfig(width=48, height=40, max_blur=6.0),
                  seed=1, progress=False)
    raw = tiny_config(tmp_path / "synth", steps=2)
    raw["losses"] = {"disparity": 0.5}
    train(from_dict(TrainConfig, raw), tmp_path / "run", device="cpu")
    rows = [json.loads(x) for x in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert rows[0]["disparity"] > 0 and math.isfinite(rows[0]["total"])
    raw["data"]["root"] = str(tmp_path / "nomaps")
    make_dpdd(tmp_path / "nomaps", "train", names=("a", "b"))
    with pytest.raises(DatasetError, match="lacks the maps"):
        train(from_dict(TrainConfig, raw), tmp_path / "run2", device="cpu")
