"""Figures and tables of the ablation (notebook 04)."""
from __future__ import annotations

import matplotlib.pyplot as plt
import pandas as pd
import seaborn as sns


def plot_ablation(rounds: pd.DataFrame, data_label: str, metric: str = "srcc"):
    """Test ``metric`` per configuration over rounds: box (median, quartiles) with every round as a dot.

    ``rounds`` is :func:`iqalib.analysis.ablation_rounds` output.
    """
    order = list(dict.fromkeys(rounds["label"]))
    fig, ax = plt.subplots(figsize=(8, 0.9 * len(order) + 1.6))
    sns.boxplot(data=rounds, y="label", x=metric, order=order, hue="label", palette="Set2", legend=False,
                showfliers=False, ax=ax)
    sns.stripplot(data=rounds, y="label", x=metric, order=order, color="k", size=5, alpha=0.7, ax=ax)
    medians = rounds.groupby("label")[metric].median()
    for y, label in enumerate(order):
        ax.text(medians[label], y - 0.42, f"median {medians[label]:.3f}", ha="center", fontsize=8)
    n_rounds = rounds.groupby("label").size().max()
    ax.set_xlabel(f"test {metric.upper()} ({n_rounds} round{'s' if n_rounds > 1 else ''}, same splits)")
    ax.set_ylabel("")
    ax.set_title(f"Ablation - {data_label}")
    fig.tight_layout()
    return fig


def format_ablation_table(table: pd.DataFrame, metric_names=("srcc", "plcc")) -> pd.DataFrame:
    """``median (IQR x, range [min, max])`` strings per metric, from :func:`iqalib.analysis.ablation_table`."""
    out = table[["model", "rounds"]].copy()
    for metric in metric_names:
        out[metric.upper()] = [
            f"{r[f'{metric}_median']:.3f} (IQR {r[f'{metric}_iqr']:.3f}, range [{r[f'{metric}_min']:.3f}, "
            f"{r[f'{metric}_max']:.3f}])" for _, r in table.iterrows()]
    return out


def format_comparisons(summary: pd.DataFrame) -> pd.DataFrame:
    """The paired-test summary (:func:`iqalib.analysis.compare_runs`) with readable labels and rounding."""
    from iqalib.analysis.ablation import ABLATION_LABELS

    out = summary.copy()
    out.insert(0, "comparison", [f"{ABLATION_LABELS.get(a, a)} vs {ABLATION_LABELS.get(b, b)}"
                                 for a, b in zip(out.pop("a"), out.pop("b"))])
    return out.set_index("comparison").round(4)
