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
# # 2. Inside the model
#
# What happens to one image inside HyperIQA {cite}`su2020hyperiqa`? We follow a 224x224
# patch through `hyperiqa_lite0` **one stage at a time**, calling the model's own
# sub-modules: the trunk's four stages, the four local distortion-aware (LDA) vectors
# that feed the target network, the hyper network's 112x7x7 map, the weights and biases
# it generates for the five target layers FC1..FC5, and the target network's forward
# pass that ends in the score. Then SMART-IQA's additions in `smart_iqa_lite0`: the four
# stages pooled to 7x7, the stage attention and the weighted fusion. Every walk ends
# with a check that it gives exactly what `model(x)` gives.
#
# Nothing is trained here. `make book` runs this chapter after chapters 3 and 4, which
# train these models under the same profile: their round-0 models are read back to show
# trained weights too.

# %% tags=["parameters"]
profile = "demo"
dataset = "demo"
data_root = None
out_dir = "runs/book/demo"
seed = 0
device = "cpu"
split_seed = 0
fractions = [0.5, 0.25, 0.25]
# Data sets for the two example images, tried in order (then `dataset`, then demo).
image_sets = {}
baseline_model = "hyperiqa_lite0"
smart_model = "smart_iqa_lite0"

# %%
import torch

from iqalib.analysis.inside import (center_patch, example_images, finished_round_model,
                                    generated_layers_table, parameter_table, steps_table,
                                    walk_through, weights_sentence)
from iqalib.analysis.words import numbers_say
from iqalib.data.patches import to_model_input
from iqalib.models import create_model, list_models
from iqalib.plots.inside import (plot_attention, plot_patches, plot_stage_maps,
                                 plot_weight_matrices)

torch.set_grad_enabled(False)  # nothing is trained in this chapter
torch.manual_seed(seed);

# %% [markdown]
# ## Two images
# The lowest- and the highest-rated image of the first data set that is present (a
# LIVE-C photograph where the data is on this machine), and their central 224x224
# patches.

# %% mystnb={"image": {"alt": "The central 224x224 patches of the lowest- and the highest-rated example image, titled with their data set, image and MOS"}}
candidates = [*image_sets.items(), (dataset, data_root), ("demo", None)]
chosen, images, skipped = example_images(candidates)
for line in skipped:
    print("skipped", line)
patches = [center_patch(image) for image in images]
names = [f"MOS {mos:.1f}" for mos in chosen["mos"]]
plot_patches(patches, [f"{data}\n{image}: {name}" for data, image, name in
                       zip(chosen["data"], chosen["image"], names)]);

# %% [markdown]
# ## HyperIQA, one stage at a time
# The model: an ImageNet trunk (EfficientNet-Lite0 here) and a freshly initialised head.
# `to_model_input` scales the patch to the trunk's normalisation.

# %%
baseline = create_model(baseline_model, pretrained=True).eval()
x = to_model_input(torch.cat(patches), baseline.mean, baseline.std)
x.shape

# %% [markdown]
# **The trunk** returns four stage maps, each at half the resolution of the one before.

# %%
stages = baseline.backbone(x)
[tuple(s.shape) for s in stages]

# %% [markdown]
# **The LDA branches** pool each stage to a small grid (8x8, 4x4, 2x2, 1x1), reduce it
# with a 1x1 convolution (stages 1-3) and a linear layer: 16 + 16 + 16 + 176 = 224
# numbers per image, the *input* of the target network. **The hyper network** reads the
# last stage pooled to 7x7, and `conv1` (three 1x1 convolutions) turns it into a 112x7x7
# map. Here both are called by hand:

# %%
pooled = baseline.pool_stages(stages)  # 4 LDA grids, then the 4 stages at 7x7
lda = [branch(grid) for branch, grid in zip(baseline.lda, pooled[:4])]
target_input = torch.cat(lda, dim=1)
hyper = baseline.conv1(pooled[-1])
[tuple(v.shape) for v in lda], tuple(target_input.shape), tuple(hyper.shape)

# %% [markdown]
# **Weights from the hyper map.** A 3x3 convolution $U_1$ on the 112x7x7 map $H$ gives
# 512 channels of 7x7, that is 25,088 = 112 x 224 numbers: FC1's weight matrix, *one per
# image*. Its bias comes from a linear layer $B_1$ on the map's global average $\bar H$:
#
# $$
# W_1 = \operatorname{reshape}_{112 \times 224}\big(U_1 * H\big), \qquad b_1 = B_1(\bar H).
# $$
#
# FC2..FC4 are made the same way; FC5's weights and bias come from linear layers on
# $\bar H$ ([chapter 3](03_baseline.ipynb) writes the whole model out in these symbols).

# %%
fc1_weight = baseline.weight_generators[0](hyper).reshape(len(x), 112, 224)
fc1_bias = baseline.bias_generators[0](hyper.mean(dim=(2, 3)))
tuple(fc1_weight.shape), tuple(fc1_bias.shape)

# %% [markdown]
# `walk_through` makes the same calls for every step and keeps each tensor by name. Its
# table lists every step with its shape and size per image (the same numbers as the
# cells above).

# %%
steps = walk_through(baseline, x)
assert torch.equal(steps["target_input"], target_input)
assert torch.equal(steps["fc1_weight"], fc1_weight)
steps_table(steps, baseline)

# %%
generated_layers_table(steps)

# %% [markdown]
# ## The target network, from scratch
# Five layers with the generated weights of each image, a sigmoid
# $\sigma(z) = 1 / (1 + e^{-z})$ after the first four, starting from the LDA vector $v$:
#
# $$
# h_0 = v, \qquad h_l = \sigma\big(W_l h_{l-1} + b_l\big) \quad (l = 1, \dots, 4), \qquad
# q = W_5 h_4 + b_5 .
# $$
#
# Written out in a few lines of plain torch, it must give the library's score:


# %%
def tiny_target_net(features, layers):
    h = features
    for i, (weight, bias) in enumerate(layers):
        h = weight @ h + bias
        if i < len(layers) - 1:
            h = 1 / (1 + torch.exp(-h))
    return h


layer_names = ["fc1", "fc2", "fc3", "fc4", "fc5"]
scores = []
for i in range(len(x)):  # one image at a time, each with its own generated layers
    layers = [(steps[f"{n}_weight"][i], steps[f"{n}_bias"][i]) for n in layer_names]
    scores.append(tiny_target_net(steps["target_input"][i], layers))
by_hand = torch.cat(scores)
library = baseline(x)
torch.testing.assert_close(by_hand, library, rtol=1e-5, atol=1e-5)
torch.testing.assert_close(steps["score"], library, rtol=1e-5, atol=1e-5)
print("scores by hand:", by_hand.numpy().round(4), " model(x):", library.numpy().round(4))

# %% [markdown]
# ## The point of a hyper network
# Each image gets its own target network. Below, FC1's generated weight matrix (112
# outputs x 224 inputs) for the two images, and their difference, on one colour scale
# per row: first with the random head, then, where chapter 3 has finished a run with
# this profile, with its trained round-0 model.

# %% mystnb={"image": {"alt": "Heat maps of the generated FC1 weight matrices (112 outputs by 224 inputs) of the two images and their difference, for the random head and, where chapter 3 has run, the trained head"}}
weights = {"the random head": (steps["fc1_weight"][0], steps["fc1_weight"][1])}
trained = finished_round_model(out_dir, baseline_model)
if trained is None:
    print(f"No finished run {out_dir}/{baseline_model} yet (chapter 3 trains it; "
          "make book runs chapter 3 first): only the random head is shown.")
else:
    trained_x = to_model_input(torch.cat(patches), trained.mean, trained.std)
    trained_steps = walk_through(trained, trained_x)
    torch.testing.assert_close(trained_steps["score"], trained(trained_x), rtol=1e-5,
                               atol=1e-5)
    weights["the trained head"] = (trained_steps["fc1_weight"][0],
                                   trained_steps["fc1_weight"][1])
plot_weight_matrices(weights, names=tuple(names));

# %%
numbers_say([weights_sentence(weights)])

# %% [markdown]
# ## SMART-IQA's additions
# SMART-IQA's hyper network reads **all four** stages: each is pooled to 7x7, and a
# small MLP on the global average of stage 4 (the *context*, 320 numbers for Lite0)
# gives four weights that sum to 1. The stages are scaled by their weights and
# concatenated (24 + 40 + 112 + 320 = 496 channels) before `conv1`. At initialisation
# the MLP's weights are tiny, so the four weights start near 1/4.

# %%
smart = create_model(smart_model, pretrained=True).eval()
smart_x = to_model_input(torch.cat(patches), smart.mean, smart.std)
smart_steps = walk_through(smart, smart_x)
torch.testing.assert_close(smart_steps["score"], smart(smart_x), rtol=1e-5, atol=1e-5)
steps_table(smart_steps, smart).loc[[
    "grid1", "grid2", "grid3", "grid4", "context", "attention_hidden", "attention_logits",
    "attention_weights", "hyper_input", "hyper"]]

# %% mystnb={"image": {"alt": "The four trunk stages of the first image pooled to 7x7 and averaged over channels, each titled with its attention weight"}}
plot_stage_maps([smart_steps[f"grid{k}"] for k in range(1, 5)],
                smart_steps["attention_weights"],
                f"{names[0]}: stages pooled to 7x7 (channel mean), random head");

# %% [markdown]
# The weighted fusion, checked by hand: stage *k*'s block of channels in the hyper
# network's input is that stage's 7x7 map $G_k$ times its weight $a_k$ (the softmax of the
# MLP's logits $e$; [chapter 4](04_smart_iqa.ipynb) writes the attention out):
#
# $$
# a_k = \frac{\exp(e_k)}{\sum_{j=1}^{4} \exp(e_j)}, \qquad
# G = \big[a_1 G_1;\ a_2 G_2;\ a_3 G_3;\ a_4 G_4\big].
# $$

# %% mystnb={"image": {"alt": "Bars of the four stage-attention weights of each image against the uniform 1/4 (dashed), for the random head and, where chapter 4 has run, the trained head"}}
w = smart_steps["attention_weights"]
fused = torch.cat([smart_steps[f"grid{k + 1}"] * w[:, k, None, None, None]
                   for k in range(4)], dim=1)
assert torch.equal(fused, smart_steps["hyper_input"])
attention = {f"{name}, random head": w[i] for i, name in enumerate(names)}
trained_smart = finished_round_model(out_dir, smart_model)
if trained_smart is None:
    print(f"No finished run {out_dir}/{smart_model} yet (chapter 4 trains it): "
          "random head only.")
else:
    trained_smart_x = to_model_input(torch.cat(patches), trained_smart.mean,
                                     trained_smart.std)
    trained_smart_steps = walk_through(trained_smart, trained_smart_x)
    attention.update({f"{name}, trained": trained_smart_steps["attention_weights"][i]
                      for i, name in enumerate(names)})
plot_attention(attention);

# %% [markdown]
# ## Where the parameters are
# Parameters per part of every registered model, counted from the modules (built without
# weights): the trunk, the four LDA branches, the stage attention and the hyper network
# (`conv1` and the weight and bias generators). `head_share` is everything but the
# trunk.

# %%
parameter_table(list_models())

# %% [markdown]
# The models here start from ImageNet trunks. Whether the library reproduces published
# weights (the official HyperIQA checkpoint and the seed's SMART-IQA weights, where
# available) is checked on the parity page (`book/parity.md`).
