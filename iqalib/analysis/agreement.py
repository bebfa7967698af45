"""Do two builds of one edition agree? Medians and verdicts of book folders side by side.

The same edition built on different CPUs (bf16, fp32, fp32 limited to AVX2)
trains with different rounding, so each round's model differs as if drawn
with another seed. A design a textbook can rely on gives the same verdicts
and medians within :data:`MEDIAN_TOLERANCE` anyway. :func:`agreement` reads
what each build wrote (every run's ``summary.json`` and the chapters'
``claims/*.json``) and says, per run and per claim, whether the builds agree.
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd

from iqalib.analysis.claims import OUTCOMES, verdict_outcome
from iqalib.errors import DataError

MEDIAN_TOLERANCE = 0.02  # the bar: medians over rounds within 0.02 of each other


def verdict_kind(verdict: str) -> str:
    """The verdict's outcome (:func:`iqalib.analysis.claims.verdict_outcome`), one of the book's
    :data:`~iqalib.analysis.claims.OUTCOMES`; anything else is not a verdict of this book."""
    kind = verdict_outcome(verdict).lower()
    if kind not in OUTCOMES:
        raise DataError(f"unknown verdict {verdict!r}; expected one of {', '.join(OUTCOMES)}")
    return kind


def _read_json(path: Path):
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise DataError(f"{path}: unreadable ({exc}); rebuild that edition") from None


def build_numbers(out_dir: str | Path) -> tuple[dict[str, float], dict[str, str]]:
    """({run: median test SRCC}, {claim: verdict}) of one book folder (``runs/book/<profile>``)."""
    out = Path(out_dir)
    if not (out / "claims").is_dir():
        raise DataError(f"{out}: no claims/ folder; pass the out_dir of a built book (runs/book/<profile>)")
    medians = {}
    for summary in sorted(out.glob("*/summary.json")):
        value = _read_json(summary).get("median_test_srcc")
        if value is not None:
            medians[summary.parent.name] = float(value)
    verdicts = {}
    for chapter in sorted((out / "claims").glob("*.json")):
        for row in _read_json(chapter).get("claims", []):
            verdicts[row["claim"]] = row["verdict"]
    return medians, verdicts


def agreement(builds: Mapping[str, str | Path]) -> dict:
    """Per run the builds' medians and their spread, per claim the verdicts, and whether all agree.

    ``builds`` maps a label (``bf16``...) to a book folder. Runs or claims
    missing from a build count as disagreement (NaN medians, verdict
    ``missing``).
    """
    if len(builds) < 2:
        raise DataError("agreement needs at least two builds to compare")
    numbers = {label: build_numbers(path) for label, path in builds.items()}
    runs = sorted(set().union(*(m for m, _ in numbers.values())))
    claims = sorted(set().union(*(v for _, v in numbers.values())))
    medians = pd.DataFrame({label: [m.get(r, np.nan) for r in runs] for label, (m, _) in numbers.items()},
                           index=pd.Index(runs, name="run"))
    spread = medians.max(axis=1) - medians.min(axis=1)
    medians["spread"] = spread
    medians["within"] = spread.le(MEDIAN_TOLERANCE) & medians.drop(columns="spread").notna().all(axis=1)
    verdicts = pd.DataFrame({label: [v.get(c, "missing") for c in claims] for label, (_, v) in numbers.items()},
                            index=pd.Index(claims, name="claim"))
    kinds = verdicts.apply(lambda col: col.map(lambda v: "missing" if v == "missing" else verdict_kind(v)))
    verdicts["agree"] = kinds.nunique(axis=1).eq(1) & ~kinds.eq("missing").any(axis=1)
    return {"builds": {k: str(v) for k, v in builds.items()}, "tolerance": MEDIAN_TOLERANCE,
            "medians": medians, "verdicts": verdicts,
            "all_medians_within": bool(medians["within"].all()), "all_verdicts_agree": bool(verdicts["agree"].all())}
