"""Figures and tables of the ablation (chapter 5, 05_ablations) and of any per-round comparison of runs."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from iqalib.analysis.ablation import ABLATION_LABELS
from iqalib.analysis.significance import MIN_ROUNDS, too_few_rounds


def plot_rounds(rounds: pd.DataFrame, data_label: str, metric: str = "srcc", order=None, title: str = "Ablation"):
    """Test ``metric`` per configuration: every round a dot, the dots of one round joined by a line.

    ``rounds`` has one row per configuration and round (``label``, ``round``,
    ``metric``; :func:`iqalib.analysis.ablation_rounds`). Rounds share their
    test split across configurations, so a line shows how one split ranks
    them. The median is marked per configuration; a box (quartiles) is drawn
    only from :data:`~iqalib.analysis.significance.MIN_ROUNDS` ``["boxplot"]`` rounds on.
    """
    order = list(order or dict.fromkeys(rounds["label"]))
    n_rounds = int(rounds.groupby("label").size().max())
    fig, ax = plt.subplots(figsize=(8, 0.8 * len(order) + 1.8))
    y = {label: i for i, label in enumerate(order)}
    if n_rounds >= MIN_ROUNDS["boxplot"]:
        values = [rounds.loc[rounds["label"] == label, metric].to_numpy() for label in order]
        ax.boxplot(values, positions=range(len(order)), orientation="horizontal", widths=0.5, showfliers=False,
                   patch_artist=True, boxprops={"facecolor": "0.92", "edgecolor": "0.6"},
                   medianprops={"color": "0.6"}, whiskerprops={"color": "0.6"}, capprops={"color": "0.6"})
    palette = sns.color_palette("colorblind", n_colors=max(n_rounds, 1))
    for k, (r, part) in enumerate(rounds.groupby("round")):
        part = part.set_index("label").reindex([label for label in order if label in set(part["label"])])
        ax.plot(part[metric], [y[label] for label in part.index], "-o", color=palette[k % len(palette)],
                alpha=0.8, markersize=6, label=f"round {r}")
    medians = rounds.groupby("label")[metric].median()
    ax.scatter([medians[label] for label in order], list(range(len(order))), marker="|", s=400, color="k",
               zorder=5, label="median")
    ax.set_yticks(range(len(order)), order)
    ax.set_ylim(len(order) - 0.5, -0.5)
    note = too_few_rounds("boxplot", n_rounds)
    ax.set_xlabel(f"test {metric.upper()} ({n_rounds} round{'s' if n_rounds != 1 else ''}, same splits)"
                  + (f"\nno box: {note}" if note else ""))
    ax.set_ylabel("")
    ax.set_title(f"{title} - {data_label}")
    ax.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.tight_layout()
    return fig


def plot_ablation(rounds: pd.DataFrame, data_label: str, metric: str = "srcc"):
    """:func:`plot_rounds` of the ablation's configurations (``rounds``: :func:`iqalib.analysis.ablation_rounds`)."""
    return plot_rounds(rounds, data_label, metric, title="Ablation")


def _spread(row: pd.Series, metric: str) -> str:
    rounds = int(row["rounds"])
    text = f"{row[f'{metric}_median']:.3f}"
    if rounds < MIN_ROUNDS["range"]:
        return f"{text} (one round)"
    iqr = (f"IQR {row[f'{metric}_iqr']:.3f}, " if too_few_rounds("iqr", rounds) is None else "")
    return f"{text} ({iqr}range {row[f'{metric}_min']:.3f} to {row[f'{metric}_max']:.3f})"


def format_ablation_table(table: pd.DataFrame, metric_names=("srcc", "plcc")) -> pd.DataFrame:
    """``median (IQR x, range a to b)`` strings per metric, from :func:`iqalib.analysis.ablation_table`.

    The IQR is left out below 4 rounds and the range below 2 (:data:`MIN_ROUNDS`);
    ``frame.attrs["note"]`` says why in words.
    """
    out = table[["model", "rounds"]].copy()
    for metric in metric_names:
        out[metric.upper()] = [_spread(r, metric) for _, r in table.iterrows()]
    rounds = int(table["rounds"].min())
    out.attrs["note"] = too_few_rounds("iqr", rounds) or ""
    return out


def format_comparisons(summary: pd.DataFrame) -> pd.DataFrame:
    """The paired-test summary (:func:`iqalib.analysis.compare_runs`), narrow, rounded and in words.

    Ablation arms are named by their letter ((a)...(d)); the sign and
    Wilcoxon p-values share one column, and below their minimum number of
    rounds it says why they are missing (never NaN).
    """
    def short(name):
        return ABLATION_LABELS[name].split(" ")[0] if name in ABLATION_LABELS else name

    rows = []
    for _, r in summary.iterrows():
        reason = too_few_rounds("sign_test", int(r["rounds"]))
        tests = reason or f"{r['sign_p']:.4f} / {r['wilcoxon_p']:.4f}"
        rows.append({"comparison": f"{short(r['a'])} vs {short(r['b'])}", "rounds": int(r["rounds"]),
                     f"median Δ{r['metric'].upper()}": round(float(r["median_delta"]), 4),
                     "A better (share of rounds)": round(float(r["a_better"]), 2),
                     "bootstrap p < 0.05 (share)": round(float(r["rounds_significant"]), 2),
                     "sign / Wilcoxon p": tests, "resampled": r.get("resampled", "")})
    return pd.DataFrame(rows).set_index("comparison")
