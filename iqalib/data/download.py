"""Official archives of the IQA data sets: fetch with resume, verify, unpack.

:func:`download_dataset` fetches every archive of a data set into
``root/archives/``, checks it, and unpacks it below ``root``. It returns the
folder that the data set's loader expects:

=========  ===============================  ==========================================
name       returned folder                  contents after download
=========  ===============================  ==========================================
livec      ``root/ChallengeDB_release``     ``Images/``, ``Data/*.mat``, ``README.txt``
koniq10k   ``root/koniq10k``                ``1024x768/`` (``512x384/`` if selected),
                                            ``koniq10k_scores_and_distributions.csv``,
                                            ``koniq10k_distributions_sets.csv`` (split)
kadid10k   ``root/kadid10k``                ``images/``, ``dmos.csv``
spaq       (manual download)                ``TestImage/``, ``Annotations/*.xlsx``
=========  ===============================  ==========================================

A rerun is cheap and safe: a broken download resumes where it stopped, a
complete archive is not fetched again, and an archive already unpacked (a
marker records its sha256) is not unpacked again. The official checksums are
not published, so each fetched archive gets a ``<archive>.sha256`` sidecar
that users can pin with ``sha256=`` (``--sha256`` on the command line).

Nothing in an archive is trusted (see the notes above :func:`unpack`): no
link, device or member name can write outside the target folder, a link to a
file of the same archive is unpacked as a copy, and a hostile or damaged
archive, a full disk or Ctrl-C leaves the folder as it was. A web page served
in place of an archive (an error or login page with status 200), a redirect
loop, or a ``root`` that is a file or cannot be created: one line each.
"""
from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import shutil
import stat
import tarfile
import urllib.error
import urllib.request
import zipfile
import zlib
from collections.abc import Mapping
from dataclasses import dataclass
from http.client import HTTPException
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from tqdm import tqdm

from iqalib.errors import ConfigError, DownloadError
from iqalib.files import output_error  # the one wording for a full or read-only disk
from iqalib.paths import shown

ARCHIVES_FOLDER = "archives"
USER_AGENT = "iqalib-download/0.1 (+python urllib)"
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")


@dataclass(frozen=True)
class Archive:
    """One downloadable file of a data set.

    ``into`` is the folder below the download root that the file's contents
    land in. ``unpack=False`` marks a plain file (a CSV) that is placed there
    as it is. ``default=False`` archives are fetched only when named in
    ``which``.
    """

    key: str
    url: str
    into: str = ""
    size: int | None = None
    sha256: str | None = None
    unpack: bool = True
    default: bool = True

    @property
    def filename(self) -> str:
        return PurePosixPath(urlsplit(self.url).path).name


@dataclass(frozen=True)
class DatasetSource:
    """Where a data set comes from and which folder its loader reads."""

    name: str
    description: str
    page: str
    folder: str
    archives: tuple[Archive, ...] = ()
    manual: str | None = None


_MMSP = "https://datasets.vqa.mmsp-kn.de/archives"

SOURCES: dict[str, DatasetSource] = {
    source.name: source
    for source in (
        DatasetSource(
            name="livec",
            description="LIVE In the Wild Image Quality Challenge, 1,162 photos (about 0.5 GB)",
            page="https://live.ece.utexas.edu/research/ChallengeDB/index.html",
            folder="ChallengeDB_release",
            archives=(
                # UNVERIFIED address: the LIVE page hands the release out through
                # its own links (a Box share at times), and no direct URL is
                # documented. If this one fails or answers with a web page, the
                # error names the official page to fetch the zip from by hand.
                Archive(
                    "release",
                    "https://live.ece.utexas.edu/research/ChallengeDB/ChallengeDB_release.zip",
                ),
            ),
        ),
        DatasetSource(
            name="koniq10k",
            description="KonIQ-10k, 10,073 photos at 1024x768, scores, official split (about 2 GB)",
            page="https://database.mmsp-kn.de/koniq-10k-database.html",
            folder="koniq10k",
            archives=(
                # Archives as linked from the KonIQ-10k page; each holds one
                # top-level folder (1024x768/, 512x384/) or the scores CSV.
                Archive("images_1024x768", f"{_MMSP}/koniq10k_1024x768.zip", into="koniq10k"),
                Archive(
                    "images_512x384",
                    f"{_MMSP}/koniq10k_512x384.zip",
                    into="koniq10k",
                    default=False,
                ),
                Archive(
                    "scores", f"{_MMSP}/koniq10k_scores_and_distributions.zip", into="koniq10k"
                ),
                # The split table is published in the authors' GitHub repository
                # (subpic/koniq, metadata/), not on the archive server.
                Archive(
                    "split",
                    "https://raw.githubusercontent.com/subpic/koniq/master/metadata/"
                    "koniq10k_distributions_sets.csv",
                    into="koniq10k",
                    unpack=False,
                ),
            ),
        ),
        DatasetSource(
            name="kadid10k",
            description="KADID-10k, 10,125 synthetically distorted images (about 3 GB)",
            page="https://database.mmsp-kn.de/kadid-10k-database.html",
            folder="kadid10k",
            # The archive holds kadid10k/{images/, dmos.csv}. Third parties report
            # 3,067,408,471 bytes; not pinned here because the server is the authority.
            archives=(Archive("release", f"{_MMSP}/kadid10k.zip"),),
        ),
        DatasetSource(
            name="spaq",
            description="SPAQ, 11,125 smartphone photos (manual download: Google Drive / Baidu)",
            page="https://github.com/h4nwei/SPAQ",
            folder="SPAQ",
            manual=(
                "spaq has no direct download: fetch the SPAQ database from the Google Drive or "
                "Baidu Yun links on https://github.com/h4nwei/SPAQ (a split zip: join it with "
                "`zip -FF SPAQ.zip --out SPAQ_fixed.zip`, then unzip), and place it so that "
                "{root}/SPAQ/TestImage/ holds the photos and {root}/SPAQ/Annotations/ holds "
                "'MOS and Image attribute scores.xlsx'"
            ),
        ),
    )
}


def list_downloadable() -> dict[str, str]:
    """Data set name -> one-line description, for ``iqalib download --list``."""
    return {name: source.description for name, source in SOURCES.items()}


def _source(name: str) -> DatasetSource:
    try:
        return SOURCES[name]
    except KeyError:
        raise ConfigError(
            f"unknown data set {name!r} to download; choose one of {sorted(SOURCES)}"
        ) from None


# -- fetching ---------------------------------------------------------------


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _part(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def _bad(path: Path) -> Path:
    return path.with_name(path.name + ".bad")


def _hash_file(path: Path, digest=None, chunk: int = 1 << 20):
    digest = digest or hashlib.sha256()
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)
    return digest


def file_sha256(path: Path) -> str:
    """The sha256 of ``path``, read from its sidecar when that is newer than the file."""
    path = Path(path)
    sidecar = _sidecar(path)
    if sidecar.is_file() and sidecar.stat().st_mtime >= path.stat().st_mtime:
        recorded = sidecar.read_text().split()
        if recorded and re.fullmatch(r"[0-9a-f]{64}", recorded[0]):
            return recorded[0]
    return _hash_file(path).hexdigest()


def _write_sidecar(path: Path, hexdigest: str) -> None:
    _sidecar(path).write_text(f"{hexdigest}  {path.name}\n")


def _reject(path: Path, url: str, reason: str, *, bad: Path | None = None) -> None:
    """Move a bad file aside to ``bad`` (so a rerun fetches afresh) and raise."""
    bad = bad or _bad(path)
    os.replace(path, bad)
    raise DownloadError(f"{url}: {reason}; moved the file to {bad}; rerun to fetch it again")


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    # A fresh opener reads the proxy settings of this moment, not of the first call.
    return urllib.request.build_opener().open(
        urllib.request.Request(url, headers=headers), timeout=timeout
    )


def _http_failure(url: str, exc: Exception) -> DownloadError:
    if isinstance(exc, urllib.error.HTTPError):
        reason = " ".join(str(exc.reason).split())  # urllib's redirect messages span lines
        if "infinite loop" in reason:
            return DownloadError(
                f"{url}: the server redirects in a loop (HTTP {exc.code}); the address has moved or "
                "needs a login: check it in a browser, or pass base_url (--base-url) for a mirror"
            )
        return DownloadError(
            f"{url}: the server answered HTTP {exc.code} {shown(reason)[1:-1]}; check the address "
            "or pass base_url (--base-url) for a mirror"
        )
    reason = getattr(exc, "reason", None) or exc
    return DownloadError(f"{url}: network error ({reason}); rerun to resume")


def fetch(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    size: int | None = None,
    progress: bool = True,
    chunk: int = 1 << 20,
    timeout: float = 60,
) -> Path:
    """Download ``url`` to ``dest``, resuming a partial ``dest.part``; return ``dest``.

    The file appears at ``dest`` only when complete and verified: its length
    must match the server's (and ``size`` where given), and its sha256 must
    match ``sha256`` where given. A mismatch moves the file to ``.bad`` so
    that a rerun starts afresh. The computed digest is written to
    ``dest.sha256``. An existing ``dest`` is trusted (checked against
    ``sha256`` if given) and not fetched again.
    """
    dest = Path(dest)
    if sha256 is not None:
        sha256 = sha256.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise ConfigError(f"sha256={sha256!r} is not 64 hexadecimal digits")
    if dest.is_file():
        if size is not None and dest.stat().st_size != size:
            _reject(dest, url, f"{dest} has {dest.stat().st_size} bytes, not {size}")
        if sha256 is not None and file_sha256(dest) != sha256:
            _reject(dest, url, f"{dest} does not match sha256 {sha256}")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = _part(dest)
    offset = part.stat().st_size if part.is_file() else 0
    digest = hashlib.sha256()
    response, offset, total = _connect(url, part, offset, timeout)
    if response is None:
        total = offset
    else:
        _receive(response, url, dest, part, offset, total, size, digest, progress, chunk)
    return _place(url, dest, part, response is None, total, size, sha256, digest)


def _connect(url: str, part: Path, offset: int, timeout: float):
    """``(response, offset, total)``: the server's answer for the bytes from ``offset`` (restarting
    from 0 where it ignores or muddles the range); ``response`` None when ``part`` is already whole."""
    for _attempt in range(2):  # the second try restarts from zero
        try:
            response = _open(url, offset, timeout)
        except urllib.error.HTTPError as exc:
            exc.close()  # it holds the connection
            if exc.code == 416 and offset:
                match = _UNSATISFIED_RANGE.search(exc.headers.get("Content-Range", ""))
                if match and int(match.group(1)) == offset:
                    return None, offset, None  # the part file already holds every byte
                offset = 0  # the part is longer than the file: it is not ours
                continue
            raise _http_failure(url, exc) from None
        except (urllib.error.URLError, HTTPException, OSError) as exc:
            raise _http_failure(url, exc) from None
        if response.status == 206:
            match = _CONTENT_RANGE.search(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != offset:
                response.close()
                offset = 0
                continue
            total = int(match.group(3)) if match.group(3) != "*" else None
        else:
            # 200: the server ignored the Range header, so the body starts at byte 0.
            offset = 0
            length = response.headers.get("Content-Length")
            total = int(length) if length is not None else None
        break
    else:
        raise DownloadError(
            f"{url}: the server answers ranges inconsistently; delete {part} and rerun"
        )
    return response, offset, total


def _receive(response, url: str, dest: Path, part: Path, offset: int, total, size, digest, progress: bool,
             chunk: int) -> None:
    """Append the response's body to ``part`` (hashing what it already held first)."""
    with response:
        is_page = response.headers.get("Content-Type", "").startswith("text/html")
        if is_page and dest.suffix.lower() not in (".html", ".htm"):
            raise DownloadError(
                f"{url}: the server sent a web page instead of {dest.name} (moved or behind a "
                f"login); download it by hand and place it at {dest}"
            )
        if size is not None and total is not None and total != size:
            raise DownloadError(
                f"{url}: the server offers {total} bytes but {size} are expected; "
                "the file has changed or the address is wrong"
            )
        if offset:
            _hash_file(part, digest)
        check = None if offset else _starts_like(dest, url, response.headers.get("Content-Type"))
        _stream(response, part, offset, total, digest, url, progress, chunk, check)


def _place(url: str, dest: Path, part: Path, whole_before: bool, total, size, sha256, digest) -> Path:
    """Check the finished ``part`` (length, ``size``, ``sha256``), then rename it to ``dest`` and
    write its digest beside it; a bad file moves to ``.bad``."""
    written = part.stat().st_size
    if whole_before:
        _hash_file(part, digest)
    if total is not None and written != total:
        raise DownloadError(
            f"{url}: download stopped at {written} of {total} bytes; rerun to resume"
        )
    if size is not None and written != size:
        _reject(part, url, f"got {written} bytes but {size} are expected", bad=_bad(dest))
    hexdigest = digest.hexdigest()
    if sha256 is not None and hexdigest != sha256:
        reason = f"sha256 {hexdigest} does not match the expected {sha256}"
        _reject(part, url, reason, bad=_bad(dest))
    os.replace(part, dest)
    _write_sidecar(dest, hexdigest)
    return dest


_WEB_PAGE_STARTS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml", b"<!--", b"<title")
# The first bytes of each kind of file fetched here; anything else is not what was asked for.
_MAGIC = {".zip": (b"PK\x03\x04", b"PK\x05\x06"), ".gz": (b"\x1f\x8b",), ".tgz": (b"\x1f\x8b",)}


def _starts_like(dest: Path, url: str, content_type: str | None):
    """A check of the first bytes of a fresh download: a web page (an error or login page
    served with status 200) or, for a zip or gzip file, anything without its magic bytes
    is refused before a byte is written."""
    suffix = dest.suffix.lower()
    if suffix in (".html", ".htm"):
        return None

    def check(block: bytes) -> None:
        head = block[:256].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
        if head.startswith(_WEB_PAGE_STARTS):
            raise DownloadError(
                f"{url}: the server sent a web page instead of {dest.name} (an error or login page, "
                f"served as {shown(content_type or 'no content type')}); download it by hand and "
                f"place it at {dest}"
            )
        magic = _MAGIC.get(suffix)
        if magic and not block.startswith(magic):
            got = f"data starting with {shown(block[:8])}" if block else "an empty file"
            raise DownloadError(
                f"{url}: the server sent {got}, not a {suffix[1:]} file; check the address or "
                f"download it by hand and place it at {dest}"
            )

    return check


def _stream(response, part: Path, offset: int, total, digest, url, progress, chunk, check=None) -> None:
    mode = "ab" if offset else "wb"
    bar = tqdm(
        total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
        desc=part.name[: -len(".part")], disable=not progress, leave=False,
    )

    def read() -> bytes:
        try:
            return response.read(chunk)
        except (HTTPException, OSError) as exc:
            done = offset + bar.n - bar.initial
            raise DownloadError(
                f"{url}: connection lost after {done} bytes ({exc or type(exc).__name__}); "
                "rerun to resume"
            ) from None

    with bar:
        block = read()
        if check is not None:
            check(block)  # before anything lands on disk
        try:
            with open(part, mode) as handle:
                while block:
                    handle.write(block)
                    digest.update(block)
                    bar.update(len(block))
                    block = read()
        except OSError as exc:  # the disk, not the network
            raise _write_failure(part, exc) from None


# -- unpacking --------------------------------------------------------------
#
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


def _read_marker(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
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


def _write_failure(path: Path, exc: OSError, *, folder: bool = False):
    return output_error(Path(exc.filename) if exc.filename else path, exc, folder=folder)


def unpack(archive: Path, dest: Path) -> list[Path]:
    """Unpack a zip or tar(.gz) ``archive`` into ``dest``; return the files it holds.

    Members are extracted into a hidden staging folder inside ``dest`` and checked on
    the way (see the notes above: no links, devices or names leaving the folder, CRCs,
    a readable tar stream); only a fully extracted archive is moved into place, so a
    damaged, hostile or interrupted unpack (or a full disk) leaves ``dest`` as it was.
    A marker records the archive's sha256; the same archive is not unpacked twice.
    """
    archive, dest = Path(archive), Path(dest)
    try:
        dest.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_failure(dest, exc, folder=True) from None
    marker = _marker(archive, dest)
    checksum = file_sha256(archive)
    recorded = _read_marker(marker)
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
        marker.write_text(json.dumps({"archive": archive.name, "sha256": checksum, "files": files}))
    except OSError as exc:  # the disk, not the archive: full, read-only, a name it cannot hold
        raise _write_failure(dest, exc) from None
    return [dest / name for name in files]


# -- data sets --------------------------------------------------------------


def _mirror(url: str, base_url: str | None) -> str:
    """``url`` with everything before its file name replaced by ``base_url``."""
    if not base_url:
        return url
    return f"{base_url.rstrip('/')}/{PurePosixPath(urlsplit(url).path).name}"


def _selected(source: DatasetSource, which: list[str] | None) -> list[Archive]:
    if which is None:
        return [a for a in source.archives if a.default]
    keys = [a.key for a in source.archives]
    unknown = [w for w in which if w not in keys]
    if unknown:
        raise ConfigError(f"{source.name}: unknown archive(s) {unknown}; choose from {keys}")
    return [a for a in source.archives if a.key in which]


def _pinned(archives: list[Archive], sha256, name: str) -> dict[str, str]:
    """Map archive file name -> expected sha256 from the caller's ``sha256``."""
    pinned = {a.filename: a.sha256 for a in archives if a.sha256}
    if sha256 is None:
        return pinned
    if isinstance(sha256, str):
        if len(archives) != 1:
            raise ConfigError(
                f"{name}: one sha256 given for {len(archives)} archives; pin them as "
                f"{{file name: sha256}} for {[a.filename for a in archives]}"
            )
        return {archives[0].filename: sha256.strip().lower()}
    if not isinstance(sha256, Mapping):
        raise ConfigError(
            f"{name}: sha256 must be a hex string or a mapping, not {type(sha256).__name__}"
        )
    by_key = {a.key: a.filename for a in archives}
    for key, value in sha256.items():
        filename = by_key.get(key, key)
        if filename not in {a.filename for a in archives}:
            raise ConfigError(
                f"{name}: sha256 given for {key!r}, which is not among the selected archives "
                f"{[a.filename for a in archives]}"
            )
        pinned[filename] = str(value).strip().lower()
    return pinned


def download_dataset(
    name: str,
    root: Path,
    *,
    base_url: str | None = None,
    which: list[str] | None = None,
    sha256: str | Mapping[str, str] | None = None,
    progress: bool = True,
    timeout: float = 60,
) -> Path:
    """Fetch, verify and unpack a data set below ``root``; return its folder.

    ``base_url`` replaces everything before each archive's file name (a
    mirror holding the same file names). ``which`` selects archives by key
    (see ``SOURCES[name].archives``); by default the ones a loader needs.
    ``sha256`` pins the expected digest: a hex string when one archive is
    selected, else a mapping from archive key or file name to digest.
    ``timeout`` bounds each network wait in seconds. Archives stay in
    ``root/archives/``; delete them once unpacked if space is short (the
    unpack markers keep reruns from fetching them again).
    """
    source = _source(name)
    root = Path(root).expanduser()
    if source.manual:
        raise DownloadError(source.manual.format(root=root))
    archives = _selected(source, which)
    pinned = _pinned(archives, sha256, name)
    _check_root(root)
    try:
        return _download_into(source, root, archives, pinned, base_url, progress, timeout)
    except OSError as exc:  # the disk or the folder (full, read-only), not the network
        raise _write_failure(root, exc) from None


def _check_root(root: Path) -> None:
    """``root`` must be a folder or creatable as one: one line naming the culprit otherwise."""
    if "\x00" in str(root):
        raise DownloadError(f"root (--root) {shown(str(root))} holds a NUL byte; pass a folder name")
    for folder in (root, *root.parents):
        if folder.is_dir():
            break
        if folder.exists() or folder.is_symlink():
            what = "a broken link" if not folder.exists() else "a file"
            raise DownloadError(f"root (--root) {root}: {folder} is {what}, not a folder; pass a folder "
                                "(it is created if missing)")
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise _write_failure(root, exc, folder=True) from None


def _download_into(source: DatasetSource, root: Path, archives: list[Archive], pinned: dict,
                   base_url, progress, timeout) -> Path:
    store = root / ARCHIVES_FOLDER
    for item in archives:
        url = _mirror(item.url, base_url)
        target = root / item.into
        expected = pinned.get(item.filename)
        path = (target if not item.unpack else store) / item.filename
        if item.unpack:
            recorded = _read_marker(_marker(path, target))
            if not path.exists() and recorded and expected in (None, recorded.get("sha256")):
                continue  # unpacked before and the archive deleted since
        try:
            fetch(url, path, sha256=expected, size=item.size, progress=progress, timeout=timeout)
        except DownloadError as exc:
            raise DownloadError(f"{exc} (official page: {source.page})") from None
        if not item.unpack:
            continue
        try:
            unpack(path, target)
        except DamagedArchiveError as exc:
            _reject(path, url, str(exc).removeprefix(f"{path}: "))
    return root / source.folder
