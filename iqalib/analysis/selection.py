"""How each round chose its epoch, and how far validation and test disagree on the chosen one.

Every round keeps the epoch with the best validation SRCC and tests it once.
When the validation split is small (the demo's 75 images from 3 source
photographs), that choice can be noise: the selected epoch's validation SRCC
and its test SRCC then differ by a lot, in either direction.
:func:`selection_table` lists, per run and round, the selected epoch, the two
SRCCs and their gap, read from the run's ``results.json`` files (via
:func:`iqalib.experiments.run_or_load`'s results).
"""
from __future__ import annotations

from typing import Mapping

import pandas as pd

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
