"""What made a run: the code on its path, its data and its configuration, each as a short hash.

A book run is reused only while all three are what they were
(:mod:`iqalib.engine.runfolder`), so a run is never read back from stale
code or data, and never trained again for an edit that cannot change it:

- **code** (:func:`code_identity`): iqalib's version and a hash of the
  sources under :data:`CODE_PATHS`, the code a training runs through. The
  analyses, plots, verdicts, the book and the command line are not on that
  path: editing them keeps every finished run.
- **data** (:func:`data_identity`): the table's content (image paths, MOS,
  rater std, official split, groups, the resize rule and MOS range) and the
  bytes of every image file (sha256, remembered per process by path, size
  and modification time, so a second look costs a ``stat`` per image).
- **configuration** (:func:`results_part`): the resolved run configuration
  without its :data:`COSMETIC` keys (progress bars, loader processes, where
  files lie).

:func:`fingerprint` hashes the three together.
"""
from __future__ import annotations

import functools
import hashlib
import json
import os
from pathlib import Path

from iqalib.config import RunConfig
from iqalib.data.datasets import load_dataset
from iqalib.data.table import IQATable
from iqalib.files import file_sha256
from iqalib.version import __version__

PACKAGE_ROOT = Path(__file__).resolve().parents[1]
# The training path: what a run's numbers can depend on, relative to the iqalib package.
# Everything else (analysis/, plots/, book.py, cli.py, experiments' readers) only reads runs.
CODE_PATHS = ("config.py", "data", "engine", "errors.py", "files.py", "losses.py", "metrics.py", "models",
              "numerics.py", "paths.py", "signals.py", "version.py")
# Keys that change neither the results nor what they are: progress bars, loader processes,
# where decoded images are cached, where the run folder lies.
COSMETIC = (("train", "progress"), ("train", "workers"), ("data", "image_cache"), ("out_dir",))
TABLE_COLUMNS = ("image", "mos", "std", "split", "group")


# ------------------------------------------------------------------ code
def code_files(root: str | Path = PACKAGE_ROOT, paths=CODE_PATHS) -> list[Path]:
    """The ``.py`` files of ``paths`` (files or folders, relative to ``root``) that exist, sorted."""
    root = Path(root)
    found = []
    for part in paths:
        path = root / part
        found += sorted(path.rglob("*.py")) if path.is_dir() else [path] if path.is_file() else []
    return sorted(found, key=lambda p: p.relative_to(root).as_posix())


def source_hash(root: str | Path = PACKAGE_ROOT, paths=None) -> str:
    """SHA-256 of the ``.py`` files under ``root`` (only those of ``paths`` when given): their
    relative paths, sorted, and their contents (not their times or permissions)."""
    root = Path(root)
    files = sorted(root.rglob("*.py"), key=lambda p: p.relative_to(root).as_posix()) if paths is None \
        else code_files(root, paths)
    digest = hashlib.sha256()
    for path in files:
        digest.update(path.relative_to(root).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


@functools.lru_cache(maxsize=None)
def code_identity(also: tuple[str, ...] = ()) -> dict:
    """The training code: ``{"version": iqalib's version, "sources": hash of CODE_PATHS[:16]}``.

    ``also`` adds files off the training path (relative to the package) that a
    result computed there depends on: the linear probe names its own module, so
    an edit to it recomputes the probe and still keeps every run. Computed once
    per process (the sources of a running process do not change under it).
    Stored in results.json, summary.json and model cards.
    """
    return {"version": __version__, "sources": source_hash(PACKAGE_ROOT, CODE_PATHS + tuple(also))[:16]}


# ------------------------------------------------------------------ data
_file_hashes: dict[tuple[str, int, int], str] = {}


def image_sha256(path: str | Path) -> str:
    """sha256 of an image file, remembered by (path, size, mtime_ns): an unchanged file is read once."""
    info = os.stat(path)
    key = (os.path.abspath(path), info.st_size, info.st_mtime_ns)
    if key not in _file_hashes:
        _file_hashes[key] = file_sha256(path)
    return _file_hashes[key]


def table_identity(table: IQATable) -> dict:
    """Hashes of a loaded table: its rows (:data:`TABLE_COLUMNS`, resize rule, MOS range) and its files."""
    frame = table.frame[[c for c in TABLE_COLUMNS if c in table.frame]]
    rows = json.dumps({"rows": frame.astype(object).where(frame.notna(), None).values.tolist(),
                       "columns": list(frame.columns), "short_side": table.short_side,
                       "mos_range": [float(v) for v in table.mos_range]}, default=str)
    images = hashlib.sha256()
    for path in table.paths:
        images.update(image_sha256(path).encode())
    return {"images": len(table), "table": hashlib.sha256(rows.encode()).hexdigest()[:16],
            "files": images.hexdigest()[:16]}


def data_identity(config: RunConfig) -> dict:
    """:func:`table_identity` of the table a run of ``config`` trains on (before undecodable
    images are dropped: their bytes count too)."""
    return table_identity(load_dataset(config.data.name, config.data.root, **config.data.load_options()))


# ------------------------------------------------------------------ configuration
def results_part(config: RunConfig | dict) -> dict:
    """``config`` as a dict without its :data:`COSMETIC` keys."""
    data = json.loads(json.dumps(config.to_dict() if isinstance(config, RunConfig) else config, default=str))
    for path in COSMETIC:
        node = data
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            node.pop(path[-1], None)
    return data


def fingerprint(config: RunConfig, code: dict | None = None, data: dict | None = None) -> str:
    """Hash of everything that changes a run's results: the configuration (not its cosmetic keys),
    the code (``code``, default :func:`code_identity`) and the data (``data``, default
    :func:`data_identity` of ``config``)."""
    code = code_identity() if code is None else code
    data = data_identity(config) if data is None else data
    record = {"config": results_part(config), "code": code, "data": data}
    return hashlib.sha1(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()
