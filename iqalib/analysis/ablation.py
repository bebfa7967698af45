"""SMART-IQA's ablation: which of its changes to HyperIQA carry the gain?

Four configurations, trained on the same splits (same data split seed, so
every round tests the same images in all four):

========================  =================================================
``single_scale``          (a) SMART-IQA's head on the last stage only
``multiscale_concat``     (b) all four stages, concatenated without attention
``multiscale_attention``  (c) all four stages weighted by stage attention
                          (the full SMART-IQA)
``hyperiqa``              (d) the HyperIQA baseline on the same trunk family
========================  =================================================

All four get the same training keys passed in; what is not passed comes from
each family's own defaults (HyperIQA's or the seed's), so (d) differs from
(a) in recipe *and* architecture. The recipe-controlled arm
``hyperiqa_seed_recipe`` (d') trains HyperIQA's head with the seed's recipe
(:func:`iqalib.analysis.recipes.seed_recipe`: the keys the profile leaves
unset come from SMART-IQA's defaults, and the head's dropout is SMART-IQA's),
so (d) -> (d') changes the recipe only and (d') -> (a) the architecture
only; :func:`iqalib.analysis.recipes.recipe_table` shows every arm's
resolved settings. Runs (c) and (d) are
named after their models, exactly like the runs of chapters 4 and 3
(:func:`iqalib.experiments.train_models`), so with the same settings those
finished runs are read back instead of trained again; (a) and (b) are named
``<smart model>_single_scale`` and ``<smart model>_multiscale_concat``. With a frozen trunk
every configuration reads the same cached trunk features (one feature bank
per trunk, crops and seed), so the ablation costs one trunk pass plus four
head trainings; :func:`run_ablation` records how many new feature banks each
run created, which checks that.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import pandas as pd

from iqalib import metrics
from iqalib.analysis.recipes import seed_recipe
from iqalib.analysis.significance import comparison_claim
from iqalib.config import RunConfig, resolve_train
from iqalib.data.images import cache_root
from iqalib.experiments import run_config, run_or_load
from iqalib.models import create_model

ABLATION_CONFIGURATIONS = {
    # name: (family, model options, run-name suffix); {} keeps the model's own defaults
    # (multi-scale with attention for smart_iqa_*), which is what chapters 3 and 4 train.
    "single_scale": ("smart", {"multiscale": False, "attention": False}, "_single_scale"),
    "multiscale_concat": ("smart", {"multiscale": True, "attention": False}, "_multiscale_concat"),
    "multiscale_attention": ("smart", {}, ""),
    "hyperiqa": ("baseline", {}, ""),
}
# The recipe-controlled arm: HyperIQA's head (family "baseline") with the seed's recipe.
RECIPE_ARM = "hyperiqa_seed_recipe"
RECIPE_ARM_SUFFIX = "_seed_recipe"
ABLATION_LABELS = {
    "single_scale": "(a) single scale",
    "multiscale_concat": "(b) multi-scale concat",
    "multiscale_attention": "(c) + attention (SMART-IQA)",
    RECIPE_ARM: "(d') HyperIQA head, seed's recipe",
    "hyperiqa": "(d) HyperIQA baseline",
}
# The comparisons the ablation is about: each step of the seed's ordering (a) < (b) < (c), the full
# model against (a) and (d), then the two halves of (d) -> (a): the recipe alone ((d') vs (d)) and
# the architecture alone ((a) vs (d')).
ABLATION_PAIRS = (("multiscale_attention", "multiscale_concat"),
                  ("multiscale_concat", "single_scale"),
                  ("multiscale_attention", "single_scale"),
                  ("multiscale_attention", "hyperiqa"),
                  (RECIPE_ARM, "hyperiqa"),
                  ("single_scale", RECIPE_ARM))
# What each pair changes, in words (for tables and verdicts).
PAIR_CHANGES = {
    ("multiscale_attention", "multiscale_concat"): "stage attention",
    ("multiscale_concat", "single_scale"): "multi-scale features, without attention",
    ("multiscale_attention", "single_scale"): "multi-scale features with attention",
    ("multiscale_attention", "hyperiqa"): "everything SMART-IQA changes (architecture and recipe)",
    (RECIPE_ARM, "hyperiqa"): "the training recipe only (HyperIQA's head both times)",
    ("single_scale", RECIPE_ARM): "the head's architecture only (seed's recipe both times)",
}
# Which ablation pair tests which claim of iqalib.analysis.claims.CLAIMS (A beats B).
PAIR_CLAIMS = {
    ("multiscale_concat", "single_scale"): "multiscale",
    ("multiscale_attention", "multiscale_concat"): "attention",
    (RECIPE_ARM, "hyperiqa"): "recipe",
    ("single_scale", RECIPE_ARM): "architecture",
    ("multiscale_attention", "hyperiqa"): "smart_vs_hyperiqa",
}


def ablation_pairs(names) -> list[tuple[str, str]]:
    """The :data:`ABLATION_PAIRS` whose two arms are both among ``names`` (e.g. without the recipe arm)."""
    names = set(names)
    return [(a, b) for a, b in ABLATION_PAIRS if a in names and b in names]


_RUN_KEYWORDS = ("dataset", "data_root", "data_options", "pretrained", "split_seed", "fractions", "image_cache")


def ablation_configs(*, out_dir: str | Path, smart_model: str = "smart_iqa_lite0",
                     baseline_model: str = "hyperiqa_lite0", seed_recipe_arm: bool = True,
                     **common) -> dict[str, RunConfig]:
    """One :class:`~iqalib.config.RunConfig` per configuration (run names: see the module docstring).

    ``common`` holds :func:`iqalib.experiments.run_config` keywords shared by
    all (dataset, data_root, split_seed, fractions, pretrained and the
    training keys). ``seed_recipe_arm`` adds (d') :data:`RECIPE_ARM`, named
    ``<baseline model>_seed_recipe``: HyperIQA's head with the seed's recipe
    (:func:`iqalib.analysis.recipes.seed_recipe`). Order: (a), (b), (c), (d'), (d).
    """
    models = {"smart": smart_model, "baseline": baseline_model}
    configs = {name: run_config(models[family] + suffix, out_dir=out_dir, model=models[family],
                                model_options=dict(options), **common)
               for name, (family, options, suffix) in ABLATION_CONFIGURATIONS.items()}
    if not seed_recipe_arm:
        return configs
    run_keys = {k: v for k, v in common.items() if k in _RUN_KEYWORDS}
    train, options = seed_recipe(smart_model, {k: v for k, v in common.items() if k not in _RUN_KEYWORDS})
    configs[RECIPE_ARM] = run_config(baseline_model + RECIPE_ARM_SUFFIX, out_dir=out_dir, model=baseline_model,
                                     model_options=options, **run_keys, **train)
    order = ["single_scale", "multiscale_concat", "multiscale_attention", RECIPE_ARM, "hyperiqa"]
    return {name: configs[name] for name in order}


@dataclass
class AblationRuns:
    """Finished ablation runs: results and folder per configuration, and what each run cost."""

    results: dict[str, dict]
    run_dirs: dict[str, Path]
    costs: pd.DataFrame  # configuration, seconds, new_feature_banks


def _feature_banks() -> set[str]:
    return {p.name for p in (cache_root() / "features").glob("*.pt")}


def trunk_features_key(config: RunConfig) -> str | None:
    """What a frozen-trunk feature bank of ``config`` depends on, hashed (None when the trunk trains).

    Trunk and its weights, data set, crop count ``max(train_patches,
    test_patches)``, patch size, crop rule and seed: configurations with equal
    keys read the same cached trunk features.
    """
    if not config.train.freeze_backbone:
        return None
    model = create_model(config.model.name, pretrained=False, **config.model.options)
    train = resolve_train(config.train, model.default_train_config())
    parts = {"backbone": model.backbone.name, "weights": str(config.model.pretrained),
             "data": dataclasses.asdict(config.data), "k": max(train.train_patches, train.test_patches),
             "patch": train.patch_size, "crops": train.test_crops, "seed": train.seed}
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()[:12]


def run_ablation(configs: dict[str, RunConfig]) -> AblationRuns:
    """Train (or read back) every configuration in order and record what each cost.

    ``costs`` columns: ``seconds`` (wall time; near zero for a run read
    back), ``trunk_features`` (:func:`trunk_features_key`: one value for all
    means one shared feature bank) and ``new_feature_banks`` (bank files that
    appeared in the cache folder meanwhile; another process sharing the cache
    can add to it).
    """
    results, costs = {}, []
    for name, config in configs.items():
        before, started = _feature_banks(), time.perf_counter()
        results[name] = run_or_load(config)
        costs.append({"configuration": name, "seconds": time.perf_counter() - started,
                      "trunk_features": trunk_features_key(config),
                      "new_feature_banks": len(_feature_banks() - before)})
    return AblationRuns(results, {n: c.run_dir for n, c in configs.items()}, pd.DataFrame(costs))


def ablation_rounds(results: dict[str, dict]) -> pd.DataFrame:
    """Long table of test metrics: one row per configuration and round."""
    rows = [{"configuration": name, "label": ABLATION_LABELS.get(name, name), "model": r["model"], **per_round}
            for name, r in results.items() for per_round in r["test_per_round"]]
    return pd.DataFrame(rows)


def ablation_table(results: dict[str, dict], metric_names=("srcc", "plcc")) -> pd.DataFrame:
    """Median and spread over rounds (:func:`iqalib.metrics.summarize_rounds`) per configuration.

    Columns ``<metric>_median``, ``<metric>_iqr``, ``<metric>_min``,
    ``<metric>_max`` for each metric, plus ``rounds`` and ``data``.
    """
    rows = []
    for name, r in results.items():
        summary = metrics.summarize_rounds(pd.DataFrame(r["test_per_round"]), metrics=list(metric_names))
        row = {"configuration": ABLATION_LABELS.get(name, name), "model": r["model"], "rounds": r["rounds"]}
        for metric in metric_names:
            for statistic in ("median", "iqr", "min", "max"):
                row[f"{metric}_{statistic}"] = summary.loc[metric, statistic]
        row["data"] = r["data"]
        rows.append(row)
    return pd.DataFrame(rows).set_index("configuration")


def pair_claim_rows(summary: pd.DataFrame, results: Mapping[str, Mapping] | None = None) -> list[dict]:
    """Claim rows for the ablation pairs that test a claim (:data:`PAIR_CLAIMS`); arms' medians from ``results``."""
    results = results or {}
    return [comparison_claim(PAIR_CLAIMS[(row["a"], row["b"])], row, results.get(row["a"]), results.get(row["b"]))
            for _, row in summary.iterrows() if (row["a"], row["b"]) in PAIR_CLAIMS]
