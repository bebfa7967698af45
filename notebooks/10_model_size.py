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
# # 8. Model size and cost
#
# Accuracy is not free. For every model we count parameters and floating-point operations for one
# 224x224 patch (a multiply-add counts as two), **measure** how many patches per second it scores
# on this machine's device, and show the test SRCC of this profile's runs where one exists. A score
# averages 25 patches per image on KonIQ-10k, so patches per second / 25 is roughly images per second.

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
repeats = 2

# %%
from iqalib import plots
from iqalib.experiments import model_cost_table

# %%
costs = model_cost_table(models, out_dir=out_dir, batch_size=batch_size, repeats=repeats, device=device)
costs[["params", "gflops", "images_per_s", "test_srcc", "run", "data"]]

# %%
plots.model_size_scatter(costs);
