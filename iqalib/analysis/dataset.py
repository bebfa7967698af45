"""What a data set and its split say: size, MOS scale, split sizes and the sources behind the test split.

A test split from fewer than :data:`FEW_SOURCES` source photographs gives
coarse bootstrap intervals (they resample whole sources), and the sentence
says so.
"""
from __future__ import annotations

from typing import Mapping

import pandas as pd

from iqalib.analysis.words import counted

FEW_SOURCES = 10


def source_sentences(test_groups: pd.Series | None, n_test: int) -> list[str]:
    """How many sources the test split has, hence what the bootstrap resamples and how coarse it is."""
    if test_groups is None:
        return [f"The {n_test} test images have no recorded shared source, so bootstrap intervals "
                "resample images."]
    sources = int(pd.Series(test_groups).nunique())
    sentence = (f"The {n_test} test images come from {counted(sources, 'source photograph')}; bootstrap intervals "
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
           + (f" of {counted(groups.nunique(), 'source photograph')}" if shared else "")
           + f", MOS from {table.mos.min():.1f} to {table.mos.max():.1f} on a {table.mos_range[0]:g}-"
           f"{table.mos_range[1]:g} scale; split {', '.join(f'{k} {len(v)}' for k, v in parts.items())}."]
    if getattr(table, "synthetic", False):
        out.append("The set is synthetic: its numbers test the code, not the papers' claims.")
    test = parts["test"].frame
    out += source_sentences(test["group"].astype(str) if shared else None, len(test))
    return out
