"""The training loop: the paper's recipe, resumable bit for bit, on one CPU or many GPUs.

``train(cfg, run_dir)`` checks the data before any compute, builds the model and the
reblurring network (Xavier init with the recipe's gains, or trained weights: ``init.weights``),
runs RAdam with decoupled weight decay, a warm-up then step or cosine (with warm restarts)
learning-rate decay and gradient clipping, in fp32 or autocast (``train.precision``, ``auto``
where the recipe asks), keeps an EMA of the weights if asked, validates every
``log.val_every`` steps (PSNR on held-out images, of the EMA weights when there are some),
logs to TensorBoard and ``metrics.jsonl``, checkpoints atomically (last K kept, best by
validation PSNR exported), and writes the final weights as ifan safetensors. Under ``torchrun`` it runs DDP; rank 0 logs and writes. What the run
folder holds, and how a run starts or resumes, is :mod:`ifan.train.run`.
"""

from __future__ import annotations

import copy
import math
import signal
import sys
import time
import warnings
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader

from ifan.data.datasets import VIEWS, DefocusDataset, dpdd_files, folder_files
from ifan.evaluate.metrics import psnr
from ifan.inference import Deblurrer
from ifan.inference.runtime import autocast, resolve_precision
from ifan.models.ifan import IFAN
from ifan.models.reblur import ReblurNet
from ifan.models.serialization import save_weights
from ifan.models.zoo import create_model
from ifan.train import distributed
from ifan.train.checkpoint import save_checkpoint
from ifan.train.config import ConfigError, TrainConfig
from ifan.train.losses import LossWeights, ifan_losses
from ifan.train.run import append_metrics, open_run, prepare_run, save_config, trim_metrics
from ifan.train.sampler import StepBatchSampler
from ifan.viz import colorize_defocus


class TrainingModule(nn.Module):
    """The deblurring network and the reblurring network, returning the losses of a batch."""

    def __init__(self, model: IFAN, reblur: ReblurNet | None, weights: LossWeights) -> None:
        super().__init__()
        self.model, self.reblur, self.weights = model, reblur, weights

    def forward(self, c: Tensor, gt: Tensor, r: Tensor | None = None, l: Tensor | None = None,  # noqa: E741
                disparity: Tensor | None = None) -> dict[str, Tensor]:
        out = self.model(c, r, l, aux=True)
        return ifan_losses(out, gt, c, r, l, self.reblur, self.weights, disparity)


def build_optimizer(module: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    """The paper's optimiser over every trainable parameter of ``module`` (the deblurring and the
    reblurring network): RAdam with decoupled weight decay (torch-optimizer's RAdam, which the
    official code uses) and the recipe's learning rate, betas, eps and weight decay."""
    params = [p for p in module.parameters() if p.requires_grad]
    return torch.optim.RAdam(params, lr=cfg.train.lr, betas=tuple(cfg.train.betas), eps=cfg.train.eps,
                             weight_decay=cfg.train.weight_decay, decoupled_weight_decay=True)


def lr_at(step: int, cfg: TrainConfig) -> float:
    """The learning rate of (0-based) ``step``: a linear warm-up over ``warmup_steps``, then step decay
    (``lr * gamma ** milestones reached``) or a cosine from ``lr`` to ``min_lr`` (over the remaining
    steps, or over each ``restart_every`` steps: warm restarts)."""
    t = cfg.train
    if step < t.warmup_steps:
        return t.lr * (step + 1) / t.warmup_steps
    if t.schedule == "step":
        return t.lr * t.lr_gamma ** sum(step >= m for m in t.lr_milestones)
    period = t.restart_every or max(t.steps - t.warmup_steps, 1)
    phase = ((step - t.warmup_steps) % period) / period
    return t.min_lr + 0.5 * (t.lr - t.min_lr) * (1.0 + math.cos(math.pi * phase))


class EMA:
    """An exponential moving average of a model's floating-point parameters and buffers.

    After each optimiser step, ``update()`` sets ``avg = decay * avg + (1 - decay) * current``;
    the average lives in ``self.model`` (a copy of the network, in eval mode), which validation
    and the exported weights use.
    """

    def __init__(self, model: nn.Module, decay: float) -> None:
        self.decay = decay
        self.model = copy.deepcopy(model).eval().requires_grad_(False)
        self._pairs = [(a, b) for a, b in zip(self.model.state_dict().values(), model.state_dict().values())
                       if a.is_floating_point()]

    @torch.no_grad()
    def update(self) -> None:
        averages, current = zip(*self._pairs)
        torch._foreach_lerp_(list(averages), list(current), 1.0 - self.decay)


def build_datasets(cfg: TrainConfig) -> tuple[DefocusDataset, DefocusDataset | None]:
    """The training and validation sets; every file problem surfaces here, before compute."""
    root = Path(cfg.data.root).expanduser()
    if not cfg.data.root:
        raise ConfigError("data.root is not set: point it at a DPDD-layout folder (e.g. made by `ifan synth`)")
    if not root.is_dir():
        raise ConfigError(f"data.root {root} does not exist")
    views = (cfg.losses.dme > 0 or cfg.losses.disparity > 0 or cfg.model == "ifan-dual"
             or cfg.model_overrides.get("dual_pixel_input", False))
    if cfg.data.kind == "dpdd":
        train_files = dpdd_files(root, cfg.data.train_split, views=views, maps=cfg.losses.disparity > 0)
    else:
        train_files = folder_files(root)
        if not all(f.gt is not None for f in train_files):
            raise ConfigError(f"{root}: data.kind 'folder' needs source/ and target/ subfolders for training")
    train_set = DefocusDataset(train_files, crop=cfg.train.patch_size, augment_cfg=cfg.augment, seed=cfg.seed,
                               cache=cfg.data.cache)
    val_root = Path(cfg.data.val_root).expanduser() if cfg.data.val_root else root
    val_set = None
    if cfg.data.kind == "dpdd" and (val_root / f"{cfg.data.val_split}_c").is_dir():
        val_files = dpdd_files(val_root, cfg.data.val_split, views=views)
        if cfg.data.val_count:
            val_files = val_files[: cfg.data.val_count]
        val_set = DefocusDataset(val_files)
    return train_set, val_set


def _center_crop(x: Tensor, size: int | None) -> Tensor:
    if size is None:
        return x
    h, w = x.shape[-2:]
    th, tw = min(size, h), min(size, w)
    top, left = (h - th) // 2, (w - tw) // 2
    return x[..., top:top + th, left:left + tw]


@torch.no_grad()
def validate(model: IFAN, val_set: DefocusDataset, device: torch.device, crop: int | None,
             channels_last: bool) -> dict:
    """Mean PSNR (output clipped to [0, 1]) and the input's PSNR on centre crops; one image grid
    (input | output | target | defocus map). The network runs through the inference path
    (:class:`~ifan.inference.Deblurrer`, float32), as ``ifan deblur`` and ``ifan evaluate`` run it."""
    was_training = model.training
    deblurrer = Deblurrer(model, device=device, precision="fp32", channels_last=channels_last, cpu_heap=False)
    psnrs, inputs, grid = [], [], None
    for i in range(len(val_set)):
        item = val_set[i]
        views = {k: _center_crop(item[k], crop)[None] for k in VIEWS if k in item}
        dual = model.config.dual_pixel_input
        res = deblurrer.run(views["c"], defocus=i == 0, right=views.get("r") if dual else None,
                            left=views.get("l") if dual else None)
        result = res.image.clamp(0, 1)
        psnrs.append(float(psnr(result, views["gt"])[0]))
        inputs.append(float(psnr(views["c"], views["gt"])[0]))
        if i == 0:
            defocus_rgb, _ = colorize_defocus(res.defocus[0, 0].numpy())
            grid = torch.cat([views["c"], result, views["gt"], torch.from_numpy(defocus_rgb).permute(2, 0, 1)[None]],
                             dim=-1)[0]
    model.train(was_training)
    return {"psnr": sum(psnrs) / len(psnrs), "psnr_input": sum(inputs) / len(inputs), "grid": grid}


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


def _writer(run_dir: Path, cfg: TrainConfig, start_step: int):
    if not cfg.log.tensorboard:
        return None
    try:
        from torch.utils.tensorboard import SummaryWriter
    except ImportError:
        warnings.warn("tensorboard is not installed (pip install 'ifan[train]'); TensorBoard logs are off",
                      stacklevel=2)
        return None
    return SummaryWriter(str(run_dir / "tb"), purge_step=start_step or None)


def _init_from_weights(model: IFAN, reblur: ReblurNet | None, source: str) -> str:
    """Copy trained weights (a bundled model's name or a weights file) into ``model`` (and ``reblur``
    when the file holds a reblurring network); returns a one-line description."""
    from ifan.models.zoo import load_model, load_reblur_net

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
    dev = info.device
    try:  # the precision policy of inference and evaluation (ifan.inference.runtime)
        autocast_dtype = resolve_precision(cfg.train.precision, dev)
    except ValueError as err:
        raise ConfigError(f"train.precision: {err}") from None
    if cfg.train.threads:
        torch.set_num_threads(cfg.train.threads)
    start = open_run(run_dir, resume, force)  # refuses a used folder; reads the checkpoint to resume from

    train_set, val_set = build_datasets(cfg)  # data problems surface before any compute

    torch.manual_seed(cfg.seed)
    model = create_model(cfg.model, **cfg.model_overrides)
    model.init_weights(cfg.init.gain, cfg.init.filter_gain)
    reblur = None
    if cfg.losses.reblur > 0:
        reblur = ReblurNet(model.config)
        reblur.init_weights(cfg.init.reblur_gain)
    if cfg.init.weights and start.state is None:
        note = _init_from_weights(model, reblur, cfg.init.weights)
        if info.is_main:
            print(note, file=sys.stderr)
    weights = LossWeights(**asdict(cfg.losses))
    module = TrainingModule(model, reblur, weights).to(dev)
    memory_format = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
    module = module.to(memory_format=memory_format)
    ema = EMA(model, cfg.train.ema) if cfg.train.ema > 0 else None
    optimizer = build_optimizer(module, cfg)
    params = optimizer.param_groups[0]["params"]
    scaler = torch.amp.GradScaler(dev.type, enabled=autocast_dtype is torch.float16)

    step, best_psnr, elapsed = 0, None, 0.0
    if start.state is not None:
        state = start.state
        model.load_state_dict(state["model"])
        if reblur is not None:
            reblur.load_state_dict(state["reblur"])
        optimizer.load_state_dict(state["optimizer"])
        if "scaler" in state:
            scaler.load_state_dict(state["scaler"])
        if ema is not None:
            ema.model.load_state_dict(state.get("ema") or state["model"])
        torch.set_rng_state(state["torch_rng"])
        step, best_psnr, elapsed = state["step"], state.get("best_psnr"), state.get("elapsed", 0.0)
    distributed.barrier(info)  # every process has read the run folder before the main one changes it
    if info.is_main:
        prepare_run(run_dir, start, force)
        if start.note():
            print(start.note(), file=sys.stderr, flush=True)
        save_config(run_dir, cfg)
        trim_metrics(run_dir, step)

    net = DistributedDataParallel(module, device_ids=[dev.index] if dev.type == "cuda" else None) \
        if info.enabled else module
    sampler = StepBatchSampler(len(train_set), cfg.train.batch_size, cfg.seed, step, cfg.train.steps,
                               info.rank, info.world_size)
    loader = DataLoader(train_set, batch_sampler=sampler, num_workers=cfg.data.workers,
                        pin_memory=dev.type == "cuda", persistent_workers=cfg.data.workers > 0)
    writer = _writer(run_dir, cfg, step) if info.is_main else None
    progress = None
    if info.is_main and cfg.log.progress:
        from tqdm import tqdm

        progress = tqdm(total=cfg.train.steps, initial=step, unit="step", dynamic_ncols=True, desc="train")

    def snapshot(at_step: int) -> None:
        state = {
            "step": at_step,
            "model": model.state_dict(),
            "reblur": reblur.state_dict() if reblur is not None else {},
            "optimizer": optimizer.state_dict(),
            "scaler": scaler.state_dict(),
            "ema": ema.model.state_dict() if ema is not None else {},
            "torch_rng": torch.get_rng_state(),
            "best_psnr": best_psnr,
            "elapsed": elapsed + (time.perf_counter() - t_start),
            "config": cfg.to_dict(),
            "model_config": model.config.to_dict(),
        }
        save_checkpoint(run_dir, at_step, state, cfg.log.keep_last)

    eval_model = ema.model if ema is not None else model  # what is validated and exported

    def export(path: Path, **meta: str) -> None:
        if ema is not None:
            meta["ema"] = str(cfg.train.ema)
        save_weights(path, model.config, eval_model.state_dict(),
                     reblur.state_dict() if reblur is not None else None,
                     source=f"ifan train {run_dir.name}", model_name=cfg.model, **meta)

    t_start, t_window, steps_window = time.perf_counter(), time.perf_counter(), 0
    ran = 0
    finished = step >= cfg.train.steps
    with _StopFlag() as stop:
        for batch in loader:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, cfg)
            views = {k: batch[k].to(dev, non_blocking=True).contiguous(memory_format=memory_format)
                     for k in (*VIEWS, "disparity") if k in batch}
            with autocast(dev, autocast_dtype):
                losses = net(views["c"], views["gt"], views.get("r"), views.get("l"), views.get("disparity"))
            if not torch.isfinite(losses["total"]):
                raise FloatingPointError(f"the loss became {float(losses['total'])} at step {step + 1}; "
                                         f"lower train.lr or check the data (last checkpoint kept)")
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(losses["total"]).backward()
            scaler.unscale_(optimizer)
            grad_norm = torch.nn.utils.clip_grad_norm_(params, cfg.train.grad_clip)
            scaler.step(optimizer)
            scaler.update()
            if ema is not None:
                ema.update()
            step += 1
            ran += 1
            steps_window += 1

            if info.is_main:
                if progress is not None:
                    progress.update(1)
                    progress.set_postfix(loss=f"{losses['total'].detach().item():.4f}", lr=f"{lr_at(step - 1, cfg):.1e}")
                if step % cfg.log.log_every == 0 or step == cfg.train.steps:
                    rate = steps_window / max(time.perf_counter() - t_window, 1e-9)
                    row = {"step": step, "kind": "train", "lr": lr_at(step - 1, cfg), "steps_per_s": rate,
                           "grad_norm": grad_norm.item(), **{k: v.detach().item() for k, v in losses.items()}}
                    append_metrics(run_dir, row)
                    if writer is not None:
                        for k in losses:
                            writer.add_scalar(f"train/loss_{k}", row[k], step)
                        writer.add_scalar("train/lr", row["lr"], step)
                        writer.add_scalar("train/steps_per_s", rate, step)
                        writer.add_scalar("train/grad_norm", row["grad_norm"], step)
                    t_window, steps_window = time.perf_counter(), 0
                if val_set is not None and (step % cfg.log.val_every == 0 or step == cfg.train.steps):
                    result = validate(eval_model, val_set, dev, cfg.data.val_crop, cfg.train.channels_last)
                    row = {"step": step, "kind": "val", "psnr": result["psnr"], "psnr_input": result["psnr_input"],
                           "elapsed": elapsed + time.perf_counter() - t_start}
                    if ema is not None:  # the raw weights too, to see what the average gains
                        row["psnr_raw"] = validate(model, val_set, dev, cfg.data.val_crop,
                                                   cfg.train.channels_last)["psnr"]
                    append_metrics(run_dir, row)
                    if writer is not None:
                        writer.add_scalar("val/psnr", result["psnr"], step)
                        writer.add_scalar("val/psnr_input", result["psnr_input"], step)
                        if cfg.log.image_every is None or step % cfg.log.image_every == 0:
                            writer.add_image("val/input_output_target_defocus", result["grid"], step)
                    if best_psnr is None or result["psnr"] > best_psnr:
                        best_psnr = result["psnr"]
                        export(run_dir / "best.safetensors", step=str(step), val_psnr=f"{best_psnr:.4f}")
                    if progress is not None:
                        progress.write(f"step {step}: val PSNR {result['psnr']:.3f} dB "
                                       f"(input {result['psnr_input']:.3f} dB, best {best_psnr:.3f} dB)")

            finished = step >= cfg.train.steps
            out_of_time = time_limit is not None and time.perf_counter() - t_start >= time_limit
            want_stop = distributed.broadcast_flag(
                stop.set or out_of_time or (stop_after is not None and ran >= stop_after), info)
            if info.is_main and (step % cfg.log.ckpt_every == 0 or finished or want_stop):
                snapshot(step)
            distributed.barrier(info)
            if want_stop or finished:
                break

    if progress is not None:
        progress.close()
    if info.is_main:
        if finished:
            total = elapsed + time.perf_counter() - t_start
            export(run_dir / "model.safetensors", step=str(step), train_seconds=f"{total:.0f}",
                   best_val_psnr=f"{best_psnr:.4f}" if best_psnr is not None else "")
        if writer is not None:
            writer.close()
    return TrainResult(run_dir=run_dir, step=step, finished=finished, best_psnr=best_psnr, model=model)
