"""Unpacking an archive safely: nothing in it is trusted, and a failure leaves the folder as it was.

:func:`unpack` extracts a zip or tar(.gz) archive into a folder (see the notes
below): no link, device or member name can write outside the folder, a link to
a file of the same archive is unpacked as a copy, and a hostile or damaged
archive, a full disk or Ctrl-C leaves the folder as it was. A marker beside the
files records the archive's sha256 (:func:`unpacked_record` reads it), so the
same archive is not unpacked twice.
"""
from __future__ import annotations

import json
import os
import posixpath
import re
import shutil
import stat
import tarfile
import zipfile
import zlib
from pathlib import Path

from iqalib.data.fetch import fetched_sha256
from iqalib.errors import DownloadError
from iqalib.files import write_error  # one wording for a full or read-only disk
from iqalib.paths import shown

# An archive is hostile until every member has been checked. Nothing here relies on
# tarfile's extraction filters: the "data" filter of this Python is fooled by chains of
# symlinked folders whose resolved path grows past PATH_MAX (CVE-2025-4517, where realpath
# gives up), by empty-named link chains, and by the hard-link fallback that re-extracts a
# link's target. Instead this module writes every member itself:
#
# * no link is ever created: a link to a plain file of the same archive is unpacked as a
#   copy of that file; any other link (leaving the archive, to a folder, to another link,
#   dangling) refuses the archive, as do devices, pipes and unknown member types;
# * names that are absolute, hold '..', a NUL byte, or exceed NAME_MAX/PATH_MAX are refused;
# * each folder on a member's way is created by this module and checked with lstat (a real
#   folder, never a link), and the member's resolved path (os.path.realpath, after its
#   folders exist) must lie inside the staging folder;
# * members are unpacked into a staging folder inside the target, moved into place only when
#   the whole archive passed; any refusal, damage, full disk or Ctrl-C removes the staging
#   folder and leaves the target as it was. Permissions stored in the archive are ignored.

NAME_MAX = 255  # bytes in one file name (ext4, APFS, NTFS)
PATH_MAX = 4096  # bytes in a whole path (Linux)
_LINK_TARGET_MAX = 4096  # a zip "link" member holds its target as data; more is not a link
_CHUNK = 1 << 20
_READ_ERRORS = (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError, OSError,
                NotImplementedError, RuntimeError, ValueError)


class DamagedArchiveError(DownloadError):
    """The archive fails its integrity check; fetching it again may help."""


class UnsafeArchiveError(DownloadError):
    """The archive holds a member that could land outside its folder, a link, a device or a pipe."""


class _Damaged(Exception):
    """Reading the archive failed (as opposed to writing what was read)."""


def _marker(archive: Path, dest: Path) -> Path:
    return dest / f".{archive.name}.unpacked.json"


def unpacked_record(archive: Path, dest: Path) -> dict | None:
    """What unpacking ``archive`` into ``dest`` recorded (its ``sha256``, its ``files``), or None."""
    try:
        return json.loads(_marker(archive, dest).read_text())
    except (OSError, ValueError):
        return None


def _unsafe(archive: Path, what: str, why: str) -> UnsafeArchiveError:
    return UnsafeArchiveError(
        f"{archive}: refused {what} ({why}); nothing was unpacked: the archive is unsafe or not "
        "the official one, delete it and get the data set from its official source"
    )


def _member(name: str) -> str:
    return f"member {shown(name)}"


def _parts(name: str, archive: Path, what: str) -> tuple[str, ...]:
    """The path components of member ``name``; refuses names that could leave the folder."""
    if "\x00" in name:
        raise _unsafe(archive, what, "a NUL byte in its name")
    posix = name.replace("\\", "/")  # archives made on Windows separate with backslashes
    if posix.startswith("/") or re.match(r"[A-Za-z]:", posix):
        raise _unsafe(archive, what, "an absolute path")
    parts = tuple(p for p in posix.split("/") if p not in ("", "."))
    if ".." in parts:
        raise _unsafe(archive, what, "a '..' in its path")
    if any(len(os.fsencode(p)) > NAME_MAX for p in parts):
        raise _unsafe(archive, what, f"a name over {NAME_MAX} bytes")
    return parts


def _link_target(link: tuple[str, ...], target: str, *, hard: bool) -> tuple[str, ...] | None:
    """The archive path a link member names, or None when it leaves the archive.

    A hard link's target is an archive path; a symbolic link's is relative to the
    link's folder. Resolving '..' lexically is exact here: every folder in the staging
    area is a real folder created by this module, never a link.
    """
    text = target.replace("\\", "/")
    if not text or "\x00" in text or text.startswith("/") or re.match(r"[A-Za-z]:", text):
        return None
    normal = posixpath.normpath(text if hard else "/".join((*link[:-1], text)))
    if normal == ".." or normal.startswith("../"):
        return None
    return tuple(p for p in normal.split("/") if p not in ("", "."))


class _Staging:
    """The folder one archive is unpacked into: every path is created and checked here."""

    def __init__(self, folder: Path, archive: Path):
        self.archive = archive
        self.real = os.path.realpath(folder)  # compared with the real paths of members
        self.files: dict[tuple[str, ...], str] = {}  # plain files written, by archive path
        self.links: dict[tuple[str, ...], tuple[str, str, bool]] = {}  # name -> (what, target, hard)

    def folder(self, parts: tuple[str, ...], what: str) -> str:
        """Create (or find) the folder ``parts``, each step a real folder, never a link or file."""
        current = self.real
        for i, part in enumerate(parts):
            current = os.path.join(current, part)
            try:
                info = os.lstat(current)
            except FileNotFoundError:
                os.mkdir(current)
                info = os.lstat(current)
            if not stat.S_ISDIR(info.st_mode):  # lstat: a link is never taken for a folder
                kind = "a link" if stat.S_ISLNK(info.st_mode) else "a file"
                raise _unsafe(self.archive, what, f"{shown('/'.join(parts[: i + 1]))} on its path is {kind}")
        return current

    def path(self, parts: tuple[str, ...], what: str) -> str:
        """Where member ``parts`` goes, its folders created and the whole path checked."""
        if not parts:
            raise _unsafe(self.archive, what, "an empty name")
        full = os.path.join(self.real, *parts)
        if len(os.fsencode(full)) >= PATH_MAX:
            raise _unsafe(self.archive, what, f"a path over {PATH_MAX} bytes once unpacked")
        parent = self.folder(parts[:-1], what)
        target = os.path.join(parent, parts[-1])
        resolved = os.path.realpath(target)
        if os.path.commonpath([resolved, self.real]) != self.real or resolved == self.real:
            raise _unsafe(self.archive, what, f"it resolves to {shown(resolved)}, outside the unpack folder")
        try:
            info = os.lstat(target)
        except FileNotFoundError:
            return target
        if stat.S_ISDIR(info.st_mode) or not stat.S_ISREG(info.st_mode):
            raise _unsafe(self.archive, what, "the archive also holds a folder or link of that name")
        os.unlink(target)  # the same name twice (tar appends updates): the later member wins
        return target

    def write(self, parts: tuple[str, ...], source, what: str) -> None:
        """Copy the readable ``source`` to member ``parts``; read failures raise _Damaged."""
        target = self.path(parts, what)
        flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
        with os.fdopen(os.open(target, flags, 0o666), "wb") as out:
            while True:
                try:
                    block = source.read(_CHUNK)
                except _READ_ERRORS as exc:
                    raise _Damaged(exc) from None
                if not block:
                    break
                out.write(block)
        self.files[parts] = target
        self.links.pop(parts, None)  # a later plain member replaces an earlier link of that name

    def add_link(self, name: str, parts: tuple[str, ...], target: str, *, hard: bool) -> None:
        what = f"{'hard link' if hard else 'link'} {shown(name)} -> {shown(target)}"
        if not parts:
            raise _unsafe(self.archive, what, "an empty name")
        if _link_target(parts, target, hard=hard) is None:
            raise _unsafe(self.archive, what, "it points outside the archive; links are never unpacked")
        self.links[parts] = (what, target, hard)

    def copy_links(self) -> None:
        """Unpack each remaining link as a copy of the plain file it names, else refuse."""
        for parts, (what, target, hard) in list(self.links.items()):
            source = self.files.get(_link_target(parts, target, hard=hard))
            if source is None:
                raise _unsafe(self.archive, what, "links are not unpacked; only a link to a plain file of "
                                                  "the same archive is, as a copy")
            flags = os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)
            with os.fdopen(os.open(source, flags), "rb") as handle:
                self.write(parts, handle, what)


def _unpack_zip(zf: zipfile.ZipFile, staging: _Staging) -> None:
    for info in zf.infolist():
        what = _member(info.orig_filename)
        if "\x00" in info.orig_filename:  # zipfile cuts the name at a NUL; the writer meant more
            raise _unsafe(staging.archive, what, "a NUL byte in its name")
        parts = _parts(info.filename, staging.archive, what)
        mode = info.external_attr >> 16
        kind = stat.S_IFMT(mode)
        if kind == stat.S_IFLNK:
            if info.file_size > _LINK_TARGET_MAX:
                raise _unsafe(staging.archive, what, "a link whose target is too long")
            try:
                target = zf.read(info).decode("utf-8", "surrogateescape")
            except _READ_ERRORS as exc:
                raise _Damaged(exc) from None
            staging.add_link(info.orig_filename, parts, target, hard=False)
        elif kind not in (0, stat.S_IFREG, stat.S_IFDIR):
            raise _unsafe(staging.archive, what, "a device, pipe or socket")
        elif info.is_dir() or kind == stat.S_IFDIR:
            staging.folder(parts, what)
        else:
            try:
                handle = zf.open(info)  # reads are CRC-checked
            except _READ_ERRORS as exc:
                raise _Damaged(exc) from None
            with handle:
                staging.write(parts, handle, what)


def _unpack_tar(tf: tarfile.TarFile, staging: _Staging) -> None:
    for info in tf:
        what = _member(info.name)
        if info.issym() or info.islnk():
            staging.add_link(info.name, _parts(info.name, staging.archive, what), info.linkname,
                             hard=info.islnk())
            continue
        parts = _parts(info.name, staging.archive, what)
        if info.isdir():
            staging.folder(parts, what)
        elif info.isreg():
            try:
                handle = tf.extractfile(info)
            except _READ_ERRORS as exc:
                raise _Damaged(exc) from None
            with handle:
                staging.write(parts, handle, what)
        else:
            raise _unsafe(staging.archive, what, "a device, pipe or other special file")


def _extract(archive: Path, into: Path) -> None:
    """Extract ``archive`` into the empty folder ``into``, checking every member.

    One pass over the data (zip members are CRC-checked as they are read), then the
    links are unpacked as copies. A hostile member raises :class:`UnsafeArchiveError`,
    bad data :class:`DamagedArchiveError`; either leaves a partial ``into`` for the
    caller to discard.
    """
    staging = _Staging(into, archive)
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as zf:
                _unpack_zip(zf, staging)
        else:
            try:
                is_tar = tarfile.is_tarfile(archive)
            except _READ_ERRORS:
                is_tar = False
            if not is_tar:
                raise DamagedArchiveError(f"{archive}: not a zip or tar archive (or damaged)")
            with tarfile.open(archive) as tf:
                _unpack_tar(tf, staging)
        staging.copy_links()
    except _Damaged as exc:
        cause = exc.args[0]
        raise DamagedArchiveError(
            f"{archive}: the archive is damaged ({shown(str(cause) or type(cause).__name__)})"
        ) from None
    except (tarfile.TarError, zipfile.BadZipFile, zlib.error, EOFError) as exc:
        raise DamagedArchiveError(f"{archive}: the archive is damaged ({shown(str(exc) or type(exc).__name__)})") from None


def _plan_moves(staging: Path, dest: Path, archive: Path) -> list[str]:
    """The unpacked files (relative paths); refuses before anything moves if one would replace
    a folder, a link or anything but a plain file of ``dest``, or a folder would replace a file."""
    files = []
    for folder, subfolders, names in os.walk(staging):
        here = Path(folder).relative_to(staging)
        for name, is_dir in [(n, True) for n in subfolders] + [(n, False) for n in names]:
            rel = (here / name).as_posix()
            try:
                info = os.lstat(dest / rel)
            except FileNotFoundError:
                info = None
            if not is_dir:
                files.append(rel)
            fits = info is None or (stat.S_ISDIR(info.st_mode) if is_dir else stat.S_ISREG(info.st_mode))
            if not fits:
                have = "a link" if stat.S_ISLNK(info.st_mode) else "a folder" if stat.S_ISDIR(info.st_mode) else "a file"
                raise DownloadError(
                    f"{archive}: unpacking would replace {dest / rel}, which is {have}, with a "
                    f"{'folder' if is_dir else 'file'}; move it away and rerun (nothing was unpacked)"
                )
    return sorted(files)


def _move_merging(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``: folders merge, a file replaces a file (checked by _plan_moves)."""
    if src.is_dir() and dst.is_dir():
        for child in src.iterdir():
            _move_merging(child, dst / child.name)
        src.rmdir()
        return
    os.replace(src, dst)


def unpack(archive: Path, dest: Path) -> list[Path]:
    """Unpack a zip or tar(.gz) ``archive`` into ``dest``; return the files it holds.

    Members are extracted into a hidden staging folder inside ``dest`` and checked on
    the way (see the notes at the top: no links, devices or names leaving the folder, CRCs,
    a readable tar stream); only a fully extracted archive is moved into place, so a
    damaged, hostile or interrupted unpack (or a full disk) leaves ``dest`` as it was.
    A marker records the archive's sha256; the same archive is not unpacked twice.
    """
    archive, dest = Path(archive), Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise write_error(dest, exc, folder=True) from None
    checksum = fetched_sha256(archive)
    recorded = unpacked_record(archive, dest)
    if recorded and recorded.get("sha256") == checksum:
        return [dest / name for name in recorded.get("files", [])]
    staging = dest / f".{archive.name}.unpacking"
    try:
        if staging.is_symlink() or staging.is_file():
            staging.unlink()
        elif staging.exists():
            shutil.rmtree(staging)  # left over from an interrupted run
        staging.mkdir()
        try:
            _extract(archive, staging)
            files = _plan_moves(staging, dest, archive)
            for child in list(staging.iterdir()):
                _move_merging(child, dest / child.name)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        record = {"archive": archive.name, "sha256": checksum, "files": files}
        _marker(archive, dest).write_text(json.dumps(record))
    except OSError as exc:  # the disk, not the archive: full, read-only, a name it cannot hold
        raise write_error(dest, exc) from None
    return [dest / name for name in files]

