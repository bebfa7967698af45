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
and a two-sided Wilcoxon signed-rank test (the rule's test) and a sign test
(shown beside it) of the deltas.

Minimum rounds (:data:`MIN_ROUNDS`), below which a statistic is not shown
but said in words (:func:`too_few_rounds`):

* a range (min-max) needs 2 rounds;
* an IQR needs 4 (with fewer, the quartiles are interpolations between the
  few values themselves);
* a box plot needs 5 (a box, whiskers beyond it and a median inside);
* the Wilcoxon signed-rank test and the sign test need 6: with n rounds the
  smallest two-sided p either can reach is 2 / 2**n, which is 0.0625 for
  n = 5, so below 6 rounds no outcome could be significant at 0.05.

The book's one decision rule (:func:`decision_rule` states it, chapter 11
prints it; :func:`decide` applies it) serves every claim of the form "A beats
B" or "X changes Y", in every chapter: the two arms are **paired by split**
(round r of each tests the same images), each round gives one paired
difference, and the claim is decided on those differences by a **two-sided
Wilcoxon signed-rank test** (exact for these few rounds), p < :data:`SIGNIFICANCE`,
with at least :data:`MIN_ROUNDS_FOR_TESTS` (6) rounds. The signed-rank test
weighs each round by the size of its difference, where a sign test counts
only directions: with a sign test, 6 rounds must be unanimous and 10 allow
one contrary round however small, so a claim whose per-round differences
are mostly large and once slightly negative flips with the training noise
of a single round (measured: a bf16 and an fp32 build of the same book
disagreed on a +0.048 effect, 6 of 6 against 5 of 6 rounds). No test makes a
claim robust whose effect is as small as one round's training noise: at 10
rounds, bf16, fp32 and AVX2 builds still disagreed on three such claims
(``benchmarks/results/edition_agreement.json``); only more rounds decide
those. The verdict is "supported" when
the test is significant and the differences favour the claim, "contradicted"
when it is significant the other way, "not supported" otherwise, and
"untested (N rounds; the rule needs 6)" with fewer rounds, however the rounds
came out. The number quoted with a verdict is the paired quantity, the median
of the per-round differences; where the difference of the two medians has the
other sign, the sentence says both and why (:func:`medians_disagree`). A claim
may add an effect-size floor to its own definition (the learning-rate
chapter's :data:`iqalib.analysis.lr_sweep.LR_JUMP`), stated with the claim.

:func:`pair_verdict` applies the rule to a :func:`combine_rounds` row;
:func:`comparison_sentences` and :func:`comparison_claim` put it into words
and into the claims table.
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

SIGNIFICANCE = 0.05  # a p-value below this is significant: per round (bootstrap) and across rounds (signed-rank test)
MIN_ROUNDS = {"range": 2, "iqr": 4, "boxplot": 5, "sign_test": 6, "wilcoxon": 6}
MIN_ROUNDS_FOR_TESTS = MIN_ROUNDS["wilcoxon"]  # the decision rule's minimum number of rounds
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


def signed_rank_test(values) -> tuple[float, str]:
    """Two-sided Wilcoxon signed-rank test of ``values`` against 0 (zeros dropped), the decision rule's test.

    Exact for these few rounds unless two differences tie in size (then scipy's normal approximation).
    Returns ``(p, "")``, or ``(NaN, reason)`` with fewer than :data:`MIN_ROUNDS_FOR_TESTS` values.
    """
    values = np.asarray(values, dtype=np.float64)
    note = too_few_rounds("wilcoxon", len(values))
    if note:
        return np.nan, note
    nonzero = values[values != 0]
    if not len(nonzero):
        return 1.0, ""
    return float(stats.wilcoxon(nonzero, zero_method="wilcox").pvalue), ""


# ------------------------------------------------------------------ the book's one decision rule

def decision_rule() -> str:
    """The book's one decision rule, in the one sentence that states it (chapter 11 prints it)."""
    return ("Every claim that A beats B (or that X changes Y) is decided by one rule: both arms are trained and "
            "tested on the same splits, each round gives one paired difference, and a two-sided Wilcoxon "
            "signed-rank test of those differences across rounds decides (it weighs each round by the size of its "
            "difference, so one narrow contrary round does not outvote the rest as it would in a sign test). "
            f"With p < {SIGNIFICANCE:g} the claim is supported (or "
            f"contradicted, when the rounds favour the other side), with p >= {SIGNIFICANCE:g} it is not "
            f"supported, and with fewer than {MIN_ROUNDS_FOR_TESTS} rounds it is untested, because with n rounds "
            "the smallest two-sided p is 2 / 2^n (0.0625 for 5 rounds). The number quoted is the median of the "
            "paired differences.")


def rule_verdict(rounds: int, won: int, lost: int, p: float) -> str:
    """The verdict of :func:`decision_rule` from ``rounds`` paired differences, ``won`` of them for the claim,
    ``lost`` against it (ties are neither) and their two-sided signed-rank test ``p``
    (:func:`signed_rank_test`). Significant at these few rounds means the minority's ranks are few and
    small, so the majority of rounds gives the direction."""
    if rounds < MIN_ROUNDS_FOR_TESTS or not np.isfinite(p):
        return f"untested ({counted(rounds, 'round')}; the rule needs {MIN_ROUNDS_FOR_TESTS})"
    if p < SIGNIFICANCE:
        return "supported" if won > lost else "contradicted"
    return (f"not supported (signed-rank test p = {p:.2f}; {won} of {counted(rounds, 'round')} for it, "
            f"{lost} against)")


def decide(deltas, *, lower_is_better: bool = False) -> dict:
    """:func:`decision_rule` applied to per-round paired differences (claim side minus the other).

    Returns ``rounds``, ``median_delta`` (the paired quantity), ``won`` /
    ``lost`` (rounds for / against the claim; for ``lower_is_better`` a
    negative difference is for it), ``p`` (the rule's signed-rank test, NaN below the rule's rounds),
    ``sign_p`` (the sign test, for comparison) and ``verdict`` (:func:`rule_verdict`).
    """
    deltas = np.asarray(deltas, dtype=np.float64)
    sign = -1.0 if lower_is_better else 1.0
    won, lost = int((sign * deltas > 0).sum()), int((sign * deltas < 0).sum())
    p, _ = signed_rank_test(deltas)
    return {"rounds": len(deltas), "median_delta": float(np.median(deltas)) if len(deltas) else np.nan,
            "won": won, "lost": lost, "p": p, "sign_p": sign_test(deltas)[0],
            "verdict": rule_verdict(len(deltas), won, lost, p)}


def medians_disagree(median_delta: float, median_a: float, median_b: float, name: str = "SRCC") -> str:
    """"" when the paired median and the difference of the medians agree in sign, else a clause saying both and why.

    The median of the per-round differences pairs each round of A with the
    same round (the same split) of B; the difference of the medians compares
    A's middle round with B's middle round, which may be different splits. A
    split that is easy for both arms moves both medians, not the paired
    differences, so the two can have opposite signs; claims are decided on the
    paired differences (:func:`decision_rule`).
    """
    gap = median_a - median_b
    if not (np.isfinite(gap) and np.isfinite(median_delta)) or np.sign(gap) == np.sign(median_delta) or 0 in (
            np.sign(gap), np.sign(median_delta)):
        return ""
    return (f"the medians differ the other way ({median_a:.3f} - {median_b:.3f} = {gap:+.3f}) because they "
            f"compare the middle round of each arm, which can be different splits, while the median Δ{name} "
            f"({median_delta:+.3f}) compares each split with itself; the claim is decided on the paired differences")


def combine_rounds(per_round: pd.DataFrame) -> dict:
    """Summary of one A-vs-B comparison over rounds (rows of :func:`paired_round_differences`).

    ``median_delta`` (the paired quantity), ``mean_delta``, ``a_better`` (share of rounds with
    delta > 0; for rmse, < 0), ``won`` / ``lost`` (rounds for and against A), ``median_a`` /
    ``median_b`` (each arm's median over rounds), ``verdict`` (:func:`decision_rule` on "A beats
    B"), ``rounds_significant`` (share of rounds whose
    bootstrap p < :data:`SIGNIFICANCE`), and across rounds ``wilcoxon_p`` (the rule's two-sided
    signed-rank test) and ``sign_p`` (two-sided binomial sign test, ties dropped) when there are at least
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
    decision = decide(deltas, lower_is_better=lower_is_better)
    return {
        "a": per_round["a"].iloc[0], "b": per_round["b"].iloc[0], "metric": per_round["metric"].iloc[0],
        "rounds": len(deltas), "median_delta": decision["median_delta"], "mean_delta": float(deltas.mean()),
        "a_better": float(wins.mean()), "won": decision["won"], "lost": decision["lost"],
        "median_a": float(per_round["value_a"].median()) if "value_a" in per_round else np.nan,
        "median_b": float(per_round["value_b"].median()) if "value_b" in per_round else np.nan,
        # NaN where no round could be tested (too few sources: see ``resampled``)
        "rounds_significant": (float((per_round["p_value"] < SIGNIFICANCE).mean()) if per_round["p_value"].notna().any()
                               else np.nan),
        "sign_p": decision["sign_p"], "wilcoxon_p": decision["p"],
        "tests_note": too_few_rounds("sign_test", len(deltas)) or "", "verdict": decision["verdict"],
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
    """:func:`decision_rule`'s verdict on "A beats B" from a :func:`combine_rounds` row."""
    rounds = int(row["rounds"])
    won = int(row["won"]) if "won" in row else int(round(row["a_better"] * rounds))
    lost = int(row["lost"]) if "lost" in row else rounds - won
    return rule_verdict(rounds, won, lost, row.get("wilcoxon_p", np.nan))


def _bootstrap_words(row: Mapping) -> str:
    """How many rounds' own bootstrap found A and B apart, or why none could be tested."""
    rounds = int(row["rounds"])
    if np.isfinite(row.get("rounds_significant", np.nan)):
        significant = int(round(row["rounds_significant"] * rounds))
        return (f"within a round (bootstrap {row.get('resampled') or 'by image'}) p < {SIGNIFICANCE:g} in "
                f"{significant} of {rounds}")
    return f"no bootstrap test within a round ({row.get('resampled') or 'too few sources'})"


def comparison_sentences(summary: pd.DataFrame, labels: Mapping[str, str] | None = None,
                         changes: Mapping[tuple[str, str], str] | None = None) -> list[str]:
    """One sentence per compared pair (rows of :func:`compare_runs`'s summary)."""
    labels, changes = labels or {}, changes or {}
    out = []
    for _, row in summary.iterrows():
        a, b = labels.get(row["a"], row["a"]), labels.get(row["b"], row["b"])
        what = changes.get((row["a"], row["b"]))
        rounds = int(row["rounds"])
        won = int(row["won"]) if "won" in row else int(round(row["a_better"] * rounds))
        metric = str(row.get("metric", "srcc")).upper()
        disagree = medians_disagree(row["median_delta"], row.get("median_a", np.nan), row.get("median_b", np.nan),
                                    metric)
        out.append(f"{a} vs {b}" + (f" (changes {what})" if what else "")
                   + f": median Δ{metric} {row['median_delta']:+.3f} (paired by split), {a} better in {won} of "
                   f"{counted(rounds, 'round')}" + (f"; {disagree}" if disagree else "")
                   + f"; {_bootstrap_words(row)}; verdict: {pair_verdict(row)}.")
    return out


def comparison_claim(claim: str, row: Mapping, results_a: Mapping | None = None,
                     results_b: Mapping | None = None) -> dict:
    """A claim row for "A beats B" from one :func:`combine_rounds` summary row (and the arms' results)."""
    rounds = int(row["rounds"])
    edition = (f"median ΔSRCC {row['median_delta']:+.3f} (paired by split) over {rounds} rounds" if rounds > 1
               else f"ΔSRCC {row['median_delta']:+.3f}, one round")
    if results_a is not None and results_b is not None:
        a = [r["srcc"] for r in results_a["test_per_round"]]
        b = [r["srcc"] for r in results_b["test_per_round"]]
        edition = (f"SRCC {results_a['name']} {median_and_range(a)} vs {results_b['name']} "
                   f"{median_and_range(b)}; {edition}")
        disagree = medians_disagree(row["median_delta"], float(np.median(a)), float(np.median(b)))
        edition += f"; {disagree}" if disagree else ""
    return claim_row(claim, edition, pair_verdict(row))
