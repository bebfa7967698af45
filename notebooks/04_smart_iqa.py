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
# # 4. SMART-IQA: Swin stages and stage attention
#
# SMART-IQA keeps HyperIQA's hyper network and target network and changes what they read: the
# trunk is a Swin Transformer {cite}`liu2021swin` (EfficientNet-Lite0 on CPU profiles), the hyper
# network reads features from **all four** trunk stages, and a small attention module weighs those
# stages per image before they are fused. The claim of the SMART-IQA report {cite}`smartiqa`: on
# KonIQ-10k {cite}`hosu2020koniq`, SRCC 0.9378 / PLCC 0.9485 with Swin-B against about 0.906 / 0.917
# for HyperIQA with ResNet-50 {cite}`su2020hyperiqa`.
#
# We train it with exactly the protocol of [chapter 3](03_baseline.ipynb) and compare the two side by
# side. Keys the profile leaves unset come from each family's defaults, so the two may train with
# different recipes: the table of resolved settings below shows it, and [chapter 5](05_ablations.ipynb)
# separates recipe from architecture.

# %% tags=["parameters"]
profile = "demo"
dataset = "demo"
data_root = None
out_dir = "runs/book/demo"
seed = 0
device = "cpu"
split_seed = 0
fractions = [0.5, 0.25, 0.25]
models = ["smart_iqa_lite0"]
baseline_model = "hyperiqa_lite0"
# How the models are trained: the profile's common recipe, this chapter's keys over it
recipe = {"rounds": 2, "epochs": 4, "batch_size": 32, "train_patches": 2,
          "test_patches": 2, "trunk_lr": 1.0e-4, "freeze_backbone": True,
          "pretrained": True}

# %%
import iqalib
from iqalib import plots
from iqalib.analysis import compare_runs
from iqalib.analysis.claims import record_claims
from iqalib.analysis.linear_probe import linear_probe, probe_sentences
from iqalib.analysis.recipes import recipe_sentences, runs_recipe_table
from iqalib.analysis.runs import ceiling_sentences, run_sentences
from iqalib.analysis.selection import selection_table
from iqalib.analysis.significance import comparison_claim, comparison_sentences
from iqalib.analysis.words import numbers_say
from iqalib.data.demo import label_ceilings
from iqalib.plots.ablation import format_comparisons
from iqalib.plots.diagrams import plot_architecture
from iqalib.experiments import train_models
from iqalib.results import (finished_results, history_frame, predictions_frame,
                            results_table)
from iqalib.models import model_trunk

# %% [markdown]
# ## What SMART-IQA changes, as equations
# Everything of [chapter 3](03_baseline.ipynb)'s equations stays (the target network's input
# $v$, `conv1`, the generated layers $\theta(x)$, the target network and the mean over crops)
# except what the hyper network reads. Each stage is pooled to 7x7,
# $G_s = P_7(S_s) \in \mathbb{R}^{C_s \times 7 \times 7}$ for $s = 1, \dots, 4$, and the **stage
# attention** (`model.multiscale_attention`, `iqalib.models.attention.MultiScaleAttention`)
# computes one logit per stage from the *context* $c = P_1(S_4) \in \mathbb{R}^{C_4}$, the
# global average of the last stage, with a two-layer MLP $M_1$, $M_2$ (`net[0]` and `net[3]`,
# hidden width 256; dropout `attention_dropout` = 0.5 while training), and a softmax turns the
# logits into weights:
#
# $$
# e = M_2\Big(\operatorname{Dropout}\big(\operatorname{ReLU}(M_1 c)\big)\Big) \in \mathbb{R}^4,
# \qquad
# a_s = \frac{\exp(e_s)}{\sum_{k=1}^{4} \exp(e_k)}, \qquad a_s > 0, \quad \sum_{s=1}^{4} a_s = 1 .
# $$
#
# $M_1$ and $M_2$ start with weights drawn from $\mathcal{N}(0, 0.01^2)$ and zero biases, so every
# $a_s$ starts near $1/4$. The **fusion** scales each stage's map by its weight and concatenates
# the four along the channels (the module returns `fused`, $G$ below, and `weights`, $a$):
#
# $$
# G = \big[a_1 G_1;\ a_2 G_2;\ a_3 G_3;\ a_4 G_4\big]
# \in \mathbb{R}^{(C_1 + C_2 + C_3 + C_4) \times 7 \times 7},
# $$
#
# which replaces HyperIQA's $G = P_7(S_4)$ as the input of `conv1` (of widths 512 and 256 here,
# 1024 and 512 in HyperIQA). Without the attention (`attention=False`, the middle arm of
# [chapter 5](05_ablations.ipynb)) every $a_s = 1$: the plain concatenation. While training,
# SMART-IQA's models also drop units (`dropout` = 0.4) after `conv1` and after FC1..FC3 of the
# target network. The diagram below is drawn from one forward pass of the chapter's largest
# SMART-IQA model, built without trained weights (`iqalib.plots.diagrams`): the stage attention
# is the box on top, and the hyper network now reads all four stages.

# %% mystnb={"image": {"alt": "Block diagram of SMART-IQA: the trunk's four stages feed the LDA branches and the target network FC1 to FC5 below; all four stages, weighted by the stage attention computed from the last stage, feed the hyper network above, whose generated weights and biases drop into each target layer; every box gives the shape its block outputs for one crop"}}
plot_architecture(iqalib.create_model(models[-1], pretrained=False));

# %% [markdown]
# ## Train (or read back the finished runs)

# %%
results = train_models(models, out_dir=out_dir, dataset=dataset,
                       data_root=data_root, split_seed=split_seed, fractions=fractions,
                       seed=seed, device=device, progress=False, **recipe)

# %% [markdown]
# ## Learning curves

# %% mystnb={"image": {"alt": "Learning curves of each SMART-IQA model: training loss and validation SRCC per epoch, the epoch kept for testing circled"}}
for name, result in results.items():
    plots.learning_curves(result, history_frame(result));

# %% [markdown]
# ## Predicted score against MOS (test split of round 0)

# %% mystnb={"image": {"alt": "Scatter plot of predicted score against MOS for the test images of round 0, one per SMART-IQA model"}}
for name, result in results.items():
    plots.prediction_scatter(
        predictions_frame(f"{out_dir}/{name}", 0), f"{name} on {result['data']}"
    )

# %% [markdown]
# ## Side by side with the baseline
# Same data, same splits (round *r* uses split seed `split_seed + r` in both), same training keys
# where the profile sets them. The last rows are the floors the heads must beat to be worth their
# parameters: a **linear probe** (`iqalib.analysis.linear_probe`) per trunk, ridge regression from
# the same pretrained trunk's four stages, each averaged over the crop, to the MOS. Its ridge
# strength is chosen on the validation split, and it scores the same test crops of the same test
# images; with a frozen trunk it reads the heads' cached trunk features, so it costs no trunk pass.
# Each head is measured against the probe of the trunk it reads, never another trunk's.

# %%
runs = {baseline_model: finished_results(out_dir, baseline_model), **results}
first_run_of_trunk = {}
for name, run in runs.items():
    first_run_of_trunk.setdefault(model_trunk(run["model"]), run)
probes = {trunk: linear_probe(run) for trunk, run in first_run_of_trunk.items()}
side_by_side = results_table({**runs, **{p["name"]: p for p in probes.values()}})
side_by_side

# %% [markdown]
# On the synthetic demo set the raters are simulated, so what its labels allow is known for each
# round's test split (`iqalib.data.demo.label_ceilings`): `noise_ceiling` is the SRCC a model that
# knew the noise-free quality would score (rater noise alone); `distortion_oracle` that of a model
# that recognised every image's distortion and level, but not how the photograph's content changes
# the score (it predicts the training split's mean for that distortion and level). Other data sets
# have no such table.

# %%
ceilings = None
if dataset == "demo":
    ceilings = label_ceilings(
        iqalib.load_dataset(dataset, data_root),
        fractions=fractions,
        split_seed=split_seed,
        rounds=recipe["rounds"],
    )
ceilings

# %% [markdown]
# Every round as a dot, the dots of one round (one test split) joined:

# %% mystnb={"image": {"alt": "Test SRCC of every run, HyperIQA and SMART-IQA, one dot per round, the dots of one round (one test split) joined, the medians marked"}}
plots.comparison_rounds(runs);

# %% [markdown]
# What each run was trained with, resolved as the engine resolves it:

# %%
recipes = runs_recipe_table(runs)
recipes.T

# %% [markdown]
# How each round chose its epoch (validation SRCC of the selected epoch against its test SRCC):

# %%
selection = selection_table(runs)
selection.round(3)

# %% [markdown]
# Paired per round on the same test images (bootstrap by source photograph where the data set has
# them):

# %%
per_round, summary = compare_runs({name: f"{out_dir}/{name}" for name in runs},
                                  [(name, baseline_model) for name in results], seed=seed)
format_comparisons(summary)

# %% [markdown]
# ## What the numbers say

# %%
mos_range = iqalib.load_dataset(dataset, data_root).mos_range
largest = list(results)[
    -1
]  # the claim is about the largest SMART-IQA model of the profile
record_claims(
    out_dir,
    "04_smart_iqa",
    [
        comparison_claim(
            "smart_vs_hyperiqa", summary.iloc[-1], results[largest], runs[baseline_model]
        )
    ],
)
numbers_say(
    *(
        run_sentences(r, predictions_frame(f"{out_dir}/{name}"), mos_range)
        for name, r in results.items()
    ),
    comparison_sentences(summary),
    *(recipe_sentences(recipes, name, baseline_model) for name in results),
    probe_sentences(runs, list(probes.values())),
    ceiling_sentences(ceilings, runs),
)
