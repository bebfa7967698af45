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
# # 7. Attention analysis: which trunk stages does SMART-IQA use?
#
# SMART-IQA's attention gives each image four weights, one per trunk stage (stage 1: fine, local
# detail such as noise and blur edges; stage 4: coarse, semantic content), summing to 1. The seed
# project, the SMART-IQA report {cite}`smartiqa`, showed the weights of three images (the lowest-,
# median- and highest-MOS test images) and claimed that **high-quality images concentrate their
# attention on one stage**. Here we
#
# 1. pick those three images and save them to `selected_images.json`;
# 2. read the weights with a forward hook on `model.multiscale_attention` (no change to the model);
#    an image's weights are the mean over its test crops, as its score is;
# 3. draw them, and a heat map of where the model looks;
# 4. save every test image's prediction and weights to `attention_results.json`;
# 5. and do what the seed did not: look at the weights of **all** test images against MOS, then at
#    the model of **every round**, and test the claim across them.
#
# **Heat map.** We show the *stage feature energy weighted by attention*: a grid of 224x224 crops
# covers the image; in each crop each stage's map is reduced to its energy (L2 norm over channels),
# scaled by that stage's mean energy over the image, upsampled to the crop, multiplied by the
# crop's attention weight for the stage, and the four are summed; overlapping crops are averaged.
# Beside it, a *patch-wise quality map*: each crop's predicted score. Both are pictures of what the
# model reads, not causal explanations of its score.

# %% tags=["parameters"]
profile = "demo"
dataset = "demo"
data_root = None
out_dir = "runs/book/demo"
seed = 0
device = "cpu"
split_seed = 0
fractions = [0.5, 0.25, 0.25]
model = "smart_iqa_lite0"
# How the models are trained: the profile's common recipe, this chapter's keys over it
recipe = {"rounds": 2, "epochs": 4, "batch_size": 32, "train_patches": 2,
          "test_patches": 2, "trunk_lr": 1.0e-4, "freeze_backbone": True,
          "pretrained": True}
analysis_round = 0
analysis_patches = (
    None  # None: the run's own test_patches (then pred reproduces run_pred)
)
heatmap_stride = 112
n_boot = 1000

# %%
from pathlib import Path

from iqalib.analysis import (
    attention_for_run,
    attention_heatmaps,
    attention_results_json,
    claim_verdict,
    concentration_by_round,
    load_round_model,
    round_test_split,
    select_images,
    weights_vs_mos,
)
from iqalib.analysis.attention_verdicts import (
    attention_claim,
    attention_round_sentences,
    attention_sentences,
)
from iqalib.analysis.claims import record_claims
from iqalib.analysis.significance import source_groups
from iqalib.analysis.words import numbers_say
from iqalib.experiments import run_config, run_or_load
from iqalib.plots.attention import (
    correlation_table,
    format_by_round,
    plot_concentration_by_round,
    plot_heatmaps,
    plot_stage_weights,
    plot_weights_vs_mos,
)

# %% [markdown]
# ## The model
# The full SMART-IQA configuration, in a run named after the model. With the same settings as
# [chapter 4](04_smart_iqa.ipynb) (and [chapter 5](05_ablations.ipynb)'s configuration (c)), that
# finished run is read back, not retrained.

# %%
config = run_config(model, out_dir=out_dir, model=model, dataset=dataset,
                    data_root=data_root, split_seed=split_seed, fractions=fractions,
                    seed=seed, device=device, progress=False, **recipe)
results = run_or_load(config)
run_dir = Path(config.run_dir)
data_label = results["data"]
print(
    f"{run_dir}: median test SRCC {results['median_test_srcc']:.3f} "
    f"over {results['rounds']} round(s) "
    f"on {data_label}"
)

# %% [markdown]
# ## Stage weights of every test image
# One forward pass over the test crops of every image of round `analysis_round`'s test
# split, with the hook collecting the weights. `run_pred` is the prediction the run itself stored
# (on its `test_patches` crops); with `analysis_patches` equal to `test_patches` in round 0 the two
# agree, and more crops give a steadier mean.

# %%
weights = attention_for_run(
    run_dir, analysis_round, patches=analysis_patches, device=device
)
weights.head()

# %% [markdown]
# ## The seed's three images: lowest, median and highest MOS

# %%
selected = select_images(weights, run_dir / "selected_images.json")
selected

# %%
heatmaps = attention_heatmaps(
    load_round_model(run_dir, analysis_round, device),
    selected,
    round_test_split(run_dir, analysis_round),
    stride=heatmap_stride,
)
fig = plot_stage_weights(selected, heatmaps, data_label)

# %%
fig = plot_heatmaps(selected, heatmaps, data_label)

# %% [markdown]
# ## The whole test set: stage weights against MOS
# Three images cannot support a claim about image quality in general. Over every test image we
# compute the Spearman correlation of each stage weight with MOS, of the largest weight, and of the
# **concentration** (1 - entropy / log 4: 0 when the four weights are equal, 1 when one stage has
# all the weight), each with a bootstrap 95% interval; and the mean weights per MOS tercile, with
# how often each stage has the largest weight. The bootstrap resamples whole source photographs
# where the test images share them (the demo's), single images otherwise (LIVE-C, KonIQ-10k).

# %%
sources = source_groups(run_dir)  # the demo's source photographs (None: one per image)
statistics = weights_vs_mos(weights, n_boot=n_boot, seed=seed, groups=sources)
correlation_table(statistics)

# %%
statistics.terciles.round(3)

# %%
fig = plot_weights_vs_mos(statistics, data_label)

# %%
attention_results_json(
    weights,
    run_dir / "attention_results.json",
    selected=selected,
    statistics=statistics,
    meta={
        "data": data_label,
        "run": config.name,
        "model": model,
        "round": analysis_round,
        "patches": analysis_patches,
    },
)

# %% [markdown]
# ## Every round's model
# Everything above is one trained model, and one model is one draw of the training: its split, its
# initialisation, its crops. Another draw can give another interval, on the same side of zero or
# not. A claim about the method must hold for the models of the rounds, so the same correlation is
# computed for the selected model of every round, each on its own test split. With a frozen trunk
# the weights are read from the run's cached trunk features, on exactly the crops the run scored
# (`attention_from_features`): the attention sees only those pooled maps, so no trunk pass is needed.

# %%
by_round = concentration_by_round(
    run_dir,
    range(results["rounds"]),
    patches=analysis_patches,
    device=device,
    n_boot=n_boot,
    seed=seed,
    groups=sources,
    known={analysis_round: weights},
)
format_by_round(by_round)

# %%
fig = plot_concentration_by_round(by_round, data_label)

# %% [markdown]
# ## What the numbers say
# Chosen by `iqalib.analysis.attention_verdicts`. For round `analysis_round`'s model, `claim_verdict` reads the
# interval of Spearman(concentration, MOS): above zero, the model concentrates on fewer stages for
# better images; below zero, the opposite; otherwise no reliable relation. The recorded verdict is
# taken **across the rounds' models**: the book's rule, a Wilcoxon signed-rank test of their correlations
# against zero (supported or
# contradicted at p < 0.05; untested with fewer than 6 rounds). A model whose attention has
# **collapsed** onto one stage (a weight of 0.9 or more on most images) is left out: its weights
# barely vary, and their correlation with MOS measures noise. The result goes to the
# [summary](11_summary.ipynb).

# %%
claim = attention_claim(weights, statistics, by_round)
record_claims(out_dir, "07_attention", [claim])
numbers_say(
    [
        f"Round {analysis_round}'s model and test split ({data_label}), "
        "as the seed showed one model:"
    ],
    attention_sentences(weights, statistics, claim_verdict(statistics)),
    attention_round_sentences(by_round),
)
