"""The data sets ``iqalib download`` knows: where each one's archives are and which folder its loader reads.

:data:`SOURCES` maps a data set's name to its :class:`DatasetSource`; each
downloadable file is an :class:`Archive`. Fetching is :mod:`iqalib.data.fetch`,
unpacking :mod:`iqalib.data.unpack`, and :func:`iqalib.data.download.download_dataset`
puts the three together.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import PurePosixPath
from urllib.parse import urlsplit

from iqalib.errors import ConfigError


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


def dataset_source(name: str) -> DatasetSource:
    """The source of data set ``name``; one line naming the known ones otherwise."""
    try:
        return SOURCES[name]
    except KeyError:
        raise ConfigError(
            f"unknown data set {name!r} to download; choose one of {sorted(SOURCES)}"
        ) from None
