"""Ctrl-C (SIGINT) or SIGTERM during training: stop at once, keep what is saved, say how to resume.

Training writes ``last.pt`` atomically after every epoch (model, optimizer,
scheduler, RNG state and history), and ``--resume`` replays from that epoch
boundary, so the run it finishes equals an uninterrupted one. The cheapest
correct answer to Ctrl-C is therefore to stop immediately: the interrupted
epoch is redone on resume, and no mid-epoch state is needed. SIGTERM (what
schedulers, ``kill`` and ``docker stop`` send) and SIGHUP (a closed terminal)
are answered the same way. Three pieces make that safe and clear:

* :func:`deferred_signals`, around every atomic write in
  :mod:`iqalib.engine.checkpoint`: a SIGINT, SIGTERM or SIGHUP that arrives
  while a file is written is held until the file is complete (renamed into
  place), then delivered. A second signal during the write stops at once
  (the write is atomic and its temporary file is deleted, so the previous
  file stays intact either way). Where SIGTERM still has its default action
  (outside training), the held signal then ends the process as it would
  have, with no temporary file left behind.
* :func:`signals_as_interrupts`, inside :func:`report_interrupt`: SIGTERM and
  SIGHUP raise :class:`Terminated` (a ``KeyboardInterrupt``), so every
  ``finally`` runs (the run folder's lock is released, temporary files are
  deleted) as for Ctrl-C.
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
import threading
from pathlib import Path

# The signals that stop training cleanly. SIGHUP does not exist on Windows.
STOP_SIGNALS = tuple(s for s in (signal.SIGINT, getattr(signal, "SIGTERM", None), getattr(signal, "SIGHUP", None))
                     if s is not None)
SIGNAL_NAMES = {signal.SIGINT: "Ctrl-C", getattr(signal, "SIGTERM", -1): "SIGTERM",
                getattr(signal, "SIGHUP", -2): "SIGHUP"}


class Terminated(KeyboardInterrupt):
    """SIGTERM or SIGHUP, raised like Ctrl-C so that cleanup runs."""

    def __init__(self, signum: int):
        super().__init__(f"stopped by {SIGNAL_NAMES.get(signum, f'signal {signum}')}")
        self.signum = signum


class TrainingInterrupted(KeyboardInterrupt):
    """Training stopped by a signal; the message says what is saved.

    ``signum``: the signal (exit status 128 + signum); ``saved``: whether any
    round has a ``last.pt`` to resume from.
    """

    def __init__(self, message: str = "", signum: int = signal.SIGINT, saved: bool = True):
        super().__init__(message)
        self.signum = signum
        self.saved = saved


def _in_main_thread() -> bool:
    return threading.current_thread() is threading.main_thread()


@contextlib.contextmanager
def deferred_signals():
    """Hold a SIGINT, SIGTERM or SIGHUP that arrives inside the block until the block is done.

    Only the main thread can own signal handlers; elsewhere (and for signals
    that are ignored) this does nothing.
    """
    if not _in_main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in STOP_SIGNALS}
    held: list[int] = []

    def hold(signum, frame):
        if held:  # a second signal: the user insists, stop now (the write rolls back)
            raise KeyboardInterrupt if signum == signal.SIGINT else Terminated(signum)
        held.append(signum)

    watched = [s for s, handler in previous.items() if handler not in (signal.SIG_IGN, None)]
    try:
        for s in watched:
            signal.signal(s, hold)
        yield
    finally:
        for s in watched:
            signal.signal(s, previous[s])
    if held:
        # Delivered to the handler that was in place (Python's: KeyboardInterrupt; SIGTERM's
        # default: the process ends, after the file was completed).
        signal.raise_signal(held[0])


deferred_sigint = deferred_signals  # the earlier name


@contextlib.contextmanager
def signals_as_interrupts():
    """Inside the block SIGTERM and SIGHUP raise :class:`Terminated` (where their action is the default)."""
    if not _in_main_thread():
        yield
        return

    def terminate(signum, frame):
        raise Terminated(signum)

    replaced = {}
    try:
        for s in STOP_SIGNALS:
            if s != signal.SIGINT and signal.getsignal(s) == signal.SIG_DFL:
                replaced[s] = signal.signal(s, terminate)
        yield
    finally:
        for s, handler in replaced.items():
            signal.signal(s, handler)


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
