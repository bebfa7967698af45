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
# # 11. Results summary: the claims and what this edition says about them
#
# The book tests the claims of HyperIQA {cite}`su2020hyperiqa` and of the SMART-IQA report
# {cite}`smartiqa`. The table below lists each claim, the chapter that tests it, the seed's own
# number or statement, this edition's number with its spread over rounds, and the verdict the chapter
# computed from its numbers (`iqalib.analysis.claims`; nothing here is typed by hand). A claim whose
# chapter did not run in this edition says so. The seed's KonIQ-10k numbers come from one round with
# the epoch picked on the test split, ours from a validation-selected epoch and medians over rounds
# (see the protocol page): a difference in protocol, not only in result. Demo numbers are synthetic
# and test the code, not the claims.

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
from IPython.display import Markdown, display

from iqalib.analysis.claims import (
    chapter_link,
    claims_markdown,
    claims_table,
    summary_sentences,
)
from iqalib.analysis.significance import decision_rule
from iqalib.analysis.words import numbers_say
from iqalib.plots import format_runs_table
from iqalib.results import runs_table

# %%
display(Markdown(f"**The book's one decision rule.** {decision_rule()}"))
claims = claims_table(out_dir, link=chapter_link)
Markdown(claims_markdown(claims))

# %% [markdown]
# ## Every finished run
# Each run of this profile, read from its `summary.json`: the model, the data, the number of rounds
# and the test SRCC and PLCC as median and range over rounds.

# %%
summary = runs_table(out_dir)
print(f"profile {profile!r}: {len(summary)} finished run(s) in {out_dir}")
# Metrics to 4 decimals; learning rates keep their digits (3e-05 must not print as 0.0).
format_runs_table(summary)

# %% [markdown]
# ## What the numbers say

# %%
numbers_say(summary_sentences(claims))
