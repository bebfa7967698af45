"""``iqalib train`` in a child process that waits for its signal after the first checkpoint.

Tests that interrupt or kill a real training process must not race it: on a
loaded machine the child can finish several epochs, or the whole run, between
the parent seeing ``last.pt`` and its signal arriving; and a fixed deadline
for the child's start-up (imports, decoding, the trunk pass) fails when the
machine is busy. The child here runs the real command line, but the first
time it has written ``last.pt`` it prints :data:`PAUSED` and sleeps until a
signal comes. The parent waits for that line (a condition, not a clock; the
generous :data:`START_LIMIT` only stops a test that would hang), so the
signal always lands at the same point: after epoch 1 was saved.
"""
from __future__ import annotations

import select
import subprocess
import sys
import tempfile

PAUSED = "iqalib-test: last.pt written, waiting for a signal"
START_LIMIT = 1800  # seconds; start-up plus one epoch of a tiny run, on a machine as loaded as CI's
CHILD = f"""
import importlib, sys, time
from iqalib.cli import main

fit = importlib.import_module("iqalib.engine.fit")  # iqalib.engine's ``fit`` is the function

write = fit.save_checkpoint


def write_then_wait(path, state):
    write(path, state)
    if path.name == "last.pt" and not write_then_wait.paused:
        write_then_wait.paused = True
        print({PAUSED!r}, flush=True)
        while True:
            time.sleep(60)  # a signal interrupts the sleep (Ctrl-C) or ends the process (kill -9)


write_then_wait.paused = False
fit.save_checkpoint = write_then_wait
sys.exit(main(sys.argv[1:]))
"""


def start_paused_train(args: list[str], **popen) -> tuple[subprocess.Popen, object]:
    """Start ``iqalib train ARGS`` and return (process, its stderr file) once it waits after last.pt.

    ``popen``: more :class:`subprocess.Popen` arguments (``env``, ``cwd``,
    ``preexec_fn``). stderr goes to a temporary file (read it with
    ``seek(0); read()``), so a chatty child never blocks on a full pipe.
    Fails with the child's stderr if it exits, or has not paused after
    :data:`START_LIMIT` seconds.
    """
    err = tempfile.TemporaryFile(mode="w+")
    proc = subprocess.Popen([sys.executable, "-c", CHILD, "train", *args], stdout=subprocess.PIPE,
                            stderr=err, text=True, **popen)
    ready, _, _ = select.select([proc.stdout], [], [], START_LIMIT)
    line = proc.stdout.readline() if ready else ""
    if line.strip() != PAUSED:
        proc.kill()
        proc.wait()
        err.seek(0)
        raise AssertionError(f"the child did not reach its first checkpoint: {err.read()[-2000:]}")
    return proc, err
