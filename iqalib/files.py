"""Writing files safely: atomically, with one-line errors, never half a file.

Everything is written to a temporary file in the same folder, flushed to
disk, then renamed over the target: a crash or a full disk mid-write leaves
the previous file intact. A write that fails (no space, no permission) is an
:class:`~iqalib.errors.OutputError` naming the folder and the fix; a Ctrl-C
that arrives during a write is held until the file is complete (see
:func:`iqalib.signals.deferred_signals`). A temporary file is named
``.<name>.<random>.tmp`` beside its target, so what a killed process left can
be recognised and deleted.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import tempfile
from pathlib import Path

from iqalib.errors import OutputError
from iqalib.signals import deferred_signals

_NO_SPACE = {errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG}
_NO_PERMISSION = {errno.EACCES, errno.EPERM, errno.EROFS}


def _os_error(exc: BaseException) -> OSError | None:
    """The OSError behind ``exc`` (torch.save wraps a failed write in a RuntimeError)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, OSError):
            return exc
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return None


def output_error(path: Path, exc: OSError, *, folder: bool = False, existed: bool = False) -> OutputError:
    """One line naming the file (or ``folder``), the cause and the fix."""
    path = Path(path)
    what = f"cannot create the folder {path}" if folder else f"cannot write {path.name} in {path.parent}"
    reason = exc.strerror or str(exc) or type(exc).__name__
    if exc.errno in _NO_SPACE:
        fix = "free space on that disk (or write elsewhere) and rerun"
    elif exc.errno in _NO_PERMISSION:
        fix = "make the folder writable (chmod/chown) or choose another folder"
    else:
        fix = "check the disk and the folder"
    kept = f"; the previous {path.name} is intact" if existed else ""
    error = OutputError(f"{what}: {reason}; {fix}{kept}")
    error.errno = exc.errno  # not filename: OSError.__str__ would then ignore the message
    return error


def write_error(path: Path, exc: OSError, *, folder: bool = False) -> OutputError:
    """:func:`output_error` for the file ``exc`` names (one deep inside ``path``), else for ``path``."""
    return output_error(Path(exc.filename) if exc.filename else path, exc, folder=folder)


def make_folder(path: Path) -> Path:
    """``mkdir -p`` with a one-line :class:`OutputError` when it cannot be created."""
    path = Path(path)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise output_error(path, exc, folder=True) from exc
    return path


def atomic_write_bytes(path: Path, write) -> None:
    """Call ``write(file)`` on a temporary file, then rename it to ``path``.

    A failed write raises :class:`OutputError` and leaves ``path`` as it was.
    """
    path = Path(path)
    make_folder(path.parent)
    existed = path.exists()
    try:
        with deferred_signals():  # Ctrl-C or SIGTERM waits for the rename
            _write_and_rename(path, write)
    except (OSError, RuntimeError) as exc:
        cause = _os_error(exc)
        if cause is None or isinstance(exc, OutputError):
            raise
        raise output_error(path, cause, existed=existed) from exc


def _write_and_rename(path: Path, write) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        # mkstemp creates 0600 files; give results the permissions any new file gets.
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o666 & ~umask)
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, lambda f: f.write(text.encode()))


def atomic_write_json(path: Path, data) -> None:
    """Strict JSON (RFC 8259): an undefined number (NaN, infinity) is written as ``null``, which every
    reader takes as undefined; ``allow_nan=False`` makes a value that escaped that rule fail loudly."""
    atomic_write_text(path, json_text(data) + "\n")


def json_text(data, indent: int | None = 2) -> str:
    """``data`` as strict JSON text: NaN and infinities become ``null``, numpy values plain numbers."""
    return json.dumps(strict_json(data), indent=indent, allow_nan=False)


def strict_json(obj):
    """``obj`` with every non-finite float replaced by None, recursively; numpy scalars and arrays,
    tuples and paths made plain JSON values (dict keys become strings, as json.dumps makes them)."""
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else None
    if obj is None or isinstance(obj, (str, bool, int)):
        return obj
    if isinstance(obj, dict):
        return {(k if isinstance(k, str) else _json_key(k)): strict_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [strict_json(v) for v in obj]
    if isinstance(obj, Path):
        return str(obj)
    if hasattr(obj, "tolist"):  # numpy scalar or array, torch tensor
        return strict_json(obj.tolist())
    if hasattr(obj, "item"):
        return strict_json(obj.item())
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


SETTINGS_KEYS = frozenset({"config", "train_config", "code", "precision", "card"})


def read_result_json(path: str | Path):
    """A result file (``results.json``, ``summary.json``) read back: each ``null`` outside the settings
    (:data:`SETTINGS_KEYS`, where None is a setting's value) is an undefined number, so it becomes NaN."""
    return undefined_as_nan(json.loads(Path(path).read_text()))


def undefined_as_nan(obj):
    if obj is None:
        return float("nan")
    if isinstance(obj, dict):
        return {k: v if k in SETTINGS_KEYS else undefined_as_nan(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [undefined_as_nan(v) for v in obj]
    return obj


def _json_key(key) -> str:
    key = strict_json(key)
    return "null" if key is None else json.dumps(key) if not isinstance(key, str) else key


def file_sha256(path: str | Path) -> str:
    """sha256 of the file's bytes, read in 1 MiB pieces."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()
