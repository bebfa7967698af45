"""The claims the book tests, and the table that collects their verdicts.

Every chapter closes with "What the numbers say": sentences chosen by rules
from the run's numbers, never typed for a particular result, including the
ones about what went wrong. Each rule lives with its topic, next to its
threshold:

==========================  =====================================================
rule                        module
==========================  =====================================================
the data set and its split  :mod:`iqalib.analysis.dataset`
one run (spread, scale)     :mod:`iqalib.analysis.runs`
epoch selection             :mod:`iqalib.analysis.selection`
the linear probe's floor    :mod:`iqalib.analysis.linear_probe`
"A beats B"                 :mod:`iqalib.analysis.significance` (:func:`~iqalib.analysis.significance.pair_verdict`)
recipes of compared arms    :mod:`iqalib.analysis.recipes`
the ablation's claims       :mod:`iqalib.analysis.ablation`
losses                      :mod:`iqalib.analysis.loss_study`
stage attention             :mod:`iqalib.analysis.attention_verdicts`
transfer to other sets      :mod:`iqalib.analysis.cross_dataset`
learning rate               :mod:`iqalib.analysis.lr_sweep`
cost against speed          :mod:`iqalib.analysis.model_size`
benchmarks and precision    :mod:`iqalib.analysis.performance`
==========================  =====================================================

The chapters record the claims they test (:func:`record_claims`, one JSON
file per chapter under ``<out_dir>/claims/``); the summary chapter collects
them into one table (:func:`claims_table`). The sentences share their
number formatting (:mod:`iqalib.analysis.words`).
"""
from __future__ import annotations

import json
from pathlib import Path
from typing import Sequence

import pandas as pd

from iqalib.files import atomic_write_json

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
    "smart_worth_cost": ("SMART-IQA is worth its cost: a significant SRCC gain over HyperIQA at most 1.5x "
                         "its cost per patch", "10_model_size", "not weighed against cost by the seed"),
}


def claim_row(claim: str, edition: str, verdict: str) -> dict:
    """One row of the claims table: a claim of :data:`CLAIMS`, this edition's numbers and the verdict."""
    if claim not in CLAIMS:
        raise KeyError(f"unknown claim {claim!r}; known: {sorted(CLAIMS)}")
    return {"claim": claim, "edition": edition, "verdict": verdict}


def record_claims(out_dir: str | Path, chapter: str, rows: Sequence[dict]) -> Path:
    """Write a chapter's claim rows to ``<out_dir>/claims/<chapter>.json`` (atomically) for the summary."""
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
        row = recorded.get(claim, {"edition": "not run in this edition",
                                   "verdict": "untested (its chapter did not run in this edition)"})
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


# How a verdict can come out: its words before any " (reason)".
OUTCOMES = ("supported", "partly supported", "not supported", "mixed", "contradicted", "untested")


def verdict_outcome(verdict: str) -> str:
    """The outcome a verdict states, its words before any parenthesised reason (one of :data:`OUTCOMES`
    for the book's own verdicts)."""
    return str(verdict).split(" (", 1)[0].strip()


def summary_sentences(table: pd.DataFrame) -> list[str]:
    """How many of the book's claims this edition decided, how they came out, and how many stay untested."""
    outcome = table["verdict"].map(verdict_outcome)
    counts = outcome.value_counts()
    decided = int(len(table) - counts.get("untested", 0))
    order = [o for o in OUTCOMES if o != "untested"]
    order += sorted(set(counts.index) - set(order) - {"untested"})
    parts = [f"{counts[word]} {word}" for word in order if counts.get(word, 0)]
    untested = int(counts.get("untested", 0))
    return [f"This edition decides {decided} of the book's {len(table)} claims"
            + (f": {', '.join(parts)}" if parts else "")
            + (f"; {untested} stay untested, each with its reason in the table" if untested else "") + "."]
