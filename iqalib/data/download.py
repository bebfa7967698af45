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

This module puts three jobs together: the list of data sets and their
archives (:mod:`iqalib.data.sources`), fetching with resume and checksums
(:mod:`iqalib.data.fetch`), and unpacking where nothing in an archive is
trusted (:mod:`iqalib.data.unpack`). A ``root`` that is a file or cannot be
created: one line.
"""
from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from iqalib.data.fetch import fetch, reject_download
from iqalib.data.sources import Archive, DatasetSource, dataset_source
from iqalib.data.unpack import DamagedArchiveError, unpack, unpacked_record
from iqalib.errors import ConfigError, DownloadError
from iqalib.files import write_error  # one wording for a full or read-only disk
from iqalib.paths import shown

ARCHIVES_FOLDER = "archives"


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
    source = dataset_source(name)
    root = Path(root).expanduser()
    if source.manual:
        raise DownloadError(source.manual.format(root=root))
    archives = _selected(source, which)
    pinned = _pinned(archives, sha256, name)
    _check_root(root)
    try:
        return _download_into(source, root, archives, pinned, base_url, progress, timeout)
    except OSError as exc:  # the disk or the folder (full, read-only), not the network
        raise write_error(root, exc) from None


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
        raise write_error(root, exc, folder=True) from None


def _download_into(source: DatasetSource, root: Path, archives: list[Archive], pinned: dict,
                   base_url, progress, timeout) -> Path:
    store = root / ARCHIVES_FOLDER
    for item in archives:
        url = _mirror(item.url, base_url)
        target = root / item.into
        expected = pinned.get(item.filename)
        path = (target if not item.unpack else store) / item.filename
        if item.unpack:
            recorded = unpacked_record(path, target)
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
            reject_download(path, url, str(exc).removeprefix(f"{path}: "))
    return root / source.folder
