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
# # 9. Results summary
#
# Every finished run of this profile, read from its `summary.json` (nothing here is typed by hand):
# the model, the data (demo numbers are marked *synthetic*), the number of rounds and the test SRCC
# and PLCC as median and range over rounds. The epoch of each round was selected on the validation
# split (see the protocol page). For comparison, the published KonIQ-10k numbers are SRCC 0.906 /
# PLCC 0.917 for HyperIQA (ResNet-50) {cite}`su2020hyperiqa` and 0.9378 / 0.9485 claimed for SMART-IQA
# (Swin-B), both from protocols that differ from ours.

# %% tags=["parameters"]
profile = "demo"
dataset = "demo"
data_root = None
out_dir = "runs/book/demo"
seed = 0
device = "cpu"
split_seed = 0
fractions = [0.5, 0.25, 0.25]

# %%
from iqalib.experiments import runs_table

# %%
summary = runs_table(out_dir)
print(f"profile {profile!r}: {len(summary)} finished run(s) in {out_dir}")
# Metrics to 4 decimals; learning rates keep their digits (3e-05 must not print as 0.0).
summary.round({c: 4 for c in summary.columns if c.startswith(("srcc", "plcc"))})
