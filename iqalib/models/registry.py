"""Models by name, in the style of timm: ``register_model``, ``create_model``, ``list_models``.

A registered entry is a function ``builder(pretrained=False, **options)``
returning an ``nn.Module``; ``create_model`` checks the name and the option
names and turns mistakes into one-line :class:`~iqalib.errors.ConfigError`.
"""
from __future__ import annotations

import copy
import fnmatch
import functools
import inspect
import math
from typing import Callable

import torch
from torch import nn

from iqalib.errors import ConfigError, did_you_mean
from iqalib.paths import shown

_REGISTRY: dict[str, Callable[..., nn.Module]] = {}


def register_model(builder: Callable[..., nn.Module]) -> Callable[..., nn.Module]:
    """Decorator: register ``builder`` under its function name."""
    name = builder.__name__
    if name in _REGISTRY and _REGISTRY[name] is not builder:
        raise ValueError(f"model {name!r} is registered twice")
    _REGISTRY[name] = builder
    return builder


def list_models(pattern: str | None = None) -> list[str]:
    """Registered model names, sorted; ``pattern`` filters with shell wildcards (``"smart_iqa_*"``)."""
    names = sorted(_REGISTRY)
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)] if pattern else names


def model_options(name: str) -> dict[str, object]:
    """The options ``name`` accepts, with their defaults."""
    builder = _builder(name)
    return {p.name: p.default for p in inspect.signature(builder).parameters.values()
            if p.name != "pretrained" and p.kind is p.KEYWORD_ONLY}


def option_problem(key: str, value, default) -> str | None:
    """What ``value`` must be for a model option whose default is ``default``, or None when it fits.

    The one rule for a model's switches, in a run configuration (:func:`check_model_options`,
    before training) and in a checkpoint (:func:`iqalib.engine.checkpoint.validate_checkpoint`):
    a switch whose default is true, false or None takes true or false (text such as ``"no"`` is
    refused, never read as true); a numeric option takes a finite number, and a share of units
    dropped (a name holding ``drop``) one from 0 up to, not including, 1. None keeps the default.
    """
    if value is None:
        return None
    if isinstance(default, bool) or default is None:
        return None if isinstance(value, bool) else "true or false"
    if isinstance(default, (int, float)):
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            return "a rate from 0 to 1 (1 excluded)" if "drop" in key else "a finite number"
        if "drop" in key and not 0 <= value < 1:
            return "a rate from 0 to 1 (1 excluded)"
    return None


def check_model_options(name: str, options: dict, *, where: str = "model.options") -> None:
    """Refuse, in one :class:`ConfigError` line, an option ``name`` does not have or a value
    :func:`option_problem` refuses; the value is echoed as written (``'no'``, not ``False``)."""
    valid = model_options(name)
    unknown = sorted(set(options) - set(valid))
    if unknown:
        hints = "".join(did_you_mean(o, valid) for o in unknown)
        raise ConfigError(f"model {name!r} has no option {', '.join(map(repr, unknown))}{hints}; "
                          f"valid options: {', '.join(valid)}")
    for key, value in options.items():
        problem = option_problem(key, value, valid[key])
        if problem:
            raise ConfigError(f"{where}.{key}={shown(value)} must be {problem} (model {name!r})")


@functools.lru_cache(maxsize=None)
def model_trunk(name: str) -> str:
    """The trunk (``BACKBONES`` key) that model ``name`` reads, without allocating it (built on the meta
    device): analyses that compare a model with a probe of a trunk need to know they share it."""
    with torch.device("meta"):
        return create_model(name, pretrained=False).backbone.name


def create_model(name: str, pretrained=False, **options) -> nn.Module:
    """Build model ``name``.

    ``pretrained``: ``False`` (random trunk), ``True`` (ImageNet trunk weights:
    timm's hub, or offline for ``*_lite0``) or a path to a local state dict of
    the trunk. ``options`` are the model's own switches, listed by
    :func:`model_options` (e.g. ``multiscale``, ``attention``, ``drop_path_rate``).
    """
    builder = _builder(name)
    check_model_options(name, options, where="options")
    return builder(pretrained=pretrained, **options)


def _builder(name: str) -> Callable[..., nn.Module]:
    if name not in _REGISTRY:
        raise ConfigError(f"unknown model {shown(name)}; valid models: {', '.join(list_models())}"
                          f"{did_you_mean(name, list_models())}")
    return _REGISTRY[name]


# ---------------------------------------------------------------- complexity

def model_complexity(name_or_model: str | nn.Module, input_size: int = 224) -> dict[str, int]:
    """Parameters and FLOPs of one forward pass on a single ``input_size`` square patch.

    FLOPs are counted by :class:`torch.utils.flop_counter.FlopCounterMode`
    (a multiply-add counts as 2 FLOPs; convolutions and matrix products only).
    A registered name is built on the meta device: no weights are allocated
    and nothing is computed, so even the largest model takes a moment.
    """
    from torch.utils.flop_counter import FlopCounterMode  # lazy: keeps import iqalib fast

    if isinstance(name_or_model, str):
        with torch.device("meta"):
            model = create_model(name_or_model, pretrained=False)
    else:
        model = copy.deepcopy(name_or_model).to("meta")
    params = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    model.eval()
    x = torch.zeros(1, 3, input_size, input_size, device="meta")
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model(x)
    return dict(params=params, trainable=trainable, flops=int(counter.get_total_flops()))


def complexity_table(input_size: int = 224):
    """A pandas DataFrame, one row per registered model: params, trainable, flops, gflops."""
    import pandas as pd  # lazy: keeps import iqalib fast

    rows = [dict(model=name, **model_complexity(name, input_size)) for name in list_models()]
    table = pd.DataFrame(rows).set_index("model")
    table["gflops"] = table["flops"] / 1e9
    return table
