"""Is training fragile in its learning rate? The sentences and claim row of the learning-rate chapter.

They read :func:`iqalib.experiments.lr_sweep`'s table (one row per rate and
round) with the rate each row really moves
(:func:`iqalib.analysis.recipes.learning_rate_axis`). Rounds of a sweep share
their splits, so each step between neighbouring rates within one decade is
measured round by round (:func:`lr_moves`). A step is fragile when it moves
SRCC by :data:`LR_JUMP` or more the same way in every round (with 6 or more
rounds: a sign test across rounds); with fewer than :data:`MIN_LR_ROUNDS`
rounds per rate a change of split can move SRCC as much, and no verdict is
given.
"""
from __future__ import annotations

from typing import Sequence

import numpy as np
import pandas as pd

from iqalib.analysis.claims import claim_row
from iqalib.analysis.significance import SIGNIFICANCE, sign_test
from iqalib.analysis.words import counted

# A rate step that costs as much SRCC as the seed's claimed gain of SMART-IQA over HyperIQA
# (KonIQ-10k 0.938 vs about 0.906) would undo the architecture's gain: fragile.
LR_JUMP = 0.03
MIN_LR_ROUNDS = 3  # rounds per rate before a jump between rates is read as the rate's, not the split's


def lr_moves(sweep: pd.DataFrame, rates: Sequence[float]) -> pd.DataFrame:
    """Each step between neighbouring swept rates within one decade, paired round by round.

    Rounds of a sweep share their splits (round ``r`` of every rate trains and
    tests on the same images), so the change a rate step makes is measured per
    round: ``delta`` is the median over rounds of SRCC(b) - SRCC(a), ``same_way``
    the number of rounds that moved in its direction (of ``rounds``), and
    ``fragile`` says the step moved SRCC by at least :data:`LR_JUMP` the same way
    in every round (with 6 or more rounds: a sign test across rounds, p < 0.05).
    Rounds are the ``round`` column, else the order of each rate's rows.
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
        delta = float(np.median(diffs)) if len(diffs) else np.nan
        same_way = int((np.sign(diffs) == np.sign(delta)).sum()) if delta else 0
        p, _ = sign_test(diffs)
        consistent = (p < SIGNIFICANCE) if np.isfinite(p) else (len(diffs) >= MIN_LR_ROUNDS and same_way == len(diffs))
        rows.append({"a": float(a), "b": float(b), "median_a": float(table[a].median()),
                     "median_b": float(table[b].median()), "delta": delta, "rounds": len(diffs),
                     "same_way": same_way, "sign_p": p,
                     "fragile": bool(abs(delta) >= LR_JUMP and consistent)})
    return pd.DataFrame(rows, columns=["a", "b", "median_a", "median_b", "delta", "rounds", "same_way",
                                       "sign_p", "fragile"])


def _by_rate(sweep: pd.DataFrame, rates: Sequence[float]) -> tuple[pd.DataFrame, pd.Series, int]:
    """The sweep with its ``rate`` column, median SRCC per rate (ascending rate), fewest rounds of a rate."""
    frame = sweep.assign(rate=np.asarray(rates, dtype=float))
    medians = frame.groupby("rate")["srcc"].median().sort_index()
    return frame, medians, int(frame.groupby("rate").size().min())


def _step_sentence(move, rounds: int) -> str:
    """One rate step that moves SRCC by :data:`LR_JUMP` or more: fragile, too few rounds, or the split's doing."""
    step = (f"from {move.a:g} to {move.b:g} the rate moves SRCC by {move.delta:+.3f} (median over rounds, "
            f"paired by split; medians {move.median_a:.3f} and {move.median_b:.3f})")
    paired = min(rounds, move.rounds)  # rounds that pair the two rates
    if paired < MIN_LR_ROUNDS:
        return (f"Within one decade, {step}, but with {counted(paired, 'round')} per rate a change of split "
                f"can move SRCC as much (a verdict needs {MIN_LR_ROUNDS} rounds per rate).")
    if move.fragile:
        return (f"Within one decade, {step}, the same way in {move.same_way} of {counted(move.rounds, 'round')}: "
                f"at this budget training is fragile in its learning rate (a step of {LR_JUMP:g} or "
                "more is as large as the gain the seed reports for SMART-IQA over HyperIQA).")
    return (f"Within one decade, {step}, but only {move.same_way} of {counted(move.rounds, 'round')} "
            "moved that way: the split moves SRCC as much as the rate.")


def lr_sentences(sweep: pd.DataFrame, rates: Sequence[float], label: str, epochs: int | None = None) -> list[str]:
    """Best rate, each rate step within one decade that moves SRCC by >= :data:`LR_JUMP`, epoch-1 selections.

    ``epochs`` (when known) of 1 silences the epoch-1 rule: there was no other epoch to select.
    """
    frame, medians, rounds = _by_rate(sweep, rates)
    best = medians.idxmax()
    out = [f"Best median test SRCC {medians.max():.3f} at {label.split(';')[0]} {best:g} "
           f"(swept {', '.join(f'{r:g}' for r in medians.index)})."]
    steps = lr_moves(sweep, rates)
    moves = steps.dropna(subset=["delta"])  # NaN: the two rates share no round
    out += [_step_sentence(move, rounds) for move in moves[moves["delta"].abs() >= LR_JUMP].itertuples()]
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
    return out


def lr_claim(sweep: pd.DataFrame, rates: Sequence[float]) -> dict:
    """The claim row of "not fragile in its learning rate": contradicted by a rate step within one decade
    that moves SRCC by :data:`LR_JUMP` or more the same way in every round (:func:`lr_moves`)."""
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
    if rounds < MIN_LR_ROUNDS:
        return claim_row("lr_robust", edition, f"untested ({counted(rounds, 'round')} per rate; a change of split "
                         f"moves SRCC as much, a verdict needs {MIN_LR_ROUNDS})")
    return claim_row("lr_robust", edition, _moves_verdict(moves))


def _moves_verdict(moves: pd.DataFrame) -> str:
    """The learning-rate claim's verdict from the paired rate steps (at least one, rounds enough)."""
    largest = moves.loc[moves["delta"].abs().idxmax()]
    fragile = moves[moves["fragile"]]
    if len(fragile):
        worst = fragile.loc[fragile["delta"].abs().idxmax()]
        return (f"contradicted (from {worst['a']:g} to {worst['b']:g} SRCC moves {worst['delta']:+.3f}, the same "
                f"way in {int(worst['same_way'])} of {int(worst['rounds'])} rounds)")
    if abs(largest["delta"]) >= LR_JUMP:
        if largest["rounds"] < MIN_LR_ROUNDS:
            return (f"untested (from {largest['a']:g} to {largest['b']:g} only "
                    f"{counted(int(largest['rounds']), 'round')} pair the two rates, a verdict needs "
                    f"{MIN_LR_ROUNDS})")
        return (f"untested (from {largest['a']:g} to {largest['b']:g} SRCC moves {largest['delta']:+.3f}, but only "
                f"{int(largest['same_way'])} of {int(largest['rounds'])} rounds moved that way)")
    return f"supported (at most {abs(largest['delta']):.3f} within one decade, below {LR_JUMP:g})"
