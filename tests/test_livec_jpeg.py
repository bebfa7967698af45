"""The embedded LIVE-C originals: byte-identical to the release, notice and citation with them."""
from __future__ import annotations

import shutil

import numpy as np
import pytest

from iqalib.data import livec_jpeg
from iqalib.data.datasets import DATASETS, load_dataset
from iqalib.errors import ConfigError, DataError
from iqalib.files import file_sha256

RELEASE = ("LIVEC", "ChallengeDB_release")


def test_every_embedded_file_matches_the_manifest():
    sums = livec_jpeg.read_manifest()
    images = [name for name in sums if name.startswith("Images/")]
    assert len(images) == livec_jpeg.N_IMAGES == 627
    assert all(name.endswith(".JPG") for name in images)
    assert {"scores.csv", "NOTICE.txt", "README.md"} <= set(sums)
    assert livec_jpeg.verify_embedded() == []


def test_the_notice_travels_in_full_with_the_citation():
    notice = (livec_jpeg.FOLDER / livec_jpeg.NOTICE).read_text()
    start, end = notice.index(livec_jpeg.NOTICE_START), notice.index(livec_jpeg.NOTICE_END)
    body = notice[start:end]
    for phrase in ("Copyright (c) 2015 The University of Texas at Austin",
                   "provided that the copyright \nnotice in its entirety appear in all copies",
                   "Massive Online Crowdsourced Study of Subjective and Objective Picture Quality",
                   "LIVE In the Wild Image Quality Challenge Database"):
        assert phrase in body
    assert "DISCLAIMS ANY WARRANTIES" in body
    readme = (livec_jpeg.FOLDER / "README.md").read_text()
    assert "NOTICE.txt" in readme and "Ghadiyaram" in readme and "IEEE Transactions on Image Processing" in readme
    assert "Ghadiyaram" in DATASETS["livec_jpeg"].citation


def test_the_embedded_table_is_627_distinct_photographs_rated_0_to_100():
    table = load_dataset("livec_jpeg")
    frame = table.frame
    assert len(frame) == 627 and frame["group"].nunique() == 627
    assert table.mos_range == (0.0, 100.0)
    assert 3.0 < frame["mos"].min() < 4.0 and 92.0 < frame["mos"].max() < 93.0
    assert np.isfinite(frame["std"]).all() and (frame["std"] > 0).all()


@pytest.mark.parametrize("damage", ["change", "remove", "add"])
def test_verify_reports_a_changed_missing_or_unlisted_file(tmp_path, damage):
    copy = tmp_path / "livec_jpeg"
    shutil.copytree(livec_jpeg.FOLDER, copy)
    first = sorted((copy / "Images").iterdir())[0]
    if damage == "change":
        data = bytearray(first.read_bytes())
        data[len(data) // 2] ^= 0xFF
        first.write_bytes(bytes(data))
        expected = f"Images/{first.name}: changed"
    elif damage == "remove":
        first.unlink()
        expected = f"Images/{first.name}: missing"
    else:
        (copy / "Images" / "extra.JPG").write_bytes(b"x")
        expected = "Images/extra.JPG: not in SHA256SUMS"
    assert livec_jpeg.verify_embedded(copy) == [expected]
    assert livec_jpeg.verify_embedded() == []  # the original is untouched


def test_a_missing_manifest_is_one_clear_line(tmp_path):
    with pytest.raises(DataError, match="checksum manifest not found"):
        livec_jpeg.verify_embedded(tmp_path)


# ------------------------------------------------------------ against the release (../shared)
def test_the_embedded_files_are_the_release_byte_for_byte(shared_datasets):
    release = shared_datasets.joinpath(*RELEASE)
    sums = livec_jpeg.read_manifest()
    for name, digest in sums.items():
        if name.startswith("Images/"):
            assert file_sha256(release / name) == digest, name
    assert sums["NOTICE.txt"] == file_sha256(release / "README.txt")


def test_the_embedded_scores_are_the_release_scores(shared_datasets):
    release = load_dataset("livec", shared_datasets.joinpath(*RELEASE), subset="embedded").frame
    embedded = load_dataset("livec_jpeg").frame
    assert release["image"].tolist() == embedded["image"].tolist()
    np.testing.assert_allclose(embedded["mos"], release["mos"], rtol=0, atol=1e-8)
    np.testing.assert_allclose(embedded["std"], release["std"], rtol=0, atol=1e-8)


def test_livec_subsets_split_the_release_into_embedded_and_held_out(shared_datasets):
    root = shared_datasets.joinpath(*RELEASE)
    whole = set(load_dataset("livec", root).frame["image"])
    embedded = set(load_dataset("livec", root, subset="embedded").frame["image"])
    held_out = set(load_dataset("livec", root, subset="held_out").frame["image"])
    assert len(embedded) == 627 and len(held_out) == 535
    assert embedded | held_out == whole and not embedded & held_out
    with pytest.raises(ConfigError, match="subset='jpg' for livec"):
        load_dataset("livec", root, subset="jpg")


def test_embedding_rebuilds_the_same_folder_and_refuses_an_existing_one(shared_datasets, tmp_path):
    release = shared_datasets.joinpath(*RELEASE)
    made = livec_jpeg.embed_livec_jpeg(release, tmp_path / "copy")
    assert livec_jpeg.read_manifest(made) == livec_jpeg.read_manifest()
    with pytest.raises(DataError, match="already exists"):
        livec_jpeg.embed_livec_jpeg(release, made)
