"""Signals that stop a process, held while a file is written or raised like Ctrl-C.

* :func:`deferred_signals`, around every atomic write (:mod:`iqalib.files`)
  and the release of a run folder's lock: a SIGINT, SIGTERM or SIGHUP that
  arrives while a file is written is held until the file is complete
  (renamed into place), then delivered. A second signal during the write
  stops at once (the write is atomic and its temporary file is deleted, so
  the previous file stays intact either way). Where SIGTERM still has its
  default action (outside training), the held signal then ends the process
  as it would have, with no temporary file left behind.
* :func:`signals_as_interrupts`: SIGTERM and SIGHUP raise :class:`Terminated`
  (a ``KeyboardInterrupt``), so every ``finally`` runs as for Ctrl-C.

What training makes of such a stop is :mod:`iqalib.engine.interrupt`'s job.
"""
from __future__ import annotations

import contextlib
import signal
import threading

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
