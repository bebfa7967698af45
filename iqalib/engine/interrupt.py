"""Ctrl-C (SIGINT) or SIGTERM during training: stop at once, keep what is saved, say how to resume.

Training writes ``last.pt`` atomically after every epoch (model, optimizer,
scheduler, RNG state and history), and ``--resume`` replays from that epoch
boundary, so the run it finishes equals an uninterrupted one. The cheapest
correct answer to Ctrl-C is therefore to stop immediately: the interrupted
epoch is redone on resume, and no mid-epoch state is needed. SIGTERM (what
schedulers, ``kill`` and ``docker stop`` send) and SIGHUP (a closed terminal)
are answered the same way. Three pieces make that safe and clear:

* :func:`iqalib.signals.deferred_signals`, around every atomic write in
  :mod:`iqalib.files`: a signal that arrives while a file is written is held
  until the file is complete, then delivered.
* :func:`iqalib.signals.signals_as_interrupts`, inside :func:`report_interrupt`:
  SIGTERM and SIGHUP raise :class:`~iqalib.signals.Terminated` (a
  ``KeyboardInterrupt``), so every ``finally`` runs (the run folder's lock is
  released, temporary files are deleted) as for Ctrl-C.
* :func:`report_interrupt`, around the rounds in :func:`iqalib.engine.fit.fit`:
  turns the ``KeyboardInterrupt`` into :class:`TrainingInterrupted` (still a
  ``KeyboardInterrupt``) whose one-line message names the signal, each
  round's ``last.pt`` and the epoch it holds. ``iqalib train`` prints it with
  the exact command that resumes, and exits with status 128 + the signal's
  number (130 for Ctrl-C, 143 for SIGTERM).
"""
from __future__ import annotations

import contextlib
import signal
from pathlib import Path

import torch

from iqalib.signals import SIGNAL_NAMES, signals_as_interrupts


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by a signal; the message says what is saved.

    ``signum``: the signal (exit status 128 + signum); ``saved``: whether any
    round has a ``last.pt`` to resume from.
    """

    def __init__(self, message: str = "", signum: int = signal.SIGINT, saved: bool = True):
        super().__init__(message)
        self.signum = signum
        self.saved = saved


def saved_epochs(run_dir: str | Path) -> dict[str, int]:
    """``{round folder name: last finished epoch (1-based)}`` of every readable ``last.pt``.

    Tensors are memory-mapped, not read: this stays quick for large models.
    """
    found = {}
    for last in sorted(Path(run_dir).glob("round_*/last.pt")):
        try:
            state = torch.load(last, map_location="cpu", weights_only=True, mmap=True)
            found[last.parent.name] = int(state["epoch"]) + 1
        except Exception:  # an unreadable file is reported by --resume itself
            continue
    return found


def describe_saved(run_dir: str | Path, saved: dict[str, int] | None = None) -> str:
    """What :func:`saved_epochs` found (or ``saved``), in words."""
    run_dir = Path(run_dir)
    saved = saved_epochs(run_dir) if saved is None else saved
    if not saved:
        return f"no epoch had finished, nothing to resume in {run_dir}"
    rounds = ", ".join(f"{name}/last.pt holds epoch {epoch}" for name, epoch in saved.items())
    return f"in {run_dir}: {rounds}"


@contextlib.contextmanager
def report_interrupt(run_dir: str | Path):
    """Inside the block SIGTERM/SIGHUP act as Ctrl-C, and every such stop is re-raised as
    :class:`TrainingInterrupted` saying what is saved."""
    try:
        with signals_as_interrupts():
            yield
    except TrainingInterrupted:
        raise
    except KeyboardInterrupt as exc:
        signum = getattr(exc, "signum", signal.SIGINT)
        saved = saved_epochs(run_dir)
        name = SIGNAL_NAMES.get(signum, f"signal {signum}")
        raise TrainingInterrupted(f"training stopped by {name}; {describe_saved(run_dir, saved)}",
                                  signum=signum, saved=bool(saved)) from exc
