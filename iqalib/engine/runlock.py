"""The run folder's lock: one process at a time.

**The lock.** A training process holds ``RUN_DIR/.iqalib.lock`` for as long
as it writes into the folder. The file names the holder (pid, host, the
process's start time, when it took the lock and its command line), and the
process keeps an exclusive ``flock`` on it, which the kernel drops when the
process dies, however it dies. A second process is refused with one line
naming the holder. A lock left by a process that is gone (same host, and its
pid is not running or now belongs to a process that started at another time)
is taken over with a :class:`StaleLockWarning`. A lock from another host is
never taken over: its process cannot be checked from here.

Who takes it: under ``torchrun`` rank 0 holds it for every rank (the other
ranks never write). ``--devices/--jobs`` and ``run_many``: the parent holds
the locks of the runs it hands out; its worker processes see their parent's
pid in ``$IQALIB_RUN_LOCK_HOLDER`` and in the lock file and do not take it
again. Within one process the lock is re-entrant (``run_or_load`` holds it
around ``fit``, which takes it too).

The run folder's rules (which files are a run's, reuse, resume, force) are
:mod:`iqalib.engine.runfolder`'s.
"""
from __future__ import annotations

import contextlib
import datetime
import json
import os
import shlex
import socket
import sys
import warnings
from pathlib import Path

from iqalib.engine import distributed
from iqalib.files import make_folder, output_error
from iqalib.signals import deferred_signals
from iqalib.errors import IQAError

try:
    import fcntl
except ImportError:  # Windows: the file's contents alone decide
    fcntl = None

LOCK_NAME = ".iqalib.lock"
HOLDER_ENV = "IQALIB_RUN_LOCK_HOLDER"  # set by a parent that holds the locks of its workers' runs

_held: dict[str, int] = {}  # lock path -> nesting depth, in this process


class RunFolderBusy(IQAError):
    """Another process is training into this run folder."""


class StaleLockWarning(UserWarning):
    """A lock left by a process that is gone was taken over."""


# ------------------------------------------------------------ processes
def process_start(pid: int) -> str | None:
    """When process ``pid`` started (clock ticks since boot, from /proc); None where unknown.

    With the pid it identifies a process: a pid reused by a later process
    has another start time.
    """
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat[stat.rfind(")") + 2:].split()  # the name in parentheses may hold spaces
    return fields[19] if len(fields) > 19 else None


def pid_running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    except (OSError, OverflowError, ValueError):
        return False
    return True


def command_line() -> str:
    """This process's command, ``iqalib ...`` for ``python -m iqalib.cli ...``."""
    argv = list(sys.argv) or ["?"]
    if argv[0] in ("-c", "-m") or argv[0].replace("\\", "/").endswith("iqalib/cli.py"):
        argv[0] = "iqalib"
    return shlex.join(argv)


def this_process(command: str | None = None) -> dict:
    return {"pid": os.getpid(), "host": socket.gethostname(), "process_start": process_start(os.getpid()),
            "since": datetime.datetime.now().astimezone().isoformat(timespec="seconds"),
            "command": command if command is not None else command_line()}


def holder_alive(holder: dict) -> bool | None:
    """Whether the process named in a lock file still runs: True, False, or None (another host)."""
    if holder.get("host") != socket.gethostname():
        return None
    pid = holder.get("pid")
    if not isinstance(pid, int) or not pid_running(pid):
        return False
    recorded, now = holder.get("process_start"), process_start(pid)
    return recorded is None or now is None or recorded == now


def describe_holder(holder: dict) -> str:
    command = str(holder.get("command", "?"))
    if len(command) > 200:
        command = command[:200] + "..."
    return (f"pid {holder.get('pid', '?')} on host {holder.get('host', '?')} "
            f"(since {holder.get('since', '?')}: {command})")


def _read_holder(path: Path) -> dict:
    try:
        data = json.loads(path.read_text()[:100_000] or "{}")
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


# ------------------------------------------------------------ the lock
@contextlib.contextmanager
def run_lock(run_dir: str | Path, *, command: str | None = None):
    """Hold ``run_dir``'s lock inside the block (see the module's docstring); creates ``run_dir``.

    Raises :class:`RunFolderBusy` when another live process holds it.
    """
    if not distributed.is_main():  # torchrun: rank 0 holds it for all ranks
        yield
        return
    created = _missing_folders(Path(run_dir))
    path = make_folder(Path(run_dir)) / LOCK_NAME
    key = os.path.realpath(path)
    if key in _held:
        _held[key] += 1
        try:
            yield
        finally:
            _held[key] -= 1
        return
    if _held_by_parent(path):
        yield
        return
    try:
        fd = _acquire(path, command)
    except BaseException:
        _remove_empty(created)
        raise
    _held[key] = 1
    try:
        yield
    finally:
        del _held[key]
        with deferred_signals():  # a signal here must not leave the lock behind
            _release(path, fd)
            _remove_empty(created)  # a refused or failed run leaves no empty folder behind


def _missing_folders(folder: Path) -> list[Path]:
    """The folders that creating ``folder`` adds (``out_dir`` too, when it is new), deepest first."""
    missing = []
    while not folder.exists() and folder != folder.parent:
        missing.append(folder)
        folder = folder.parent
    return missing


def _remove_empty(folders: list[Path]) -> None:
    """Remove the folders this process created, deepest first, as long as they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:
            return


def _held_by_parent(path: Path) -> bool:
    parent = os.environ.get(HOLDER_ENV)
    if not parent or not parent.isdigit() or int(parent) != os.getppid():
        return False
    holder = _read_holder(path)
    return holder.get("pid") == int(parent) and holder.get("host") == socket.gethostname()


def _busy(path: Path, holder: dict) -> RunFolderBusy:
    if not holder:  # taken a moment ago, its holder has not written its name yet
        return RunFolderBusy(f"{path.parent} is in use: another process is starting to train into it; wait "
                             "for it to finish, or choose another name=")
    if holder_alive(holder) is None:
        what = f"if that process has ended, delete {path} and rerun"
    else:
        what = "wait for it to finish"
    return RunFolderBusy(f"{path.parent} is in use: {describe_holder(holder)} is training into it; {what}, "
                         "or choose another name=")


def _acquire(path: Path, command: str | None) -> int:
    me = this_process(command)
    for _ in range(20):  # another process may replace the file between our open and our flock
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise output_error(path, exc) from exc
        try:
            if fcntl is not None:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    holder = _read_holder(path)
                    if holder_alive(holder) is False:  # a forked child (a loader worker) still ends
                        raise RunFolderBusy(f"{path.parent} is still locked by the children of "
                                            f"{describe_holder(holder)}, which has ended; retry in a "
                                            "moment") from None
                    raise _busy(path, holder) from None
                try:
                    same_file = os.fstat(fd).st_ino == os.stat(path).st_ino
                except FileNotFoundError:
                    same_file = False
                if not same_file:  # its holder released it (and unlinked it) meanwhile: try again
                    os.close(fd)
                    continue
            holder = _read_holder(path)
            mine = all(holder.get(k) == me[k] for k in ("pid", "host", "process_start"))
            if holder and not mine:
                alive = holder_alive(holder)
                if alive is not False:  # running here, or on another host (cannot be checked)
                    raise _busy(path, holder)
                warnings.warn(f"taking over the lock of {path.parent}: {describe_holder(holder)} "
                              "is no longer running", StaleLockWarning, stacklevel=4)
            data = (json.dumps(me) + "\n").encode()
            os.ftruncate(fd, 0)
            os.pwrite(fd, data, 0)
            os.fsync(fd)
            return fd
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
    raise RunFolderBusy(f"{path.parent}: its lock {path} keeps changing hands; another process is "
                        "starting in this folder, choose another name= or retry")


def _release(path: Path, fd: int) -> None:
    with contextlib.suppress(OSError):
        os.unlink(path)  # while still holding the flock: nobody takes a lock that is going away
    with contextlib.suppress(OSError):
        os.close(fd)
