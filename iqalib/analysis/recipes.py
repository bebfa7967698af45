"""What each run is really trained with: training settings resolved as the engine resolves them.

A profile sets some training keys and leaves the rest ``None``; the engine
fills those from the model family's defaults (HyperIQA's for ``hyperiqa_*``,
the SMART-IQA seed's for ``smart_iqa_*``: :func:`iqalib.engine.fit.resolved_train`).
Two arms with "the same profile" can therefore train with different
optimisers, schedules and regularisation. :func:`resolved_recipe` and
:func:`recipe_table` show every arm's resolved settings side by side, and
:func:`seed_recipe` gives the keys that train a HyperIQA head with the
seed's recipe (the ablation's recipe-controlled arm).

With a frozen trunk the "trunk" parameter group still holds the LDA branches
(``lda_with_trunk``, as in both original codes), so ``trunk_lr`` sets their
rate and ``trunk_lr x head_lr_multiplier`` the hyper network's:
:func:`learning_rate_axis` names what a learning-rate sweep really moves.
"""
from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pandas as pd
import torch

from iqalib.config import RunConfig, TrainConfig, from_dict, resolve_train
from iqalib.engine.fit import build_scheduler
from iqalib.models import create_model
from iqalib.models.registry import model_options

# Training keys that make up a recipe (how the head learns), as opposed to the budget and the data.
RECIPE_KEYS = ("optimizer", "trunk_lr", "head_lr_multiplier", "lda_with_trunk", "weight_decay", "schedule",
               "eta_min", "grad_clip", "loss")
# Model options that are regularisation of the head, part of the recipe too.
RECIPE_MODEL_OPTIONS = ("dropout",)


def _model(config: RunConfig):
    return create_model(config.model.name, pretrained=False, **config.model.options)


def _resolved(config: RunConfig, model) -> TrainConfig:
    # The engine's rule (iqalib.engine.fit.resolved_train), without building trunk weights.
    return resolve_train(config.train, model.default_train_config())


def head_lr_schedule(train: TrainConfig) -> list[float]:
    """The hyper network's learning rate in each epoch, from the engine's own scheduler."""
    parameter = torch.nn.Parameter(torch.zeros(1))
    optimizer = torch.optim.SGD([{"params": [parameter], "lr": train.trunk_lr * train.head_lr_multiplier,
                                  "name": "head"}])
    scheduler = build_scheduler(optimizer, train)
    rates = []
    for _ in range(train.epochs):
        rates.append(optimizer.param_groups[0]["lr"])
        optimizer.step()
        scheduler.step()
    return rates


def _schedule_words(train: TrainConfig) -> str:
    if train.schedule == "cosine":
        return f"cosine to {train.eta_min or 0:g}"
    if train.schedule == "hyperiqa_step":
        return "HyperIQA step"  # head /10 every 6 epochs, multiplier dropped after 10 (hyperiqa_step_lr)
    return "constant"


def resolved_recipe(config: RunConfig) -> dict:
    """The settings one run trains with, as the engine resolves them, in display form.

    Keys: model, optimizer, ``trunk lr`` ("frozen" when the trunk is
    frozen), ``LDA lr`` (the LDA branches' rate), ``head lr`` (first and last
    epoch), ``weight decay``, schedule, ``grad clip``, dropout, loss, epochs,
    batch, crops (train/test), ``head widths`` (the hyper network's conv1).
    """
    model = _model(config)
    train = _resolved(config, model)
    rates = head_lr_schedule(train)
    frozen = train.freeze_backbone
    lda_rate = train.trunk_lr if (train.lda_with_trunk if train.lda_with_trunk is not None else True) \
        else train.trunk_lr * train.head_lr_multiplier
    return {
        "model": config.model.name,
        "optimizer": train.optimizer,
        "trunk lr": "frozen" if frozen else f"{train.trunk_lr:g}",
        "LDA lr": f"{lda_rate:g}",
        "head lr": f"{rates[0]:.3g}" if rates[0] == rates[-1] else f"{rates[0]:.3g} -> {rates[-1]:.3g}",
        "weight decay": f"{train.weight_decay:g}",
        "schedule": _schedule_words(train),
        "grad clip": "none" if not train.grad_clip else f"{train.grad_clip:g}",
        "dropout": f"{float(getattr(model, 'dropout', 0.0)):g}",
        "loss": train.loss,
        "epochs": train.epochs,
        "batch": train.batch_size,
        "crops (train/test)": f"{train.train_patches}/{train.test_patches}",
        "head widths": "x".join(str(layer.out_channels) for layer in model.conv1
                                if hasattr(layer, "out_channels")),
    }


def recipe_table(configs: dict[str, RunConfig], labels: dict[str, str] | None = None) -> pd.DataFrame:
    """:func:`resolved_recipe` of every arm, one row each (index: the arm's label; ``.T`` to show it narrow)."""
    labels = labels or {}
    rows = [{"arm": labels.get(name, name), **resolved_recipe(config)} for name, config in configs.items()]
    return pd.DataFrame(rows).set_index("arm")


def recipe_differences(table: pd.DataFrame, a: str, b: str) -> list[str]:
    """The columns of :func:`recipe_table` in which arms ``a`` and ``b`` differ (``model`` excluded)."""
    return [c for c in table.columns if c != "model" and table.loc[a, c] != table.loc[b, c]]


def recipe_sentences(recipes: pd.DataFrame, a: str, b: str) -> list[str]:
    """Say when two compared arms also differ in how they were trained (rows of :func:`recipe_table`)."""
    differ = [c for c in recipe_differences(recipes, a, b) if c != "head widths"]
    if not differ:
        return [f"{a} and {b} were trained with the same resolved settings."]
    details = "; ".join(f"{c} {recipes.loc[a, c]} vs {recipes.loc[b, c]}" for c in differ)
    return [f"{a} and {b} differ in their training recipe as well as their architecture ({details}), so their "
            "difference mixes the two; the ablation's recipe-controlled arm separates them."]


def seed_recipe(smart_model: str, train: dict) -> tuple[dict, dict]:
    """``(train keys, model options)`` that train any head with the seed's (SMART-IQA's) recipe.

    ``train`` holds the keys a profile sets; every key it leaves unset is
    filled from ``smart_model``'s family defaults (what a SMART-IQA run of the
    same profile resolves to), and the head's dropout is the SMART-IQA
    model's. Given to a HyperIQA model, the arm then differs from SMART-IQA's
    single-scale configuration in architecture only.
    """
    defaults = create_model(smart_model, pretrained=False).default_train_config()
    unset_by_default = {f.name for f in dataclasses.fields(TrainConfig) if f.default is None}
    filled = {key: value for key, value in defaults.items()
              if key in unset_by_default and train.get(key) is None}
    options = {key: model_options(smart_model)[key] for key in RECIPE_MODEL_OPTIONS}
    return {**train, **filled}, options


def learning_rate_axis(sweep: pd.DataFrame, out_dir: str | Path) -> tuple[pd.Series, str]:
    """The rate a learning-rate sweep really moves, per row of ``sweep``, and an axis label saying so.

    ``sweep`` is :func:`iqalib.experiments.lr_sweep`'s table (one ``run``
    per rate). The runs' resolved settings (``results.json``) decide: with a
    trained trunk the axis is the trunk's rate (the head's is that times the
    multiplier); with a frozen trunk it is the hyper network's rate
    (``trunk_lr x head_lr_multiplier``), the LDA branches getting ``trunk_lr``.
    """
    settings = {}
    for run in sweep["run"].unique():
        result = json.loads((Path(out_dir) / run / "round_0" / "results.json").read_text())
        settings[run] = result["train_config"]
    first = next(iter(settings.values()))
    multipliers = {s["head_lr_multiplier"] for s in settings.values()}
    multiplier = multipliers.pop() if len(multipliers) == 1 else None
    if first["freeze_backbone"]:
        values = sweep.apply(lambda r: r["trunk_lr"] * settings[r["run"]]["head_lr_multiplier"], axis=1)
        lda = f"LDA branches at 1/{multiplier:g} of it" if multiplier else "LDA branches at trunk_lr"
        return values, f"head (hyper network) learning rate; trunk frozen, {lda}"
    head = f"head at {multiplier:g}x" if multiplier else "head at trunk_lr x multiplier"
    return sweep["trunk_lr"].astype(float), f"trunk learning rate ({head})"


def runs_recipe_table(results: dict[str, dict]) -> pd.DataFrame:
    """:func:`recipe_table` of finished runs, from the configuration each stored (``round_results[0]``)."""
    return recipe_table({label: from_dict(r["round_results"][0]["config"]) for label, r in results.items()})
