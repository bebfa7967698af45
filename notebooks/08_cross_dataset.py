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
# # 8. Across data sets: does the model transfer?
#
# A model that learned *quality* rather than the quirks of one data set should rank the images of
# another set well too. We take the round-0 model of a finished run, keep its own test split as the
# in-data-set reference, and score every image of the other sets (or a seeded random sample of
# them, on CPU). SRCC ignores the sets' different MOS scales.
#
# Sets that are not present on this machine are skipped and listed below: on a fresh machine the
# demo profile has only the synthetic demo set, and then there is nothing to compare: no matrix is
# shown, and the closing sentence says so.

# %% tags=["parameters"]
profile = "demo"
dataset = "demo"
data_root = None
out_dir = "runs/book/demo"
seed = 0
device = "cpu"
split_seed = 0
fractions = [0.5, 0.25, 0.25]
train_run = "smart_iqa_lite0"
test_sets = {}
max_images = 200

# %%
from iqalib import plots
from iqalib.analysis.claims import record_claims
from iqalib.analysis.cross_dataset import (
    cross_dataset_sentences,
    cross_dataset_view,
    transfer_claim,
)
from iqalib.analysis.words import numbers_say
from iqalib.experiments import cross_dataset_matrix

# %%
matrix = cross_dataset_matrix(
    f"{out_dir}/{train_run}", test_sets, max_images=max_images, seed=seed
)
cross_dataset_view(matrix)

# %% [markdown]
# Skipped sets (not found on this machine), with the reason:

# %%
matrix.attrs["skipped"] or "none skipped"

# %% [markdown]
# The matrix as a heat map (drawn only when there is more than one data set to compare):

# %%
plots.metric_matrix(matrix, "srcc");

# %% [markdown]
# ## What the numbers say
# Chosen by `iqalib.analysis.cross_dataset`; the claim goes to the [summary](11_summary.ipynb) ("transfers":
# SRCC on every other set within 0.15 of the set's own test split; only pairs of sets rated by people
# count: a transfer from or to the demo set, whose labels are simulated, tests the code, not the claim).

# %%
record_claims(out_dir, "08_cross_dataset", [transfer_claim(matrix)])
numbers_say(cross_dataset_sentences(matrix))
