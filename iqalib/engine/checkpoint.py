"""Atomic checkpoints and results files.

Everything is written to a temporary file in the same folder, flushed to
disk, then renamed over the target: a crash or a full disk mid-write leaves
the previous file intact. Checkpoints are loaded with ``weights_only=True``,
so a file carrying a pickled payload is refused instead of executed.
"""
from __future__ import annotations

import json
import os
import pickle
import tempfile
import zipfile
from pathlib import Path

import torch

from iqalib.errors import CheckpointError

FORMAT = "iqalib-checkpoint-1"


def atomic_write_bytes(path: Path, write) -> None:
    """Call ``write(file)`` on a temporary file, then rename it to ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
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
    atomic_write_text(path, json.dumps(data, indent=2, default=_json_default) + "\n")


def _json_default(obj):
    if hasattr(obj, "item"):
        return obj.item()
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"{type(obj).__name__} is not JSON serialisable")


def save_checkpoint(path: Path, state: dict) -> None:
    """Write ``state`` (tensors, numbers, strings, lists, dicts) atomically."""
    payload = {"format": FORMAT, **state}
    atomic_write_bytes(path, lambda f: torch.save(payload, f))


def load_checkpoint(path: Path, *, model_name: str | None = None) -> dict:
    """Load a checkpoint safely; errors name the file and what to do."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: checkpoint not found")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        if "weights_only" in str(exc) or "Unsupported global" in str(exc):
            raise CheckpointError(
                f"{path}: refused, it contains pickled code or objects, not only weights "
                "(loaded with weights_only=True); only load checkpoints you trust and re-save them as plain weights"
            ) from None
        raise CheckpointError(f"{path}: not a checkpoint ({first or 'unpickling failed'})") from None
    except (RuntimeError, zipfile.BadZipFile, EOFError, OSError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise CheckpointError(f"{path}: not a readable checkpoint, truncated or corrupt ({first[:120]})") from None
    except Exception as exc:  # arbitrary bytes can trip the unpickler anywhere (IndexError, KeyError, ...)
        raise CheckpointError(f"{path}: not a checkpoint (unreadable as one: {type(exc).__name__})") from None
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise CheckpointError(f"{path}: not an iqalib checkpoint (no '{FORMAT}' marker); "
                              "for plain weights use model.pretrained=PATH")
    if model_name is not None and state.get("model_name") != model_name:
        raise CheckpointError(f"{path}: holds a {state.get('model_name')!r} model, not {model_name!r}; "
                              "pass the matching model name or checkpoint")
    return state
