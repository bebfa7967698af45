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
# # 4. Ablations: what does each part of SMART-IQA add?
#
# SMART-IQA changes HyperIQA in three ways: a different trunk, a hyper network that reads **all
# four** trunk stages instead of the last one, and **attention** that weighs those stages per image.
# To see which change carries the gain we train four configurations on the same trunk and the same
# data splits:
#
# | | configuration | hyper network reads |
# |---|---|---|
# | (a) | single scale | the last stage (SMART-IQA's head otherwise) |
# | (b) | multi-scale concatenation | all four stages, concatenated |
# | (c) | + attention (full SMART-IQA) | all four stages, weighted by stage attention |
# | (d) | HyperIQA baseline | the last stage, HyperIQA's own head |
#
# Each configuration is trained for `rounds` rounds; round *r* uses the split drawn with seed
# `split_seed + r`, identical for all four, so every round tests all four on the same images. We
# report the median over rounds with its spread, and test the differences **paired**: per round a
# bootstrap of the SRCC difference over the same test images, then across rounds the share of rounds
# won and (with five rounds or more) a sign test and a Wilcoxon test.
#
# With a frozen trunk only the head learns; the four heads then read the same cached trunk features,
# so the whole ablation costs one pass of the trunk over the images plus four head trainings.
# Configurations (c) and (d) are exactly the runs of chapters 3 and 2 (same names and settings), so
# when those notebooks ran first with the same profile their runs are read back, not retrained.

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
pretrained = True
rounds = 2
epochs = 4
batch_size = 32
train_patches = 2
test_patches = 2
trunk_lr = 1.0e-4
freeze_backbone = True
n_boot = 1000

# %%
from iqalib.analysis import (ABLATION_PAIRS, ablation_configs, ablation_rounds, ablation_table, compare_runs,
                             run_ablation)
from iqalib.plots.ablation import format_ablation_table, format_comparisons, plot_ablation

# %% [markdown]
# ## The four runs
# One configuration per row, with the same data, split seed and training keys; keys not set here
# (optimizer, schedule, loss...) come from each family's defaults. A run that already finished with
# exactly these settings is read back instead of retrained (`seconds` near zero).

# %%
configs = ablation_configs(
    out_dir=out_dir, smart_model=smart_model, baseline_model=baseline_model, dataset=dataset,
    data_root=data_root, pretrained=pretrained, split_seed=split_seed, fractions=fractions, seed=seed,
    device=device, rounds=rounds, epochs=epochs, batch_size=batch_size, train_patches=train_patches,
    test_patches=test_patches, trunk_lr=trunk_lr, freeze_backbone=freeze_backbone, progress=False)
ablation = run_ablation(configs)
ablation.costs

# %% [markdown]
# **Cost check.** `trunk_features` names the cached trunk features a frozen-trunk run reads (a hash of
# trunk, weights, data, crops and seed): one value for all four configurations means one shared
# feature bank, computed once. `new_feature_banks` counts bank files that appeared in the cache
# while each run trained: at most one for the first run trained (none if an earlier notebook cached
# it), none afterwards, unless another process shares the cache folder.

# %% [markdown]
# ## Test metrics: median over rounds, with spread

# %%
table = ablation_table(ablation.results)
format_ablation_table(table)

# %%
fig = plot_ablation(ablation_rounds(ablation.results), data_label=table["data"].iloc[0])

# %% [markdown]
# ## Paired significance
# For each pair (A, B) and round: `delta` = SRCC(A) - SRCC(B) on the same test images, with its
# bootstrap interval and p-value. Then across rounds: the median delta, the share of rounds where A
# wins, the share of rounds with a bootstrap p < 0.05, and the sign / Wilcoxon tests (NaN with fewer
# than five rounds; even five rounds all won give only p = 0.0625, so these need six or more).

# %%
per_round, summary = compare_runs(ablation.run_dirs, ABLATION_PAIRS, n_boot=n_boot, seed=seed)
format_comparisons(summary)

# %%
per_round.round(4)

# %% [markdown]
# Read the table with the data set in mind: on the synthetic demo set the test split is small and
# the training short, so differences of a few hundredths of SRCC are within the round-to-round
# spread; the LIVE-C and KonIQ-10k profiles run the same cells on real data.
