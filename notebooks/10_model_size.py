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
# the load printed below; the FLOPs do not depend on it. The training-step benchmark of
# [chapter 12](12_performance.ipynb) is a cross-check: scoring a patch must be faster than training
# on it.

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

# %%
from iqalib import plots
from iqalib.analysis.model_size import model_size_sentences
from iqalib.analysis.performance import train_step_rates
from iqalib.analysis.words import numbers_say
from iqalib.experiments import model_cost_table

# %%
costs = model_cost_table(
    models,
    out_dir=out_dir,
    batch_size=batch_size,
    repeats=repeats,
    warmup=warmup,
    device=device,
)
print(
    f"batch {batch_size}, {warmup} warm-up + {repeats} timed batches per model, "
    f"{costs.attrs['threads']} threads, "
    f"1-min load average {costs.attrs['load_average'][0]:.1f} before and "
    f"{costs.attrs['load_average'][1]:.1f} after"
)
costs[
    [
        "params",
        "gflops",
        "patches_per_s",
        "patches_per_s_median",
        "test_srcc",
        "run",
        "data",
    ]
].round({"gflops": 2, "patches_per_s": 1, "patches_per_s_median": 1, "test_srcc": 3})

# %%
plots.model_size_scatter(costs);

# %% [markdown]
# ## What the numbers say
# Chosen by `iqalib.analysis.model_size`, with two consistency checks: a model measured as fast as one
# with a quarter of its FLOPs or less, and a model scored more slowly than it trains in the
# train-step benchmark, are flagged instead of believed.

# %%
numbers_say(
    model_size_sentences(costs, train_rates=train_step_rates(results_dir))
)
