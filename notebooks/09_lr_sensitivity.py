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
# # 9. How sensitive is training to the learning rate?
#
# A fine-tuned trunk is usually trained with a small learning rate and the freshly initialised head
# with a larger one (here the head's rate is the trunk's times `head_lr_multiplier`). We sweep the
# profile's `trunk_lrs` over a decade or more and plot the test SRCC of every round. With a frozen
# trunk (the CPU profiles) the trunk itself does not learn: the sweep then moves the **head's** rate
# (the hyper network's, `trunk_lr x head_lr_multiplier`; the LDA branches, which both original codes
# keep in the trunk's parameter group, get `trunk_lr`), and the axis below says so, read from the
# runs' resolved settings. The seed {cite}`smartiqa` fine-tunes its trunk at 5e-7.

# %% tags=["parameters"]
profile = "demo"
dataset = "demo"
data_root = None
out_dir = "runs/book/demo"
seed = 0
device = "cpu"
split_seed = 0
fractions = [0.5, 0.25, 0.25]
run_name = "lr_sweep"
model = "smart_iqa_lite0"
trunk_lrs = [1.0e-4, 1.0e-3, 1.0e-2]
# How the models are trained: the profile's common recipe, this chapter's keys over it
recipe = {"rounds": 1, "epochs": 4, "batch_size": 32, "train_patches": 2,
          "test_patches": 2, "trunk_lr": 1.0e-4, "freeze_backbone": True,
          "pretrained": True}

# %%
from iqalib import plots
from iqalib.analysis.claims import record_claims
from iqalib.analysis.lr_sweep import lr_claim, lr_sentences, lr_table
from iqalib.analysis.recipes import learning_rate_axis
from iqalib.analysis.words import numbers_say
from iqalib.experiments import lr_sweep

# %%
# Each run of the sweep takes one of trunk_lrs in place of the recipe's trunk_lr.
sweep_recipe = {key: value for key, value in recipe.items() if key != "trunk_lr"}
# The recipe's own rate is chapter 4's run, read back when its settings are these.
sweep = lr_sweep(run_name, trunk_lrs, reuse={recipe["trunk_lr"]: model}, out_dir=out_dir,
                 model=model, dataset=dataset, data_root=data_root, split_seed=split_seed,
                 fractions=fractions, seed=seed, device=device, progress=False,
                 **sweep_recipe)
rates, rate_label = learning_rate_axis(sweep, out_dir)
print(f"axis: {rate_label}")
lr_table(sweep, rates)

# %%
plots.lr_sweep(sweep, rates=rates, label=rate_label);

# %% [markdown]
# ## What the numbers say
# Chosen by `iqalib.analysis.lr_sweep`, by the book's one decision rule (stated in the
# [summary](11_summary.ipynb)): each step between neighbouring rates within one decade is
# compared round by round on the same split, and a two-sided Wilcoxon signed-rank test of those per-round
# moves (p < 0.05, at least 6 rounds) decides. The claim adds its own effect-size floor,
# `LR_JUMP`: a step is fragile when the rule finds it moving SRCC and its median move is
# `LR_JUMP` or more, the gain the seed reports for SMART-IQA over HyperIQA. The claim goes
# to the summary.

# %%
record_claims(out_dir, "09_lr_sensitivity", [lr_claim(sweep, rates)])
numbers_say(
    lr_sentences(sweep, rates, rate_label, epochs=recipe["epochs"]))
