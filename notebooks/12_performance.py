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
# # 12. Performance: where the time goes
#
# A study is mostly waiting for epochs, so every stage of the pipeline is measured against an
# alternative, side by side in one run, by the scripts in `benchmarks/` (`make bench` runs them all
# and writes one JSON file each to `benchmarks/results/`). This chapter only reads those files and
# the logs of this profile's own runs; each table names the machine it came from, and a benchmark
# not run on it is reported as missing rather than filled in from elsewhere.
#
# What to look for:
#
# * **Data is never the bottleneck.** Images are decoded once into memory and patches are sliced
#   from there; the engine logs, per epoch, the fraction of time spent waiting for the next batch.
# * **A step uses the hardware.** A training step's FLOP/s is set against a large matrix product on
#   the same machine: that ratio, not patches/s alone, says whether a step is efficient.
# * **Frozen-trunk studies cost head passes only.** With the trunk frozen, its features of a fixed
#   crop never change, so they are computed once; the head is compute-bound, so what an epoch costs
#   is (patches per epoch) x (head FLOPs per patch) / (achieved FLOP/s).

# %% tags=["parameters"]
profile = "demo"
dataset = "demo"
data_root = None
out_dir = "runs/book/demo"
seed = 0
device = "cpu"
split_seed = 0
fractions = [0.5, 0.25, 0.25]
results_dir = "benchmarks/results"

# %%
from IPython.display import display

from iqalib.analysis import performance as perf
from iqalib.analysis.words import numbers_say

# %% [markdown]
# ## Which machine measured what
#
# Each benchmark's JSON records the machine block it ran on (CPU model, CPU count, the instruction set
# torch used and any limit put on it, torch threads). Numbers from different blocks are different
# machines for speed: they never share a table, and no sentence compares them. A block written before
# the scripts recorded all of it says what is missing.

# %%
perf.machines_table(results_dir)

# %% [markdown]
# ## The headline speeds, one table per machine
#
# Every row says what was measured, at which batch and precision, in which unit, and what its own
# check says: `rejected: ...` marks a number its measurement contradicts (it is shown, never plotted),
# `measured under load` one taken while other work held the CPUs. Two rates of one machine differ
# for reasons the rows name, not by chance:
#
# * **patches/s** counts 224x224 patches, for training and for inference alike; **images/s** (scoring)
#   counts images of several crops each.
# * A **whole-model training step** (trunk and head, `train_step`, batch 8) of an EfficientNet-Lite0
#   model reaches a few tens of GFLOP/s: its depthwise convolutions move more memory than they compute.
#   A **head step on cached trunk features** (`head_training`, batch 32) is matrix products and reaches
#   a large share of the matmul rate (the README's "105 GFLOP/s, 72% of the matmul rate" is such a head
#   step, on a Xeon limited to AVX2). Both count 3x the forward's FLOPs per step; they are different
#   work, not disagreeing measurements.
# * Inference (forward only) of a model must beat its training step on the same machine; `train_step`
#   measures both in one run, inference by chapter 10's own function.

# %%
for machine, table in perf.speed_tables(results_dir).items():
    print(machine)
    display(table)

# %% [markdown]
# ## What this profile cost
#
# The training wall time each run of this profile logged, summed over its rounds (the time when the
# runs were made, also if this execution of the book reused them; decoding the images and the
# one-time trunk feature pass come on top):

# %%
perf.run_time_table(out_dir).round(1)

# %% [markdown]
# ## Loading patches
#
# The original HyperIQA pipeline opens and decodes the whole file for every patch it crops.
# iqalib decodes each image once (`iqalib.data.images.ImageStore`) and slices patches from memory.
# Patches per second (`benchmarks/patch_pipeline.py`):

# %%
perf.benchmark_report(results_dir, "patch_pipeline")

# %% [markdown]
# What the training engine itself logged in this profile's runs: patches per second of the first
# epoch of a round and of the later epochs, and the largest fraction of an epoch spent waiting for
# data (target: under 5%). The engine times an epoch's training steps only: the one-time trunk
# feature pass of a frozen-trunk run happens before the first epoch and is in none of these numbers.
# The first epoch is reported apart because it carries the one-time costs of a round (memory
# allocation, kernel selection), which a median over all epochs would mix into the steady rate.

# %%
perf.engine_log_table(out_dir).round(4)

# %% [markdown]
# The same for a fine-tuning epoch (the whole model learns, so every step needs new image patches),
# with the patches sliced in the training process (`workers_0`) or by loader processes
# (`benchmarks/loader_wait.py`):

# %%
perf.benchmark_report(results_dir, "loader_wait")

# %% [markdown]
# ## One training step
#
# Forward, loss, backward and optimizer step of whole models (`benchmarks/train_step.py`), fp32
# with and without `channels_last`, in patches/s from the median step; the step's GFLOP/s counts 3x
# the forward's convolution and matrix-product FLOPs; "of matmul" is that over a large fp32 matrix
# product measured in the same run. The `inference, fp32` rows are the same models scored by chapter
# 10's function in the same run (results written before it was added have none). bf16 is measured only where the CPU has native bf16 (on CPUs
# without it the fallback kernels are two orders of magnitude slower, see the JSON's probe).

# %%
perf.benchmark_report(results_dir, "train_step")

# %% [markdown]
# ## Frozen-trunk studies
#
# Head steps on cached trunk features against recomputing the frozen trunk every step, the head's
# achieved GFLOP/s, and what that means for LIVE-C (930 training images, 116 validation images at
# 10 crops): one epoch at 10 and at 2 training patches per image, and the whole `livec` ablation
# (4 configurations x 10 rounds x 6 epochs of 2 rotating crops) (`benchmarks/head_training.py`).

# %%
perf.benchmark_report(results_dir, "head_training")

# %% [markdown]
# ## The trunk pass
#
# Every frozen-trunk run starts with one pass of the trunk over fixed crops, and a trunk that learns
# pays a pass and a backward per step. The same pass of EfficientNet-Lite0 on real crops of the
# embedded photographs, in every way this CPU offers, in one run: eager and `channels_last`, fp32 and
# bf16 autocast (where native), compiled (with `--compile`), and ONNX Runtime and OpenVINO as
# references (where installed). `x today` is the gain over the setting the feature bank uses now;
# `error vs eager fp32` how far the pooled features move (largest difference over the largest
# magnitude): a fast path that moves them beyond bf16's own rounding is not one to take. The
# training rows are the steps of a trunk that learns: all of it, or only its blocks after stage 2 or
# 3, read from cached earlier maps (`benchmarks/trunk_pass.py --train`).

# %%
perf.benchmark_report(results_dir, "trunk_pass")

# %% [markdown]
# ## bf16 or fp32 on this CPU
#
# `precision: auto` trains in bf16 autocast on a CPU only where a quick matrix-product probe finds it
# faster (CPUs with AVX512-BF16 or AMX); elsewhere bf16 is emulated and about 100x slower. What that
# choice does to a real run: chapter 3's run of a profile (`livec` by default) trained in each
# precision from its own trunk pass, with the same splits and seeds (`benchmarks/precision.py`).
# The goal: median test SRCC within 0.005 of fp32. A control arm (`--control`) trains fp32 again on
# one thread: only the order of the sums changes, so it shows how far a change of numerics alone
# moves the same run, the floor against which bf16's change is read.

# %%
perf.benchmark_report(results_dir, "precision")

# %% [markdown]
# ## Scoring a folder
#
# `iqalib score` decodes ahead in two threads and batches crops across images (batch 64, and, to
# separate the batch from the threads, a batch of one image's crops); the naive way decodes and
# scores one image at a time. "Model alone" is the ceiling: the model's forward rate on ready-made
# input at the better of the two batch sizes, on crops prepared exactly as the pipelines prepare
# theirs (`benchmarks/scoring.py`). All sides run round-robin after a warm-up pass, and the fastest
# of several trials counts. An earlier version measured the ceiling once, at batch 64 only, after
# the two pipelines and on a contiguous `torch.randn` batch, while the pipelines feed crops of
# (H, W, 3) images viewed as NCHW (channels-last strides), on which EfficientNet-Lite0 runs about
# 1.5x faster: its "ceiling" came out *below* both pipelines, which cannot be. `consistent` says
# whether every pipeline now stays below the ceiling. The two `iqalib score` columns separate the
# batch size from the decode threads; whether streaming beats the naive loop on this machine is in
# the sentences at the end, read from the numbers. Memory stays bounded whatever the number of
# images (`benchmarks/score_memory.py`, peak resident memory of the `iqalib score` process):

# %%
perf.benchmark_report(results_dir, "scoring")

# %%
perf.benchmark_report(results_dir, "score_memory")

# %% [markdown]
# ## On a GPU
#
# `benchmarks/gpu_step.py` runs a SMART-IQA-Base training step and evaluation pass at bf16 with
# `channels_last` and `torch.compile` on synthetic 512x384 images, against the card's bf16 matmul,
# and projects one KonIQ-10k epoch (7,058 images x 20 patches) and the test pass (2,015 x 20).

# %%
perf.benchmark_report(results_dir, "gpu_step")

# %% [markdown]
# ## What the numbers say
# Chosen by `iqalib.analysis.performance`; a pipeline measured above the model-alone ceiling is reported
# as an inconsistent measurement, not as a speed.

# %%
numbers_say(
    perf.performance_sentences(
        perf.read_result(results_dir, "scoring"), perf.engine_log_table(out_dir)
    ),
    perf.precision_sentences(perf.read_result(results_dir, "precision")),
)
