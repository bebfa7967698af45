"""What one run's numbers say: its headline, how far its rounds disagree, and predictions off the scale.

The rules and their thresholds:

==========================  ==========================================================================
rule                        fires when
==========================  ==========================================================================
round spread                test SRCC over rounds spans >= :data:`SPREAD_LIMIT`
predictions off the scale   >= :data:`OUTSIDE_SHARE` of the predictions lie more than
                            :data:`OUTSIDE_MARGIN` of the MOS scale's width outside it
==========================  ==========================================================================

:func:`run_sentences` adds the epoch selection's sentences
(:func:`iqalib.analysis.selection.selection_sentences`);
:func:`ceiling_sentences` sets the best run against what the demo's labels allow.
"""
from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import pandas as pd

from iqalib.analysis.selection import selection_sentences, selection_table
from iqalib.analysis.words import spread_words

SPREAD_LIMIT = 0.2
OUTSIDE_MARGIN = 0.25
OUTSIDE_SHARE = 0.05
NEAR_CEILING = 0.05  # the best run within this SRCC of the rater-noise ceiling is "close to what the labels allow"


def srcc_by_round(results: Mapping) -> dict[int, float]:
    """Test SRCC per round number (``round`` where recorded, else the position)."""
    return {int(r.get("round", i)): float(r["srcc"]) for i, r in enumerate(results["test_per_round"])}


def headline_sentence(results: Mapping) -> str:
    """The run's test SRCC and PLCC: the median and range over rounds, or the one round's."""
    srcc = np.array([r["srcc"] for r in results["test_per_round"]], dtype=float)
    plcc = np.array([r["plcc"] for r in results["test_per_round"]], dtype=float)
    if srcc.size == 1:
        return (f"{results['name']} on {results['data']}: test SRCC {srcc[0]:.3f}, PLCC {plcc[0]:.3f} "
                "(one round, no spread).")
    return (f"{results['name']} on {results['data']}, {srcc.size} rounds: test SRCC median {np.median(srcc):.3f} "
            f"(range {srcc.min():.3f} to {srcc.max():.3f}), PLCC median {np.median(plcc):.3f} "
            f"(range {plcc.min():.3f} to {plcc.max():.3f}).")


def spread_sentences(results: Mapping) -> list[str]:
    """Rounds whose test SRCC spans :data:`SPREAD_LIMIT` or more: the median is uncertain at that level."""
    srcc = np.array([r["srcc"] for r in results["test_per_round"]], dtype=float)
    if srcc.size > 1 and srcc.max() - srcc.min() >= SPREAD_LIMIT:
        return [f"{results['name']}: the rounds disagree by {srcc.max() - srcc.min():.2f} SRCC "
                f"({srcc.min():.2f} to {srcc.max():.2f}), so the median is uncertain at that level."]
    return []


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


def ceiling_sentences(ceilings: pd.DataFrame | None, runs: Mapping[str, Mapping]) -> list[str]:
    """What the demo's labels allow (:func:`iqalib.data.demo.label_ceilings`) against the best run."""
    if ceilings is None or not len(ceilings) or not runs:
        return []
    best_name, best = max(((name, float(np.median(list(srcc_by_round(r).values()))))
                           for name, r in runs.items()), key=lambda item: item[1])
    noise, oracle = ceilings["noise_ceiling"].to_numpy(float), ceilings["distortion_oracle"].to_numpy(float)
    limit = ("the labels are not what holds it back" if best < np.median(noise) - NEAR_CEILING
             else "it is close to what the labels allow")
    return [f"What the labels allow on these test splits: rater noise alone caps SRCC at {spread_words(noise)}; "
            f"a content-blind oracle that knows each image's distortion and level reaches {spread_words(oracle)}. "
            f"The best model here, {best_name}, has median {best:.3f}: {limit}."]
