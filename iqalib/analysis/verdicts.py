""""What the numbers say": the sentences that close every chapter, chosen by rules from the run's numbers.

Nothing here is typed for a particular result: each function reads a
chapter's numbers and returns the sentences whose rule fires, including the
ones about what went wrong. The rules and their thresholds:

==========================  ==========================================================================
rule                        fires when
==========================  ==========================================================================
epoch-1 selection           a round with more than one epoch selected its first epoch
validation-test gap         the selected epoch's validation and test SRCC differ by >= :data:`GAP_LIMIT`
round spread                test SRCC over rounds spans >= :data:`SPREAD_LIMIT`
predictions off the scale   >= :data:`OUTSIDE_SHARE` of the predictions lie more than
                            :data:`OUTSIDE_MARGIN` of the MOS scale's width outside it
few sources                 a test split has fewer than :data:`FEW_SOURCES` source photographs
attention collapse          one stage weight >= :data:`COLLAPSE_WEIGHT` on more than
                            :data:`COLLAPSE_SHARE` of the images: the attention-vs-MOS test then
                            measures noise, so no verdict on the seed's claim is given
learning-rate jump          neighbouring rates within one decade move SRCC by >= :data:`LR_JUMP`,
                            the same way in every round (paired by split; :func:`lr_moves`)
cost inconsistency          a model with >= :data:`FLOPS_RATIO` x another's FLOPs is measured as fast,
                            or a model scores patches more slowly than it trains on them
pipeline above ceiling      a scoring pipeline is measured faster than the model alone
transfer                    SRCC on another set within :data:`TRANSFER_DROP` of the own test split
==========================  ==========================================================================

Pairwise claims ("A beats B") get :func:`pair_verdict`: with at least 6
rounds the sign test across rounds decides (p < 0.05); with fewer, "every
round, each significant" is the most that can be said, and the sentence says
that no test across rounds was possible.

The chapters record the claims they test (:func:`record_claims`, one JSON
file per chapter under ``<out_dir>/claims/``); the summary chapter collects
them into one table (:func:`claims_table`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from iqalib.analysis.selection import selection_table

GAP_LIMIT = 0.2
SPREAD_LIMIT = 0.2
OUTSIDE_MARGIN = 0.25
OUTSIDE_SHARE = 0.05
FEW_SOURCES = 10
COLLAPSE_WEIGHT = 0.9
COLLAPSE_SHARE = 0.5
# A rate step that costs as much SRCC as the seed's claimed gain of SMART-IQA over HyperIQA
# (KonIQ-10k 0.938 vs about 0.906) would undo the architecture's gain: fragile.
LR_JUMP = 0.03
FLOPS_RATIO = 4.0
TRANSFER_DROP = 0.15  # "transfers": SRCC on another set within this of the set's own test split
SIGNIFICANCE = 0.05


def _rounds_words(rounds: Sequence[int]) -> str:
    rounds = [str(r) for r in rounds]
    if len(rounds) == 1:
        return f"round {rounds[0]}"
    return f"rounds {', '.join(rounds[:-1])} and {rounds[-1]}"


def _n(count: int, word: str) -> str:
    return f"{count} {word}{'' if count == 1 else 's'}"


def numbers_say(*sentence_lists: Iterable[str]):
    """The sentences as a Markdown bullet list (rendered by the notebook and the book)."""
    sentences = [s for group in sentence_lists for s in group]
    text = "\n".join(f"- {s}" for s in sentences) if sentences else "- (no numbers to report)"
    try:
        from IPython.display import Markdown
    except ImportError:  # outside Jupyter the plain text is as good
        return text
    return Markdown(text)


# ------------------------------------------------------------------ one run

def spread_words(values: Sequence[float], digits: int = 3) -> str:
    """"median 0.712 (range 0.650-0.780, 3 rounds)", or "0.712 (one round, no spread)"."""
    values = np.asarray(values, dtype=float)
    if values.size == 1:
        return f"{values[0]:.{digits}f} (one round, no spread)"
    return (f"median {np.median(values):.{digits}f} (range {values.min():.{digits}f} to {values.max():.{digits}f}, "
            f"{values.size} rounds)")


def headline_sentence(results: Mapping) -> str:
    srcc = np.array([r["srcc"] for r in results["test_per_round"]], dtype=float)
    plcc = np.array([r["plcc"] for r in results["test_per_round"]], dtype=float)
    if srcc.size == 1:
        return (f"{results['name']} on {results['data']}: test SRCC {srcc[0]:.3f}, PLCC {plcc[0]:.3f} "
                "(one round, no spread).")
    return (f"{results['name']} on {results['data']}, {srcc.size} rounds: test SRCC median {np.median(srcc):.3f} "
            f"(range {srcc.min():.3f} to {srcc.max():.3f}), PLCC median {np.median(plcc):.3f} "
            f"(range {plcc.min():.3f} to {plcc.max():.3f}).")


def selection_sentences(selection: pd.DataFrame) -> list[str]:
    """Epoch-1 selections and validation-test gaps of :func:`iqalib.analysis.selection.selection_table`."""
    out = []
    for run, part in selection.groupby("run", sort=False):
        first = part[(part["selected_epoch"] == 1) & (part["epochs"] > 1)]
        if len(first):
            out.append(f"{run}: {_rounds_words(first['round'].tolist())} selected epoch 1 of "
                       f"{int(first['epochs'].max())}: validation SRCC was best after one epoch and never "
                       "improved, so the later epochs did not help it (the learning rate may be too high for "
                       "this budget, or the validation split too small to tell epochs apart).")
        if part["epochs"].max() == 1:
            out.append(f"{run}: with one epoch there was no epoch to select.")
        worst = part.loc[part["gap"].abs().idxmax()]
        if abs(worst["gap"]) >= GAP_LIMIT:
            pairs = "; ".join(f"round {int(r['round'])}: validation {r['val_srcc']:.2f}, test {r['test_srcc']:.2f}"
                              for _, r in part.iterrows())
            why = ("the selection is largely noise" if part["epochs"].max() > 1
                   else "one split's SRCC is largely noise")
            out.append(f"{run}: validation and test disagree on the selected epoch by up to "
                       f"{abs(worst['gap']):.2f} SRCC ({pairs}): with splits this small {why}.")
        else:
            out.append(f"{run}: validation and test SRCC of the selected epoch agree within "
                       f"{abs(worst['gap']):.2f} in every round.")
    return out


def spread_sentences(results: Mapping) -> list[str]:
    srcc = np.array([r["srcc"] for r in results["test_per_round"]], dtype=float)
    if srcc.size > 1 and srcc.max() - srcc.min() >= SPREAD_LIMIT:
        return [f"{results['name']}: the rounds disagree by {srcc.max() - srcc.min():.2f} SRCC "
                f"({srcc.min():.2f} to {srcc.max():.2f}), so the median is uncertain at that level."]
    return []


def _test_srcc(results: Mapping) -> dict[int, float]:
    """Test SRCC per round number (``round`` where recorded, else the position)."""
    return {int(r.get("round", i)): float(r["srcc"]) for i, r in enumerate(results["test_per_round"])}


def probe_sentences(runs: Mapping[str, Mapping], probes: Mapping | Sequence[Mapping]) -> list[str]:
    """Each learned head against the linear probe of its own trunk on the same rounds (same splits,
    same crops): the floor a hyper network must beat to be worth its parameters.

    ``probes``: one probe's results or several (one per trunk, e.g. ResNet-50 and Swin-B in the koniq
    edition). A head is set only against a probe of the trunk it reads (its ``model``'s trunk against
    the probe's ``trunk``); a head without one is named, not compared with another trunk's floor.
    """
    probes = [probes] if isinstance(probes, Mapping) else list(probes)
    probes = [p for p in probes if _test_srcc(p)]
    if not probes:
        return []
    out = []
    for probe in probes:
        trunk = f" of {probe['trunk']}" if len(probes) > 1 and probe.get("trunk") else ""
        out.append(f"The linear probe{trunk} (ridge regression on the frozen trunk's four pooled stages) scores "
                   f"test SRCC {spread_words(list(_test_srcc(probe).values()))}.")
    for name, results in runs.items():
        probe = _probe_of(results, probes)
        if probe is None:
            out.append(f"{name} reads another trunk ({_trunk(results)}) than the probe"
                       f"{'s' if len(probes) > 1 else ''} here, so it is not compared with one.")
            continue
        mine, floor = _test_srcc(results), _test_srcc(probe)
        shared = sorted(set(mine) & set(floor))
        if not shared:
            continue
        deltas = np.array([mine[r] - floor[r] for r in shared])
        above = int((deltas > 0).sum())
        if above == len(shared):
            verdict = "above the probe in every round: the learned head adds to what a linear read-out finds"
        elif above == 0:
            verdict = ("below the probe in every round: on this profile the head does not yet earn its "
                       "parameters over a ridge regression on the same features")
        else:
            verdict = (f"above the probe in {above} of {len(shared)} rounds: on this profile the head is not "
                       "reliably better than a ridge regression on the same features")
        out.append(f"{name}: median ΔSRCC to the probe {np.median(deltas):+.3f} over {_n(len(shared), 'round')}, "
                   f"{verdict}.")
    return out


def _trunk(results: Mapping) -> str | None:
    """The trunk a run's model reads (None when the results name no registered model)."""
    from iqalib.models import list_models, model_trunk

    model = results.get("model")
    return model_trunk(model) if model in list_models() else None


def _probe_of(results: Mapping, probes: Sequence[Mapping]) -> Mapping | None:
    """The probe of the run's trunk; with one probe that names no trunk, that probe (older results)."""
    if len(probes) == 1 and not probes[0].get("trunk"):
        return probes[0]
    trunk = _trunk(results)
    return next((p for p in probes if trunk is not None and p.get("trunk") == trunk), None)


def ceiling_sentences(ceilings: pd.DataFrame | None, runs: Mapping[str, Mapping]) -> list[str]:
    """What the demo's labels allow (:func:`iqalib.data.demo.label_ceilings`) against the best run."""
    if ceilings is None or not len(ceilings) or not runs:
        return []
    best_name, best = max(((name, float(np.median(list(_test_srcc(r).values())))) for name, r in runs.items()),
                          key=lambda item: item[1])
    noise, oracle = ceilings["noise_ceiling"].to_numpy(float), ceilings["distortion_oracle"].to_numpy(float)
    limit = ("the labels are not what holds it back" if best < np.median(noise) - 0.05
             else "it is close to what the labels allow")
    return [f"What the labels allow on these test splits: rater noise alone caps SRCC at {spread_words(noise)}; "
            f"a content-blind oracle that knows each image's distortion and level reaches {spread_words(oracle)}. "
            f"The best model here, {best_name}, has median {best:.3f}: {limit}."]


def prediction_range_sentences(predictions: pd.DataFrame, mos_range: tuple[float, float],
                               name: str = "the model") -> list[str]:
    """Predictions far outside the MOS scale (SRCC, a rank measure, cannot see this; PLCC and RMSE can)."""
    low, high = (float(v) for v in mos_range)
    margin = OUTSIDE_MARGIN * (high - low)
    pred = predictions["pred"].to_numpy(dtype=float)
    far = (pred < low - margin) | (pred > high + margin)
    share = float(far.mean()) if pred.size else 0.0
    rounds = predictions["round"].nunique() if "round" in predictions else 1
    where = f" of {rounds} rounds" if rounds > 1 else ""
    if share >= OUTSIDE_SHARE:
        return [f"{name}: {far.sum()} of {pred.size} test predictions{where} ({100 * share:.0f}%) lie more than "
                f"{100 * OUTSIDE_MARGIN:.0f}% of the MOS scale outside it [{low:g}, {high:g}] "
                f"(predictions span {pred.min():.1f} to {pred.max():.1f}): the head has not learned the "
                "scale; SRCC ignores this, PLCC and RMSE do not."]
    return []


def run_sentences(results: Mapping, predictions: pd.DataFrame | None = None,
                  mos_range: tuple[float, float] | None = None) -> list[str]:
    """Headline, round spread, epoch selection and (given predictions and the scale) the prediction range."""
    out = [headline_sentence(results), *spread_sentences(results),
           *selection_sentences(selection_table(results))]
    if predictions is not None and mos_range is not None:
        out += prediction_range_sentences(predictions, mos_range, results["name"])
    return out


# ------------------------------------------------------------------ the data

def source_sentences(test_groups: pd.Series | None, n_test: int) -> list[str]:
    """How many sources the test split has, hence what the bootstrap resamples and how coarse it is."""
    if test_groups is None:
        return [f"The {n_test} test images have no recorded shared source, so bootstrap intervals "
                "resample images."]
    sources = int(pd.Series(test_groups).nunique())
    sentence = (f"The {n_test} test images come from {_n(sources, 'source photograph')}; bootstrap intervals "
                "and paired tests resample whole sources, because images of one source are not independent.")
    if sources < FEW_SOURCES:
        sentence += (f" With only {sources} sources these intervals are coarse and wide: a difference has to "
                     "hold on every source to look reliable.")
    return [sentence]


def data_sentences(table, parts: Mapping) -> list[str]:
    """Size and scale of the set, the split sizes and the sources behind the test split."""
    groups = table.frame["group"].astype(str)
    shared = groups.nunique() < len(groups)
    out = [f"{table.label}: {len(table)} images"
           + (f" of {_n(groups.nunique(), 'source photograph')}" if shared else "")
           + f", MOS from {table.mos.min():.1f} to {table.mos.max():.1f} on a {table.mos_range[0]:g}-"
           f"{table.mos_range[1]:g} scale; split {', '.join(f'{k} {len(v)}' for k, v in parts.items())}."]
    if getattr(table, "synthetic", False):
        out.append("The set is synthetic: its numbers test the code, not the papers' claims.")
    test = parts["test"].frame
    out += source_sentences(test["group"].astype(str) if shared else None, len(test))
    return out


# ------------------------------------------------------------------ comparisons

def pair_verdict(row: Mapping) -> str:
    """"supported", "contradicted" or "not supported" (with the reason) for "A beats B", from :func:`combine_rounds`."""
    rounds = int(row["rounds"])
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
    """One sentence per compared pair (rows of :func:`iqalib.analysis.compare_runs`'s summary)."""
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
                   + f": median ΔSRCC {row['median_delta']:+.3f}, {a} better in {won} of {_n(rounds, 'round')}; "
                   f"{bootstrap}; verdict: {pair_verdict(row)}.")
    return out


def recipe_sentences(recipes: pd.DataFrame, a: str, b: str) -> list[str]:
    """Say when two compared arms also differ in how they were trained (:func:`iqalib.analysis.recipes.recipe_table`)."""
    from iqalib.analysis.recipes import recipe_differences

    differ = [c for c in recipe_differences(recipes, a, b) if c != "head widths"]
    if not differ:
        return [f"{a} and {b} were trained with the same resolved settings."]
    details = "; ".join(f"{c} {recipes.loc[a, c]} vs {recipes.loc[b, c]}" for c in differ)
    return [f"{a} and {b} differ in their training recipe as well as their architecture ({details}), so their "
            "difference mixes the two; the ablation's recipe-controlled arm separates them."]


# ------------------------------------------------------------------ attention

def collapsed_stage(weights: pd.DataFrame, columns: Sequence[str] = ("w1", "w2", "w3", "w4")):
    """``(stage column, share of images)`` when one stage has weight >= :data:`COLLAPSE_WEIGHT` on most images."""
    values = weights[list(columns)].to_numpy(dtype=float)
    shares = (values >= COLLAPSE_WEIGHT).mean(axis=0)
    best = int(shares.argmax())
    return (columns[best], float(shares[best])) if shares[best] > COLLAPSE_SHARE else None


def attention_sentences(weights: pd.DataFrame, statistics, verdict: str) -> list[str]:
    """The seed's attention claim: the verdict, or, when attention collapsed, why there is none.

    The verdict follows ``statistics``' intervals, which resample whole sources
    where the test images share them (:func:`iqalib.analysis.attention.weights_vs_mos`).
    """
    collapse = collapsed_stage(weights)
    n = len(weights)
    if collapse is not None:
        stage, share = collapse
        return [f"Attention has collapsed onto stage {stage[1:]}: its weight is >= {COLLAPSE_WEIGHT:g} on "
                f"{round(share * n)} of {n} test images (mean {weights[stage].mean():.3f}). The weights then "
                "barely vary between images, so their correlation with MOS measures noise: this model cannot "
                "test the seed's claim, and no verdict is given."]
    unit = statistics.resampling
    if "no interval" in unit:
        return [verdict]
    why = (" (images of one source are not independent)" if unit.startswith("by source")
           else " (no two test images share a source)")
    return [verdict, f"The bootstrap intervals resample {unit}{why}."]


def attention_claim(weights: pd.DataFrame, statistics, by_round: pd.DataFrame | None = None) -> dict:
    """The claim row of "high-quality images concentrate their attention".

    With ``by_round`` (:func:`iqalib.analysis.attention.concentration_by_round`)
    the verdict is taken across the rounds' models: a sign test of their
    Spearman(concentration, MOS) against 0, untested with too few rounds (one
    model is one draw of the training: a retrained round 0 can land on the
    other side of zero). Without it, the verdict is one model's (``weights``,
    ``statistics``), untested
    when its attention collapsed.
    """
    if by_round is not None:
        return _attention_claim_across_rounds(by_round)
    row = statistics.correlations.loc["concentration"]
    level = round(100 * (1 - statistics.alpha))
    low, high = row["low"], row["high"]
    interval = (f"{level}% CI [{low:+.3f}, {high:+.3f}] ({statistics.resampling})"
                if np.isfinite(low) and np.isfinite(high) else statistics.resampling)
    edition = f"Spearman(concentration, MOS) {row['srcc']:+.3f}, {interval}, {statistics.n_images} images"
    collapse = collapsed_stage(weights)
    if collapse is not None:
        stage, share = collapse
        return claim_row("attention_concentrates", f"{edition}; stage {stage[1:]} >= {COLLAPSE_WEIGHT:g} on "
                         f"{share:.0%} of images", f"untested (attention collapsed onto stage {stage[1:]})")
    if not np.isfinite(row["srcc"]):
        return claim_row("attention_concentrates", edition, "untested (constant weights or MOS)")
    if not (np.isfinite(low) and np.isfinite(high)):
        return claim_row("attention_concentrates", edition, "untested (too few sources for an interval)")
    verdict = "supported" if low > 0 else "contradicted" if high < 0 else "not supported"
    return claim_row("attention_concentrates", edition, verdict)


def _across_rounds_verdict(summary: Mapping, alpha: float = 0.05) -> str:
    """The attention claim's verdict from :func:`iqalib.analysis.attention.rounds_summary`."""
    if not summary["usable"]:
        return "untested (attention collapsed or constant in every round)"
    if summary["tests_note"]:
        return f"untested (one model is one draw of the training; across rounds {summary['tests_note']})"
    if summary["sign_p"] < alpha:
        return "supported" if summary["median"] > 0 else "contradicted"
    return f"not supported (sign test p = {summary['sign_p']:.2f})"


def _attention_claim_across_rounds(by_round: pd.DataFrame, alpha: float = 0.05) -> dict:
    from iqalib.analysis.attention import rounds_summary

    summary = rounds_summary(by_round)
    usable, left_out = summary["usable"], summary["left_out"]
    edition = (f"Spearman(concentration, MOS) of {usable} round(s)' models"
               + (f": median {summary['median']:+.3f} (range {summary['min']:+.3f} to {summary['max']:+.3f}), "
                  f"positive in {summary['positive']}" if usable else "")
               + (f"; {left_out} round(s) left out (attention collapsed or constant)" if left_out else ""))
    return claim_row("attention_concentrates", edition, _across_rounds_verdict(summary, alpha))


def attention_round_sentences(by_round: pd.DataFrame, alpha: float = 0.05) -> list[str]:
    """The seed's attention claim across the rounds' models (:func:`_across_rounds_verdict` decides)."""
    from iqalib.analysis.attention import rounds_summary

    summary = rounds_summary(by_round)
    usable, rounds = summary["usable"], summary["rounds"]
    out = []
    if summary["left_out"]:
        out.append(f"In {summary['left_out']} of {rounds} rounds the attention collapsed onto one stage (or the "
                   "correlation is undefined); those models are left out.")
    if not usable:
        return out
    out.append(f"Each round's model on its own test split: Spearman(concentration, MOS) median "
               f"{summary['median']:+.3f} (range {summary['min']:+.3f} to {summary['max']:+.3f}) over {usable} "
               f"models, positive in {summary['positive']} of {usable}; its interval lies above 0 in "
               f"{summary['interval_above']} and below 0 in {summary['interval_below']}.")
    if 0 < summary["interval_above"] + summary["interval_below"] < usable:
        out.append("So one model's verdict depends on which training draw it is: the claim is judged across rounds.")
    verdict = _across_rounds_verdict(summary, alpha)
    if summary["tests_note"]:
        out.append(f"Across rounds the claim is {verdict}.")
    else:
        out.append(f"Across rounds (sign test p = {summary['sign_p']:.3f}) the claim is {verdict}.")
    return out


# ------------------------------------------------------------------ other chapters

def cross_dataset_sentences(matrix: pd.DataFrame) -> list[str]:
    own = matrix.iloc[0]
    skipped = sorted(matrix.attrs.get("skipped", {}))
    if len(matrix) == 1:
        missing = f" ({', '.join(skipped)} not found)" if skipped else ""
        return [f"Only {own['test']} is present on this machine{missing}, so no transfer is measured; "
                f"its own test split gives SRCC {own['srcc']:.3f}."]
    out = []
    for _, row in matrix.iloc[1:].iterrows():
        drop = own["srcc"] - row["srcc"]
        out.append(f"Trained on {own['train']}, the model ranks {row['test']} ({row['split']}) with SRCC "
                   f"{row['srcc']:.3f}, against {own['srcc']:.3f} on its own test split "
                   f"({'a drop' if drop > 0 else 'a gain'} of {abs(drop):.3f}).")
    if _simulated(matrix).any():
        out.append("The demo set's labels are simulated, so a transfer from or to it measures the gap between "
                   "simulated and human ratings as much as the model: it tests the code, not the claim that "
                   "the model transfers between data sets of human ratings.")
    return out


def _simulated(matrix: pd.DataFrame) -> pd.Series:
    """Per row: does it involve simulated labels (its tested set, or the training set of row 0)?"""
    tested = matrix["synthetic"].fillna(False).astype(bool) if "synthetic" in matrix else pd.Series(
        False, index=matrix.index)
    return tested | bool(tested.iloc[0])


def cross_dataset_view(matrix: pd.DataFrame) -> pd.DataFrame | None:
    """The matrix when there is something to compare; None with one data set (the closing sentence says so)."""
    return matrix if len(matrix) > 1 else None


def transfer_claim(matrix: pd.DataFrame) -> dict:
    """The claim row of "the model transfers": untested with one data set, else by :data:`TRANSFER_DROP`."""
    own = matrix.iloc[0]
    if len(matrix) == 1:
        return claim_row("transfer", f"only {own['test']} present", "untested (one data set)")
    others = matrix.iloc[1:]
    edition = "; ".join(f"{r['test']} {r['srcc']:.3f}" for _, r in others.iterrows())
    edition = f"SRCC {edition} vs {own['srcc']:.3f} on {own['test']}'s own test split"
    others = others[~_simulated(matrix).iloc[1:]]  # the claim is about human ratings on both sides
    if others.empty:
        return claim_row("transfer", edition, "untested (the demo set's labels are simulated; no pair of "
                                              "data sets with human ratings)")
    worst = float((own["srcc"] - others["srcc"]).max())
    verdict = "supported" if worst <= TRANSFER_DROP else f"not supported (drop {worst:.2f} > {TRANSFER_DROP:g})"
    return claim_row("transfer", edition, verdict)


MIN_LR_ROUNDS = 3  # rounds per rate before a jump between rates is read as the rate's, not the split's


def lr_moves(sweep: pd.DataFrame, rates: Sequence[float]) -> pd.DataFrame:
    """Each step between neighbouring swept rates within one decade, paired round by round.

    Rounds of a sweep share their splits (round ``r`` of every rate trains and
    tests on the same images), so the change a rate step makes is measured per
    round: ``delta`` is the median over rounds of SRCC(b) - SRCC(a), ``same_way``
    the number of rounds that moved in its direction (of ``rounds``), and
    ``fragile`` says the step moved SRCC by at least :data:`LR_JUMP` the same way
    in every round (with 6 or more rounds: a sign test across rounds, p < 0.05).
    Rounds are the ``round`` column, else the order of each rate's rows.
    """
    from iqalib.analysis.significance import sign_test

    frame = sweep.assign(rate=np.asarray(rates, dtype=float))
    if "round" not in frame:
        frame = frame.assign(round=frame.groupby("rate").cumcount())
    table = frame.pivot_table(index="round", columns="rate", values="srcc", aggfunc="first").sort_index(axis=1)
    rows = []
    for a, b in zip(table.columns[:-1], table.columns[1:]):
        if b / a > 10 * (1 + 1e-9):
            continue
        diffs = (table[b] - table[a]).dropna().to_numpy()
        delta = float(np.median(diffs)) if len(diffs) else np.nan
        same_way = int((np.sign(diffs) == np.sign(delta)).sum()) if delta else 0
        p, _ = sign_test(diffs)
        consistent = (p < SIGNIFICANCE) if np.isfinite(p) else (len(diffs) >= MIN_LR_ROUNDS and same_way == len(diffs))
        rows.append({"a": float(a), "b": float(b), "median_a": float(table[a].median()),
                     "median_b": float(table[b].median()), "delta": delta, "rounds": len(diffs),
                     "same_way": same_way, "sign_p": p,
                     "fragile": bool(abs(delta) >= LR_JUMP and consistent)})
    return pd.DataFrame(rows, columns=["a", "b", "median_a", "median_b", "delta", "rounds", "same_way",
                                       "sign_p", "fragile"])


def _by_rate(sweep: pd.DataFrame, rates: Sequence[float]) -> tuple[pd.DataFrame, pd.Series, int]:
    """The sweep with its ``rate`` column, median SRCC per rate (ascending rate), fewest rounds of a rate."""
    frame = sweep.assign(rate=np.asarray(rates, dtype=float))
    medians = frame.groupby("rate")["srcc"].median().sort_index()
    return frame, medians, int(frame.groupby("rate").size().min())


def lr_sentences(sweep: pd.DataFrame, rates: Sequence[float], label: str, epochs: int | None = None) -> list[str]:
    """Best rate, each rate step within one decade that moves SRCC by >= :data:`LR_JUMP`, epoch-1 selections.

    ``epochs`` (when known) of 1 silences the epoch-1 rule: there was no other epoch to select.
    """
    frame, medians, rounds = _by_rate(sweep, rates)
    best = medians.idxmax()
    out = [f"Best median test SRCC {medians.max():.3f} at {label.split(';')[0]} {best:g} "
           f"(swept {', '.join(f'{r:g}' for r in medians.index)})."]
    steps = lr_moves(sweep, rates)
    moves = steps.dropna(subset=["delta"])  # NaN: the two rates share no round
    for move in moves[moves["delta"].abs() >= LR_JUMP].itertuples():
        step = (f"from {move.a:g} to {move.b:g} the rate moves SRCC by {move.delta:+.3f} (median over rounds, "
                f"paired by split; medians {move.median_a:.3f} and {move.median_b:.3f})")
        paired = min(rounds, move.rounds)  # rounds that pair the two rates
        if paired < MIN_LR_ROUNDS:
            out.append(f"Within one decade, {step}, but with {_n(paired, 'round')} per rate a change of split "
                       f"can move SRCC as much (a verdict needs {MIN_LR_ROUNDS} rounds per rate).")
        elif move.fragile:
            out.append(f"Within one decade, {step}, the same way in {move.same_way} of {_n(move.rounds, 'round')}: "
                       f"at this budget training is fragile in its learning rate (a step of {LR_JUMP:g} or "
                       "more is as large as the gain the seed reports for SMART-IQA over HyperIQA).")
        else:
            out.append(f"Within one decade, {step}, but only {move.same_way} of {_n(move.rounds, 'round')} "
                       "moved that way: the split moves SRCC as much as the rate.")
    if not (moves["delta"].abs() >= LR_JUMP).any() and len(medians) > 1:
        if len(moves):
            out.append(f"Neighbouring rates within one decade change SRCC by at most {moves['delta'].abs().max():.3f} "
                       f"(median over rounds, paired by split), less than {LR_JUMP:g}.")
        elif len(steps):
            out.append("Neighbouring rates within one decade share no round, so no split pairs them.")
        else:
            out.append("No two swept rates lie within one decade of each other.")
    first = frame[frame["best_epoch"] == 1]
    if len(first) and epochs != 1:
        out.append(f"At {', '.join(f'{r:g}' for r in sorted(first['rate'].unique()))} a round selected epoch 1, "
                   "so there the longer training did not help.")
    return out


def lr_claim(sweep: pd.DataFrame, rates: Sequence[float]) -> dict:
    """The claim row of "not fragile in its learning rate": contradicted by a rate step within one decade
    that moves SRCC by :data:`LR_JUMP` or more the same way in every round (:func:`lr_moves`)."""
    _, medians, rounds = _by_rate(sweep, rates)
    edition = ", ".join(f"{rate:g}: {value:.3f}" for rate, value in medians.items())
    if len(medians) < 2:
        return claim_row("lr_robust", edition, "untested (one rate)")
    moves = lr_moves(sweep, rates)
    edition = f"median SRCC by rate ({rounds} round{'s' if rounds != 1 else ''} each): {edition}"
    if not len(moves):
        return claim_row("lr_robust", edition, "untested (no two rates within one decade)")
    moves = moves.dropna(subset=["delta"])
    if not len(moves):
        return claim_row("lr_robust", edition, "untested (neighbouring rates share no round, so no split pairs them)")
    if rounds < MIN_LR_ROUNDS:
        return claim_row("lr_robust", edition, f"untested ({_n(rounds, 'round')} per rate; a change of split "
                         f"moves SRCC as much, a verdict needs {MIN_LR_ROUNDS})")
    largest = moves.loc[moves["delta"].abs().idxmax()]
    fragile = moves[moves["fragile"]]
    if len(fragile):
        worst = fragile.loc[fragile["delta"].abs().idxmax()]
        return claim_row("lr_robust", edition, f"contradicted (from {worst['a']:g} to {worst['b']:g} SRCC moves "
                         f"{worst['delta']:+.3f}, the same way in {int(worst['same_way'])} of {int(worst['rounds'])} "
                         "rounds)")
    if abs(largest["delta"]) >= LR_JUMP:
        if largest["rounds"] < MIN_LR_ROUNDS:
            return claim_row("lr_robust", edition, f"untested (from {largest['a']:g} to {largest['b']:g} only "
                             f"{_n(int(largest['rounds']), 'round')} pair the two rates, a verdict needs "
                             f"{MIN_LR_ROUNDS})")
        return claim_row("lr_robust", edition, f"untested (from {largest['a']:g} to {largest['b']:g} SRCC moves "
                         f"{largest['delta']:+.3f}, but only {int(largest['same_way'])} of {int(largest['rounds'])} "
                         "rounds moved that way)")
    return claim_row("lr_robust", edition, f"supported (at most {abs(largest['delta']):.3f} within one decade, "
                     f"below {LR_JUMP:g})")


def model_size_sentences(costs: pd.DataFrame, rate: str = "patches_per_s",
                         train_rates: Mapping[str, float] | None = None) -> list[str]:
    """Cost against measured speed; flags a model measured as fast as one with a fraction of its FLOPs.

    ``train_rates`` (model -> training-step patches/s, e.g. from the
    ``train_step`` benchmark) adds a second check: scoring a patch is about a
    third of a training step's work, so inference slower than training means
    one of the two measurements is wrong.
    """
    frame = costs.sort_values("gflops")
    out = []
    cheap, dear = frame.iloc[0], frame.iloc[-1]
    if len(frame) > 1 and dear["gflops"] >= 2 * cheap["gflops"]:
        out.append(f"{dear.name} costs {dear['gflops'] / cheap['gflops']:.0f}x the FLOPs of {cheap.name} "
                   f"({dear['gflops']:.2f} vs {cheap['gflops']:.2f} GFLOPs per patch) and scores "
                   f"{dear[rate]:.1f} against {cheap[rate]:.1f} patches/s here.")
    elif len(frame) > 1:
        out.append(f"The models cost {frame['gflops'].min():.2f} to {frame['gflops'].max():.2f} GFLOPs per patch "
                   f"and score {frame[rate].min():.1f} to {frame[rate].max():.1f} patches/s here.")
    suspect = [(a, b) for a, ra in frame.iterrows() for b, rb in frame.iterrows()
               if ra["gflops"] >= FLOPS_RATIO * rb["gflops"] and ra[rate] >= rb[rate]]
    for a, b in suspect:
        out.append(f"Inconsistent measurement: {a} is measured at least as fast as {b} with "
                   f"{frame.loc[a, 'gflops'] / frame.loc[b, 'gflops']:.0f}x its FLOPs; re-measure on a quiet "
                   "machine before reading the speeds.")
    for name, train_rate in (train_rates or {}).items():
        if name in frame.index and frame.loc[name, rate] < train_rate:
            out.append(f"Inconsistent measurement: {name} scores {frame.loc[name, rate]:.1f} patches/s here but "
                       f"trains at {train_rate:.1f} patches/s in the train-step benchmark; inference does a "
                       "third of a step's work, so one of the two was disturbed (load, warm-up, threads).")
    scored = frame[np.isfinite(frame.get("test_srcc", pd.Series(np.nan, index=frame.index)))]
    if len(scored):
        best = scored["test_srcc"].idxmax()
        out.append(f"Of the models with a run in this edition, {best} ranks best (test SRCC "
                   f"{scored.loc[best, 'test_srcc']:.3f}) at {scored.loc[best, 'gflops']:.2f} GFLOPs per patch.")
    return out


def loaded_machine(result: Mapping) -> str | None:
    """A warning when a benchmark ran while other work held the CPUs (load average above their count)."""
    cpus = (result.get("machine") or {}).get("cpus") or 1
    loads = [max(result.get(key) or [0.0]) for key in ("load_average_start", "load_average_end")]
    if max(loads) <= cpus:
        return None
    return (f"These rates were measured while other work loaded the machine (load average up to "
            f"{max(loads):.1f} on {cpus} CPUs): they show that machine's share, not what it can do; "
            "`make bench` on a quiet machine measures again.")


def performance_sentences(scoring: Mapping | None, engine: pd.DataFrame | None = None) -> list[str]:
    """The scoring benchmark against its ceiling, and the engine's loader wait."""
    out = []
    if scoring is None:
        out.append("The scoring benchmark was not run on this machine.")
    else:
        busy = loaded_machine(scoring)
        if busy:
            out.append(busy)
        rates = scoring["images_per_s"]
        ceiling = scoring["forward_only_images_per_s"]
        above = [name for name, value in rates.items() if value > ceiling]
        if above:
            out.append(f"Inconsistent measurement: {' and '.join(above)} {'is' if len(above) == 1 else 'are'} "
                       "measured faster than the model alone "
                       f"({ceiling:.2f} images/s), which cannot be; re-measure on a quiet machine.")
        else:
            out.append(f"Scoring reaches {rates['score_paths']:.2f} images/s with iqalib score and "
                       f"{rates['one_at_a_time']:.2f} one image at a time, against {ceiling:.2f} for the model "
                       f"alone: the pipelines run at {rates['score_paths'] / ceiling:.0%} and "
                       f"{rates['one_at_a_time'] / ceiling:.0%} of the ceiling.")
            speedup = rates["score_paths"] / rates["one_at_a_time"]
            sentence = (f"Streaming is {speedup:.2f}x the naive loop on this machine "
                        f"({'faster' if speedup > 1.05 else 'slower' if speedup < 0.95 else 'no different'})")
            if "score_paths_small_batch" in rates:
                sentence += (f"; with a batch of one image's crops it scores {rates['score_paths_small_batch']:.2f} "
                             "images/s, which separates the effect of the larger batch from that of the decode "
                             "threads")
            out.append(sentence + ".")
    if engine is not None and len(engine) and "max loader wait" in engine:
        wait = float(engine["max loader wait"].max())
        out.append(f"Waiting for data took at most {100 * wait:.2f}% of any epoch of this profile's runs "
                   f"({'under' if wait < 0.05 else 'above'} the 5% target).")
    return out


def precision_sentences(result: Mapping | None) -> list[str]:
    """bf16 autocast against fp32 on one profile's chapter-3 run (``benchmarks/precision.py``)."""
    if result is None:
        return ["The precision benchmark (bf16 against fp32) was not run on this machine."]
    arms, tolerance = result["arms"], float(result.get("tolerance", 0.005))
    out = [loaded] if (loaded := loaded_machine(result)) else []
    skipped = arms.get("bf16", {}).get("skipped")
    if skipped or "fp32" not in arms or "test_srcc" not in arms.get("bf16", {}):
        return out + [f"bf16 was not trained here: {skipped or 'the benchmark did not finish'}; "
                      "`precision: auto` keeps fp32 on this CPU."]
    fp32, bf16 = arms["fp32"], arms["bf16"]
    diff = bf16["median_srcc"] - fp32["median_srcc"]
    paired = np.subtract(bf16["test_srcc"], fp32["test_srcc"])
    within = abs(diff) <= tolerance
    out.append(f"On {result['profile']}'s chapter-3 run ({fp32['rounds']} rounds), bf16 autocast gives median test "
               f"SRCC {bf16['median_srcc']:.4f} against fp32's {fp32['median_srcc']:.4f} ({diff:+.4f}; "
               f"{'within' if within else 'outside'} the {tolerance:g} tolerance); round by round the two differ "
               f"by {np.median(np.abs(paired)):.4f} in the median (largest {np.abs(paired).max():.4f}).")
    control = arms.get("fp32_1thread", {})
    if "test_srcc" in control:  # fp32 again on one thread: a change of numerics alone
        floor = np.abs(np.subtract(control["test_srcc"], fp32["test_srcc"]))
        change = control["median_srcc"] - fp32["median_srcc"]
        out.append(f"The control, fp32 again on {_n(int(control['threads']), 'thread')} instead of "
                   f"{fp32.get('threads', 'several')} (the same trunk features; only the order of the head's sums "
                   f"changes), moves the median test SRCC by {change:+.4f} "
                   f"({'more' if abs(change) > tolerance else 'less'} than the {tolerance:g} tolerance) and each "
                   f"round by {np.median(floor):.4f} in the median (largest {floor.max():.4f}).")
        moved = np.median(np.abs(paired))
        out.append(f"So bf16's round-by-round change ({moved:.4f} in the median) is "
                   + ("larger than" if moved > np.median(floor) else "within")
                   + " what a change of numerics alone does on this run.")
    if fp32.get("wall_seconds") and bf16.get("wall_seconds"):
        out.append(f"The run took {bf16['wall_seconds'] / 60:.1f} min in bf16 and {fp32['wall_seconds'] / 60:.1f} "
                   f"min in fp32 ({fp32['wall_seconds'] / bf16['wall_seconds']:.1f}x), trunk pass included; the head "
                   f"trainings alone {bf16['head_seconds'] / 60:.1f} and {fp32['head_seconds'] / 60:.1f} min.")
    return out


# ------------------------------------------------------------------ the claims table

# The claims the book tests: id -> (claim, chapter stem, the seed's number or statement).
CLAIMS = {
    "smart_vs_hyperiqa": ("SMART-IQA predicts quality better than HyperIQA", "04_smart_iqa",
                          "SRCC 0.9378 / PLCC 0.9485 vs about 0.906 / 0.917 (KonIQ-10k, Swin-B vs ResNet-50, "
                          "one round, epoch picked on test)"),
    "multiscale": ("Reading all four stages beats the last stage alone", "05_ablations",
                   "claimed (single scale < multi-scale)"),
    "attention": ("Stage attention adds to multi-scale concatenation", "05_ablations",
                  "claimed (multi-scale < + attention)"),
    "recipe": ("Part of the gain over HyperIQA is the training recipe", "05_ablations", "not tested by the seed"),
    "architecture": ("SMART-IQA's head beats HyperIQA's with the recipe held fixed", "05_ablations",
                     "not tested by the seed"),
    "regression_beats_rank": ("Plain regression losses (L1, L2) beat rank-based ones", "06_losses",
                              "SRCC L1 0.9375, L2 0.9373 vs fidelity 0.9315, soft SRCC 0.9313, ranking 0.9292 "
                              "(KonIQ-10k, SMART-Base, one run each, epoch picked on test)"),
    "rank_losses_noisy_labels": ("Ranking losses help on noisier labels", "06_losses",
                                 "a guess in the report's discussion, not tested there"),
    "attention_concentrates": ("High-quality images concentrate their attention on one stage", "07_attention",
                               "shown on 3 images"),
    "transfer": ("The model transfers to other data sets", "08_cross_dataset", "not given"),
    "lr_robust": ("Training is not fragile in its learning rate", "09_lr_sensitivity", "not given"),
}
# Which ablation pair tests which claim (A beats B).
PAIR_CLAIMS = {
    ("multiscale_concat", "single_scale"): "multiscale",
    ("multiscale_attention", "multiscale_concat"): "attention",
    ("hyperiqa_seed_recipe", "hyperiqa"): "recipe",
    ("single_scale", "hyperiqa_seed_recipe"): "architecture",
    ("multiscale_attention", "hyperiqa"): "smart_vs_hyperiqa",
}


def claim_row(claim: str, edition: str, verdict: str) -> dict:
    if claim not in CLAIMS:
        raise KeyError(f"unknown claim {claim!r}; known: {sorted(CLAIMS)}")
    return {"claim": claim, "edition": edition, "verdict": verdict}


def _median_and_range(values: Sequence[float]) -> str:
    values = np.asarray(values, dtype=float)
    if values.size == 1:
        return f"{values[0]:.3f}"
    return f"{np.median(values):.3f} ({values.min():.3f} to {values.max():.3f})"


def comparison_claim(claim: str, row: Mapping, results_a: Mapping | None = None,
                     results_b: Mapping | None = None) -> dict:
    """A claim row for "A beats B" from one :func:`combine_rounds` summary row (and the arms' results)."""
    rounds = int(row["rounds"])
    edition = (f"median ΔSRCC {row['median_delta']:+.3f} over {rounds} rounds" if rounds > 1
               else f"ΔSRCC {row['median_delta']:+.3f}, one round")
    if results_a is not None and results_b is not None:
        a = [r["srcc"] for r in results_a["test_per_round"]]
        b = [r["srcc"] for r in results_b["test_per_round"]]
        edition = (f"SRCC {results_a['name']} {_median_and_range(a)} vs {results_b['name']} "
                   f"{_median_and_range(b)}; {edition}")
    return claim_row(claim, edition, pair_verdict(row))


def pair_claim_rows(summary: pd.DataFrame, results: Mapping[str, Mapping] | None = None) -> list[dict]:
    """Claim rows for the ablation pairs that test a claim (:data:`PAIR_CLAIMS`); arms' medians from ``results``."""
    results = results or {}
    return [comparison_claim(PAIR_CLAIMS[(row["a"], row["b"])], row, results.get(row["a"]), results.get(row["b"]))
            for _, row in summary.iterrows() if (row["a"], row["b"]) in PAIR_CLAIMS]


def record_claims(out_dir: str | Path, chapter: str, rows: Sequence[dict]) -> Path:
    """Write a chapter's claim rows to ``<out_dir>/claims/<chapter>.json`` (atomically) for the summary."""
    from iqalib.engine.checkpoint import atomic_write_json

    path = Path(out_dir) / "claims" / f"{chapter}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, {"chapter": chapter, "claims": list(rows)})
    return path


def claims_table(out_dir: str | Path, link=lambda stem: stem) -> pd.DataFrame:
    """Every claim of :data:`CLAIMS` with the seed's number, this edition's and the verdict.

    Reads what the chapters recorded under ``<out_dir>/claims/``; a claim no
    chapter recorded says it was not tested in this edition. ``link`` turns a
    chapter stem into what the ``chapter`` column shows (e.g. a Markdown link).
    """
    recorded = {}
    for path in sorted((Path(out_dir) / "claims").glob("*.json")):
        for row in json.loads(path.read_text())["claims"]:
            recorded[row["claim"]] = row
    rows = []
    for claim, (text, chapter, seed) in CLAIMS.items():
        row = recorded.get(claim, {"edition": "not run in this edition", "verdict": "untested"})
        rows.append({"claim": text, "chapter": link(chapter), "seed (SMART-IQA report)": seed,
                     "this edition": row["edition"], "verdict": row["verdict"]})
    return pd.DataFrame(rows)


def chapter_link(stem: str) -> str:
    """A Markdown link to a chapter of the book from a sibling chapter: ``[chapter 5](05_ablations.ipynb)``."""
    return f"[chapter {int(stem.split('_')[0])}]({stem}.ipynb)"


def claims_markdown(table: pd.DataFrame) -> str:
    """:func:`claims_table` as a Markdown table (so its chapter links work in the book)."""
    columns = list(table.columns)
    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    for _, row in table.iterrows():
        lines.append("| " + " | ".join(str(row[c]).replace("|", "/") for c in columns) + " |")
    return "\n".join(lines)


def summary_sentences(table: pd.DataFrame) -> list[str]:
    counts = table["verdict"].str.split(" ").str[0].value_counts()
    tested = int(len(table) - counts.get("untested", 0))
    parts = [f"{counts.get(word, 0)} {word}" for word in ("supported", "contradicted") if counts.get(word, 0)]
    unsupported = int(counts.get("not", 0))
    if unsupported:
        parts.append(f"{unsupported} not supported")
    return [f"This edition tests {tested} of the book's {len(table)} claims: "
            + (", ".join(parts) if parts else "none decided") + "."]
