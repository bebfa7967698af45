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
# # 1. The data: images and their mean opinion scores
#
# A blind IQA data set is a table of photographs, each with a **mean opinion score** (MOS): the
# average of the ratings that many people gave it. A model is trained to predict the MOS from the
# pixels alone. This chapter shows the data sets in play: how their scores are distributed, how the
# images are split into training, validation and test parts, and what a low-, a median- and a
# high-MOS image look like.
#
# The default edition's data are **real photographs**: the 627 images of the LIVE In the Wild
# Image Quality Challenge database {cite}`ghadiyaram2016livec,ghadiyaram2015livecdb` that the
# release keeps as the phones' original JPEG files. Each was rated by about 175 people; the
# University of Texas at Austin's notice lets them travel with this book (in
# `iqalib/data/livec_jpeg/`, byte for byte, with the notice in full). The other 535 LIVE-C
# images stay outside the repository, an untouched test set for anything trained here.
#
# The **demo** set is synthetic: scikit-image photographs distorted at four levels, scored by a
# full-reference rule (SSIM, {cite}`wang2004ssim`) and simulated raters. It appears where a
# chapter needs what only it has (distortion types, a second data set); its numbers say nothing
# about real photographs, and every figure that uses it says so.

# %% tags=["parameters"]
profile = "demo"
dataset = "demo"
data_root = None
out_dir = "runs/book/demo"
seed = 0
device = "cpu"
split_seed = 0
fractions = [0.5, 0.25, 0.25]
recipe = {"rounds": 1, "epochs": 1, "train_patches": 1, "test_patches": 1,
          "freeze_backbone": True}
other_sets = {}

# %%
import iqalib
from iqalib import plots
from iqalib.analysis.dataset import data_sentences
from iqalib.analysis.protocol import edition_protocol
from iqalib.analysis.words import numbers_say
from iqalib.experiments import available_tables

# %% [markdown]
# ## The tables
# The main data set of this profile, plus any real set found on this machine (a set that is not
# found is listed, not fatal).

# %%
table = iqalib.load_dataset(dataset, data_root)
others, missing = available_tables(other_sets)
print(
    f"{table.label}: {len(table)} images, "
    f"MOS from {table.mos_range[0]:g} to {table.mos_range[1]:g}"
)
missing or "every other set listed in the profile was found"

# %% [markdown]
# ## MOS distributions
# Scales differ between sets (0-100 here, 1-5 for some releases of KonIQ-10k), which is why the
# correlation metrics of the next chapters ignore the scale.

# %%
plots.mos_distribution([table, *others.values()]);

# %% [markdown]
# ## Splits
# Round *r* of a run splits the table with seed `split_seed + r`. Random splits keep all versions of
# one content (one reference photograph) in the same part, so the test set never contains a
# distorted copy of a training image. The validation part chooses the epoch; the test part is used once.

# %%
parts = iqalib.split_table(table, seed=split_seed, fractions=tuple(fractions))
{name: len(part) for name, part in parts.items()}

# %% [markdown]
# ## This edition's protocol
# The general protocol (selection on validation, medians over rounds, paired comparisons) is on the
# {doc}`protocol page <../protocol>`; the numbers of this edition come from its profile and its data:

# %%
edition_protocol(table, parts, recipe, split_seed=split_seed)

# %% [markdown]
# ## Examples at low, median and high MOS

# %%
plots.example_images(table);

# %% [markdown]
# ## What the numbers say
# Chosen from this table and split by `iqalib.analysis.dataset`. Images that share a source
# photograph are not independent test cases: the statistics of the later chapters
# ([chapter 5](05_ablations.ipynb) in particular) resample whole sources where the set records them.

# %%
numbers_say(data_sentences(table, parts))
