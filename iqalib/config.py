"""Typed run configuration: dataclasses, YAML files and ``key=value`` overrides.

An unknown key, a wrong type or an impossible value is a
:class:`~iqalib.errors.ConfigError` naming the key, never a silent default.
``None`` in the ``train`` section means "the model's own training default"
(HyperIQA's for ``hyperiqa_*``, the SMART-IQA seed's for ``smart_iqa_*``,
see ``model.default_train_config()``); :func:`resolve_train` fills those in.
``rounds`` is 1 unless set (HyperIQA's protocol uses 10).
"""
from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import yaml

from iqalib.errors import ConfigError, did_you_mean


@dataclass
class DataConfig:
    name: str = "demo"
    root: str | None = None
    options: dict = field(default_factory=dict)  # loader keyword arguments
    split_seed: int = 0  # round r uses split_seed + r
    fractions: list[float] = field(default_factory=lambda: [0.8, 0.1, 0.1])
    official_split: bool = True
    image_cache: str | None = None  # None: memory; "auto" or a folder: memory-mapped on disk
    on_error: str = "raise"  # "drop": skip bad rows/images with a warning


@dataclass
class ModelConfig:
    name: str = "hyperiqa_lite0"
    pretrained: bool | str = True
    options: dict = field(default_factory=dict)


@dataclass
class TrainConfig:
    epochs: int | None = None
    batch_size: int | None = None
    patch_size: int = 224
    train_patches: int | None = None
    test_patches: int | None = None
    test_crops: str = "random"
    optimizer: str | None = None  # "adam" | "adamw" | "sgd"
    trunk_lr: float | None = None  # the head's lr is trunk_lr * head_lr_multiplier
    head_lr_multiplier: float | None = None
    lda_with_trunk: bool | None = None  # LDA branches at the trunk lr (both originals do)
    weight_decay: float | None = None
    schedule: str | None = None  # "cosine" | "hyperiqa_step" | "constant"
    eta_min: float | None = None  # cosine floor
    grad_clip: float | None = None  # 0 disables
    loss: str | None = None  # "l1" | "mse" | "smooth_l1"
    freeze_backbone: bool = False
    device: str = "auto"  # "auto": cuda if available, else cpu
    precision: str = "auto"  # "auto": bf16 on cuda, fp32 on cpu | "fp32" | "bf16"
    channels_last: bool = False
    compile: bool = False
    workers: int = 0
    seed: int = 0
    rounds: int = 1
    progress: bool = True


@dataclass
class RunConfig:
    name: str = "run"
    out_dir: str = "runs"
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)

    @property
    def run_dir(self) -> Path:
        return Path(self.out_dir) / self.name

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


CHOICES = {
    "train.optimizer": ("adam", "adamw", "sgd"),
    "train.schedule": ("cosine", "hyperiqa_step", "constant"),
    "train.loss": ("l1", "mse", "smooth_l1"),
    "train.device": ("auto", "cpu", "cuda", "mps"),
    "train.precision": ("auto", "fp32", "bf16"),
    "train.test_crops": ("random", "grid"),
    "data.on_error": ("raise", "drop"),
}
POSITIVE = ("train.epochs", "train.batch_size", "train.patch_size", "train.train_patches",
            "train.test_patches", "train.rounds", "train.trunk_lr")
NON_NEGATIVE = ("train.weight_decay", "train.grad_clip", "train.workers", "train.head_lr_multiplier",
                "train.eta_min")


def _check_type(value, annotation, key: str):
    """Coerce ``value`` to ``annotation`` (ints to floats where a float is expected)."""
    origin = typing.get_origin(annotation)
    args = typing.get_args(annotation)
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _check_type(value, arg, key)
            except ConfigError as exc:
                errors.append(exc)
        raise errors[0]
    if annotation is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}={value!r} must be a list")
        return [_check_type(v, args[0], key) for v in value] if args else list(value)
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}={value!r} must be a mapping")
        return dict(value)
    base = origin or annotation
    if base is int and isinstance(value, bool) or not isinstance(value, base):
        raise ConfigError(f"{key}={value!r} must be of type {getattr(base, '__name__', base)}")
    return value


def _build(cls, data: dict, prefix: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        where = f"section '{prefix}'" if prefix else "the top level"
        # A typo names its closest valid key: "train.epohcs" -> "did you mean 'train.epochs'?".
        hints = "".join(did_you_mean(k, names, f"{prefix}." if prefix else "") for k in unknown)
        raise ConfigError(f"unknown key(s) {[f'{prefix}.{k}'.lstrip('.') for k in unknown]} in {where}"
                          f"{hints}; valid: {sorted(names)}")
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        key = f"{prefix}.{f.name}".lstrip(".")
        value = data[f.name]
        if dataclasses.is_dataclass(hints[f.name]):
            kwargs[f.name] = _build(hints[f.name], value or {}, key)
        else:
            kwargs[f.name] = _check_type(value, hints[f.name], key)
    return cls(**kwargs)


def validate(config: RunConfig) -> RunConfig:
    """Check choices and ranges; return ``config`` unchanged when valid."""
    flat = {f"{s}.{k}": v for s in ("data", "model", "train")
            for k, v in dataclasses.asdict(getattr(config, s)).items()}
    for key, choices in CHOICES.items():
        if flat[key] is not None and flat[key] not in choices:
            raise ConfigError(f"{key}={flat[key]!r} is not one of {choices}{did_you_mean(flat[key], choices)}")
    for key in POSITIVE:
        if flat[key] is not None and flat[key] <= 0:
            raise ConfigError(f"{key}={flat[key]!r} must be positive")
    for key in NON_NEGATIVE:
        if flat[key] is not None and flat[key] < 0:
            raise ConfigError(f"{key}={flat[key]!r} must not be negative")
    fr = config.data.fractions
    if len(fr) != 3 or abs(sum(fr) - 1) > 1e-6 or min(fr) < 0:
        raise ConfigError(f"data.fractions={fr} must be three non-negative shares summing to 1")
    if not config.name or "/" in config.name:
        raise ConfigError(f"name={config.name!r} must be a non-empty folder name without '/'")
    return config


def from_dict(data: dict | None) -> RunConfig:
    return validate(_build(RunConfig, data or {}, ""))


def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.trunk_lr=1e-4"`` -> (["train", "trunk_lr"], 1e-4), the value parsed as YAML."""
    if "=" not in text:
        raise ConfigError(f"override {text!r} must look like section.key=value")
    key, raw = text.split("=", 1)
    try:
        value = yaml.safe_load(raw) if raw.strip() else None
    except yaml.YAMLError:
        value = raw
    # YAML 1.1 reads "1e-4" as a string; accept the scientific notation people type.
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value.lower() for c in ".e") else value
        except ValueError:
            pass
    return key.strip().split("."), value


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    data = dict(data)
    for text in overrides:
        path, value = parse_override(text)
        node = data
        for part in path[:-1]:
            node[part] = dict(node.get(part) or {})
            node = node[part]
        node[path[-1]] = value
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML run configuration and apply ``key=value`` overrides."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{path}: configuration file not found")
        try:
            data = yaml.safe_load(path.read_text()) or {}
        except yaml.YAMLError as exc:
            mark = getattr(exc, "problem_mark", None)
            where = f" (line {mark.line + 1})" if mark else ""
            raise ConfigError(f"{path}: not valid YAML{where}; check indentation and colons") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: must hold a mapping of sections (data, model, train)")
    try:
        return from_dict(apply_overrides(data, overrides or []))
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}" if path else str(exc)) from None


def resolve_train(train: TrainConfig, defaults: dict) -> TrainConfig:
    """Fill every ``None`` in ``train`` from the model's ``defaults``."""
    values = dataclasses.asdict(train)
    for key, value in values.items():
        if value is None and key in defaults:
            values[key] = defaults[key]
    optional = ("grad_clip", "eta_min", "lda_with_trunk")
    missing = [k for k, v in values.items() if v is None and k not in optional]
    if missing:
        raise ConfigError(f"train.{missing[0]} has no value and the model gives no default; set it")
    resolved = TrainConfig(**values)
    validate(RunConfig(train=resolved))
    return resolved
