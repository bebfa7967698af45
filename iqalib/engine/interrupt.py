"""Ctrl-C (SIGINT) during training: stop at once, keep what is saved, say how to resume.

Training writes ``last.pt`` atomically after every epoch (model, optimizer,
scheduler, RNG state and history), and ``--resume`` replays from that epoch
boundary, so the run it finishes equals an uninterrupted one. The cheapest
correct answer to Ctrl-C is therefore to stop immediately: the interrupted
epoch is redone on resume, and no mid-epoch state is needed. Two pieces make
that safe and clear:

* :func:`deferred_sigint`, around every atomic write in
  :mod:`iqalib.engine.checkpoint`: a Ctrl-C that arrives while a file is
  written is held until the file is complete, then delivered. A second Ctrl-C
  during the write stops at once (the write is atomic, so the previous file
  stays intact either way).
* :func:`report_interrupt`, around the rounds in :func:`iqalib.engine.fit.fit`:
  turns the ``KeyboardInterrupt`` into :class:`TrainingInterrupted` (still a
  ``KeyboardInterrupt``) whose one-line message names each round's ``last.pt``
  and the epoch it holds. ``iqalib train`` prints it with the exact command
  that resumes, and exits with status 130.
"""
from __future__ import annotations

import contextlib
import signal
import threading
from pathlib import Path


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by Ctrl-C; the message says what is saved."""


@contextlib.contextmanager
def deferred_sigint():
    """Hold a SIGINT that arrives inside the block until the block is done.

    Only the main thread can own signal handlers; elsewhere (and where SIGINT
    is ignored) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.getsignal(signal.SIGINT)
    if previous in (signal.SIG_IGN, None):
        yield
        return
    held = []

    def hold(signum, frame):
        if held:  # a second Ctrl-C: the user insists, stop now
            raise KeyboardInterrupt
        held.append(signum)

    signal.signal(signal.SIGINT, hold)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if held:
        # Delivered to the handler that was in place (Python's: KeyboardInterrupt here).
        signal.raise_signal(signal.SIGINT)


def saved_epochs(run_dir: str | Path) -> dict[str, int]:
    """``{round folder name: last finished epoch (1-based)}`` of every readable ``last.pt``.

    Tensors are memory-mapped, not read: this stays quick for large models.
    """
    import torch

    found = {}
    for last in sorted(Path(run_dir).glob("round_*/last.pt")):
        try:
            state = torch.load(last, map_location="cpu", weights_only=True, mmap=True)
            found[last.parent.name] = int(state["epoch"]) + 1
        except Exception:  # an unreadable file is reported by --resume itself
            continue
    return found


def describe_saved(run_dir: str | Path) -> str:
    run_dir = Path(run_dir)
    saved = saved_epochs(run_dir)
    if not saved:
        return f"no epoch had finished, nothing to resume in {run_dir}"
    rounds = ", ".join(f"{name}/last.pt holds epoch {epoch}" for name, epoch in saved.items())
    return f"in {run_dir}: {rounds}"


@contextlib.contextmanager
def report_interrupt(run_dir: str | Path):
    """Re-raise Ctrl-C inside the block as :class:`TrainingInterrupted` saying what is saved."""
    try:
        yield
    except TrainingInterrupted:
        raise
    except KeyboardInterrupt as exc:
        raise TrainingInterrupted(f"training stopped by Ctrl-C; {describe_saved(run_dir)}") from exc
