"""Is training fragile in its learning rate? The sentences and claim row of the learning-rate chapter.

They read :func:`iqalib.experiments.lr_sweep`'s table (one row per rate and
round) with the rate each row really moves
(:func:`iqalib.analysis.recipes.learning_rate_axis`). Rounds of a sweep share
their splits, so each step between neighbouring rates within one decade is
measured round by round (:func:`lr_moves`) and decided by the book's one rule
(:func:`iqalib.analysis.significance.decision_rule`: a two-sided Wilcoxon
signed-rank test of the per-round differences, p < 0.05, at least 6 rounds). The claim "training
is not fragile in its learning rate" adds an effect-size floor to its own
definition, :data:`LR_JUMP`: a step is *fragile* when the rule finds that it
moves SRCC and its median paired move is at least :data:`LR_JUMP`
(contradicted); the claim is *supported* when, for every step, the rule finds
the per-round moves smaller than :data:`LR_JUMP` (the rule's test of
``LR_JUMP - |move|``); with fewer rounds it is untested.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from iqalib.analysis.claims import claim_row
from iqalib.analysis.significance import MIN_ROUNDS_FOR_TESTS, decide, medians_disagree, rule_verdict
from iqalib.analysis.words import counted

# A rate step that costs as much SRCC as the seed's claimed gain of SMART-IQA over HyperIQA
# (KonIQ-10k 0.938 vs about 0.906) would undo the architecture's gain: fragile.
LR_JUMP = 0.03


def lr_moves(sweep: pd.DataFrame, rates: Sequence[float]) -> pd.DataFrame:
    """Each step between neighbouring swept rates within one decade, paired round by round.

    Rounds of a sweep share their splits (round ``r`` of every rate trains and
    tests on the same images), so the change a rate step makes is measured per
    round: ``delta`` is the median over rounds of SRCC(b) - SRCC(a), ``same_way``
    the number of rounds that moved in its direction (of ``rounds``), ``p``
    the rule's signed-rank test of the moves, ``verdict`` the book's rule on "the step moves
    SRCC" (:func:`~iqalib.analysis.significance.decide`), ``fragile`` that it
    does and by at least :data:`LR_JUMP`, and ``small`` that the rule finds
    every round's move smaller than :data:`LR_JUMP` (the rule's test of
    ``LR_JUMP - |move|``). Rounds are the ``round`` column, else the order of
    each rate's rows.
    """
    frame = sweep.assign(rate=np.asarray(rates, dtype=float))
    if "round" not in frame:
        frame = frame.assign(round=frame.groupby("rate").cumcount())
    table = frame.pivot_table(index="round", columns="rate", values="srcc", aggfunc="first").sort_index(axis=1)
    rows = []
    for a, b in zip(table.columns[:-1], table.columns[1:]):
        if b / a > 10 * (1 + 1e-9):
            continue
        diffs = (table[b] - table[a]).dropna().to_numpy()
        moves = decide(diffs)  # two-sided: a step moves SRCC either way
        delta = moves["median_delta"]
        same_way = int((np.sign(diffs) == np.sign(delta)).sum()) if delta else 0
        moved = moves["verdict"] in ("supported", "contradicted")
        small = decide(LR_JUMP - np.abs(diffs))["verdict"] == "supported"
        rows.append({"a": float(a), "b": float(b), "median_a": float(table[a].median()),
                     "median_b": float(table[b].median()), "delta": delta, "rounds": len(diffs),
                     "same_way": same_way, "p": moves["p"], "verdict": moves["verdict"],
                     "fragile": bool(moved and abs(delta) >= LR_JUMP), "small": bool(small)})
    return pd.DataFrame(rows, columns=["a", "b", "median_a", "median_b", "delta", "rounds", "same_way",
                                       "p", "verdict", "fragile", "small"])


def lr_table(sweep: pd.DataFrame, rates: Sequence[float]) -> pd.DataFrame:
    """Per rate of the axis: the trunk rate, rounds, median test SRCC and PLCC, and each round's selected epoch."""
    frame = sweep.assign(rate=np.asarray(rates, dtype=float))
    rows = []
    for rate, part in frame.groupby("rate"):
        rows.append({"rate": rate, "trunk_lr": float(part["trunk_lr"].iloc[0]) if "trunk_lr" in part else rate,
                     "rounds": len(part), "median srcc": float(part["srcc"].median()),
                     "median plcc": float(part["plcc"].median()) if "plcc" in part else np.nan,
                     "selected epochs": ", ".join(str(int(e)) for e in part["best_epoch"])})
    table = pd.DataFrame(rows).set_index("rate")
    return table if "plcc" in frame else table.drop(columns=["median plcc"])


def _by_rate(sweep: pd.DataFrame, rates: Sequence[float]) -> tuple[pd.DataFrame, pd.Series, int]:
    """The sweep with its ``rate`` column, median SRCC per rate (ascending rate), fewest rounds of a rate."""
    frame = sweep.assign(rate=np.asarray(rates, dtype=float))
    medians = frame.groupby("rate")["srcc"].median().sort_index()
    return frame, medians, int(frame.groupby("rate").size().min())


def _step_sentence(move) -> str:
    """One rate step that moves SRCC by :data:`LR_JUMP` or more: fragile, untested, or not shown by the rule."""
    step = (f"from {move.a:g} to {move.b:g} the rate moves SRCC by {move.delta:+.3f} (median over rounds, "
            f"paired by split; medians {move.median_a:.3f} and {move.median_b:.3f})")
    disagree = medians_disagree(move.delta, move.median_b, move.median_a)
    step += f"; {disagree}" if disagree else ""
    if move.rounds < MIN_ROUNDS_FOR_TESTS:
        return (f"Within one decade, {step}, the same way in {move.same_way} of {counted(move.rounds, 'round')}; "
                f"the book's rule needs {MIN_ROUNDS_FOR_TESTS} rounds, so this step is untested.")
    if move.fragile:
        return (f"Within one decade, {step}, the same way in {move.same_way} of {counted(move.rounds, 'round')} "
                f"(signed-rank test p = {move.p:.3f}): at this budget training is fragile in its learning rate "
                f"(a step of {LR_JUMP:g} or more is as large as the gain the seed reports for SMART-IQA over "
                "HyperIQA).")
    return (f"Within one decade, {step}, but only {move.same_way} of {counted(move.rounds, 'round')} moved that "
            f"way (signed-rank test p = {move.p:.2f}): by the book's rule the step does not move SRCC.")


def lr_sentences(sweep: pd.DataFrame, rates: Sequence[float], label: str, epochs: int | None = None) -> list[str]:
    """Best rate, each rate step within one decade that moves SRCC by >= :data:`LR_JUMP`, epoch-1 selections.

    ``epochs`` (when known) of 1 silences the epoch-1 rule: there was no other epoch to select.
    """
    frame, medians, _ = _by_rate(sweep, rates)
    best = medians.idxmax()
    out = [f"Best median test SRCC {medians.max():.3f} at {label.split(';')[0]} {best:g} "
           f"(swept {', '.join(f'{r:g}' for r in medians.index)})."]
    steps = lr_moves(sweep, rates)
    moves = steps.dropna(subset=["delta"])  # NaN: the two rates share no round
    out += [_step_sentence(move) for move in moves[moves["delta"].abs() >= LR_JUMP].itertuples()]
    if not (moves["delta"].abs() >= LR_JUMP).any() and len(medians) > 1:
        if len(moves):
            out.append(f"Neighbouring rates within one decade change SRCC by at most {moves['delta'].abs().max():.3f} "
                       f"(median over rounds, paired by split), less than {LR_JUMP:g}.")
        elif len(steps):
            out.append("Neighbouring rates within one decade share no round, so no split pairs them.")
        else:
            out.append("No two swept rates lie within one decade of each other.")
    first = frame[frame["best_epoch"] == 1]
    if len(first) and epochs != 1:
        out.append(f"At {', '.join(f'{r:g}' for r in sorted(first['rate'].unique()))} a round selected epoch 1, "
                   "so there the longer training did not help.")
    out.append(f"By the book's rule, the claim that training is not fragile in its learning rate is "
               f"{lr_claim(sweep, rates)['verdict']}.")
    return out


def lr_claim(sweep: pd.DataFrame, rates: Sequence[float]) -> dict:
    """The claim row of "not fragile in its learning rate" by the book's rule (:func:`lr_moves`): contradicted
    by a rate step within one decade that the rule finds moving SRCC by :data:`LR_JUMP` or more, supported
    when the rule finds every step's moves below :data:`LR_JUMP`, untested with too few rounds."""
    _, medians, rounds = _by_rate(sweep, rates)
    edition = ", ".join(f"{rate:g}: {value:.3f}" for rate, value in medians.items())
    if len(medians) < 2:
        return claim_row("lr_robust", edition, "untested (one rate)")
    moves = lr_moves(sweep, rates)
    edition = f"median SRCC by rate ({rounds} round{'s' if rounds != 1 else ''} each): {edition}"
    if not len(moves):
        return claim_row("lr_robust", edition, "untested (no two rates within one decade)")
    moves = moves.dropna(subset=["delta"])
    if not len(moves):
        return claim_row("lr_robust", edition, "untested (neighbouring rates share no round, so no split pairs them)")
    paired = int(moves["rounds"].min())
    if paired < MIN_ROUNDS_FOR_TESTS:
        return claim_row("lr_robust", edition, rule_verdict(paired, 0, 0, np.nan))
    return claim_row("lr_robust", edition, _moves_verdict(moves))


def _moves_verdict(moves: pd.DataFrame) -> str:
    """The learning-rate claim's verdict from the paired rate steps (at least one, each with the rule's rounds)."""
    fragile = moves[moves["fragile"]]
    if len(fragile):
        worst = fragile.loc[fragile["delta"].abs().idxmax()]
        return (f"contradicted (from {worst['a']:g} to {worst['b']:g} SRCC moves {worst['delta']:+.3f}, the same "
                f"way in {int(worst['same_way'])} of {int(worst['rounds'])} rounds, signed-rank test p = "
                f"{worst['p']:.3f})")
    largest = moves.loc[moves["delta"].abs().idxmax()]
    if moves["small"].all():
        return (f"supported (every step within one decade moves SRCC by less than {LR_JUMP:g} by the rule's "
                f"signed-rank test; the largest median move is {largest['delta']:+.3f})")
    unclear = moves[~moves["small"]].iloc[0]
    return (f"not supported (from {unclear['a']:g} to {unclear['b']:g} SRCC moves {unclear['delta']:+.3f}, "
            f"signed-rank test p = {unclear['p']:.2f}: neither shown to move it by {LR_JUMP:g} nor shown to stay "
            "below that)")
