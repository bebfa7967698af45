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
# # 10. Model size and cost
#
# Accuracy is not free. For every model we count parameters and floating-point operations for one
# 224x224 patch (a multiply-add counts as two), **measure** how many patches per second it scores
# on this machine's device, and show the test SRCC of this profile's runs where one exists. The unit
# is the **patch**: a score averages 25 patches per image on KonIQ-10k, so patches per second / 25
# is roughly images per second.
#
# **How the speed is measured.** All models are built first; each runs `warmup` untimed batches
# (thread-pool start, memory allocation, kernel selection); then the timed batches go round-robin
# (model A, B, C, A, B, C...), so a burst of load from other processes slows every model alike, and
# the fastest batch of each counts (load can only slow a batch down). The input is laid out as the
# loaders lay it out (crops of (H, W, 3) images viewed as NCHW: channels-last strides). An earlier
# version timed one warm-up batch and two batches per model, one model after another, on a
# contiguous `torch.randn` batch: on a busy 2-core machine that put SMART-IQA-Base ahead of Lite0,
# which has 1/35 of its FLOPs. Two causes: Lite0 runs about 1.5x slower on contiguous NCHW input than
# on the loaders' layout, and its many small depthwise convolutions suffer most when the two compute
# threads are descheduled by other processes (each small operation waits for both), so load
# distorts the ranking, not just the scale. Speeds here remain measurements of *this* machine under
# the load printed below; the FLOPs do not depend on it.
#
# **What is counted, in which unit.** `patches_per_s`: 224x224 patches scored per second, forward
# only (eval mode, no gradients), fp32, at the batch printed below, from the fastest timed batch;
# `patches_per_s_median` from the median batch. `gflops`: the forward's convolution and matrix-product
# FLOPs of one patch (a multiply-add counts 2). The conditions (machine, threads, precision, batch,
# load) are printed with the table; the machine is named as every benchmark of
# [chapter 12](12_performance.ipynb) names its own.
#
# **Checks.** Scoring a patch must be faster than training on it: where chapter 12's train-step
# benchmark was measured on *the same machine* (same CPU, instruction set and threads), each model's
# inference rate is checked against its training rate (both from the fastest batch); a benchmark from
# another machine is not compared, and the page says so. A model measured at least as fast as one with
# a quarter of its FLOPs or less fails too. A speed that fails a check stays in the table with the
# reason in `speed check`, and is left out of the figure.
#
# **Is SMART-IQA worth its cost?** The introduction asks it; the rule, stated before the numbers:
# SMART-IQA is worth its cost when its test SRCC beats HyperIQA's by the book's one decision rule
# (chapter 4's paired runs, a signed-rank test over at least 6 rounds, p < 0.05) *and* it costs at most 1.5x
# HyperIQA per patch, in FLOPs and, where both speeds passed their checks, in measured time.

# %% tags=["parameters"]
profile = "demo"
dataset = "demo"
data_root = None
out_dir = "runs/book/demo"
seed = 0
device = "cpu"
split_seed = 0
fractions = [0.5, 0.25, 0.25]
models = ["hyperiqa_lite0", "smart_iqa_lite0"]
batch_size = 4
repeats = 3
warmup = 2
results_dir = "benchmarks/results"  # the train-step benchmark, for the cross-check
smart_model = "smart_iqa_lite0"  # the claim's pair: chapter 4's SMART-IQA run...
baseline_model = "hyperiqa_lite0"  # ...and chapter 3's HyperIQA run

# %%
from iqalib import plots
from iqalib.analysis import model_size
from iqalib.analysis.claims import record_claims
from iqalib.analysis.performance import train_step_reference
from iqalib.analysis.words import numbers_say

# %%
costs = model_size.measure_costs(
    models,
    out_dir=out_dir,
    batch_size=batch_size,
    repeats=repeats,
    warmup=warmup,
    device=device,
)
train_rates, not_compared = model_size.comparable_train_rates(
    costs, train_step_reference(results_dir)
)
costs["speed check"] = model_size.speed_checks(costs, train_rates=train_rates)
conditions = costs.attrs["conditions"]
print(
    f"{conditions['machine']}; {conditions['precision']}, batch {conditions['batch']}; "
    f"{conditions['measured']}; {conditions['timing']}; 1-min load average "
    f"{conditions['load_average'][0]:.1f} before and "
    f"{conditions['load_average'][1]:.1f} after"
)
costs[
    [
        "params",
        "gflops",
        "patches_per_s",
        "patches_per_s_median",
        "speed check",
        "test_srcc",
        "run",
        "data",
    ]
].round({"gflops": 2, "patches_per_s": 1, "patches_per_s_median": 1, "test_srcc": 3})

# %% [markdown]
# The models whose speed passed every check (a rejected speed is not plotted):

# %%
shown = model_size.plotted_costs(costs)
if len(shown):
    plots.model_size_scatter(shown)
else:
    print("No measured speed passed its checks: nothing to plot.")

# %% [markdown]
# ## What the numbers say
# Chosen by `iqalib.analysis.model_size`. The claim "SMART-IQA is worth its cost" is decided by the
# rule stated at the top and recorded for the summary chapter.

# %%
pair, missing = model_size.worth_cost_comparison(
    out_dir, smart_model, baseline_model, seed=seed
)
worth = model_size.worth_cost_claim(pair, costs, smart_model, baseline_model, missing)
record_claims(out_dir, "10_model_size", [worth])
numbers_say(
    model_size.model_size_sentences(costs, train_rates=train_rates),
    [not_compared] if not_compared else [],
    [f"Is SMART-IQA worth its cost? {worth['verdict'].capitalize()}; "
     f"{worth['edition']}."],
)
