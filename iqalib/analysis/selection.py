"""How each round chose its epoch, and how far validation and test disagree on the chosen one.

Every round keeps the epoch with the best validation SRCC and tests it once.
When the validation split is small (the demo's 75 images from 3 source
photographs), that choice can be noise: the selected epoch's validation SRCC
and its test SRCC then differ by a lot, in either direction.
:func:`selection_table` lists, per run and round, the selected epoch, the two
SRCCs and their gap, read from the run's ``results.json`` files (via
:func:`iqalib.experiments.run_or_load`'s results). :func:`selection_sentences`
says when a round selected its first epoch, and when validation and test
disagree by :data:`GAP_LIMIT` or more.
"""
from __future__ import annotations

from typing import Mapping

import pandas as pd

from iqalib.analysis.words import rounds_words

GAP_LIMIT = 0.2  # validation and test SRCC of the selected epoch this far apart: the selection is noise
COLUMNS = ("run", "round", "selected_epoch", "epochs", "val_srcc", "test_srcc", "gap")


def selection_table(results: Mapping | list) -> pd.DataFrame:
    """One row per run and round: ``selected_epoch`` of ``epochs``, its ``val_srcc``, ``test_srcc``, ``gap``.

    ``results`` is one :func:`~iqalib.experiments.run_or_load` dict, a list of
    them or a dict of them by label (the label becomes ``run``). ``gap`` is
    validation minus test SRCC of the selected epoch.
    """
    if isinstance(results, Mapping) and "round_results" in results:
        items = [(results["name"], results)]
    elif isinstance(results, Mapping):
        items = list(results.items())
    else:
        items = [(r["name"], r) for r in results]
    rows = []
    for label, result in items:
        for r in result["round_results"]:
            rows.append({"run": label, "round": r["round"], "selected_epoch": r["best_epoch"],
                         "epochs": len(r["history"]), "val_srcc": r["val_srcc"], "test_srcc": r["test"]["srcc"],
                         "gap": r["val_srcc"] - r["test"]["srcc"]})
    return pd.DataFrame(rows, columns=list(COLUMNS))


def selection_sentences(selection: pd.DataFrame) -> list[str]:
    """Epoch-1 selections and validation-test gaps of :func:`selection_table`."""
    out = []
    for run, part in selection.groupby("run", sort=False):
        first = part[(part["selected_epoch"] == 1) & (part["epochs"] > 1)]
        if len(first):
            out.append(f"{run}: {rounds_words(first['round'].tolist())} selected epoch 1 of "
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
