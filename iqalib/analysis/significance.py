"""Is configuration A better than B? Paired tests over the same splits.

Two runs with the same data split seed test the same images in every round.
Per round, :func:`paired_round_differences` joins their test predictions on
the image and runs :func:`iqalib.metrics.paired_bootstrap_difference` (both
models scored on the same image resamples, so the images' shared difficulty
cancels out). :func:`combine_rounds` then looks across rounds: the
per-round deltas' median, the share of rounds where A beats B, and, with at
least :data:`MIN_ROUNDS_FOR_TESTS` rounds, a two-sided sign test and a
Wilcoxon signed-rank test of the deltas (SciPy). Fewer rounds leave those
p-values NaN. Even five rounds all won give only p = 2 / 2**5 = 0.0625 in
both two-sided tests; it takes six to go below 0.05.
"""
from __future__ import annotations

from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
from scipy import stats

from iqalib import metrics
from iqalib.errors import DataError

MIN_ROUNDS_FOR_TESTS = 5


def _round_predictions(run) -> dict[int, pd.DataFrame]:
    """``{round: predictions (image, mos, pred)}`` from a run folder or a predictions frame."""
    if isinstance(run, pd.DataFrame):
        frame = run
    else:
        from iqalib.experiments import predictions_frame

        if not any(Path(run).glob("round_*/predictions.csv")):
            raise DataError(f"{run}: no round_*/predictions.csv; train the run first (run_or_load)")
        frame = predictions_frame(run)
    if "round" not in frame:
        frame = frame.assign(round=0)
    return {int(r): part for r, part in frame.groupby("round")}


def paired_round_differences(run_a, run_b, *, metric: str = "srcc", n_boot: int = 1000, alpha: float = 0.05,
                             seed: int = 0, name_a: str = "a", name_b: str = "b") -> pd.DataFrame:
    """Per round: ``metric`` of A and of B on their common test images, ``delta`` = A - B, CI, p-value.

    ``run_a`` / ``run_b`` are run folders or predictions frames (``image, mos,
    pred[, round]``, as :func:`iqalib.experiments.predictions_frame` gives).
    Rounds present in both are compared; rounds whose test images differ
    (another split seed) raise a DataError. For ``rmse`` a negative delta means A is better.
    """
    rounds_a, rounds_b = _round_predictions(run_a), _round_predictions(run_b)
    common = sorted(set(rounds_a) & set(rounds_b))
    if not common:
        raise DataError(f"{name_a} and {name_b} share no round; compare runs with the same rounds")
    rows = []
    for r in common:
        a, b = rounds_a[r], rounds_b[r]
        if set(a["image"]) != set(b["image"]):
            raise DataError(f"round {r}: {name_a} and {name_b} were tested on different images; "
                            "run both with the same data.split_seed and fractions")
        joined = a[["image", "mos", "pred"]].merge(b[["image", "mos", "pred"]], on="image", suffixes=("_a", "_b"))
        if not np.allclose(joined["mos_a"], joined["mos_b"]):
            raise DataError(f"round {r}: {name_a} and {name_b} disagree on the MOS of the same images; "
                            "they must come from the same data set")
        test = metrics.paired_bootstrap_difference(joined["pred_a"], joined["pred_b"], joined["mos_a"],
                                                   metric=metric, n_boot=n_boot, alpha=alpha, seed=seed + r)
        rows.append({"a": name_a, "b": name_b, "round": r, "n": len(joined), "metric": metric,
                     "value_a": _metric(metric, joined["pred_a"], joined["mos_a"]),
                     "value_b": _metric(metric, joined["pred_b"], joined["mos_a"]), **test})
    return pd.DataFrame(rows)


def _metric(metric: str, pred, mos) -> float:
    return {"srcc": metrics.srcc, "krcc": metrics.krcc, "plcc": metrics.plcc,
            "plcc_logistic": metrics.plcc_logistic, "rmse": metrics.rmse}[metric](pred, mos)


def combine_rounds(per_round: pd.DataFrame) -> dict:
    """Summary of one A-vs-B comparison over rounds (rows of :func:`paired_round_differences`).

    ``median_delta``, ``mean_delta``, ``a_better`` (share of rounds with
    delta > 0; for rmse, < 0), ``rounds_significant`` (share of rounds whose
    bootstrap p < 0.05), and across rounds ``sign_p`` (two-sided binomial
    sign test, ties dropped) and ``wilcoxon_p`` when there are at least
    :data:`MIN_ROUNDS_FOR_TESTS` rounds, else NaN.
    """
    if per_round.empty:
        raise DataError("combine_rounds: no rounds to combine")
    deltas = per_round["delta"].to_numpy(dtype=np.float64)
    lower_is_better = per_round["metric"].iloc[0] == "rmse"
    wins = deltas < 0 if lower_is_better else deltas > 0
    nonzero = deltas[deltas != 0]
    sign_p = wilcoxon_p = np.nan
    if len(deltas) >= MIN_ROUNDS_FOR_TESTS:
        sign_p = (float(stats.binomtest(int((nonzero > 0).sum()), len(nonzero)).pvalue)
                  if len(nonzero) else 1.0)
        wilcoxon_p = float(stats.wilcoxon(deltas, zero_method="wilcox").pvalue) if len(nonzero) else 1.0
    return {
        "a": per_round["a"].iloc[0], "b": per_round["b"].iloc[0], "metric": per_round["metric"].iloc[0],
        "rounds": len(deltas), "median_delta": float(np.median(deltas)), "mean_delta": float(deltas.mean()),
        "a_better": float(wins.mean()), "rounds_significant": float((per_round["p_value"] < 0.05).mean()),
        "sign_p": sign_p, "wilcoxon_p": wilcoxon_p,
    }


def compare_runs(runs: Mapping[str, object], pairs: Iterable[tuple[str, str]], *, metric: str = "srcc",
                 n_boot: int = 1000, alpha: float = 0.05, seed: int = 0) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Paired comparisons of named runs: ``(per_round, summary)`` tidy frames.

    ``runs`` maps a configuration name to its run folder (or predictions
    frame); ``pairs`` lists (A, B) names. ``per_round`` has one row per pair
    and round (:func:`paired_round_differences`), ``summary`` one per pair
    (:func:`combine_rounds`).
    """
    pairs = list(pairs)
    unknown = sorted({n for pair in pairs for n in pair} - set(runs))
    if unknown:
        raise DataError(f"compare_runs: no run named {unknown}; known: {sorted(runs)}")
    per_round = [paired_round_differences(runs[a], runs[b], metric=metric, n_boot=n_boot, alpha=alpha,
                                          seed=seed, name_a=a, name_b=b) for a, b in pairs]
    summary = pd.DataFrame([combine_rounds(frame) for frame in per_round])
    return pd.concat(per_round, ignore_index=True), summary
