"""Typed training configuration: YAML files load into dataclasses; unknown keys and wrong types
are refused with the key named; ``--set key=value`` overrides are type-checked the same way.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from ifan.data.augment import AugmentConfig
from ifan.inference.runtime import check_precision
from ifan.models.ifan import DOWNSCALE
from ifan.train.losses import LossWeights


class ConfigError(ValueError):
    """A configuration key that is unknown or has a value of the wrong type."""


@dataclass
class DataConfig:
    """Where the training data is and how to read it.

    ``kind``: ``dpdd`` (DPDD layout with dual-pixel views, e.g. ``ifan synth`` output) or
    ``folder`` (``source``/``target`` pairs without views: train with ``losses.dme: 0``).
    """

    root: str = ""
    kind: str = "dpdd"
    train_split: str = "train"
    val_split: str = "val"
    val_root: str | None = None
    val_count: int | None = 8
    val_crop: int | None = 256
    cache: bool = False
    workers: int = 0


@dataclass
class OptimConfig:
    """Optimisation: the paper's RAdam with decoupled weight decay, step decay, clipping.

    ``schedule``: ``step`` (``lr * lr_gamma ** milestones passed``, the paper's) or ``cosine``
    (from ``lr`` down to ``min_lr`` over the run, or over each period of ``restart_every`` steps:
    warm restarts); both after a linear warm-up of ``warmup_steps``. ``ema``: decay of an
    exponential moving average of the weights, validated and exported instead of the raw
    weights (0: off). ``precision``: ``fp32``, ``bf16``, ``fp16`` (CUDA) or ``auto`` (bf16 on
    CPUs with native bf16, fp16 on CUDA, fp32 elsewhere: :mod:`ifan.inference.runtime`'s policy).
    """

    steps: int = 600_000
    batch_size: int = 8
    patch_size: int = 256
    lr: float = 1e-4
    weight_decay: float = 0.01
    betas: list[float] = field(default_factory=lambda: [0.9, 0.999])
    eps: float = 1e-8
    lr_milestones: list[int] = field(default_factory=lambda: [500_000, 550_000])
    lr_gamma: float = 0.5
    schedule: str = "step"
    warmup_steps: int = 0
    min_lr: float = 0.0
    restart_every: int | None = None
    grad_clip: float = 0.5
    ema: float = 0.0
    precision: str = "fp32"
    channels_last: bool = True
    threads: int | None = None


@dataclass
class InitConfig:
    """How the weights start: Xavier-uniform with these gains (network, filter predictor, reblurring
    network; official 1.0, 1.5, 1.0), or, with ``weights``, from a bundled model's name or a
    safetensors file (weights only: the optimiser starts afresh; its reblurring network too if
    the file holds one)."""

    gain: float = 1.0
    filter_gain: float = 1.5
    reblur_gain: float = 1.0
    weights: str | None = None


@dataclass
class LogConfig:
    """How often to log, validate and checkpoint (in steps).

    ``image_every``: log the validation image grid at validations whose step is a multiple of it
    (None: at every validation).
    """

    log_every: int = 50
    val_every: int = 2000
    ckpt_every: int = 1000
    keep_last: int = 3
    image_every: int | None = None
    tensorboard: bool = True
    progress: bool = True


@dataclass
class TrainConfig:
    """A whole training recipe (see ``configs/*.yaml``)."""

    model: str = "ifan"
    model_overrides: dict[str, Any] = field(default_factory=dict)
    seed: int = 0
    data: DataConfig = field(default_factory=DataConfig)
    train: OptimConfig = field(default_factory=OptimConfig)
    losses: LossWeights = field(default_factory=LossWeights)
    augment: AugmentConfig = field(default_factory=AugmentConfig)
    init: InitConfig = field(default_factory=InitConfig)
    log: LogConfig = field(default_factory=LogConfig)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def validate(self) -> TrainConfig:
        """Check values that types alone do not (raises :class:`ConfigError`)."""
        from ifan.models.zoo import MODELS

        checks = [
            (self.model in MODELS, f"model: unknown model {self.model!r}; known: {', '.join(MODELS)}"),
            (self.data.kind in ("dpdd", "folder"), f"data.kind must be 'dpdd' or 'folder', got {self.data.kind!r}"),
            (self.train.steps > 0, "train.steps must be positive"),
            (self.train.batch_size > 0, "train.batch_size must be positive"),
            (self.train.patch_size > 0 and self.train.patch_size % DOWNSCALE == 0,
             f"train.patch_size must be a positive multiple of {DOWNSCALE}, got {self.train.patch_size}"),
            (self.train.schedule in ("step", "cosine"),
             f"train.schedule must be 'step' or 'cosine', got {self.train.schedule!r}"),
            (self.train.warmup_steps >= 0 and 0.0 <= self.train.min_lr <= self.train.lr,
             "train.warmup_steps must be >= 0 and train.min_lr in [0, train.lr]"),
            (self.train.restart_every is None or self.train.restart_every > 0, "train.restart_every must be positive"),
            (0.0 <= self.train.ema < 1.0, f"train.ema must be in [0, 1), got {self.train.ema}"),
            (self.losses.image_loss in ("mse", "l1", "charbonnier"),
             f"losses.image_loss must be mse, l1 or charbonnier, got {self.losses.image_loss!r}"),
            (self.losses.frequency >= 0 and self.losses.disparity >= 0,
             "losses.frequency and losses.disparity must be >= 0"),
            (self.data.kind == "dpdd" or self.losses.disparity == 0,
             "losses.disparity needs ifan synth data (data.kind 'dpdd' with {split}_meta maps)"),
            (len(self.train.betas) == 2, "train.betas must hold two numbers"),
            (self.data.kind == "dpdd" or self.losses.dme == 0,
             "losses.dme needs dual-pixel views: set losses.dme: 0 for data.kind 'folder'"),
            (min(self.log.val_every, self.log.ckpt_every, self.log.log_every) > 0, "log intervals must be positive"),
        ]
        for ok, message in checks:
            if not ok:
                raise ConfigError(message)
        try:
            check_precision(self.train.precision)
        except ValueError as err:
            raise ConfigError(f"train.precision: {err}") from None
        layer = self.model_overrides.get("adaptive_layer", MODELS[self.model].config.adaptive_layer)
        if self.losses.reblur > 0 and layer != "iac":
            raise ConfigError(f"losses.reblur needs IAC filters (the reblurring network turns IAC's deblurring "
                              f"filters into reblurring filters), and this model's adaptive layer is {layer!r}: "
                              "set losses.reblur: 0")
        return self


def _type_name(tp: Any) -> str:
    return getattr(tp, "__name__", str(tp))


def _coerce(value: Any, tp: Any, key: str) -> Any:
    """Check ``value`` against the annotation ``tp`` (ints are accepted where floats are)."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(value, arg, key)
            except ConfigError as err:
                errors.append(str(err))
        raise ConfigError(errors[0] if errors else f"{key}: invalid value {value!r}")
    if dataclasses.is_dataclass(tp):
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {type(value).__name__}")
        return from_dict(tp, value, key)
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{key}: expected a list, got {value!r}")
        (item_tp,) = typing.get_args(tp)
        return [_coerce(v, item_tp, f"{key}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}: expected a mapping, got {value!r}")
        return dict(value)
    if tp is Any:
        return value
    if tp is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: expected true/false, got {value!r}")
        return value
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: expected an integer, got {value!r}")
        return value
    if tp is float:
        if isinstance(value, str):  # YAML 1.1 reads 1e-4 (no dot) as a string
            try:
                return float(value)
            except ValueError:
                pass
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: expected a number, got {value!r}")
        return float(value)
    if tp is str:
        if not isinstance(value, str):
            raise ConfigError(f"{key}: expected a string, got {value!r}")
        return value
    raise ConfigError(f"{key}: unsupported type {_type_name(tp)}")


def from_dict(cls: type, data: dict, prefix: str = "") -> Any:
    """Build dataclass ``cls`` from a mapping; unknown keys and wrong types raise :class:`ConfigError`."""
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f" in {prefix}" if prefix else ""
        raise ConfigError(f"unknown key(s){where}: {', '.join(unknown)}; known keys: {', '.join(sorted(names))}")
    values = {}
    for name, value in data.items():
        key = f"{prefix}.{name}" if prefix else name
        values[name] = _coerce(value, hints[name], key)
    try:
        return cls(**values)
    except ValueError as err:
        raise ConfigError(f"{prefix or cls.__name__}: {err}") from err


def apply_override(data: dict, assignment: str) -> None:
    """Apply ``a.b.c=value`` (value parsed as YAML) to the nested mapping ``data`` in place."""
    if "=" not in assignment:
        raise ConfigError(f"--set expects key=value, got {assignment!r}")
    key, raw = assignment.split("=", 1)
    parts = key.strip().split(".")
    node = data
    for part in parts[:-1]:
        node = node.setdefault(part, {})
        if not isinstance(node, dict):
            raise ConfigError(f"--set {key}: {part} is not a section")
    node[parts[-1]] = yaml.safe_load(raw)


def load_config(path: str | Path | None = None, overrides: list[str] | tuple[str, ...] = ()) -> TrainConfig:
    """Load a YAML recipe (or the defaults) and apply ``key=value`` overrides."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: invalid YAML ({err})") from err
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a mapping at the top level")
    for assignment in overrides:
        apply_override(data, assignment)
    return from_dict(TrainConfig, data).validate()


def dump_config(cfg: TrainConfig) -> str:
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
