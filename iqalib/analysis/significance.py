"""Is configuration A better than B? Paired tests over the same splits.

Two runs with the same data split seed test the same images in every round.
Per round, :func:`paired_round_differences` joins their test predictions on
the image and runs :func:`iqalib.metrics.paired_bootstrap_difference` (both
models scored on the same resamples, so the images' shared difficulty
cancels out). Resamples are drawn **by source** where the data set records
one (the demo set's source photograph, KADID-10k's reference: images of one
source are not independent) and by image otherwise; the ``resampled`` column
says which (:func:`source_groups`). :func:`combine_rounds` then looks across
rounds: the per-round deltas' median, the share of rounds where A beats B,
and a two-sided sign test and a Wilcoxon signed-rank test of the deltas.

Minimum rounds (:data:`MIN_ROUNDS`), below which a statistic is not shown
but said in words (:func:`too_few_rounds`):

* a range (min-max) needs 2 rounds;
* an IQR needs 4 (with fewer, the quartiles are interpolations between the
  few values themselves);
* a box plot needs 5 (a box, whiskers beyond it and a median inside);
* the sign test and the Wilcoxon test need 6: with n rounds the smallest
  two-sided p either can reach is 2 / 2**n, which is 0.0625 for n = 5, so
  below 6 rounds no outcome could be significant at 0.05.

:func:`pair_verdict` turns a :func:`combine_rounds` row into the book's
verdict on "A beats B": with at least 6 rounds the sign test across rounds
decides (p < :data:`SIGNIFICANCE`); with fewer, "every round, each
significant" is the most that can be said, and the verdict says that no test
across rounds was possible. :func:`comparison_sentences` and
:func:`comparison_claim` put it into words and into the claims table.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Mapping

import numpy as np
import pandas as pd
from scipy import stats

from iqalib import metrics
from iqalib.analysis.claims import claim_row
from iqalib.analysis.words import counted, median_and_range
from iqalib.data.datasets import load_dataset
from iqalib.errors import DataError
from iqalib.results import predictions_frame

SIGNIFICANCE = 0.05  # a p-value below this is significant: per round (bootstrap) and across rounds (sign test)
MIN_ROUNDS = {"range": 2, "iqr": 4, "boxplot": 5, "sign_test": 6, "wilcoxon": 6}
MIN_ROUNDS_FOR_TESTS = MIN_ROUNDS["sign_test"]
_STATISTIC_NAMES = {"range": "a range", "iqr": "an IQR", "boxplot": "a box plot",
                    "sign_test": "a sign test", "wilcoxon": "a Wilcoxon test"}


def too_few_rounds(statistic: str, rounds: int) -> str | None:
    """None when ``rounds`` suffice for ``statistic`` (a :data:`MIN_ROUNDS` key), else the reason in words."""
    if statistic not in MIN_ROUNDS:
        raise ValueError(f"unknown statistic {statistic!r}; choose one of {sorted(MIN_ROUNDS)}")
    need = MIN_ROUNDS[statistic]
    if rounds >= need:
        return None
    return f"{_STATISTIC_NAMES[statistic]} needs at least {need} rounds, this run has {rounds}"


def source_groups(run_dir: str | Path) -> pd.Series | None:
    """Source label of each test image of a run (index: image), or None when images have no shared source.

    Read from the run's data set (the configuration stored in
    ``round_0/results.json``): its ``group`` column, which the demo set fills
    with the source photograph and KADID-10k with the reference. Sets without
    one (LIVE-C, KonIQ-10k) give every image its own group: None.
    """
    results = Path(run_dir) / "round_0" / "results.json"
    if not results.is_file():
        return None
    data = json.loads(results.read_text())["config"]["data"]
    table = load_dataset(data["name"], data["root"], **(data.get("options") or {}))
    groups = table.frame.set_index("image")["group"].astype(str)
    return groups if groups.nunique() < len(groups) else None


def _round_predictions(run) -> dict[int, pd.DataFrame]:
    """``{round: predictions (image, mos, pred)}`` from a run folder or a predictions frame."""
    if isinstance(run, pd.DataFrame):
        frame = run
    else:
        if not any(Path(run).glob("round_*/predictions.csv")):
            raise DataError(f"{run}: no round_*/predictions.csv; train the run first (run_or_load)")
        frame = predictions_frame(run)
    if "round" not in frame:
        frame = frame.assign(round=0)
    return {int(r): part for r, part in frame.groupby("round")}


def paired_round_differences(run_a, run_b, *, metric: str = "srcc", n_boot: int = 1000, alpha: float = 0.05,
                             seed: int = 0, name_a: str = "a", name_b: str = "b", groups="auto") -> pd.DataFrame:
    """Per round: ``metric`` of A and of B on their common test images, ``delta`` = A - B, CI, p-value.

    ``run_a`` / ``run_b`` are run folders or predictions frames (``image, mos,
    pred[, round]``, as :func:`iqalib.results.predictions_frame` gives).
    Rounds present in both are compared; rounds whose test images differ
    (another split seed) raise a DataError. For ``rmse`` a negative delta means A is better.
    ``groups`` maps image names to their source (a Series or dict); ``"auto"``
    reads it from run A's data set (:func:`source_groups`; None for frames),
    None resamples images. Column ``resampled`` says which was done.
    """
    if isinstance(groups, str) and groups == "auto":
        groups = None if isinstance(run_a, pd.DataFrame) else source_groups(run_a)
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
        sources = None
        if groups is not None:
            sources = joined["image"].map(dict(groups))
            if sources.isna().any():
                missing = joined["image"][sources.isna()].iloc[0]
                raise DataError(f"round {r}: test image {missing!r} has no source in groups; "
                                "pass the groups of the run's data set (source_groups)")
            if sources.nunique() < 2:  # one source cannot be resampled: fall back to images, and say so
                sources = None
        test = metrics.paired_bootstrap_difference(joined["pred_a"], joined["pred_b"], joined["mos_a"],
                                                   metric=metric, n_boot=n_boot, alpha=alpha, seed=seed + r,
                                                   groups=sources)
        resampled = metrics.resampling_unit(sources, len(joined))
        reason = metrics.too_few_sources(sources)
        if reason:  # a handful of distinct resamples: no interval, no p-value, and the reason
            test = {**test, "low": np.nan, "high": np.nan, "p_value": np.nan}
            resampled += f": no test, {reason}"
        rows.append({"a": name_a, "b": name_b, "round": r, "n": len(joined), "metric": metric,
                     "resampled": resampled,
                     "value_a": _metric(metric, joined["pred_a"], joined["mos_a"]),
                     "value_b": _metric(metric, joined["pred_b"], joined["mos_a"]), **test})
    return pd.DataFrame(rows)


def _metric(metric: str, pred, mos) -> float:
    return {"srcc": metrics.srcc, "krcc": metrics.krcc, "plcc": metrics.plcc,
            "plcc_logistic": metrics.plcc_logistic, "rmse": metrics.rmse}[metric](pred, mos)


def sign_test(values) -> tuple[float, str]:
    """Two-sided binomial sign test of ``values`` against 0 (ties dropped) and why it was not run.

    Returns ``(p, "")``, or ``(NaN, reason)`` with fewer than
    :data:`MIN_ROUNDS_FOR_TESTS` values (:func:`too_few_rounds`).
    """
    values = np.asarray(values, dtype=np.float64)
    note = too_few_rounds("sign_test", len(values))
    if note:
        return np.nan, note
    nonzero = values[values != 0]
    return (float(stats.binomtest(int((nonzero > 0).sum()), len(nonzero)).pvalue) if len(nonzero) else 1.0), ""


def combine_rounds(per_round: pd.DataFrame) -> dict:
    """Summary of one A-vs-B comparison over rounds (rows of :func:`paired_round_differences`).

    ``median_delta``, ``mean_delta``, ``a_better`` (share of rounds with
    delta > 0; for rmse, < 0), ``rounds_significant`` (share of rounds whose
    bootstrap p < :data:`SIGNIFICANCE`), and across rounds ``sign_p`` (two-sided binomial
    sign test, ties dropped) and ``wilcoxon_p`` when there are at least
    :data:`MIN_ROUNDS_FOR_TESTS` rounds, else NaN, with the reason in
    ``tests_note`` (:func:`too_few_rounds`; empty when the tests ran), and
    ``resampled`` (how the per-round bootstraps resampled). ``rounds_significant``
    is NaN where no round had a bootstrap test (test images from fewer than
    :data:`iqalib.metrics.MIN_BOOTSTRAP_SOURCES` sources).
    """
    if per_round.empty:
        raise DataError("combine_rounds: no rounds to combine")
    deltas = per_round["delta"].to_numpy(dtype=np.float64)
    lower_is_better = per_round["metric"].iloc[0] == "rmse"
    wins = deltas < 0 if lower_is_better else deltas > 0
    sign_p, tests_note = sign_test(deltas)
    wilcoxon_p = np.nan
    if not tests_note:
        wilcoxon_p = float(stats.wilcoxon(deltas, zero_method="wilcox").pvalue) if deltas.any() else 1.0
    return {
        "a": per_round["a"].iloc[0], "b": per_round["b"].iloc[0], "metric": per_round["metric"].iloc[0],
        "rounds": len(deltas), "median_delta": float(np.median(deltas)), "mean_delta": float(deltas.mean()),
        "a_better": float(wins.mean()),
        # NaN where no round could be tested (too few sources: see ``resampled``)
        "rounds_significant": (float((per_round["p_value"] < SIGNIFICANCE).mean()) if per_round["p_value"].notna().any()
                               else np.nan),
        "sign_p": sign_p, "wilcoxon_p": wilcoxon_p,
        "tests_note": tests_note,
        "resampled": (", ".join(dict.fromkeys(per_round["resampled"])) if "resampled" in per_round else ""),
    }


def compare_runs(runs: Mapping[str, object], pairs: Iterable[tuple[str, str]], *, metric: str = "srcc",
                 n_boot: int = 1000, alpha: float = 0.05, seed: int = 0,
                 groups="auto") -> tuple[pd.DataFrame, pd.DataFrame]:
    """Paired comparisons of named runs: ``(per_round, summary)`` tidy frames.

    ``runs`` maps a configuration name to its run folder (or predictions
    frame); ``pairs`` lists (A, B) names. ``per_round`` has one row per pair
    and round (:func:`paired_round_differences`), ``summary`` one per pair
    (:func:`combine_rounds`). ``groups`` as in :func:`paired_round_differences`
    (``"auto"``: read once from the first pair's run A).
    """
    pairs = list(pairs)
    unknown = sorted({n for pair in pairs for n in pair} - set(runs))
    if unknown:
        raise DataError(f"compare_runs: no run named {unknown}; known: {sorted(runs)}")
    if isinstance(groups, str) and groups == "auto":
        first = runs[pairs[0][0]] if pairs else None
        groups = None if first is None or isinstance(first, pd.DataFrame) else source_groups(first)
    per_round = [paired_round_differences(runs[a], runs[b], metric=metric, n_boot=n_boot, alpha=alpha,
                                          seed=seed, name_a=a, name_b=b, groups=groups) for a, b in pairs]
    summary = pd.DataFrame([combine_rounds(frame) for frame in per_round])
    return pd.concat(per_round, ignore_index=True), summary


# ------------------------------------------------------------------ the verdict on "A beats B"

def pair_verdict(row: Mapping) -> str:
    """"supported", "contradicted" or "not supported" (with the reason) for "A beats B", from :func:`combine_rounds`."""
    lower_is_better = row.get("metric") == "rmse"
    sign = -1 if lower_is_better else 1
    if np.isfinite(row.get("sign_p", np.nan)):
        if row["sign_p"] < SIGNIFICANCE:
            return "supported" if sign * row["median_delta"] > 0 else "contradicted"
        return f"not supported (sign test p = {row['sign_p']:.2f})"
    if row.get("rounds_significant") == 1.0 and row["a_better"] in (0.0, 1.0):
        word = "supported" if row["a_better"] == 1.0 else "contradicted"
        return f"{word} in every round, untested across rounds ({row.get('tests_note') or 'too few rounds'})"
    if row.get("tests_note"):  # too few rounds for a test across them: no verdict either way
        return f"untested ({row['tests_note']})"
    return "not supported (no consistent difference)"


def comparison_sentences(summary: pd.DataFrame, labels: Mapping[str, str] | None = None,
                         changes: Mapping[tuple[str, str], str] | None = None) -> list[str]:
    """One sentence per compared pair (rows of :func:`compare_runs`'s summary)."""
    labels, changes = labels or {}, changes or {}
    out = []
    for _, row in summary.iterrows():
        a, b = labels.get(row["a"], row["a"]), labels.get(row["b"], row["b"])
        what = changes.get((row["a"], row["b"]))
        rounds = int(row["rounds"])
        won = int(round(row["a_better"] * rounds))
        if np.isfinite(row["rounds_significant"]):
            significant = int(round(row["rounds_significant"] * rounds))
            bootstrap = (f"bootstrap {row.get('resampled') or 'by image'}: p < {SIGNIFICANCE:g} in {significant} "
                         f"of {rounds}")
        else:
            bootstrap = f"no bootstrap test within a round ({row.get('resampled')})"
        out.append(f"{a} vs {b}" + (f" (changes {what})" if what else "")
                   + f": median ΔSRCC {row['median_delta']:+.3f}, {a} better in {won} of {counted(rounds, 'round')}; "
                   f"{bootstrap}; verdict: {pair_verdict(row)}.")
    return out


def comparison_claim(claim: str, row: Mapping, results_a: Mapping | None = None,
                     results_b: Mapping | None = None) -> dict:
    """A claim row for "A beats B" from one :func:`combine_rounds` summary row (and the arms' results)."""
    rounds = int(row["rounds"])
    edition = (f"median ΔSRCC {row['median_delta']:+.3f} over {rounds} rounds" if rounds > 1
               else f"ΔSRCC {row['median_delta']:+.3f}, one round")
    if results_a is not None and results_b is not None:
        a = [r["srcc"] for r in results_a["test_per_round"]]
        b = [r["srcc"] for r in results_b["test_per_round"]]
        edition = (f"SRCC {results_a['name']} {median_and_range(a)} vs {results_b['name']} "
                   f"{median_and_range(b)}; {edition}")
    return claim_row(claim, edition, pair_verdict(row))
