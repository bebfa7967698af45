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
# # 3. The HyperIQA baseline
#
# HyperIQA {cite}`su2020hyperiqa` first *understands the content* of an image with a trunk network,
# then a **hyper network** turns that understanding into the weights of a small **target network**,
# which scores multi-scale "local distortion" features of the same image. Each image thus gets its
# own scoring rule. Here the trunk is EfficientNet-Lite0 {cite}`tan2019efficientnet` on CPU
# profiles (only its ImageNet weights are available offline) and ResNet-50 on the KonIQ profile
# (what the model computes, step by step: [chapter 2](02_inside_the_model.ipynb)).
#
# Training: random 224x224 crops of the training images, each labelled with its image's MOS; an L1
# loss. After every epoch the model scores the **validation** images (the mean over test crops of
# each image); the epoch with the best validation SRCC is kept and tested once on the test split.

# %% tags=["parameters"]
profile = "demo"
dataset = "demo"
data_root = None
out_dir = "runs/book/demo"
seed = 0
device = "cpu"
split_seed = 0
fractions = [0.5, 0.25, 0.25]
model = "hyperiqa_lite0"
# How the models are trained: the profile's common recipe, this chapter's keys over it
recipe = {"rounds": 2, "epochs": 4, "batch_size": 32, "train_patches": 2,
          "test_patches": 2, "trunk_lr": 1.0e-4, "freeze_backbone": True,
          "pretrained": True}

# %%
import iqalib
from iqalib import plots
from iqalib.analysis.linear_probe import linear_probe, probe_sentences
from iqalib.analysis.runs import run_sentences
from iqalib.analysis.selection import selection_table
from iqalib.analysis.words import numbers_say
from iqalib.experiments import train_models
from iqalib.results import history_frame, predictions_frame, results_table

# %% [markdown]
# ## Train (or read back the finished run)

# %%
results = train_models([model], out_dir=out_dir, dataset=dataset,
                       data_root=data_root, split_seed=split_seed, fractions=fractions,
                       seed=seed, device=device, progress=False, **recipe)[model]

# %% [markdown]
# ## Learning curves
# Training loss falls; validation SRCC tells which epoch generalises best (circled).

# %%
plots.learning_curves(results, history_frame(results));

# %% [markdown]
# ## Test metrics
# SRCC (rank correlation: does the model *order* images like people do?) and PLCC (linear
# correlation of the scores), as median and range over the rounds. The second row is the floor a
# hyper network must beat to be worth its parameters: a **linear probe**
# (`iqalib.analysis.linear_probe`), ridge regression from the same pretrained trunk's four stages,
# each averaged over the crop, to the MOS, with its ridge strength chosen on the validation split,
# scored on the same test crops of the same rounds.

# %%
probe = linear_probe(results)  # the trunk, data, splits and crops of this run
results_table([results, probe])

# %% [markdown]
# ## Predicted score against MOS (test split of round 0)

# %%
plots.prediction_scatter(
    predictions_frame(f"{out_dir}/{model}", 0), f"{model} on {results['data']}"
);

# %% [markdown]
# ## How each round chose its epoch
# The selected epoch, its validation SRCC and its test SRCC: when the two disagree by a lot, the
# selection is noise (small validation splits).

# %%
selection = selection_table(results)
selection.round(3)

# %% [markdown]
# ## What the numbers say
# Sentences chosen from the numbers above by `iqalib.analysis.runs`, including what went wrong.

# %%
mos_range = iqalib.load_dataset(dataset, data_root).mos_range
numbers_say(
    run_sentences(results, predictions_frame(f"{out_dir}/{model}"), mos_range),
    probe_sentences({model: results}, probe),
)
