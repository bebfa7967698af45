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
from iqalib.plots.diagrams import plot_architecture
from iqalib.results import history_frame, predictions_frame, results_table

# %% [markdown]
# ## The model, as equations
# A crop $x$ (224x224, normalised: `x`) goes through the trunk, which returns four stage maps
# $S_1(x), \dots, S_4(x)$ (`model.backbone(x)`), $S_k \in \mathbb{R}^{C_k \times H_k \times H_k}$
# at strides 4, 8, 16 and 32. HyperIQA's score is a small **target network** $f$ whose
# parameters $\theta(x)$ a **hyper network** $h$ computes from the same image:
#
# $$
# q(x) = f\big(v(x);\ \theta(x)\big), \qquad \theta(x) = h\big(G(x)\big).
# $$
#
# **The target network's input** $v(x)$ (`target_input`) holds the local distortion-aware (LDA)
# features of all four stages. Branch $k$ (`model.lda[k - 1]`) average-pools $S_k$ to a
# $g_k \times g_k$ grid, $P_{g_k}$ with $g = (8, 4, 2, 1)$ (`LDA_GRIDS`), reduces its channels
# with a 1x1 convolution $R_k$ without bias to 16, 32 and 64 channels
# (`LDA_REDUCED_CHANNELS`; none on stage 4), flattens it and applies a linear layer $L_k$:
#
# $$
# v_k = L_k\Big(\operatorname{vec}\big(R_k\, P_{g_k}(S_k)\big)\Big), \qquad
# v = [v_1;\ v_2;\ v_3;\ v_4] \in \mathbb{R}^{16 + 16 + 16 + 176} = \mathbb{R}^{224}
# $$
#
# (`LDA_OUT`; pooling before the 1x1 convolution gives the numbers pooling after it would:
# both are linear).
#
# **The hyper network** reads the last stage pooled to 7x7, $G = P_7(S_4)
# \in \mathbb{R}^{C_4 \times 7 \times 7}$, and `conv1`, three 1x1 convolutions $K_1, K_2, K_3$
# with biases and ReLU (widths 1024 and 512 in HyperIQA), turns it into the hyper map $H$:
#
# $$
# H = \operatorname{ReLU}\Big(K_3 * \operatorname{ReLU}\big(K_2 * \operatorname{ReLU}(K_1 * G)\big)\Big)
# \in \mathbb{R}^{112 \times 7 \times 7}, \qquad
# \bar H = \frac{1}{49} \sum_{i, j} H_{:, i, j} \in \mathbb{R}^{112}.
# $$
#
# From $H$ it generates the target network's layers, one set per image (`target_weights`).
# With the layer sizes $n = (224, 112, 56, 28, 14, 1)$ (`TARGET_SIZES`, then the score), for
# $l = 1, \dots, 4$
#
# $$
# W_l = \operatorname{reshape}_{n_l \times n_{l-1}}\big(U_l * H\big), \qquad
# b_l = B_l(\bar H),
# $$
#
# where $U_l$ (`weight_generators[l - 1]`) is a 3x3 convolution (padding 1) with
# $n_{l-1} n_l / 49$ output channels, so that its 7x7 output holds exactly the
# $n_l \times n_{l-1}$ weights, and $B_l$ (`bias_generators[l - 1]`) is a linear layer. The
# last layer's weights and bias come from linear layers on $\bar H$ too:
# $W_5 = \operatorname{reshape}_{1 \times 14}\big(U_5(\bar H)\big)$ (`fc5_weight_generator`) and
# $b_5 = B_5(\bar H)$ (`fc5_bias_generator`). Together, $\theta(x) = \{W_l, b_l\}_{l=1}^{5}$.
#
# **The target network** (`target_net`) is five fully connected layers, with the logistic
# sigmoid $\sigma(z) = 1 / (1 + e^{-z})$ after the first four:
#
# $$
# h_0 = v, \qquad h_l = \sigma\big(W_l h_{l-1} + b_l\big) \quad (l = 1, \dots, 4), \qquad
# q(x) = h_5 = W_5 h_4 + b_5 .
# $$
#
# (A model built with `dropout` > 0, as SMART-IQA's are, also drops units after `conv1` and
# after FC1..FC3 while it trains; HyperIQA's models have none.)
#
# **An image's score** is the mean over its $T$ test crops $x_1, \dots, x_T$
# (`test_patches` of the recipe):
#
# $$
# \hat q(I) = \frac{1}{T} \sum_{t=1}^{T} q(x_t),
# $$
#
# and training minimises the L1 loss $\frac{1}{N} \sum_i |q(x_i) - t_i|$ between a batch's
# scores and the MOS $t_i$ of their images ([chapter 6](06_losses.ipynb) writes out every
# loss). Below, the same model as a block diagram, drawn from one forward pass of this
# chapter's model built without trained weights (`iqalib.plots.diagrams`): each box shows what
# that block outputs for one crop, so the figure follows the code.

# %% mystnb={"image": {"alt": "Block diagram of HyperIQA: the trunk's four stages feed the LDA branches and the target network FC1 to FC5 below, and, from the last stage, the hyper network above, whose generated weights and biases drop into each target layer; every box gives the shape its block outputs for one crop"}}
plot_architecture(iqalib.create_model(model, pretrained=False));

# %% [markdown]
# ## Train (or read back the finished run)

# %%
results = train_models([model], out_dir=out_dir, dataset=dataset,
                       data_root=data_root, split_seed=split_seed, fractions=fractions,
                       seed=seed, device=device, progress=False, **recipe)[model]

# %% [markdown]
# ## Learning curves
# Training loss falls; validation SRCC tells which epoch generalises best (circled).

# %% mystnb={"image": {"alt": "Learning curves of each round: training loss and validation SRCC per epoch, the epoch kept for testing circled"}}
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

# %% mystnb={"image": {"alt": "Scatter plot of predicted score against MOS for the test images of round 0"}}
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
