"""What a model costs against how fast it is measured: the sentences of the model-size chapter.

They read :func:`iqalib.experiments.model_cost_table` (GFLOPs per patch,
measured patches/s, the edition's test SRCC) and flag measurements that
cannot both be right: a model with :data:`FLOPS_RATIO` times another's FLOPs
measured at least as fast, or a model that scores patches more slowly than it
trains on them.
"""
from __future__ import annotations

from typing import Mapping

import numpy as np
import pandas as pd

FLOPS_RATIO = 4.0


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
