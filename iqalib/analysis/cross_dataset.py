"""Does the model transfer? Sentences and the claim row of the cross-dataset chapter.

They read :func:`iqalib.experiments.cross_dataset_matrix` (row 0: the
training set's own test split; the others: other data sets). The model
"transfers" when SRCC on every other set of human ratings lies within
:data:`TRANSFER_DROP` of its own test split; a pair involving the demo's
simulated labels tests the code, not that claim.
"""
from __future__ import annotations

import pandas as pd

from iqalib.analysis.claims import claim_row

TRANSFER_DROP = 0.15  # "transfers": SRCC on another set within this of the set's own test split


def cross_dataset_sentences(matrix: pd.DataFrame) -> list[str]:
    """SRCC on each other set against the own test split, and whether simulated labels are involved."""
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
