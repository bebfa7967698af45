"""LIVE-C's 627 original phone JPEGs, embedded: the default book's real photographs.

Of the 1,162 rated images of the LIVE In the Wild Image Quality Challenge
database, 627 are the phones' original JPEG files (the other 535 are BMPs in
the release). The University of Texas at Austin notice lets anyone copy and
distribute the database, provided the notice travels in full with every copy
and the database is cited, so these 627 files ship in this folder
(``iqalib/data/livec_jpeg/``) byte for byte: re-encoding them would change the
very quality their MOS describes.

The folder holds ``Images/*.JPG`` (the files as released), ``scores.csv``
(image, MOS on 0-100 with higher better, the raters' standard deviation, read
from the release's ``.mat`` files), ``NOTICE.txt`` (the release's README with
the notice, byte for byte), ``README.md`` and ``SHA256SUMS`` (a checksum for
every file above). :func:`embed_livec_jpeg` makes the folder from a copy of
the release; :func:`verify_embedded` checks it against its manifest.

The other 535 LIVE-C images stay outside the repository: a model trained on
these 627 meets them as an untouched test set (``livec_rest``).
"""
from __future__ import annotations

import shutil
from pathlib import Path

import pandas as pd

from iqalib.data.datasets import EMBEDDED_LIVEC as FOLDER
from iqalib.data.datasets import load_livec
from iqalib.errors import DataError
from iqalib.files import file_sha256

TABLE = "scores.csv"
NOTICE = "NOTICE.txt"
MANIFEST = "SHA256SUMS"
N_IMAGES = 627
NOTICE_START = "-----------COPYRIGHT NOTICE STARTS WITH THIS LINE------------"
NOTICE_END = "-----------COPYRIGHT NOTICE ENDS WITH THIS LINE------------"
CITATION = ("D. Ghadiyaram and A. C. Bovik, Massive Online Crowdsourced Study of Subjective and Objective "
            "Picture Quality, IEEE TIP 25(1), 2016; D. Ghadiyaram and A. C. Bovik, LIVE In the Wild Image "
            "Quality Challenge Database, http://live.ece.utexas.edu/research/ChallengeDB/index.html, 2015.")

_README = """\
# LIVE-C's original phone JPEGs (627 images)

These are the {n} images of the LIVE In the Wild Image Quality Challenge database
(LIVE-C) that the release stores as the phones' original JPEG files, copied byte for byte
(`SHA256SUMS` lists every file's checksum; `iqalib.data.livec_jpeg.verify_embedded()` checks
them). `scores.csv` gives each image's mean opinion score (MOS, 0-100, higher is better) and
the standard deviation of its ratings, as `Data/AllMOS_release.mat` and
`Data/AllStdDev_release.mat` list them. The other 535 rated images of LIVE-C (BMP files in
the release) are not here: they are the untouched test set of anything trained on these.

The database is distributed under the University of Texas at Austin notice, reproduced in full
in `NOTICE.txt` (the release's README.txt, unchanged). It must travel with every copy of these
files, and research that uses them must cite:

- D. Ghadiyaram and A.C. Bovik, "Massive Online Crowdsourced Study of Subjective and Objective
  Picture Quality," IEEE Transactions on Image Processing 25(1), 2016.
- D. Ghadiyaram and A.C. Bovik, "LIVE In the Wild Image Quality Challenge Database,"
  http://live.ece.utexas.edu/research/ChallengeDB/index.html, 2015.

Made by `iqalib.data.livec_jpeg.embed_livec_jpeg(release, dest)` from a copy of
`ChallengeDB_release`.
"""


def read_manifest(folder: Path = FOLDER) -> dict[str, str]:
    """``{relative path: sha256}`` from ``folder/SHA256SUMS`` (``sha256sum`` format)."""
    path = Path(folder) / MANIFEST
    if not path.is_file():
        raise DataError(f"{path}: checksum manifest not found; the embedded LIVE-C folder is incomplete "
                        "(restore it with `git checkout -- iqalib/data/livec_jpeg`)")
    sums = {}
    for number, line in enumerate(path.read_text().splitlines(), 1):
        digest, _, name = line.partition("  ")
        if len(digest) != 64 or not name:
            raise DataError(f"{path}: line {number} is not '<sha256>  <file>'")
        sums[name] = digest
    return sums


def verify_embedded(folder: Path = FOLDER) -> list[str]:
    """Files of ``folder`` whose bytes differ from the manifest (or are missing, or unlisted)."""
    folder = Path(folder)
    sums = read_manifest(folder)
    problems = [f"{name}: missing" for name in sums if not (folder / name).is_file()]
    problems += [f"{name}: changed" for name, digest in sums.items()
                 if (folder / name).is_file() and file_sha256(folder / name) != digest]
    listed = set(sums) | {MANIFEST}
    problems += [f"{p.relative_to(folder).as_posix()}: not in {MANIFEST}" for p in sorted(folder.rglob("*"))
                 if p.is_file() and p.relative_to(folder).as_posix() not in listed]
    return problems


def embed_livec_jpeg(release: str | Path, dest: str | Path) -> Path:
    """Copy the original JPEGs of the LIVE-C release at ``release`` into ``dest`` (a new folder).

    ``release`` is the ``ChallengeDB_release`` folder. The JPEGs are copied byte for
    byte, the notice file unchanged; MOS and std come from the release's ``.mat`` files.
    """
    release, dest = Path(release), Path(dest)
    if dest.exists():
        raise DataError(f"{dest}: already exists; embed into a new folder")
    jpegs = load_livec(release, subset="embedded").frame
    if len(jpegs) != N_IMAGES:
        raise DataError(f"{release}: {len(jpegs)} original JPEGs listed, expected {N_IMAGES}; "
                        "is it the complete ChallengeDB_release?")
    (dest / "Images").mkdir(parents=True)
    for image in jpegs["image"]:
        shutil.copyfile(release / image, dest / image)
    scores = pd.DataFrame({"image": jpegs["image"].to_numpy(), "mos": jpegs["mos"].to_numpy(),
                           "std": jpegs["std"].to_numpy()})
    scores.to_csv(dest / TABLE, index=False, float_format="%.10g")
    shutil.copyfile(release / "README.txt", dest / NOTICE)
    (dest / "README.md").write_text(_README.format(n=N_IMAGES))
    files = sorted(p.relative_to(dest).as_posix() for p in dest.rglob("*") if p.is_file())
    (dest / MANIFEST).write_text("".join(f"{file_sha256(dest / f)}  {f}\n" for f in files))
    return dest
