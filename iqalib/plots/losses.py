"""Tables of the loss study (notebook 06_losses); its figure is :func:`iqalib.plots.ablation.plot_rounds`."""
from __future__ import annotations

import pandas as pd

from iqalib.plots.ablation import format_ablation_table


def format_loss_table(table: pd.DataFrame) -> pd.DataFrame:
    """:func:`~iqalib.plots.ablation.format_ablation_table` of SRCC, PLCC, PLCC after the logistic map
    and RMSE per loss, with what anchors each loss's scores and their range over the test images;
    RMSE is left out where the loss does not keep the MOS scale (it would measure the offset)."""
    out = format_ablation_table(table, metric_names=("srcc", "plcc", "plcc_logistic", "rmse"))
    out = out.rename(columns={"PLCC_LOGISTIC": "PLCC (logistic)"})
    out.loc[table["scores"] != "mos", "RMSE"] = "n/a: not on the MOS scale"
    out.insert(1, "scores", table["scores"])
    out["test scores"] = [f"{r['pred_min']:.3g} to {r['pred_max']:.3g}" for _, r in table.iterrows()]
    return out.drop(columns=["model"])
