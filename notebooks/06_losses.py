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
# # 6. Loss functions: does the training loss matter?
#
# HyperIQA {cite}`su2020hyperiqa` and the SMART-IQA seed {cite}`smartiqa` both train with an
# L1 loss on the raw MOS. The seed's report compares five losses for its Swin-B model on
# KonIQ-10k and concludes that **plain regression losses beat rank-based ones**; it guesses
# that ranking losses might help where labels are noisier. Here every loss trains the SMART model of chapter 5
# with the same training keys, rounds and splits, so each round tests all losses on the
# same images and the differences can be tested paired.
#
# | loss | what it optimises | its scores |
# |---|---|---|
# | `l1`, `mse`, `smooth_l1` | absolute, squared, Huber error to the MOS | MOS scale |
# | `ranking` | hinge on the order of each pair whose MOS differ | order only |
# | `fidelity` | fidelity of Thurstone preference probabilities | MOS up to a shift |
# | `soft_srcc` | 1 - Pearson(soft ranks of the scores, MOS ranks) | order only |
# | `plcc` | 1 - Pearson(scores, MOS) over the batch | up to an affine map |
# | `l1+rank` | `l1 + alpha * ranking` (the seed solver's option) | MOS scale |

# %% tags=["parameters"]
profile = "demo"
dataset = "demo"
data_root = None
out_dir = "runs/book/demo"
seed = 0
device = "cpu"
split_seed = 0
fractions = [0.5, 0.25, 0.25]
smart_model = "smart_iqa_lite0"
# How the models are trained: the profile's common recipe, this chapter's keys over it
recipe = {"rounds": 2, "epochs": 4, "batch_size": 32, "train_patches": 2,
          "test_patches": 2, "trunk_lr": 1.0e-3, "freeze_backbone": True,
          "pretrained": True}
n_boot = 1000
losses = ["l1", "mse", "fidelity", "soft_srcc", "ranking", "smooth_l1", "plcc", "l1+rank"]
loss_options = {}  # per loss, e.g. {"ranking": {"margin": 2.0}}
noise_sets = {}  # other data sets whose label noise is shown: {name: {root, options}}
other_out_dirs = {}  # other profiles' out_dir, whose saved loss studies are compared

# %%
import time

from iqalib.analysis import compare_runs, run_ablation
from iqalib.analysis import loss_study as study
from iqalib.analysis.claims import record_claims
from iqalib.analysis.words import numbers_say
from iqalib.data.datasets import load_dataset
from iqalib.plots.ablation import format_comparisons, plot_rounds
from iqalib.plots.losses import format_loss_table

started = time.perf_counter()

# %% [markdown]
# ## The losses, as equations
# A training batch holds $N$ crops with scores $p_i$ (`pred`) and the MOS $t_i$ of their images
# (`target`); each loss is a function of `iqalib.losses`. The regression losses (`l1_loss`,
# `mse_loss`, `smooth_l1_loss`) measure the error in MOS units:
#
# $$
# \mathcal{L}_{\mathrm{l1}} = \frac{1}{N} \sum_{i=1}^{N} |p_i - t_i|, \qquad
# \mathcal{L}_{\mathrm{mse}} = \frac{1}{N} \sum_{i=1}^{N} (p_i - t_i)^2, \qquad
# \mathcal{L}_{\mathrm{smooth\_l1}} = \frac{1}{N} \sum_{i=1}^{N} \ell(p_i - t_i), \quad
# \ell(d) = \begin{cases} d^2 / 2 & |d| < 1 \\ |d| - 1/2 & \text{otherwise.} \end{cases}
# $$
#
# The pairwise losses compare the pairs $i < j$ of patches in the batch. The ranking hinge
# (`ranking_hinge_loss`, margin $m$ = 1 MOS unit) averages over the set $P$ of pairs whose MOS
# differ, and is 0 when there is none:
#
# $$
# \mathcal{L}_{\mathrm{ranking}} = \frac{1}{|P|} \sum_{(i, j) \in P}
# \max\big(0,\ m - \operatorname{sign}(t_i - t_j)\,(p_i - p_j)\big), \qquad
# P = \{(i, j) : i < j,\ t_i \neq t_j\}.
# $$
#
# The fidelity loss {cite}`tsai2007frank` (`fidelity_loss`) compares, over all
# $M = N (N - 1) / 2$ pairs, the share $p^*_{ij}$ of raters who prefer image $i$ to image $j$
# under Thurstone's model with the model's probability $\hat p_{ij}$ on the same scale $s_{ij}$
# ($\Phi$ is the standard normal distribution function, $\epsilon = 10^{-8}$):
#
# $$
# p^*_{ij} = \Phi\Big(\frac{t_i - t_j}{s_{ij}}\Big), \quad
# \hat p_{ij} = \Phi\Big(\frac{p_i - p_j}{s_{ij}}\Big), \quad
# \mathcal{L}_{\mathrm{fidelity}} = \frac{1}{M} \sum_{i < j} \Big(1
# - \sqrt{p^*_{ij}\, \hat p_{ij} + \epsilon}
# - \sqrt{(1 - p^*_{ij})(1 - \hat p_{ij}) + \epsilon}\Big).
# $$
#
# The scale is $s_{ij} = \sqrt{s_i^2 + s_j^2}$ from the raters' standard deviations $s_i$, as in
# the seed: training passes each image's own SD where every training image has one (LIVE-C,
# KonIQ on its 1-5 scale, the demo's simulated raters). Where some lack it, every image gets the
# data set's median rater SD $\sigma$, so $s_{ij} = \sqrt{2}\,\sigma$ (set below from the table;
# $\sigma$ = 10 MOS units where the table has none).
#
# Soft SRCC (`soft_srcc_loss`) standardises the scores over the batch,
# $z_i = (p_i - \bar p) / (\operatorname{sd}(p) + \epsilon)$ with the population standard
# deviation, and replaces their ranks by pairwise sigmoids at temperature $\tau$ = 0.1
# (`soft_ranks`); the MOS keep their exact ranks $\operatorname{rank}(t)$, ties averaged
# (`average_ranks`). With Pearson's correlation over the batch
# $\rho(x, y) = \sum_i (x_i - \bar x)(y_i - \bar y) \,/\,
# (\lVert x - \bar x \rVert\, \lVert y - \bar y \rVert + \epsilon)$:
#
# $$
# r_i = \frac{1}{2} + \sum_{j=1}^{N} \operatorname{sigmoid}\Big(\frac{z_i - z_j}{\tau}\Big),
# \qquad
# \mathcal{L}_{\mathrm{soft\_srcc}} = 1 - \rho\big(r, \operatorname{rank}(t)\big), \qquad
# \mathcal{L}_{\mathrm{plcc}} = 1 - \rho(p, t).
# $$
#
# The $j = i$ term adds $1/2$, so as $\tau \to 0$ the soft ranks $r$ tend to the average ranks
# of the scores. Both correlation losses are 0 for fewer than two patches or equal MOS (no
# order to learn; `plcc_loss`). Last, the seed solver's combination (`l1_rank_loss`,
# $\alpha$ = 1): $\mathcal{L}_{\mathrm{l1+rank}} = \mathcal{L}_{\mathrm{l1}}
# + \alpha\, \mathcal{L}_{\mathrm{ranking}}$.

# %% [markdown]
# ## The labels and their noise
# How noisy are the labels? From the raters' standard deviations: `rater_spread` is the
# median rater standard deviation over the spread of the MOS, `pair_disagreement` the
# mean probability that a rater orders a pair of images against their MOS (Thurstone).
# Both are free of the MOS scale. Neither is the noise of the MOS itself, which also
# shrinks with the number of ratings per image (not in every table).

# %%
table = load_dataset(dataset, data_root)
noise = study.label_noise(table)  # on the training MOS scale: fidelity's scale from it
# noise_sets may list this data set again with its standard deviations on another scale.
noise_table = study.label_noise_table({dataset: {"root": data_root}, **noise_sets})
for name, reason in noise_table.attrs["skipped"].items():
    print(f"skipped {name}: {reason}")
print(study.noise_sentence(noise_table))
noise_table.round(3)

# %% [markdown]
# ## The runs
# One run per loss, all with the training keys of chapter 5. The L1 run is chapter 4's
# run (same name and settings): read back when it finished, not trained again. With a
# frozen trunk every run reads the same cached trunk features (`trunk_features`: one
# value for all), so a loss costs one head training per round. The profile's `losses`
# lists the losses trained: the demo profile, whose whole book has 15 minutes, keeps to
# the seed's five.

# %%
options = study.study_loss_options(losses, loss_options, noise)
print("loss options:", options or "the defaults")
configs = study.loss_configs(
    losses, out_dir=out_dir, smart_model=smart_model, loss_options=options,
    dataset=dataset, data_root=data_root, split_seed=split_seed, fractions=fractions,
    seed=seed, device=device, progress=False, **recipe)
runs = run_ablation(configs)
runs.costs

# %% [markdown]
# ## Test metrics: median over rounds, with spread
# Median (interquartile range) over rounds. `scores` says what anchors a loss's scores:
# losses that only fix the order or the spread of the scores leave them off the MOS
# scale, so their RMSE is not shown; compare them by SRCC and by PLCC after the
# 4-parameter logistic map.

# %%
data_label = runs.results[study.REFERENCE]["data"]
losses_table = study.loss_table(runs.results, runs.run_dirs, table.mos_range)
format_loss_table(losses_table)

# %% mystnb={"image": {"alt": "Test SRCC of every training loss, one dot per round, the dots of one round (one test split) joined, the medians marked"}}
plot_rounds(study.loss_rounds(runs.results), data_label, title="Training losses");

# %% [markdown]
# ## Paired tests against L1
# Per round, SRCC(loss) - SRCC(L1) on the same test images with a bootstrap interval;
# across rounds the median difference, the share of rounds won, and, with enough rounds
# (the table says how many), Wilcoxon signed-rank and sign tests. The signed-rank test decides,
# as in every chapter.

# %%
pairs = [(name, study.REFERENCE) for name in losses if name != study.REFERENCE]
per_round, tests = compare_runs(runs.run_dirs, pairs, metric="srcc", n_boot=n_boot,
                                 seed=seed)
format_comparisons(tests)

# %%
_, plcc_tests = compare_runs(runs.run_dirs, pairs, metric="plcc", n_boot=n_boot,
                             seed=seed)
format_comparisons(plcc_tests)

# %% [markdown]
# ## The seed's table beside ours
# The seed's numbers are quoted as data
# (`iqalib.analysis.loss_study.SEED_LOSS_RESULTS`), not reproduced; ours are medians
# over rounds. The protocols differ:

# %%
print("Seed:", study.SEED_SOURCE)
for line in study.protocol_differences(configs[study.REFERENCE], data_label):
    print(" -", line)
study.seed_table(losses_table).round(4)

# %% [markdown]
# ## The seed's conclusion, tested
# "Plain regression losses beat rank-based ones", read as: fidelity, soft SRCC and the
# ranking hinge each score a lower test SRCC than L1 on the same splits. The sentence is
# chosen by `seed_claim_verdict` from the paired tests above.

# %%
claim = study.seed_claim_verdict(tests)
print(claim)

# %% [markdown]
# ## The seed's guess: do ranking losses help on noisier labels?
# The guess predicts that the rank-based losses gain more over L1 where labels are
# noisier. Each profile saves its study (`loss_study.json` in its `out_dir`); the
# studies found for other profiles are compared here, with the label noise of each data
# set.

# %%
own_noise = noise_table.loc[dataset].to_dict() if dataset in noise_table.index else noise
study.save_study(out_dir, profile=profile, data_label=data_label, dataset=dataset,
                 summary=tests, noise=own_noise, rounds=recipe["rounds"])
studies = study.read_studies({profile: out_dir, **other_out_dirs})
guess = study.noisy_labels_verdict(studies)
print(guess)
studies.round(4)

# %% [markdown]
# ## What the numbers say
# Sentences chosen by `what_the_numbers_say` from the tables above, then the two
# verdicts. Both claims are recorded for the summary chapter's table of claims.

# %%
record_claims(out_dir, "06_losses", study.loss_claim_rows(tests, studies))
print(f"(This chapter took {time.perf_counter() - started:.0f} s, training included.)")
sentences = study.what_the_numbers_say(losses_table, tests, data_label=data_label)
numbers_say(sentences, [claim, guess])
