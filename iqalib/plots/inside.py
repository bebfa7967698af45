"""Figures of the model opened up (notebook 02_inside_the_model)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

CMAP = "viridis"  # perceptually uniform, for every map of the chapter


def plot_patches(patches, titles):
    """The patches that go through the model, side by side (uint8 (1, 3, H, W) tensors)."""
    fig, axes = plt.subplots(1, len(patches), figsize=(3.2 * len(patches), 3.4), squeeze=False)
    for ax, patch, title in zip(axes[0], patches, titles):
        ax.imshow(patch[0].permute(1, 2, 0).numpy())
        ax.set_title(title, fontsize=9)
        ax.axis("off")
    fig.tight_layout()
    return fig


def plot_stage_maps(maps, weights=None, title: str = ""):
    """The four stage maps pooled to 7x7, averaged over channels (one colour scale per map, as
    their channels differ), with the attention weight of each stage when given."""
    fig, axes = plt.subplots(1, len(maps), figsize=(2.6 * len(maps), 2.9))
    for k, (ax, grid) in enumerate(zip(axes, maps)):
        image = ax.imshow(grid[0].mean(dim=0).numpy(), cmap=CMAP)
        label = f"stage {k + 1}: {grid.shape[1]}x7x7"
        if weights is not None:
            label += f"\nattention weight {float(weights[0, k]):.3f}"
        ax.set_title(label, fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
        fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    fig.suptitle(title or "Stage maps pooled to 7x7 (mean over channels)", fontsize=10)
    fig.tight_layout()
    return fig


def plot_weight_matrices(rows: dict, names=("image A", "image B")):
    """Generated FC1 weight matrices of two images and their difference, one row per model state.

    ``rows`` maps a row title (e.g. "the random head", "the trained head") to
    ``(w_a, w_b)`` (out x in tensors). The three panels of a row share one
    colour scale, symmetric about 0 (a trained head's weights are much larger
    than a random one's, so each row gets its own; the titles give the mean |w|).
    """
    fig, axes = plt.subplots(len(rows), 3, figsize=(13, 3.3 * len(rows)), squeeze=False,
                             constrained_layout=True)
    for ax_row, (title, (w_a, w_b)) in zip(axes, rows.items()):
        trio = (w_a.numpy(), w_b.numpy(), (w_a - w_b).numpy())
        limit = max(float(np.abs(m).max()) for m in trio)
        for ax, matrix, label in zip(ax_row, trio, (*names, f"{names[0]} - {names[1]}")):
            image = ax.imshow(matrix, cmap=CMAP, vmin=-limit, vmax=limit, aspect="auto", interpolation="nearest")
            ax.set_title(f"{title}: {label} (mean |w| {np.abs(matrix).mean():.3f})", fontsize=9)
            ax.set_xlabel("input (224 LDA features)", fontsize=8)
            ax.set_ylabel("output (112)", fontsize=8)
        fig.colorbar(image, ax=list(ax_row), fraction=0.02, pad=0.01, label="weight")
    return fig


def plot_attention(weights_by_image: dict):
    """Stage-attention weights per image (a bar per stage), the uniform 1/4 dashed."""
    fig, ax = plt.subplots(figsize=(6, 2.8))
    width = 0.8 / len(weights_by_image)
    colours = plt.get_cmap(CMAP)(np.linspace(0.15, 0.85, len(weights_by_image)))
    for i, ((name, weights), colour) in enumerate(zip(weights_by_image.items(), colours)):
        x = np.arange(weights.shape[-1]) + (i - (len(weights_by_image) - 1) / 2) * width
        ax.bar(x, weights.reshape(-1).numpy(), width, label=name, color=colour)
    ax.axhline(0.25, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(range(4), [f"stage {k}" for k in range(1, 5)])
    ax.set_ylabel("attention weight")
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig
