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
# # 7. How sensitive is training to the learning rate?
#
# A fine-tuned trunk is usually trained with a small learning rate and the freshly initialised head
# with a larger one (here the head's rate is the trunk's times `head_lr_multiplier`). We sweep the
# trunk rate over a decade or more and plot the test SRCC of every round. With a frozen trunk (the
# CPU profiles) the trunk itself does not learn, so the sweep moves the head's rate only.

# %% tags=["parameters"]
profile = "demo"
dataset = "demo"
data_root = None
out_dir = "runs/book/demo"
seed = 0
device = "cpu"
split_seed = 0
fractions = [0.5, 0.25, 0.25]
run_name = "lr_sweep"
model = "smart_iqa_lite0"
trunk_lrs = [1.0e-4, 1.0e-3, 1.0e-2]
rounds = 1
epochs = 4
batch_size = 32
train_patches = 2
test_patches = 2
freeze_backbone = True

# %%
from iqalib import plots
from iqalib.experiments import lr_sweep

# %%
sweep = lr_sweep(run_name, trunk_lrs, out_dir=out_dir, dataset=dataset, data_root=data_root, model=model,
                 split_seed=split_seed, fractions=fractions, seed=seed, device=device, rounds=rounds,
                 epochs=epochs, batch_size=batch_size, train_patches=train_patches,
                 test_patches=test_patches, freeze_backbone=freeze_backbone, progress=False)
sweep.groupby("trunk_lr")[["srcc", "plcc", "best_epoch"]].median()

# %%
plots.lr_sweep(sweep);
