"""Small helpers that put numbers into words, shared by every chapter's closing sentences.

Each chapter's rules live with their topic (:mod:`iqalib.analysis.runs`,
:mod:`iqalib.analysis.significance`, :mod:`iqalib.analysis.lr_sweep`, ...);
what they have in common is here: :func:`numbers_say` renders the sentences
as the "What the numbers say" list, the rest format counts and spreads.
"""
from __future__ import annotations

from typing import Iterable, Sequence

import numpy as np


def numbers_say(*sentence_lists: Iterable[str]):
    """The sentences as a Markdown bullet list (rendered by the notebook and the book)."""
    sentences = [s for group in sentence_lists for s in group]
    text = "\n".join(f"- {s}" for s in sentences) if sentences else "- (no numbers to report)"
    try:
        from IPython.display import Markdown  # optional: only notebooks have IPython
    except ImportError:  # outside Jupyter the plain text is as good
        return text
    return Markdown(text)


def counted(count: int, word: str) -> str:
    """"1 round", "3 rounds"."""
    return f"{count} {word}{'' if count == 1 else 's'}"


def rounds_words(rounds: Sequence[int]) -> str:
    """"round 2", "rounds 0, 1 and 3"."""
    rounds = [str(r) for r in rounds]
    if len(rounds) == 1:
        return f"round {rounds[0]}"
    return f"rounds {', '.join(rounds[:-1])} and {rounds[-1]}"


def spread_words(values: Sequence[float], digits: int = 3) -> str:
    """"median 0.712 (range 0.650 to 0.780, 3 rounds)", or "0.712 (one round, no spread)"."""
    values = np.asarray(values, dtype=float)
    if values.size == 1:
        return f"{values[0]:.{digits}f} (one round, no spread)"
    return (f"median {np.median(values):.{digits}f} (range {values.min():.{digits}f} to {values.max():.{digits}f}, "
            f"{values.size} rounds)")


def median_and_range(values: Sequence[float]) -> str:
    """"0.712 (0.650 to 0.780)", or "0.712" for one value."""
    values = np.asarray(values, dtype=float)
    if values.size == 1:
        return f"{values[0]:.3f}"
    return f"{np.median(values):.3f} ({values.min():.3f} to {values.max():.3f})"


def interval_words(low: float, high: float, why: str, digits: int = 3) -> str:
    """"[+0.100, +0.500]", or "n/a (why)" where either end could not be computed (never "[+nan, +nan]")."""
    if np.isfinite(low) and np.isfinite(high):
        return f"[{low:+.{digits}f}, {high:+.{digits}f}]"
    return f"n/a ({why})"
