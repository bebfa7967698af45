"""Figures of the attention analysis (chapter 7, 07_attention)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from iqalib.analysis.attention import STAGE_COLUMNS, UNIFORM_WEIGHT, AttentionStatistics
from iqalib.analysis.heatmap import HeatMap
from iqalib.analysis.words import interval_words

STAGE_LABELS = [f"stage {i + 1}" for i in range(len(STAGE_COLUMNS))]


def _title(selected_row) -> str:
    return f"{selected_row['role']} MOS: {selected_row['mos']:.1f}, predicted {selected_row['pred']:.1f}"


def plot_stage_weights(selected: pd.DataFrame, heatmaps: dict[str, HeatMap], data_label: str):
    """Each selected image (thumbnail) beside a bar chart of its four stage weights."""
    fig, axes = plt.subplots(len(selected), 2, figsize=(9, 2.8 * len(selected)),
                             gridspec_kw={"width_ratios": [1.2, 1]}, squeeze=False)
    top = float(selected[list(STAGE_COLUMNS)].to_numpy().max())
    for (image_ax, bar_ax), (_, row) in zip(axes, selected.iterrows()):
        image_ax.imshow(heatmaps[row["role"]].image)
        image_ax.set_title(_title(row), fontsize=10)
        image_ax.axis("off")
        weights = row[list(STAGE_COLUMNS)].to_numpy(dtype=float)
        sns.barplot(x=STAGE_LABELS, y=weights, hue=STAGE_LABELS, palette="viridis", legend=False, ax=bar_ax)
        bar_ax.axhline(UNIFORM_WEIGHT, color="grey", linestyle="--", linewidth=1, label="uniform (1/4)")
        bar_ax.set_ylim(0, max(0.3, 1.15 * top))
        bar_ax.set_ylabel("attention weight")
        for x, w in enumerate(weights):
            bar_ax.text(x, w, f"{w:.3f}", ha="center", va="bottom", fontsize=8)
    # outside the bars: a stage with most of the weight would run into a legend inside the axes
    axes[0, 1].legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    fig.suptitle(f"Stage attention of the lowest, median and highest MOS test images - {data_label}")
    fig.tight_layout()
    return fig


HEATMAP_CMAP = "viridis"  # perceptually uniform, readable in grey and by colour-blind readers


def plot_heatmaps(selected: pd.DataFrame, heatmaps: dict[str, HeatMap], data_label: str):
    """Per selected image: the image, its attention-weighted stage-energy map, its patch-wise quality map.

    Both map types use one colour map (:data:`HEATMAP_CMAP`) and one scale per
    column, shared by all images (a colour means the same value in every
    row), with one colour bar per column.
    """
    rows = [heatmaps[row["role"]] for _, row in selected.iterrows()]
    energy_range = (min(float(h.attention_energy.min()) for h in rows),
                    max(float(h.attention_energy.max()) for h in rows))
    quality_range = (min(float(h.quality.min()) for h in rows), max(float(h.quality.max()) for h in rows))
    # constrained layout keeps every title clear of the row above and makes room for the colour bars
    fig, axes = plt.subplots(len(selected), 3, figsize=(12, 3.2 * len(selected) + 1.0), squeeze=False,
                             layout="constrained")
    shown = {}
    for (image_ax, energy_ax, quality_ax), (_, row), heat in zip(axes, selected.iterrows(), rows):
        image_ax.imshow(heat.image)
        image_ax.set_title(_title(row), fontsize=10)
        energy_ax.imshow(heat.image)
        shown["energy"] = energy_ax.imshow(heat.attention_energy, cmap=HEATMAP_CMAP, alpha=0.65,
                                           vmin=energy_range[0], vmax=energy_range[1])
        energy_ax.set_title("attention-weighted stage energy", fontsize=10)
        shown["quality"] = quality_ax.imshow(heat.quality, cmap=HEATMAP_CMAP, vmin=quality_range[0],
                                             vmax=quality_range[1])
        quality_ax.set_title(f"patch-wise quality ({len(heat.boxes)} crops)", fontsize=10)
        for ax in (image_ax, energy_ax, quality_ax):
            ax.axis("off")
    fig.suptitle(f"Where the model looks - {data_label}")
    for column, key, label in ((1, "energy", "stage energy x attention (shared scale)"),
                               (2, "quality", "predicted score per crop (shared scale)")):
        fig.colorbar(shown[key], ax=list(axes[:, column]), orientation="horizontal", fraction=0.04, pad=0.01,
                     label=label)
    return fig


def plot_weights_vs_mos(stats: AttentionStatistics, data_label: str):
    """Stage weights by MOS tercile (box + points) and attention concentration against MOS."""
    per_image = stats.per_image
    long = per_image.melt(id_vars=["mos", "mos_tercile"], value_vars=list(STAGE_COLUMNS),
                          var_name="stage", value_name="weight")
    long["stage"] = long["stage"].map(dict(zip(STAGE_COLUMNS, STAGE_LABELS)))
    fig, (box_ax, scatter_ax) = plt.subplots(1, 2, figsize=(12, 4.2), gridspec_kw={"width_ratios": [1.4, 1]})
    sns.boxplot(data=long, x="stage", y="weight", hue="mos_tercile", showfliers=False, ax=box_ax)
    sns.stripplot(data=long, x="stage", y="weight", hue="mos_tercile", dodge=True, size=2.5, alpha=0.5,
                  legend=False, ax=box_ax, palette="dark:k")
    box_ax.axhline(UNIFORM_WEIGHT, color="grey", linestyle="--", linewidth=1)
    box_ax.legend(title="MOS tercile", fontsize=8)
    box_ax.set_title(f"Stage weights by MOS tercile ({stats.n_images} test images)")
    row = stats.correlations.loc["concentration"]
    sns.scatterplot(data=per_image, x="mos", y="concentration", hue="mos_tercile", s=16, alpha=0.7,
                    legend=False, ax=scatter_ax)
    scatter_ax.plot(stats.terciles["mos"], stats.terciles["concentration"], "k-o", label="tercile means")
    scatter_ax.legend(fontsize=8)
    interval = interval_words(row["low"], row["high"], "too few sources")
    srcc = f"SRCC {row['srcc']:+.3f}" if np.isfinite(row["srcc"]) else "SRCC undefined (constant input)"
    scatter_ax.set_title(f"Concentration vs MOS: {srcc} "
                         + (interval if interval.startswith("[") else "(no interval: too few sources)"), fontsize=10)
    scatter_ax.set_ylabel("concentration (1 - entropy / log 4)")
    fig.suptitle(f"Attention over the whole test set - {data_label}")
    fig.tight_layout()
    return fig


def _unit_and_reason(resampling: str) -> tuple[str, str]:
    """("by source (3 sources)", "the images come from 3 sources, ...") from an AttentionStatistics.resampling."""
    unit, _, why = resampling.partition(": no interval, ")
    return unit.split(" (")[0], why or "too few sources"


def correlation_table(stats: AttentionStatistics) -> pd.DataFrame:
    """Spearman correlations with MOS and their intervals (the column name says what was resampled),
    rounded for display; where no interval could be computed the cell says why."""
    level = round(100 * (1 - stats.alpha))
    unit, why = _unit_and_reason(stats.resampling)
    table = stats.correlations[["srcc"]].round(3)
    table[f"{level}% CI ({unit})"] = [interval_words(r["low"], r["high"], why)
                                      for _, r in stats.correlations.iterrows()]
    return table


def format_by_round(by_round: pd.DataFrame, alpha: float = 0.05) -> pd.DataFrame:
    """:func:`iqalib.analysis.attention.concentration_by_round` for display: counts as integers, the interval
    in one cell (or why there is none), a collapsed model named by its stage."""
    level = round(100 * (1 - alpha))
    return pd.DataFrame({
        "test images": by_round["n"].astype(int),
        "Spearman(concentration, MOS)": by_round["srcc"].round(3),
        f"{level}% CI": [interval_words(r["low"], r["high"], "too few sources") for _, r in by_round.iterrows()],
        "mean largest weight": by_round["mean_max_weight"].round(3),
        "attention collapsed": [f"onto stage {c[1:]}" if c else "no" for c in by_round["collapsed"]],
    }, index=by_round.index)


def plot_concentration_by_round(by_round: pd.DataFrame, data_label: str):
    """Spearman(concentration, MOS) of each round's model with its interval; collapsed rounds in grey."""
    fig, ax = plt.subplots(figsize=(7, 3.2))
    rounds = by_round.index.to_numpy()
    srcc = by_round["srcc"].to_numpy(dtype=float)
    low, high = by_round["low"].to_numpy(dtype=float), by_round["high"].to_numpy(dtype=float)
    has_interval = np.isfinite(low) & np.isfinite(high)
    left_out = (by_round["collapsed"] != "").to_numpy()
    for mask, color, label in ((~left_out, "C0", "round's model"), (left_out, "grey", "attention collapsed")):
        if not mask.any():
            continue
        errors = np.where(has_interval[mask], [srcc[mask] - low[mask], high[mask] - srcc[mask]], 0.0)
        ax.errorbar(rounds[mask], srcc[mask], yerr=errors, fmt="o", color=color, capsize=3, label=label)
    ax.axhline(0, color="grey", linestyle="--", linewidth=1)
    ax.set_xticks(rounds)
    ax.set_xlabel("round")
    ax.set_ylabel("Spearman(concentration, MOS)")
    shown = ("95% intervals" if has_interval.all() else
             "95% intervals where the test images allow one" if has_interval.any() else
             "no intervals: too few sources to resample")
    ax.set_title(f"The claim, model by model ({shown}) - {data_label}", fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


__all__ = ["HEATMAP_CMAP", "correlation_table", "format_by_round", "plot_concentration_by_round", "plot_heatmaps",
           "plot_stage_weights", "plot_weights_vs_mos"]
