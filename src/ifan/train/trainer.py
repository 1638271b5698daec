"""The training loop: the paper's recipe, resumable bit for bit, on one CPU or many GPUs.

``train(cfg, run_dir)`` checks the run folder and the data before any compute, builds the model
and the reblurring network (Xavier init with the recipe's gains, or trained weights:
``init.weights``) into a :class:`~ifan.train.state.TrainState`, and runs
:func:`~ifan.train.step.train_step` (RAdam with decoupled weight decay, warm-up then step or cosine
decay, clipping, fp32 or autocast, EMA) over the batches of :class:`~ifan.train.sampler.StepBatchSampler`.
Every ``log.val_every`` steps it validates (:func:`~ifan.train.data.validate`: PSNR on held-out
images, of the EMA weights when there are some) and logs (:class:`~ifan.train.logger.RunLogger`);
it checkpoints atomically (the last K kept, the best weights by validation PSNR exported) and
writes the final weights as ifan safetensors. Under ``torchrun`` it runs DDP; rank 0 logs and
writes. What the run folder holds, and how a run starts or resumes, is :mod:`ifan.train.run`.
"""

from __future__ import annotations

import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from ifan.inference import distributed
from ifan.inference.runtime import resolve_precision
from ifan.models.ifan import IFAN
from ifan.models.reblur import ReblurNet
from ifan.models.serialization import save_weights
from ifan.models.zoo import create_model
from ifan.train.checkpoint import save_checkpoint
from ifan.train.config import ConfigError, TrainConfig
from ifan.train.data import build_datasets, validate
from ifan.train.logger import RunLogger
from ifan.train.run import RUN_LAYOUT, open_run, prepare_run, save_config, trim_metrics
from ifan.train.sampler import StepBatchSampler
from ifan.train.state import TrainState
from ifan.train.step import batch_to, train_step


@dataclass
class TrainResult:
    """Where a call of :func:`train` ended; ``model`` is this process's replica."""

    run_dir: Path
    step: int
    finished: bool
    best_psnr: float | None
    model: IFAN


class _StopFlag:
    """Set by SIGINT/SIGTERM: the loop finishes its step, checkpoints and returns."""

    def __init__(self) -> None:
        self.set = False
        self._old = {}

    def __enter__(self):
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                self._old[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not in the main thread
                pass
        return self

    def _handle(self, signum, frame) -> None:
        if self.set:  # a second signal: stop at once
            raise KeyboardInterrupt
        self.set = True

    def __exit__(self, *exc) -> None:
        for sig, handler in self._old.items():
            signal.signal(sig, handler)


def _init_from_weights(model: IFAN, reblur: ReblurNet | None, source: str) -> str:
    """Copy trained weights (a bundled model's name or a weights file) into ``model`` (and ``reblur``
    when the file holds a reblurring network); returns a one-line description."""
    from ifan.models.hub import load_model, load_reblur_net

    loaded = load_model(source)
    if loaded.config != model.config:
        raise ConfigError(f"init.weights {source}: its architecture {loaded.config.to_dict()} differs from the "
                          f"recipe's {model.config.to_dict()}; pick the matching model or model_overrides")
    model.load_state_dict(loaded.state_dict())
    note = f"initialised from {source}"
    if reblur is not None:
        loaded_reblur = load_reblur_net(source)
        if loaded_reblur is not None:
            reblur.load_state_dict(loaded_reblur.state_dict())
            note += " (with its reblurring network)"
    return note


def train(cfg: TrainConfig, run_dir: str | Path, resume: bool = False, stop_after: int | None = None,
          device: str = "auto", force: bool = False, time_limit: float | None = None) -> TrainResult:
    """Train (or resume training) into ``run_dir``. See the module docstring.

    Args:
        cfg: the resolved recipe.
        run_dir: the run folder: empty or new, unless ``resume`` (the newest checkpoint in it that
            loads is loaded) or ``force`` (what an earlier run wrote there is deleted first).
        stop_after: stop (with a checkpoint) after this many steps of this invocation.
        time_limit: stop (with a checkpoint) once this invocation has trained this many seconds.
        device: ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (under torchrun: each process's local GPU).
    """
    run_dir = Path(run_dir)
    info = distributed.setup(device)
    try:
        return _train(cfg, run_dir, resume, stop_after, info, force, time_limit)
    finally:
        distributed.teardown()


def _train(cfg: TrainConfig, run_dir: Path, resume: bool, stop_after: int | None,
           info: distributed.DistInfo, force: bool = False, time_limit: float | None = None) -> TrainResult:
    dev, optim, log = info.device, cfg.train, cfg.log
    try:  # the precision policy of inference and evaluation (ifan.inference.runtime)
        autocast_dtype = resolve_precision(optim.precision, dev)
    except ValueError as err:
        raise ConfigError(f"train.precision: {err}") from None
    if optim.threads:
        torch.set_num_threads(optim.threads)
    start = open_run(run_dir, resume, force)  # refuses a used folder; reads the checkpoint to resume from

    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, **cfg.model_overrides)
    views = cfg.losses.dme > 0 or cfg.losses.disparity > 0 or model.config.dual_pixel_input
    train_set, val_set = build_datasets(cfg.data, cfg.augment, optim.patch_size, cfg.seed, views=views,
                                        maps=cfg.losses.disparity > 0)  # data problems surface before any compute
    model.init_weights(cfg.init.gain, cfg.init.filter_gain)
    reblur = None
    if cfg.losses.reblur > 0:
        reblur = ReblurNet(model.config)
        reblur.init_weights(cfg.init.reblur_gain)
    if cfg.init.weights and start.state is None:
        note = _init_from_weights(model, reblur, cfg.init.weights)
        if info.is_main:
            print(note, file=sys.stderr)
    state = TrainState.create(model, reblur, cfg.losses, optim, dev, autocast_dtype)
    if start.state is not None:
        state.load_state_dict(start.state)
    distributed.barrier(info)  # every process has read the run folder before the main one changes it
    if info.is_main:
        prepare_run(run_dir, start, force)
        if start.note():
            print(start.note(), file=sys.stderr, flush=True)
        save_config(run_dir, cfg)
        trim_metrics(run_dir, state.step)

    net = DistributedDataParallel(state.module, device_ids=[dev.index] if dev.type == "cuda" else None) \
        if info.enabled else state.module
    sampler = StepBatchSampler(len(train_set), optim.batch_size, cfg.seed, state.step, optim.steps,
                               info.rank, info.world_size)
    loader = DataLoader(train_set, batch_sampler=sampler, num_workers=cfg.data.workers,
                        pin_memory=dev.type == "cuda", persistent_workers=cfg.data.workers > 0)
    logger = RunLogger(run_dir, log, state.step, optim.steps) if info.is_main else None
    memory_format = state.memory_format_of(optim)
    earlier, t_start = state.elapsed, time.perf_counter()

    def seconds() -> float:
        """Seconds trained by the run: its earlier calls and this one."""
        return earlier + time.perf_counter() - t_start

    def export(path: Path, **meta: str) -> None:
        if state.ema is not None:
            meta["ema"] = str(optim.ema)
        save_weights(path, model.config, state.eval_model.state_dict(),
                     reblur.state_dict() if reblur is not None else None,
                     source=f"ifan train {run_dir.name}", model_name=cfg.model, **meta)

    t_window, steps_window, ran = time.perf_counter(), 0, 0
    finished = state.step >= optim.steps
    with _StopFlag() as stop:
        for batch in loader:
            result = train_step(state, batch_to(batch, dev, memory_format), net)
            step = state.step
            ran += 1
            steps_window += 1
            if logger is not None:
                logger.stepped(result)
                if step % log.log_every == 0 or step == optim.steps:
                    logger.train_row(step, result, steps_window / max(time.perf_counter() - t_window, 1e-9))
                    t_window, steps_window = time.perf_counter(), 0
                if val_set is not None and (step % log.val_every == 0 or step == optim.steps):
                    scores = validate(state.eval_model, val_set, dev, cfg.data.val_crop, optim.channels_last)
                    values = {"psnr": scores["psnr"], "psnr_input": scores["psnr_input"], "elapsed": seconds()}
                    if state.ema is not None:  # the raw weights too, to see what the average gains
                        raw = validate(model, val_set, dev, cfg.data.val_crop, optim.channels_last)
                        values["psnr_raw"] = raw["psnr"]
                    logger.val_row(step, values, scores["grid"])
                    if state.best_psnr is None or scores["psnr"] > state.best_psnr:
                        state.best_psnr = scores["psnr"]
                        export(run_dir / RUN_LAYOUT["best"], step=str(step), val_psnr=f"{state.best_psnr:.4f}")
                    logger.note(f"step {step}: val PSNR {scores['psnr']:.3f} dB "
                                f"(input {scores['psnr_input']:.3f} dB, best {state.best_psnr:.3f} dB)")

            finished = step >= optim.steps
            out_of_time = time_limit is not None and time.perf_counter() - t_start >= time_limit
            want_stop = distributed.broadcast(
                stop.set or out_of_time or (stop_after is not None and ran >= stop_after), info)
            if info.is_main and (step % log.ckpt_every == 0 or finished or want_stop):
                state.elapsed = seconds()
                checkpoint = {**state.state_dict(), "config": cfg.to_dict(), "model_config": model.config.to_dict()}
                save_checkpoint(run_dir, step, checkpoint, log.keep_last)
            distributed.barrier(info)
            if want_stop or finished:
                break

    if logger is not None:
        if finished:
            export(run_dir / RUN_LAYOUT["model"], step=str(state.step), train_seconds=f"{seconds():.0f}",
                   best_val_psnr=f"{state.best_psnr:.4f}" if state.best_psnr is not None else "")
        logger.close()
    return TrainResult(run_dir=run_dir, step=state.step, finished=finished, best_psnr=state.best_psnr, model=model)
