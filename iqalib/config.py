"""Typed run configuration: dataclasses, YAML files and ``key=value`` overrides.

An unknown key, a wrong type or an impossible value is a
:class:`~iqalib.errors.ConfigError` naming the key, never a silent default.
``None`` in the ``train`` section means "the model's own training default"
(HyperIQA's for ``hyperiqa_*``, the SMART-IQA seed's for ``smart_iqa_*``,
see ``model.default_train_config()``); :func:`resolve_train` fills those in.
``rounds`` is 1 unless set (HyperIQA's protocol uses 10).

Every number must be finite and inside the documented range of its key
(:data:`BOUNDS`), no text may hold a NUL byte, and the run ``name`` must be a
plain folder name (:func:`iqalib.paths.safe_part`). Configuration files are
read by :func:`read_yaml`, which refuses what a hand-written file never needs
and a hostile one uses: more than 256 KiB (checked before reading), duplicate
keys (a second ``train:`` would silently replace the first), aliases and
merge keys (the "billion laughs" bomb). Every value echoed in an error is cut
to 80 characters (:func:`iqalib.paths.shown`).
"""
from __future__ import annotations

import dataclasses
import math
import re
import types
import typing
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, NamedTuple

import yaml

from iqalib.errors import ConfigError, did_you_mean
from iqalib.losses import build_loss, list_losses
from iqalib.paths import cut, safe_part, shown


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

    def load_options(self) -> dict:
        """The keyword arguments of ``load_dataset`` for this data set: ``options``, and
        ``on_error="drop"`` for the table too where bad images are dropped (the demo set has no such switch)."""
        options = dict(self.options)
        if self.on_error == "drop" and "on_error" not in options and self.name != "demo":
            options["on_error"] = "drop"
        return options


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
    loss: str | None = None  # a name of iqalib.losses.list_losses(): "l1", "ranking", "fidelity"...
    loss_options: dict = field(default_factory=dict)  # the loss's options (iqalib.losses.loss_options)
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
    "train.loss": tuple(list_losses()),
    "train.device": ("auto", "cpu", "cuda", "mps"),
    "train.precision": ("auto", "fp32", "bf16"),
    "train.test_crops": ("random", "grid"),
    "data.on_error": ("raise", "drop"),
}


class Range(NamedTuple):
    """Accepted values of a numeric key: ``low <= value <= high`` (``<`` at an open end)."""

    low: float
    high: float
    low_open: bool = False
    high_open: bool = False

    def describe(self, name: str) -> str:
        return f"{self.low} {'<' if self.low_open else '<='} {name} {'<' if self.high_open else '<='} {self.high}"


MAX_SEED = 2**32 - 1  # NumPy seeds are 32-bit
# Generous sane ranges: far beyond any published protocol, far below what exhausts a machine.
BOUNDS = {
    "data.split_seed": Range(0, MAX_SEED),
    "train.epochs": Range(1, 10_000),
    "train.batch_size": Range(1, 65_536),
    "train.patch_size": Range(32, 1_024),  # what checkpoints may hold (engine.checkpoint.MAX_PATCH_SIZE)
    "train.train_patches": Range(1, 10_000),
    "train.test_patches": Range(1, 10_000),
    "train.rounds": Range(1, 1_000),
    "train.workers": Range(0, 256),
    "train.seed": Range(0, MAX_SEED),
    "train.trunk_lr": Range(0, 10, low_open=True),
    "train.head_lr_multiplier": Range(0, 10_000),
    "train.weight_decay": Range(0, 1, high_open=True),
    "train.eta_min": Range(0, 10),
    "train.grad_clip": Range(0, 1_000_000),  # 0 disables clipping
}
# Model options that are the share of units dropped (see iqalib.models.hyperiqa.HyperIQA).
SHARE_OPTIONS = ("dropout", "attention_dropout", "drop_path_rate")
MAX_NESTING = 32  # options nest a level or two; deeper is a mistake or an attack
# A run configuration or book profile is a few kB. The cap also bounds the time a hostile file takes:
# its worst case, a flat list of 87,000 numbers, loads in about 5 s on a busy 2-core machine.
MAX_YAML_BYTES = 256 * 1024


# ------------------------------------------------------------------ YAML files
class _Refused(Exception):
    """A YAML construct that a hand-written file never needs (the message says which, and where)."""


def _check_nodes(root) -> None:
    """Refuse duplicate keys, aliases and merge keys in a composed YAML document, before building it.

    Iterative, and it stops at the first repeated node, so a "billion laughs"
    document (aliases of aliases) costs no more than its text.
    """
    seen: set[int] = set()
    stack = [(root, "")]
    while stack:
        node, where = stack.pop()
        if id(node) in seen:  # only an alias (*name) reaches one node twice
            raise _Refused(f"YAML aliases (*name) are not accepted (the value anchored at line "
                           f"{node.start_mark.line + 1} is used again); write each value out")
        seen.add(id(node))
        if isinstance(node, yaml.MappingNode):
            lines: dict[tuple, int] = {}
            for key, value in node.value:
                line = key.start_mark.line + 1
                if key.tag == "tag:yaml.org,2002:merge":
                    raise _Refused(f"YAML merge keys (<<, line {line}) are not accepted; write the keys out")
                name = key.value if isinstance(key, yaml.ScalarNode) else "?"
                path = f"{where}.{name}" if where else str(name)
                if isinstance(key, yaml.ScalarNode):
                    if (key.tag, name) in lines:
                        raise _Refused(f"duplicate key '{cut(path)}' (lines {lines[key.tag, name]} and {line}); "
                                       "the second would silently replace the first: keep one")
                    lines[key.tag, name] = line
                stack.append((key, where))
                stack.append((value, path))
        elif isinstance(node, yaml.SequenceNode):
            inside = f"{where}[]"  # one text for every item: a long list costs no formatting
            stack.extend((item, inside) for item in node.value)


class StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml's parser when installed
    """PyYAML's safe loader that refuses duplicate keys, aliases and merge keys (see :func:`_check_nodes`)."""

    def construct_document(self, node):
        _check_nodes(node)
        return super().construct_document(node)


# YAML 1.1 reads 1e-4 (no dot, or an unsigned exponent) as text; people mean a number (as YAML 1.2 does).
StrictLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float", re.compile(r"^[-+]?(?:[0-9][0-9_]*(?:\.[0-9_]*)?|\.[0-9_]+)[eE][-+]?[0-9]+$"),
    list("-+0123456789."))


def _load_yaml(source: str | bytes):
    """Data of one YAML document; raises :class:`_Refused`, ``yaml.YAMLError``, ``RecursionError``
    or ``ValueError`` (a scalar that does not convert)."""
    loader = StrictLoader(source)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def parse_yaml(source: str | bytes):
    """Data of one hand-written YAML document, or a one-line :class:`ConfigError` (with the line)."""
    try:
        return _load_yaml(source)
    except _Refused as exc:
        raise ConfigError(str(exc)) from None
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        where = f" (line {mark.line + 1})" if mark else ""
        problem = " ".join(str(exc.problem or exc.context or "syntax error").split())
        raise ConfigError(f"not valid YAML{where}: {cut(problem)}; check indentation and colons") from None
    except yaml.reader.ReaderError as exc:
        raise ConfigError(f"not valid YAML: {exc.reason} (character {exc.position}); "
                          "save the file as UTF-8 text without control characters") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"not valid YAML: {cut(' '.join(str(exc).split()))}") from None
    except RecursionError:
        raise ConfigError("not valid YAML: nested too deeply") from None
    except (ValueError, OverflowError) as exc:  # a 5000-digit number, a 13th month
        raise ConfigError(f"not valid YAML: {cut(' '.join(str(exc).split()))}") from None


def _path_text(path) -> str:
    text = str(path)
    return cut(text, 240)


def read_yaml(path: str | Path, what: str = "configuration file"):
    """Data of a hand-written YAML file, or a one-line :class:`ConfigError` that names the file.

    The size is checked before anything is read (at most :data:`MAX_YAML_BYTES`).
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size <= MAX_YAML_BYTES:
            with path.open("rb") as handle:
                raw = handle.read(MAX_YAML_BYTES + 1)  # the file may have grown since stat
            size = len(raw)
    except (OSError, ValueError) as exc:
        reason = getattr(exc, "strerror", None) or str(exc)
        raise ConfigError(f"{_path_text(path)}: cannot read this {what} ({reason}); "
                          "check the path and its permissions") from None
    if size > MAX_YAML_BYTES:
        raise ConfigError(f"{_path_text(path)}: {size} bytes is too large for a {what} (at most "
                          f"{MAX_YAML_BYTES} bytes); check that this is the right file")
    try:
        return parse_yaml(raw)
    except ConfigError as exc:
        raise ConfigError(f"{_path_text(path)}: {exc}") from None


# ------------------------------------------------------------- typed values
def _shown_keys(keys) -> str:
    """``['a', 'b']`` for a few keys, each cut to 80 characters; ``… (N more)`` past ten."""
    keys = list(keys)
    more = f", … ({len(keys) - 10} more)" if len(keys) > 10 else ""
    return "[" + ", ".join(shown(k) for k in keys[:10]) + more + "]"


def _check_values(data, prefix: str = "") -> None:
    """Every number finite, no NUL byte in any text (keys included), nesting at most :data:`MAX_NESTING`."""
    stack = [(data, prefix, 0)]
    while stack:
        value, key, depth = stack.pop()
        name = key or "the configuration"
        if depth > MAX_NESTING:
            raise ConfigError(f"{cut(name)} nests more than {MAX_NESTING} levels deep; flatten it")
        if isinstance(value, dict):
            for k, v in value.items():
                if isinstance(k, str) and "\x00" in k:
                    raise ConfigError(f"key {shown(k)} in {cut(name)} holds a NUL byte (\\x00); remove it")
                stack.append((v, f"{key}.{k}" if key else str(k), depth + 1))
        elif isinstance(value, (list, tuple)):
            stack.extend((v, f"{key}[{i}]", depth + 1) for i, v in enumerate(value))
        elif isinstance(value, str) and "\x00" in value:
            raise ConfigError(f"{cut(name)}={shown(value)} holds a NUL byte (\\x00); remove it")
        elif isinstance(value, float) and not math.isfinite(value):
            raise ConfigError(f"{cut(name)}={value!r} must be a finite number")


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
        try:
            return float(value)
        except OverflowError:
            raise ConfigError(f"{key}={shown(value)} is too large for a number") from None
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"{key}={shown(value)} must be a list")
        return [_check_type(v, args[0], key) for v in value] if args else list(value)
    if origin is dict or annotation is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{key}={shown(value)} must be a mapping")
        return dict(value)
    base = origin or annotation
    if base is int and isinstance(value, bool) or not isinstance(value, base):
        raise ConfigError(f"{key}={shown(value)} must be of type {getattr(base, '__name__', base)}")
    return value


def _in_a_section(cls, key) -> str:
    """`` (did you mean 'train.rounds'?)`` for a section's key given where no such key is
    (``rounds=1`` at the top level); ``""`` when no section of ``cls`` has it."""
    hints = typing.get_type_hints(cls)
    for f in fields(cls):
        if dataclasses.is_dataclass(hints[f.name]) and key in {g.name for g in fields(hints[f.name])}:
            return f" (did you mean '{f.name}.{key}'?)"
    return ""


def _build(cls, data: dict, prefix: str):
    if not isinstance(data, dict):
        raise ConfigError(f"{prefix or 'config'} must be a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = sorted(set(data) - names, key=str)
    if unknown:
        where = f"section '{prefix}'" if prefix else "the top level"
        # A typo names its closest valid key: "train.epohcs" -> "did you mean 'train.epochs'?".
        hints = "".join(did_you_mean(k, names, f"{prefix}." if prefix else "") or _in_a_section(cls, k)
                        for k in unknown[:3])
        raise ConfigError(f"unknown key(s) {_shown_keys(f'{prefix}.{k}'.lstrip('.') for k in unknown)} in "
                          f"{where}{hints}; valid: {sorted(names)}")
    kwargs = {}
    for f in fields(cls):
        if f.name not in data:
            continue
        key = f"{prefix}.{f.name}".lstrip(".")
        value = data[f.name]
        if dataclasses.is_dataclass(hints[f.name]):
            kwargs[f.name] = _build(hints[f.name], {} if value is None else value, key)
        else:
            kwargs[f.name] = _check_type(value, hints[f.name], key)
    return cls(**kwargs)


def _check_range(key: str, value, bounds: Range) -> None:
    accepted = f" (accepted: {bounds.describe(key.rsplit('.', 1)[-1])})"
    if isinstance(value, float) and not math.isfinite(value):
        raise ConfigError(f"{key}={value!r} must be a finite number{accepted}")
    if value < bounds.low or (bounds.low_open and value == bounds.low):
        if bounds.low == 0:
            rule = "must be positive" if bounds.low_open else "must not be negative"
        else:
            rule = "must be positive" if bounds.low == 1 and isinstance(value, int) else f"must be at least {bounds.low}"
        raise ConfigError(f"{key}={shown(value)} {rule}{accepted}")
    if value > bounds.high or (bounds.high_open and value == bounds.high):
        rule = f"must be below {bounds.high}" if bounds.high_open else f"must be at most {bounds.high}"
        raise ConfigError(f"{key}={shown(value)} {rule}{accepted}")


def validate(config: RunConfig) -> RunConfig:
    """Check choices and ranges; return ``config`` unchanged when valid."""
    values = config.to_dict()
    _check_values(values)
    safe_part(config.name, "name")
    flat = {f"{s}.{k}": v for s in ("data", "model", "train") for k, v in values[s].items()}
    for key, choices in CHOICES.items():
        if flat[key] is not None and flat[key] not in choices:
            hint = did_you_mean(flat[key], choices)
            if key == "train.device" and str(flat[key]).startswith("cuda:"):
                hint = "; to pick GPUs use device=cuda with --devices 0,1 or CUDA_VISIBLE_DEVICES"
            raise ConfigError(f"{key}={shown(flat[key])} is not one of {choices}{hint}")
    for key, bounds in BOUNDS.items():
        if flat[key] is not None:
            _check_range(key, flat[key], bounds)
    for option in SHARE_OPTIONS:
        value = config.model.options.get(option)
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            _check_range(f"model.options.{option}", value, Range(0, 1, high_open=True))
    fr = config.data.fractions
    if len(fr) != 3 or abs(sum(fr) - 1) > 1e-6 or min(fr) < 0:
        raise ConfigError(f"data.fractions={shown(fr)} must be three non-negative shares summing to 1")
    if config.train.loss is not None:  # the options of the chosen loss, checked before any data is read
        build_loss(config.train.loss, config.train.loss_options, where="train.loss_options")
    return config


def check_device(name: str) -> None:
    """Refuse a ``train.device`` that this machine does not have (one line saying what to use)."""
    if name in ("auto", "cpu"):
        return
    import torch  # lazy: torch loads only to check a device

    if name == "cuda" and not torch.cuda.is_available():
        raise ConfigError("train.device='cuda' but no CUDA device is visible; use device=auto or cpu")
    if name == "mps" and not (getattr(torch.backends, "mps", None) and torch.backends.mps.is_available()):
        raise ConfigError("train.device='mps' but this machine has no Apple MPS device; use device=auto or cpu")


def from_dict(data: dict | None) -> RunConfig:
    _check_values(data or {})
    return validate(_build(RunConfig, data or {}, ""))


# ---------------------------------------------------------------- overrides
def parse_override(text: str) -> tuple[list[str], Any]:
    """``"train.trunk_lr=1e-4"`` -> (["train", "trunk_lr"], 1e-4), the value parsed as YAML.

    An empty value is an error (``key=null`` unsets a key), as is an empty
    key or key part (``=1``, ``train.=1``).
    """
    if not isinstance(text, str) or "=" not in text:
        raise ConfigError(f"override {shown(text)} must look like section.key=value")
    key, raw = text.split("=", 1)
    path = [part.strip() for part in key.split(".")]
    if not all(path):
        raise ConfigError(f"override {shown(text)} has an empty key or key part; write section.key=value, "
                          "e.g. train.epochs=3")
    if not raw.strip():
        raise ConfigError(f"override {shown(text)} has no value after '='; give one (null unsets the key)")
    try:
        value = _load_yaml(raw)
    except _Refused as exc:
        raise ConfigError(f"override {shown(text)}: {exc}") from None
    except (yaml.YAMLError, RecursionError, ValueError, OverflowError):
        value = raw  # not YAML: the text itself (a path, a word)
    # YAML 1.1 reads "1e-4" as a string; accept the scientific notation people type.
    if isinstance(value, str):
        try:
            value = float(value) if any(c in value.lower() for c in ".e") else value
        except ValueError:
            pass
    return path, _as_typed(text, raw, value)


_QUOTED = re.compile(r"""^\s*(?:'.*'|".*")\s*$""", re.DOTALL)
_COMMENT = re.compile(r"(^|\s)#")


def _as_typed(text: str, raw: str, value):
    """The override's value exactly as typed: YAML must not eat part of it.

    A text value is the raw text itself (YAML would read ``runs/exp #1`` as ``runs/exp``
    and fold a newline into a space), unless the user quoted it as YAML. A number, a
    switch or a list that YAML read from text holding a comment is refused, as is a
    control character (a newline in a folder name), instead of being silently changed.
    """
    control = next((c for c in raw if ord(c) < 32 and c != "\x00" or ord(c) == 127), None)
    if control is not None:
        raise ConfigError(f"override {shown(text)} holds a control character ({control!r}); "
                          "names, paths and values cannot contain one")
    if isinstance(value, str) and not _QUOTED.match(raw):
        return raw
    if not isinstance(value, str) and _COMMENT.search(raw) and not _QUOTED.match(raw):
        raise ConfigError(f"override {shown(text)}: YAML reads the text after '#' as a comment; "
                          "remove it, or quote the whole value ('...') to keep it")
    return value


def _schema_step(schema, part: str):
    """The type below ``part`` of a dataclass ``schema``: a dataclass, ``dict`` (free keys), or a value type."""
    if not dataclasses.is_dataclass(schema):
        return dict  # inside an options mapping, or an unknown key (reported by _build)
    hint = typing.get_type_hints(schema).get(part, dict)
    if dataclasses.is_dataclass(hint) or hint is dict or typing.get_origin(hint) is dict:
        return hint
    return None  # a single value: nothing to index into


def apply_overrides(data: dict, overrides: list[str]) -> dict:
    data = dict(data)
    for text in overrides:
        path, value = parse_override(text)
        node, schema = data, RunConfig
        for depth, part in enumerate(path[:-1]):
            schema = _schema_step(schema, part)
            current = node.get(part)
            if schema is None or (current is not None and not isinstance(current, dict)):
                where = ".".join(path[:depth + 1])
                raise ConfigError(f"override {shown(text)}: {where} is a single value, not a section; "
                                  f"write {where}=VALUE")
            node[part] = dict(current or {})
            node = node[part]
        if dataclasses.is_dataclass(_schema_step(schema, path[-1])) and not isinstance(value, dict):
            where = ".".join(path)
            raise ConfigError(f"override {shown(text)} would replace the whole section '{where}'; "
                              f"set its keys instead ({where}.KEY=VALUE)")
        node[path[-1]] = value
    return data


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> RunConfig:
    """Read a YAML run configuration, apply ``key=value`` overrides, check the device is here."""
    data: dict = {}
    if path is not None:
        path = Path(path)
        if not path.is_file():
            raise ConfigError(f"{_path_text(path)}: configuration file not found")
        data = read_yaml(path, "configuration file")
        if data is None:
            data = {}
        if not isinstance(data, dict):
            raise ConfigError(f"{_path_text(path)}: must hold a mapping of sections (data, model, train)")
    try:
        config = from_dict(apply_overrides(data, overrides or []))
        check_device(config.train.device)
        return config
    except ConfigError as exc:
        raise ConfigError(f"{_path_text(path)}: {exc}" if path else str(exc)) from None


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
