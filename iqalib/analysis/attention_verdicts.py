"""The attention chapter's closing sentences and its claim row: do high-quality images concentrate
their attention on one stage?

One model's verdict follows the bootstrap interval of Spearman(concentration,
MOS) (:func:`iqalib.analysis.attention.claim_verdict`), unless its attention
has collapsed onto one stage (:func:`iqalib.analysis.attention.collapsed_stage`):
the weights then barely vary, the test measures noise, and no verdict is
given. Because one trained model is one draw of the training, the claim is
judged across the rounds' models (:func:`iqalib.analysis.attention.rounds_summary`):
the book's one rule (:func:`iqalib.analysis.significance.decision_rule`), with
each round's correlation as its paired quantity: a two-sided Wilcoxon signed-rank
test of the correlations against 0, at least 6 rounds (:func:`across_rounds_verdict`).
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

from iqalib.analysis.attention import COLLAPSE_WEIGHT, AttentionStatistics, collapsed_stage, rounds_summary
from iqalib.analysis.claims import claim_row
from iqalib.analysis.significance import rule_verdict


def attention_sentences(weights: pd.DataFrame, statistics: AttentionStatistics, verdict: str) -> list[str]:
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


def attention_claim(weights: pd.DataFrame, statistics: AttentionStatistics,
                    by_round: pd.DataFrame | None = None) -> dict:
    """The claim row of "high-quality images concentrate their attention".

    With ``by_round`` (:func:`iqalib.analysis.attention.concentration_by_round`)
    the verdict is taken across the rounds' models: the rule's signed-rank test of their
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


def across_rounds_verdict(summary: Mapping) -> str:
    """The attention claim's verdict from :func:`iqalib.analysis.attention.rounds_summary`, by the book's rule
    (:func:`~iqalib.analysis.significance.rule_verdict`: rounds with a positive correlation are for the claim)."""
    if not summary["usable"]:
        return "untested (attention collapsed or constant in every round)"
    return rule_verdict(summary["usable"], summary["positive"], summary["negative"], summary["p"])


def _attention_claim_across_rounds(by_round: pd.DataFrame) -> dict:
    summary = rounds_summary(by_round)
    usable, left_out = summary["usable"], summary["left_out"]
    edition = (f"Spearman(concentration, MOS) of {usable} round(s)' models"
               + ((f": median {summary['median']:+.3f} (range {summary['min']:+.3f} to {summary['max']:+.3f}), "
                   if usable > 1 else f": {summary['median']:+.3f}, ")
                  + f"positive in {summary['positive']}" if usable else "")
               + (f"; {left_out} round(s) left out (attention collapsed or constant)" if left_out else ""))
    return claim_row("attention_concentrates", edition, across_rounds_verdict(summary))


def attention_round_sentences(by_round: pd.DataFrame) -> list[str]:
    """The seed's attention claim across the rounds' models (:func:`across_rounds_verdict` decides)."""
    summary = rounds_summary(by_round)
    usable, rounds = summary["usable"], summary["rounds"]
    out = []
    if summary["left_out"]:
        out.append(f"In {summary['left_out']} of {rounds} rounds the attention collapsed onto one stage (or the "
                   "correlation is undefined); those models are left out.")
    if not usable:
        return out
    spread = (f"median {summary['median']:+.3f} (range {summary['min']:+.3f} to {summary['max']:+.3f}) over "
              f"{usable} models" if usable > 1 else f"{summary['median']:+.3f} (one model, no spread)")
    out.append(f"Each round's model on its own test split: Spearman(concentration, MOS) {spread}, positive in "
               f"{summary['positive']} of {usable}; its interval lies above 0 in "
               f"{summary['interval_above']} and below 0 in {summary['interval_below']}.")
    if 0 < summary["interval_above"] + summary["interval_below"] < usable:
        out.append("So one model's verdict depends on which training draw it is: the claim is judged across rounds.")
    verdict = across_rounds_verdict(summary)
    if summary["tests_note"]:
        out.append(f"Across rounds the claim is {verdict}.")
    else:
        out.append(f"Across rounds (signed-rank test p = {summary['p']:.3f}) the claim is {verdict}.")
    return out
