"""Figures and tables of the ablation (chapter 5, 05_ablations) and of any per-round comparison of runs."""
from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import seaborn as sns

from iqalib.analysis.ablation import ABLATION_LABELS
from iqalib.metrics import MIN_BOOTSTRAP_SOURCES
from iqalib.analysis.significance import MIN_ROUNDS, SIGNIFICANCE, pair_verdict, too_few_rounds
from iqalib.analysis.words import counted, interval_words


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

    Ablation arms are named by their letter ((a)...(d)); counts of rounds read
    "k of n"; the Wilcoxon (the rule's test) and sign-test p-values share one column, and where a
    statistic cannot be computed the cell says why (never NaN). ``verdict`` is
    the book's one rule on "A beats B" (:func:`iqalib.analysis.significance.pair_verdict`).
    """
    def short(name):
        return ABLATION_LABELS[name].split(" ")[0] if name in ABLATION_LABELS else name

    rows = []
    for _, r in summary.iterrows():
        rounds = int(r["rounds"])
        reason = too_few_rounds("wilcoxon", rounds)
        tests = (f"n/a ({counted(rounds, 'round')}; needs {MIN_ROUNDS['wilcoxon']})" if reason
                 else f"{r['wilcoxon_p']:.4f} / {r['sign_p']:.4f}")
        won = int(r["won"]) if "won" in r else int(round(r["a_better"] * rounds))
        if np.isfinite(r.get("rounds_significant", np.nan)):
            bootstrap = f"{int(round(r['rounds_significant'] * rounds))} of {rounds}"
        else:
            bootstrap = f"n/a (too few sources; needs {MIN_BOOTSTRAP_SOURCES})"
        rows.append({"comparison": f"{short(r['a'])} vs {short(r['b'])}", "rounds": rounds,
                     f"median Δ{r['metric'].upper()} (paired)": round(float(r["median_delta"]), 4),
                     "A better (rounds)": f"{won} of {rounds}",
                     f"bootstrap p < {SIGNIFICANCE:g} (rounds)": bootstrap,
                     "Wilcoxon / sign p": tests, "verdict": pair_verdict(r),
                     "resampled": str(r.get("resampled", "")).split(": no test")[0]})
    return pd.DataFrame(rows).set_index("comparison")


def format_per_round(per_round: pd.DataFrame) -> pd.DataFrame:
    """The per-round paired tests (:func:`iqalib.analysis.significance.paired_round_differences` rows), rounded
    and in words: the interval and p-value of a round without a bootstrap test say why (never NaN)."""
    def short(name):
        return ABLATION_LABELS[name].split(" ")[0] if name in ABLATION_LABELS else name

    rows = []
    for _, r in per_round.iterrows():
        unit, _, why = str(r.get("resampled", "")).partition(": no test, ")
        why = f"too few sources; needs {MIN_BOOTSTRAP_SOURCES}" if why else "no bootstrap test"
        metric = str(r["metric"]).upper()
        rows.append({"comparison": f"{short(r['a'])} vs {short(r['b'])}", "round": int(r["round"]),
                     "test images": int(r["n"]), f"{metric} A": round(float(r["value_a"]), 4),
                     f"{metric} B": round(float(r["value_b"]), 4), f"Δ{metric}": round(float(r["delta"]), 4),
                     "95% CI of Δ": interval_words(r["low"], r["high"], why, digits=4),
                     "bootstrap p": (f"{r['p_value']:.4f}" if np.isfinite(r["p_value"]) else f"n/a ({why})"),
                     "resampled": unit})
    return pd.DataFrame(rows).set_index(["comparison", "round"])
