"""Helpers of the hostile-input tests (tests/test_hostile_download.py, tests/test_hostile_inputs_io.py).

:func:`snapshot` records every entry below a folder (links as links, never
followed; files by their sha256), so that a test can assert that a command
changed nothing outside the folder it was allowed to write, and nothing among
its inputs.
"""
from __future__ import annotations

import hashlib
import os
import stat
from pathlib import Path


def snapshot(folder: Path, *, skip: Path | None = None) -> dict[str, str]:
    """``{relative path: what it is}`` for everything below ``folder`` except ``skip`` and below.

    Files are recorded by size and sha256, links by their target, folders as such.
    """
    folder = Path(folder)
    skip_real = os.path.abspath(skip) if skip is not None else None
    found: dict[str, str] = {}
    for current, subfolders, names in os.walk(folder):  # does not follow links to folders
        if skip_real is not None:
            subfolders[:] = [d for d in subfolders if os.path.abspath(os.path.join(current, d)) != skip_real]
        for name in subfolders + names:
            path = os.path.join(current, name)
            if skip_real is not None and os.path.abspath(path) == skip_real:
                continue
            info = os.lstat(path)
            rel = os.path.relpath(path, folder)
            if stat.S_ISLNK(info.st_mode):
                found[rel] = f"link -> {os.readlink(path)}"
            elif stat.S_ISDIR(info.st_mode):
                found[rel] = "folder"
            elif stat.S_ISREG(info.st_mode):
                digest = hashlib.sha256(Path(path).read_bytes()).hexdigest()
                found[rel] = f"file {info.st_size} {digest}"
            else:
                found[rel] = f"special {stat.S_IFMT(info.st_mode)}"
    return found
