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
"""
from __future__ import annotations

import hashlib
import json
import os
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
        return DownloadError(
            f"{url}: the server answered HTTP {exc.code} {exc.reason}; check the address "
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

    for _attempt in range(2):  # the second try restarts from zero
        try:
            response = _open(url, offset, timeout)
        except urllib.error.HTTPError as exc:
            exc.close()  # it holds the connection
            if exc.code == 416 and offset:
                match = _UNSATISFIED_RANGE.search(exc.headers.get("Content-Range", ""))
                if match and int(match.group(1)) == offset:
                    response = None  # the part file already holds every byte
                    break
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

    if response is None:
        total = offset
    else:
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
            _stream(response, part, offset, total, digest, url, progress, chunk)

    written = part.stat().st_size
    if response is None:
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


def _stream(response, part: Path, offset: int, total, digest, url, progress, chunk) -> None:
    mode = "ab" if offset else "wb"
    bar = tqdm(
        total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
        desc=part.name[: -len(".part")], disable=not progress, leave=False,
    )
    try:
        with open(part, mode) as handle, bar:
            while True:
                try:
                    block = response.read(chunk)
                except (HTTPException, OSError) as exc:
                    done = offset + bar.n - bar.initial
                    raise DownloadError(
                        f"{url}: connection lost after {done} bytes ({exc or type(exc).__name__}); "
                        "rerun to resume"
                    ) from None
                if not block:
                    return
                handle.write(block)
                digest.update(block)
                bar.update(len(block))
    except OSError as exc:  # the disk, not the network
        raise DownloadError(
            f"{part}: cannot write ({exc.strerror or exc}); free space and rerun"
        ) from None


# -- unpacking --------------------------------------------------------------


class DamagedArchiveError(DownloadError):
    """The archive fails its integrity check; fetching it again may help."""


def _marker(archive: Path, dest: Path) -> Path:
    return dest / f".{archive.name}.unpacked.json"


def _read_marker(path: Path) -> dict | None:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _escapes(name: str) -> bool:
    p = PurePosixPath(name.replace("\\", "/"))
    return p.is_absolute() or ".." in p.parts or bool(re.match(r"^[A-Za-z]:", name))


def _link_escapes(member_name: str, target: str) -> bool:
    """Whether a link stored at ``member_name`` and pointing to ``target`` leaves the root."""
    if PurePosixPath(target).is_absolute() or re.match(r"^[A-Za-z]:", target):
        return True
    depth = 0
    for part in (PurePosixPath(member_name).parent / target).parts:
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part != ".":
            depth += 1
    return False


def _refused(archive: Path, member: str, link_target: str | None = None) -> DownloadError:
    what = f"member {member!r}" if link_target is None else f"link {member!r} -> {link_target!r}"
    return DownloadError(
        f"{archive}: refused {what} that points outside the target folder; "
        "the archive is unsafe, get it from the official source"
    )


def _zip_members(zf: zipfile.ZipFile, archive: Path) -> list[zipfile.ZipInfo]:
    members = zf.infolist()
    for info in members:
        if _escapes(info.filename):
            raise _refused(archive, info.filename)
        if stat.S_ISLNK(info.external_attr >> 16):
            target = zf.read(info).decode("utf-8", "replace")
            if _link_escapes(info.filename, target):
                raise _refused(archive, info.filename, target)
    return members


def _check_tar_member(info: tarfile.TarInfo, archive: Path) -> None:
    if _escapes(info.name):
        raise _refused(archive, info.name)
    if info.issym() or info.islnk():
        # Hard link targets are archive paths; symlink targets are relative to the link.
        if info.islnk():
            escapes = _escapes(info.linkname)
        else:
            escapes = _link_escapes(info.name, info.linkname)
        if escapes:
            raise _refused(archive, info.name, info.linkname)
    elif not (info.isfile() or info.isdir()):
        raise DownloadError(f"{archive}: refused special member {info.name!r} (device or pipe)")


def _extract(archive: Path, into: Path) -> None:
    """Extract ``archive`` into the empty folder ``into``, checking every member.

    One pass over the data: zip members are CRC-checked as they are read and
    tar members are checked before each is written, so a damaged or hostile
    archive fails part-way inside ``into``, which the caller then discards.
    """
    damaged = f"{archive}: the archive is damaged"
    if zipfile.is_zipfile(archive):
        try:
            with zipfile.ZipFile(archive) as zf:
                zf.extractall(into, _zip_members(zf, archive))
        except (zipfile.BadZipFile, zlib.error, EOFError, NotImplementedError) as exc:
            raise DamagedArchiveError(f"{damaged} ({exc})") from None
        return
    try:
        is_tar = tarfile.is_tarfile(archive)
    except (OSError, EOFError):
        is_tar = False
    if not is_tar:
        raise DamagedArchiveError(f"{archive}: not a zip or tar archive (or damaged)")
    # Python's own "data" filter repeats the checks where available.
    extra = {"filter": "data"} if hasattr(tarfile, "data_filter") else {}
    try:
        with tarfile.open(archive) as tf:
            for info in tf:
                _check_tar_member(info, archive)
                tf.extract(info, into, **extra)
    except (tarfile.TarError, zlib.error, EOFError) as exc:
        raise DamagedArchiveError(f"{damaged} ({exc or type(exc).__name__})") from None


def _move_merging(src: Path, dst: Path) -> None:
    """Move ``src`` to ``dst``; folders merge, anything else is replaced."""
    dst_is_dir = dst.is_dir() and not dst.is_symlink()
    if src.is_dir() and dst_is_dir:
        for child in src.iterdir():
            _move_merging(child, dst / child.name)
        src.rmdir()
        return
    if dst_is_dir:
        shutil.rmtree(dst)
    elif dst.is_symlink() or dst.exists():
        dst.unlink()
    os.replace(src, dst)


def _files_below(folder: Path) -> list[str]:
    return sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if not p.is_dir())


def unpack(archive: Path, dest: Path) -> list[Path]:
    """Unpack a zip or tar(.gz) ``archive`` into ``dest``; return the files it holds.

    Members are extracted into a hidden staging folder inside ``dest`` and
    checked on the way (CRCs, a readable tar stream, no member or link
    leaving ``dest``); only a fully extracted archive is moved into place, so
    a damaged, hostile or interrupted unpack leaves ``dest`` as it was. A
    marker records the archive's sha256; the same archive is not unpacked
    twice.
    """
    archive, dest = Path(archive), Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    marker = _marker(archive, dest)
    checksum = file_sha256(archive)
    recorded = _read_marker(marker)
    if recorded and recorded.get("sha256") == checksum:
        return [dest / name for name in recorded.get("files", [])]
    staging = dest / f".{archive.name}.unpacking"
    if staging.exists():
        shutil.rmtree(staging)  # left over from an interrupted run
    staging.mkdir()
    try:
        _extract(archive, staging)
        files = _files_below(staging)
        for child in list(staging.iterdir()):
            _move_merging(child, dest / child.name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    marker.write_text(json.dumps({"archive": archive.name, "sha256": checksum, "files": files}))
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
