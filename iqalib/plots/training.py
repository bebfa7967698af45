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
from iqalib.plots.ablation import plot_rounds


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

    ``history`` is :func:`iqalib.results.history_frame` of ``results``;
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


def format_runs_table(table: pd.DataFrame) -> pd.DataFrame:
    """A runs table (:func:`iqalib.results.runs_table`) for a page: counts as integers, metrics to 4
    decimals, and a setting a run does not record (a linear probe has no epochs) in words, never NaN."""
    out = table.round({c: 4 for c in table.columns if c.startswith(("srcc", "plcc"))}).astype(object)
    missing = "n/a (this run records no training settings)"
    for column in ("rounds", "epochs"):
        if column in out:
            out[column] = [int(v) if pd.notna(v) else missing for v in table[column]]
    return out.where(table.notna(), missing)


def comparison_bars(table: pd.DataFrame, metric: str = "srcc"):
    """Median test ``metric`` per run with its min-max range over rounds.

    ``table`` is :func:`iqalib.results.results_table`.
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


def comparison_rounds(results: Mapping[str, Mapping], metric: str = "srcc"):
    """Test ``metric`` of several runs per round, rounds joined (runs with the same splits compare per round).

    ``results`` maps a label to a :func:`iqalib.experiments.run_or_load` dict.
    """
    rows = [{"label": label, **per_round} for label, r in results.items() for per_round in r["test_per_round"]]
    data = " / ".join(sorted({r["data"] for r in results.values()}))
    return plot_rounds(pd.DataFrame(rows), data, metric, order=list(results), title="Side by side")


def lr_sweep(frame: pd.DataFrame, metric: str = "srcc", rates=None, label: str | None = None):
    """Test ``metric`` against the learning rate (log axis): rounds as dots, medians as a line.

    ``frame`` is :func:`iqalib.experiments.lr_sweep`'s table. ``rates`` and
    ``label`` say what the axis really is (:func:`iqalib.analysis.recipes.learning_rate_axis`:
    the head's rate when the trunk is frozen); by default the trunk rate.
    """
    x = frame["trunk_lr"] if rates is None else pd.Series(np.asarray(rates, dtype=float), index=frame.index)
    fig, ax = plt.subplots(figsize=(6.0, 3.9))
    ax.scatter(x, frame[metric], color="0.5", s=20, label="rounds")
    medians = frame[metric].groupby(x).median()
    ax.plot(medians.index, medians.to_numpy(), marker="o", color=sns.color_palette()[0], label="median")
    ax.set(xscale="log", xlabel=label or "trunk learning rate (head: x head_lr_multiplier)",
           ylabel=f"test {metric.upper()}", title=f"{frame['model'].iloc[0]} on {frame['data'].iloc[0]}")
    ax.legend()
    fig.tight_layout()
    return fig


def model_size_scatter(table: pd.DataFrame):
    """Measured patches/s against GFLOPs per 224x224 patch, one marker per model, named in the legend.

    ``table`` is :func:`iqalib.experiments.model_cost_table`. Names sit in the
    legend, not beside the points, so models of equal cost never overprint.
    """
    fig, ax = plt.subplots(figsize=(8.6, 4.4))
    markers = "osD^vP*X"
    colors = sns.color_palette("colorblind", n_colors=len(table))
    for k, (name, row) in enumerate(table.iterrows()):
        text = f"{name}: {row['params'] / 1e6:.1f} M params, {row['patches_per_s']:.1f} patches/s"
        if "test_srcc" in row and np.isfinite(row["test_srcc"]):
            text += f", SRCC {row['test_srcc']:.3f}"
        ax.scatter(row["gflops"], row["patches_per_s"], s=70, marker=markers[k % len(markers)], color=colors[k],
                   label=text)
    ax.set(xlabel="GFLOPs per 224x224 patch", ylabel="measured patches/s (inference)", xscale="log",
           yscale="log", title="model cost and measured speed")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def metric_matrix(frame: pd.DataFrame, metric: str = "srcc"):
    """Heat map of ``metric``: rows the training set, columns the test set; None for a single cell.

    ``frame`` is :func:`iqalib.experiments.cross_dataset_matrix`. One colour
    map (viridis) on the fixed scale [-1, 1] of a correlation, so two editions'
    maps read alike. With one data set there is nothing to compare: no figure.
    """
    grid = frame.pivot_table(index="train", columns="test", values=metric, aggfunc="median")
    if grid.size < 2:
        return None
    fig, ax = plt.subplots(figsize=(2.2 + 1.6 * grid.shape[1], 1.4 + 0.9 * grid.shape[0]))
    sns.heatmap(grid, annot=True, fmt=".3f", vmin=-1, vmax=1, cmap="viridis", cbar=True, ax=ax)
    ax.set(title=f"cross-data-set test {metric.upper()}", xlabel="tested on", ylabel="trained on")
    fig.tight_layout()
    return fig
