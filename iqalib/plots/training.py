"""Figures of the data and training chapters (seaborn on matplotlib).

Each function draws one figure from a table or a run's results and returns
the matplotlib ``Figure``; titles carry the data set's label, which says
``(synthetic)`` for the demo set, so no demo number is mistaken for a real one.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.ticker import MaxNLocator

from iqalib import metrics
from iqalib.data.images import decode_image
from iqalib.data.table import IQATable


def mos_distribution(tables: IQATable | Sequence[IQATable], bins: int = 30):
    """Histogram of MOS per data set, one panel each (scales differ between sets)."""
    tables = [tables] if isinstance(tables, IQATable) else list(tables)
    fig, axes = plt.subplots(1, len(tables), figsize=(4.5 * len(tables), 3.4), squeeze=False)
    for ax, table in zip(axes[0], tables):
        sns.histplot(table.mos, bins=bins, kde=True, ax=ax)
        ax.set(title=f"{table.label}: {len(table)} images", xlabel=f"MOS (scale {table.mos_range[0]:g}"
               f" to {table.mos_range[1]:g})", ylabel="images")
    fig.tight_layout()
    return fig


def quality_examples(table: IQATable) -> pd.DataFrame:
    """The lowest-, median- and highest-MOS rows of ``table`` (image, mos, label)."""
    order = np.argsort(table.mos, kind="stable")
    picks = {"lowest MOS": order[0], "median MOS": order[len(order) // 2], "highest MOS": order[-1]}
    frame = table.frame.iloc[list(picks.values())][["image", "mos"]].copy()
    frame.insert(0, "which", list(picks))
    frame["path"] = [str(table.paths[i]) for i in picks.values()]
    return frame.reset_index(drop=True)


def example_images(table: IQATable):
    """The lowest-, median- and highest-MOS images of ``table`` with their MOS in the titles."""
    picks = quality_examples(table)
    fig, axes = plt.subplots(1, len(picks), figsize=(4.2 * len(picks), 3.6))
    for ax, row in zip(np.atleast_1d(axes), picks.itertuples()):
        ax.imshow(decode_image(row.path))
        ax.set_title(f"{row.which}: MOS {row.mos:.1f}", fontsize=10)
        ax.axis("off")
    fig.suptitle(table.label)
    fig.tight_layout()
    return fig


def learning_curves(results: Mapping, history: pd.DataFrame):
    """Training loss and validation SRCC per epoch, one line per round.

    ``history`` is :func:`iqalib.experiments.history_frame` of ``results``;
    the selected (best-validation) epoch of each round is marked.
    """
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    hue = "round" if history["round"].nunique() > 1 else None
    sns.lineplot(history, x="epoch", y="train_loss", hue=hue, marker="o", ax=left, legend=False)
    sns.lineplot(history, x="epoch", y="val_srcc", hue=hue, marker="o", ax=right)
    for r in results["round_results"]:
        right.scatter([r["best_epoch"]], [r["val_srcc"]], s=120, facecolors="none", edgecolors="black")
    for ax in (left, right):
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    left.set(title="training loss", ylabel="loss (per patch)")
    right.set(title="validation SRCC (circle: selected epoch)", ylabel="SRCC")
    fig.suptitle(f"{results['model']} on {results['data']}")
    fig.tight_layout()
    return fig


def prediction_scatter(predictions: pd.DataFrame, title: str = ""):
    """Predicted score against MOS on the test split, with SRCC and PLCC in the title."""
    fig, ax = plt.subplots(figsize=(4.6, 4.2))
    sns.scatterplot(predictions, x="mos", y="pred", ax=ax, s=18, alpha=0.7)
    srcc = metrics.srcc(predictions["pred"], predictions["mos"])
    plcc = metrics.plcc(predictions["pred"], predictions["mos"])
    ax.set(xlabel="MOS", ylabel="prediction",
           title=f"{title}\nSRCC {srcc:.3f}, PLCC {plcc:.3f} (n={len(predictions)})".strip())
    fig.tight_layout()
    return fig


def comparison_bars(table: pd.DataFrame, metric: str = "srcc"):
    """Median test ``metric`` per run with its min-max range over rounds.

    ``table`` is :func:`iqalib.experiments.results_table`.
    """
    fig, ax = plt.subplots(figsize=(1.6 + 1.4 * len(table), 3.6))
    x = np.arange(len(table))
    mid = table[f"{metric}_median"].to_numpy()
    err = np.vstack([mid - table[f"{metric}_min"].to_numpy(), table[f"{metric}_max"].to_numpy() - mid])
    ax.bar(x, mid, yerr=err, capsize=4, color=sns.color_palette()[: len(table)])
    ax.set_xticks(x, table["model"], rotation=15)
    ax.set(ylabel=f"test {metric.upper()} (median, min-max)",
           title=" / ".join(sorted(set(table["data"]))))
    fig.tight_layout()
    return fig


def lr_sweep(frame: pd.DataFrame, metric: str = "srcc"):
    """Test ``metric`` against the trunk learning rate (log axis): rounds as dots, medians as a line.

    ``frame`` is :func:`iqalib.experiments.lr_sweep`'s table.
    """
    fig, ax = plt.subplots(figsize=(5.6, 3.8))
    ax.scatter(frame["trunk_lr"], frame[metric], color="0.5", s=20, label="rounds")
    medians = frame.groupby("trunk_lr")[metric].median()
    ax.plot(medians.index, medians.to_numpy(), marker="o", color=sns.color_palette()[0], label="median")
    ax.set(xscale="log", xlabel="trunk learning rate (head: x head_lr_multiplier)", ylabel=f"test {metric.upper()}",
           title=f"{frame['model'].iloc[0]} on {frame['data'].iloc[0]}")
    ax.legend()
    fig.tight_layout()
    return fig


def model_size_scatter(table: pd.DataFrame):
    """GFLOPs per 224x224 patch against parameters; labels show throughput (and SRCC where run).

    ``table`` is :func:`iqalib.experiments.model_cost_table`.
    """
    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    ax.scatter(table["params"] / 1e6, table["gflops"], s=60)
    for name, row in table.iterrows():
        text = f"{name}\n{row['images_per_s']:.1f} patches/s" if np.isfinite(row.get("images_per_s", np.nan)) \
            else name
        if "test_srcc" in row and np.isfinite(row["test_srcc"]):
            text += f", SRCC {row['test_srcc']:.3f}"
        ax.annotate(text, (row["params"] / 1e6, row["gflops"]), fontsize=8, xytext=(4, 4),
                    textcoords="offset points")
    ax.set(xlabel="parameters (millions)", ylabel="GFLOPs per 224x224 patch", xscale="log", yscale="log",
           title="model size and cost")
    fig.tight_layout()
    return fig


def metric_matrix(frame: pd.DataFrame, metric: str = "srcc"):
    """Heat map of ``metric``: rows the training set, columns the test set.

    ``frame`` is :func:`iqalib.experiments.cross_dataset_matrix`.
    """
    grid = frame.pivot_table(index="train", columns="test", values=metric, aggfunc="median")
    fig, ax = plt.subplots(figsize=(1.8 + 1.6 * grid.shape[1], 1.2 + 0.9 * grid.shape[0]))
    sns.heatmap(grid, annot=True, fmt=".3f", vmin=-1, vmax=1, cmap="vlag", cbar=False, ax=ax)
    ax.set(title=f"cross-data-set test {metric.upper()}", xlabel="tested on", ylabel="trained on")
    fig.tight_layout()
    return fig
