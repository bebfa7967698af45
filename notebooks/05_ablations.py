# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     notebook_metadata_filter: -jupytext.text_representation.jupytext_version
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 5. Ablations: what does each part of SMART-IQA add?
#
# SMART-IQA changes HyperIQA in three ways: a different trunk, a hyper network that reads **all
# four** trunk stages instead of the last one, and **attention** that weighs those stages per image.
# The SMART-IQA report {cite}`smartiqa` also trains with its own recipe (AdamW, cosine schedule,
# gradient clipping, dropout), while HyperIQA {cite}`su2020hyperiqa` uses Adam and a step schedule:
# "SMART-IQA beats HyperIQA" then mixes architecture with recipe. To see which change carries the
# gain we train five configurations on the same trunk and the same data splits:
#
# | | configuration | hyper network reads | recipe |
# |---|---|---|---|
# | (a) | single scale | the last stage (SMART-IQA's head otherwise) | the seed's |
# | (b) | multi-scale concatenation | all four stages, concatenated | the seed's |
# | (c) | + attention (full SMART-IQA) | all four stages, weighted by stage attention | the seed's |
# | (d') | HyperIQA head, seed's recipe | the last stage, HyperIQA's own head | the seed's |
# | (d) | HyperIQA baseline | the last stage, HyperIQA's own head | HyperIQA's |
# | (e) | linear probe, no hyper network | all four stages, each averaged: ridge regression | closed form |
#
# (d) → (d') changes the recipe only; (d') → (a) changes the head's architecture only, with the
# recipe held fixed. Each configuration is trained for `rounds` rounds; round *r* uses the split drawn with seed
# `split_seed + r`, identical for all four, so every round tests all four on the same images. We
# report the median over rounds with its spread, and test the differences **paired**: per round a
# bootstrap of the SRCC difference over the same test images (resampling whole source photographs
# where the data set records them, since images of one source are not independent), then across
# rounds the share of rounds won and (with six rounds or more) a Wilcoxon signed-rank test, which
# decides, and a sign test beside it.
#
# With a frozen trunk only the head learns; the heads then read the same cached trunk features,
# so the whole ablation costs one pass of the trunk over the images plus one head training per
# configuration. Configurations (c) and (d) are exactly the runs of [chapter 4](04_smart_iqa.ipynb)
# and [chapter 3](03_baseline.ipynb) (same names and settings), so when those notebooks ran first
# with the same profile their runs are read back, not retrained.

# %% tags=["parameters"]
profile = "demo"
dataset = "demo"
data_root = None
out_dir = "runs/book/demo"
seed = 0
device = "cpu"
split_seed = 0
fractions = [0.5, 0.25, 0.25]
smart_model = "smart_iqa_lite0"
baseline_model = "hyperiqa_lite0"
# How the models are trained: the profile's common recipe, this chapter's keys over it
recipe = {"rounds": 2, "epochs": 4, "batch_size": 32, "train_patches": 2,
          "test_patches": 2, "trunk_lr": 1.0e-4, "freeze_backbone": True,
          "pretrained": True}
n_boot = 1000
seed_recipe_arm = True  # add (d'): HyperIQA's head trained with the seed's recipe

# %%
from iqalib.analysis import (
    ablation_configs,
    ablation_rounds,
    ablation_table,
    compare_runs,
    run_ablation,
)
from iqalib.analysis.ablation import (ABLATION_LABELS, PAIR_CHANGES, ablation_pairs,
                                      pair_claim_rows)
from iqalib.analysis.claims import record_claims
from iqalib.analysis.linear_probe import linear_probe
from iqalib.analysis.recipes import recipe_table
from iqalib.analysis.selection import selection_sentences, selection_table
from iqalib.analysis.significance import comparison_sentences
from iqalib.analysis.words import numbers_say
from iqalib.plots.ablation import (
    format_ablation_table,
    format_comparisons,
    format_per_round,
    plot_ablation,
)

# %% [markdown]
# ## The runs
# One configuration per row, with the same data, split seed and training keys; keys not set here
# (optimizer, schedule, loss...) come from each family's defaults, except in (d'), which takes the
# seed's. A run that already finished with exactly these settings is read back instead of retrained
# (`seconds` near zero).

# %%
configs = ablation_configs(
    out_dir=out_dir, smart_model=smart_model, baseline_model=baseline_model,
    seed_recipe_arm=seed_recipe_arm, dataset=dataset, data_root=data_root,
    split_seed=split_seed, fractions=fractions, seed=seed, device=device, progress=False,
    **recipe)
ablation = run_ablation(configs)
ablation.costs

# %% [markdown]
# **Cost check.** `trunk_features` names the cached trunk features a frozen-trunk run reads (a hash of
# trunk, weights, data, crops and seed): one value for all configurations means one shared
# feature bank, computed once. `new_feature_banks` counts bank files that appeared in the cache
# while each run trained: at most one for the first run trained (none if an earlier notebook cached
# it), none afterwards, unless another process shares the cache folder.

# %% [markdown]
# ## What each arm was trained with
# The training settings of every arm **as the engine resolves them** (the profile's keys, then the
# family's defaults): a difference in any column but `head widths` is a difference in recipe.

# %%
recipe_table(configs, ABLATION_LABELS).T

# %% [markdown]
# ## Test metrics: median over rounds, with spread

# %%
# ridge on the same trunk's features, its strength chosen on validation
PROBE = "(e) linear probe"
probe = linear_probe(configs["multiscale_attention"])
table = ablation_table({**ablation.results, PROBE: probe})
shown = format_ablation_table(table)
print(shown.attrs["note"] or "every statistic has enough rounds")
shown

# %% [markdown]
# How each round chose its epoch: the selected epoch, its validation SRCC and its test SRCC. A large
# gap between the two says that the selection itself is noise.

# %%
selection = selection_table({ABLATION_LABELS[n]: r for n, r in ablation.results.items()})
selection.round(3)

# %% [markdown]
# Every round as a dot, the dots of one round (one test split) joined; a box appears from five rounds on.

# %%
fig = plot_ablation(ablation_rounds({**ablation.results, PROBE: probe}),
                    data_label=table["data"].iloc[0])

# %% [markdown]
# ## Paired significance
# For each pair (A, B) and round: `delta` = SRCC(A) - SRCC(B) on the same test images, with its
# bootstrap interval and p-value. Then across rounds: the median delta, the share of rounds where A
# wins, the share of rounds with a bootstrap p < 0.05, and the Wilcoxon / sign tests, which need six
# rounds or more (even five rounds all won give only p = 0.0625): below that the table says so.
# `resampled` says whether the bootstrap drew images or whole source photographs.

# %%
pairs = ablation_pairs(ablation.run_dirs)
per_round, summary = compare_runs(ablation.run_dirs, pairs, n_boot=n_boot, seed=seed)
format_comparisons(summary)

# %%
format_per_round(per_round)

# %% [markdown]
# The full model against the floor (e), paired in the same way: what the hyper network and its
# attention add over a linear read-out of the same trunk.

# %%
_, against_probe = compare_runs(
    {**ablation.run_dirs, PROBE: f"{out_dir}/{probe['name']}"},
    [("multiscale_attention", PROBE)],
    n_boot=n_boot,
    seed=seed,
)
format_comparisons(against_probe)

# %% [markdown]
# Read the table with the data set in mind: on the synthetic demo set the test split is small and
# the training short, so differences of a few hundredths of SRCC are within the round-to-round
# spread; the LIVE-C and KonIQ-10k profiles run the same cells on real data.
#
# ## What the numbers say
# Chosen by `iqalib.analysis.significance` from the tables above; the claims tested here go to the
# [summary](11_summary.ipynb).

# %%
claims = pair_claim_rows(summary, ablation.results)
record_claims(
    out_dir, "05_ablations", [c for c in claims if c["claim"] != "smart_vs_hyperiqa"]
)
numbers_say(
    comparison_sentences(summary, ABLATION_LABELS, PAIR_CHANGES),
    selection_sentences(selection),
)
