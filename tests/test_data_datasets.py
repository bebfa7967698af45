"""Every loader on a tiny copy of its official layout, and on the real tables where present."""
from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from scipy.io import loadmat, savemat

from iqalib.data.datasets import (
    DATASETS,
    find_image,
    list_datasets,
    load_dataset,
)
from iqalib.data.images import decode_image
from iqalib.data.splits import split_table
from iqalib.errors import ConfigError, DataError


def one_line(message: str) -> str:
    assert "\n" not in message, message
    return message


# ====================================================================== LIVE-C
LIVEC_NAMES = [f"t{i}.bmp" for i in range(1, 8)] + ["100.bmp", "101.bmp", "1000.JPG", "1001.JPG"]
LIVEC_MOS = np.array([63.9, 25.3, 48.9, 35.8, 66.5, 54.5, 77.8, 32.5, 66.3, 71.25, 12.0])
LIVEC_STD = np.array([18.3, 13.6, 18.9, 18.2, 19.2, 19.9, 19.6, 19.1, 20.2, 17.5, 9.75])


def mat_cell_column(strings) -> np.ndarray:
    """An (N, 1) MATLAB cell array of strings, as in AllImages_release.mat."""
    cell = np.empty((len(strings), 1), dtype=object)
    for i, s in enumerate(strings):
        cell[i, 0] = np.array([s])
    return cell


@pytest.fixture
def livec_root(tmp_path, write_image) -> Path:
    """ChallengeDB_release with t1..t7, two .bmp images (one re-encoded as .png) and two .JPG."""
    root = tmp_path / "ChallengeDB_release"
    data = root / "Data"
    data.mkdir(parents=True)
    savemat(data / "AllImages_release.mat", {"AllImages_release": mat_cell_column(LIVEC_NAMES)})
    savemat(data / "AllMOS_release.mat", {"AllMOS_release": LIVEC_MOS.reshape(1, -1)})
    savemat(data / "AllStdDev_release.mat", {"AllStdDev_release": LIVEC_STD.reshape(1, -1)})
    for i in range(1, 8):
        write_image(root / "Images" / "trainingImages" / f"t{i}.bmp", seed=i)
    write_image(root / "Images" / "100.png", seed=100)  # listed as 100.bmp
    write_image(root / "Images" / "101.bmp", seed=101)
    for name in ("1000.JPG", "1001.JPG"):
        write_image(root / "Images" / name, seed=int(name[:4]))
    return root


def test_livec_fixture_has_the_real_mat_structure(livec_root):
    names = loadmat(livec_root / "Data" / "AllImages_release.mat")["AllImages_release"]
    assert names.shape == (11, 1) and names.dtype == object
    assert loadmat(livec_root / "Data" / "AllMOS_release.mat")["AllMOS_release"].shape == (1, 11)


def test_livec_drops_the_training_examples(livec_root):
    table = load_dataset("livec", livec_root)
    assert table.name == "livec"
    assert table.frame["image"].tolist() == [
        "Images/100.png",  # listed as .bmp, found by its stem
        "Images/101.bmp",
        "Images/1000.JPG",
        "Images/1001.JPG",
    ]
    np.testing.assert_array_equal(table.mos, LIVEC_MOS[7:])
    np.testing.assert_array_equal(table.frame["std"], LIVEC_STD[7:])
    assert table.frame["split"].isna().all()
    assert table.frame["group"].tolist() == table.frame["image"].tolist()
    assert table.mos_range == (0.0, 100.0)
    assert table.short_side is None
    assert not table.synthetic
    assert "Ghadiyaram" in table.citation
    assert all(p.is_file() for p in table.paths)


def test_livec_can_keep_the_training_examples(livec_root):
    table = load_dataset("livec", livec_root, keep_training_examples=True)
    assert len(table) == 11
    assert table.frame["image"].tolist()[:7] == [f"Images/trainingImages/t{i}.bmp" for i in range(1, 8)]
    np.testing.assert_array_equal(table.mos, LIVEC_MOS)


def test_livec_images_decode(livec_root):
    table = load_dataset("livec", livec_root)
    assert decode_image(table.paths[0]).shape == (24, 32, 3)


def test_livec_missing_images_are_all_listed(livec_root):
    (livec_root / "Images" / "100.png").unlink()
    (livec_root / "Images" / "1001.JPG").unlink()
    with pytest.raises(DataError) as info:
        load_dataset("livec", livec_root)
    message = one_line(str(info.value))
    assert "AllMOS_release.mat" in message
    assert "2 row(s) name an image missing" in message
    assert "(Images/100.bmp)" in message and "(Images/1001.JPG)" in message


def test_livec_drop_missing_images(livec_root):
    (livec_root / "Images" / "101.bmp").unlink()
    with pytest.warns(UserWarning, match=r"dropped 1 row\(s\).*Images/101.bmp"):
        table = load_dataset("livec", livec_root, on_error="drop")
    assert len(table) == 3
    np.testing.assert_array_equal(table.mos, LIVEC_MOS[[7, 9, 10]])


def test_livec_mat_files_that_disagree(livec_root):
    savemat(livec_root / "Data" / "AllMOS_release.mat", {"AllMOS_release": LIVEC_MOS[:5].reshape(1, -1)})
    with pytest.raises(DataError, match=r"11 names, 5 MOS, 11 std; the .mat files disagree"):
        load_dataset("livec", livec_root)


def test_livec_missing_or_broken_mat(livec_root):
    (livec_root / "Data" / "AllStdDev_release.mat").unlink()
    with pytest.raises(DataError, match=r"AllStdDev_release.mat: not found; is root the ChallengeDB_release"):
        load_dataset("livec", livec_root)
    (livec_root / "Data" / "AllStdDev_release.mat").write_bytes(b"not a mat file at all")
    with pytest.raises(DataError, match=r"cannot be read as a MATLAB file"):
        load_dataset("livec", livec_root)
    savemat(livec_root / "Data" / "AllStdDev_release.mat", {"other": LIVEC_STD})
    with pytest.raises(DataError, match=r"has no variable 'AllStdDev_release'; found \['other'\]"):
        load_dataset("livec", livec_root)


def test_find_image_prefers_the_listed_name(tmp_path):
    (tmp_path / "a.bmp").write_bytes(b"x")
    (tmp_path / "a.png").write_bytes(b"x")
    (tmp_path / "b.JPG").write_bytes(b"x")
    assert find_image(tmp_path, "a.bmp") == "a.bmp"
    assert find_image(tmp_path, "b.bmp") == "b.JPG"
    assert find_image(tmp_path, "c.bmp") == "c.bmp"  # unchanged: reported missing later


# ================================================================== KonIQ-10k
KONIQ_NAMES = [f"{1000 + i}.jpg" for i in range(6)]
KONIQ_SETS = ["training", "training", "training", "validation", "test", "test"]
# Rating counts c1..c5 per image (the scores table stores counts, the sets table shares).
KONIQ_COUNTS = np.array([
    [0, 0, 25, 73, 7],
    [0, 3, 45, 47, 1],
    [10, 20, 30, 20, 10],
    [1, 2, 3, 4, 90],
    [50, 30, 10, 5, 5],
    [0, 0, 0, 0, 100],
], dtype=float)
KONIQ_MOS_100 = np.array([77.4, 68.7, 50.0, 90.1, 20.3, 95.0])
KONIQ_SD = np.array([0.53, 0.58, 1.10, 0.70, 0.95, 0.0])


def koniq_mos_1to5() -> np.ndarray:
    """The mean rating: sum over k of k times the share of ratings k."""
    shares = KONIQ_COUNTS / KONIQ_COUNTS.sum(axis=1, keepdims=True)
    return shares @ np.arange(1, 6)


def write_koniq_table(root: Path, kind: str) -> None:
    shares = KONIQ_COUNTS / KONIQ_COUNTS.sum(axis=1, keepdims=True)
    if kind == "sets":
        frame = pd.DataFrame({"image_name": KONIQ_NAMES,
                              **{f"c{k}": shares[:, k - 1] for k in range(1, 6)},
                              "c_total": KONIQ_COUNTS.sum(axis=1).astype(int),
                              "MOS": KONIQ_MOS_100, "SD": KONIQ_SD, "set": KONIQ_SETS})
        frame.to_csv(root / "koniq10k_distributions_sets.csv", index=False)
    else:
        frame = pd.DataFrame({"image_name": KONIQ_NAMES,
                              **{f"c{k}": KONIQ_COUNTS[:, k - 1].astype(int) for k in range(1, 6)},
                              "c_total": KONIQ_COUNTS.sum(axis=1).astype(int),
                              "MOS": koniq_mos_1to5(), "SD": KONIQ_SD, "MOS_zscore": KONIQ_MOS_100})
        frame.to_csv(root / "koniq10k_scores_and_distributions.csv", index=False)


@pytest.fixture
def koniq_root(tmp_path, write_image):
    def make(kind: str, folders=("512x384",)) -> Path:
        root = tmp_path / "koniq10k"
        root.mkdir(exist_ok=True)
        write_koniq_table(root, kind)
        for folder in folders:
            for i, name in enumerate(KONIQ_NAMES):
                write_image(root / folder / name, height=12, width=16, seed=i)
        return root

    return make


@pytest.mark.parametrize("kind", ["sets", "scores"])
@pytest.mark.parametrize("folder", ["512x384", "1024x768"])
@pytest.mark.parametrize("scale", ["0-100", "1-5"])
def test_koniq_tables_folders_and_scales(koniq_root, kind, folder, scale):
    root = koniq_root(kind, folders=(folder,))
    table = load_dataset("koniq10k", root, label_scale=scale)
    assert table.frame["image"].tolist() == [f"{folder}/{n}" for n in KONIQ_NAMES]
    assert all(p.is_file() for p in table.paths)
    # 1024x768 originals are decoded to 512x384: short side 384, aspect kept.
    assert table.short_side == (384 if folder == "1024x768" else None)
    if scale == "0-100":
        np.testing.assert_allclose(table.mos, KONIQ_MOS_100)
        assert table.mos_range == (0.0, 100.0)
        assert table.frame["std"].isna().all()  # SD is on the 1-5 scale: no exact conversion
    else:
        np.testing.assert_allclose(table.mos, koniq_mos_1to5(), rtol=1e-12)
        np.testing.assert_allclose(table.frame["std"], KONIQ_SD)
        assert table.mos_range == (1.0, 5.0)
    if kind == "sets":
        assert table.frame["split"].tolist() == ["train", "train", "train", "val", "test", "test"]
        assert table.has_official_split
    else:
        assert table.frame["split"].isna().all()


def test_koniq_mos_1to5_by_hand():
    # Row 1: 25 threes, 73 fours, 7 fives out of 105 ratings.
    assert koniq_mos_1to5()[0] == pytest.approx((3 * 25 + 4 * 73 + 5 * 7) / 105)
    assert koniq_mos_1to5()[5] == pytest.approx(5.0)


def test_koniq_auto_prefers_512x384(koniq_root):
    root = koniq_root("sets", folders=("512x384", "1024x768"))
    assert load_dataset("koniq10k", root).frame["image"][0].startswith("512x384/")
    table = load_dataset("koniq10k", root, images="1024x768")
    assert table.frame["image"][0].startswith("1024x768/") and table.short_side == 384


def test_koniq_auto_falls_back_to_1024x768(koniq_root):
    table = load_dataset("koniq10k", koniq_root("sets", folders=("1024x768",)))
    assert table.frame["image"][0].startswith("1024x768/") and table.short_side == 384


def test_koniq_prefers_the_sets_table(koniq_root):
    root = koniq_root("scores")
    write_koniq_table(root, "sets")
    assert load_dataset("koniq10k", root).has_official_split


def test_koniq_official_split_is_used(koniq_root):
    parts = split_table(load_dataset("koniq10k", koniq_root("sets")), seed=123)
    assert [len(parts[s]) for s in ("train", "val", "test")] == [3, 1, 2]


def test_koniq_errors(koniq_root, tmp_path):
    root = koniq_root("sets")
    with pytest.raises(ConfigError, match=r"label_scale='0-1' must be '0-100' or '1-5'"):
        load_dataset("koniq10k", root, label_scale="0-1")
    with pytest.raises(ConfigError, match=r"images='256x192' must be"):
        load_dataset("koniq10k", root, images="256x192")
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(DataError, match="neither koniq10k_distributions_sets.csv nor"):
        load_dataset("koniq10k", empty)
    table = pd.read_csv(root / "koniq10k_distributions_sets.csv")
    table.drop(columns=["SD"]).to_csv(root / "koniq10k_distributions_sets.csv", index=False)
    with pytest.raises(DataError, match=r"missing column\(s\) \['SD'\]; is this the official"):
        load_dataset("koniq10k", root)
    table.assign(set=["training"] * 5 + ["holdout"]).to_csv(root / "koniq10k_distributions_sets.csv", index=False)
    with pytest.raises(DataError, match=r"unknown set value\(s\) \['holdout'\]"):
        load_dataset("koniq10k", root)


def test_koniq_missing_images(koniq_root):
    root = koniq_root("sets")
    (root / "512x384" / KONIQ_NAMES[2]).unlink()
    with pytest.raises(DataError, match=r"1 row\(s\) name an image missing .*row 2 \(512x384/1002.jpg\)"):
        load_dataset("koniq10k", root)
    assert len(load_dataset("koniq10k", root, check_files=False)) == 6


# ======================================================================= SPAQ
SPAQ_TABLE = "MOS and Image attribute scores"
SPAQ_NAMES = ["00001.jpg", "00002.jpg", "00003.jpg", "00004.jpg"]
SPAQ_MOS = [48.86, 62.5, 12.0, 90.25]


def spaq_frame() -> pd.DataFrame:
    return pd.DataFrame({"Image name": SPAQ_NAMES, "MOS": SPAQ_MOS,
                         "Brightness": [47.4, 55.4, 20.0, 80.0], "Colorfulness": [55.6, 67.1, 10.0, 70.0],
                         "Contrast": [55.7, 53.1, 30.0, 60.0], "Noisiness": [37.9, 57.5, 5.0, 85.0],
                         "Sharpness": [42.6, 47.5, 8.0, 88.0]})


@pytest.fixture
def spaq_root(tmp_path, write_image):
    def make(kind: str) -> Path:
        root = tmp_path / "SPAQ"
        for i, name in enumerate(SPAQ_NAMES):
            write_image(root / "TestImage" / name, height=30, width=40, seed=i)
        if kind == "xlsx":
            (root / "Annotations").mkdir()
            spaq_frame().to_excel(root / "Annotations" / f"{SPAQ_TABLE}.xlsx", index=False)
        else:
            # The official CSV export: byte-order mark and CRLF line ends.
            text = spaq_frame().to_csv(index=False, lineterminator="\r\n")
            (root / f"{SPAQ_TABLE}.csv").write_bytes("\ufeff".encode() + text.encode())
        return root

    return make


@pytest.mark.parametrize("kind", ["xlsx", "csv"])
def test_spaq_table_kinds(spaq_root, kind):
    table = load_dataset("spaq", spaq_root(kind))
    assert table.frame["image"].tolist() == [f"TestImage/{n}" for n in SPAQ_NAMES]
    np.testing.assert_allclose(table.mos, SPAQ_MOS)
    assert table.frame["std"].isna().all()
    assert table.frame["split"].isna().all()
    assert table.short_side == 512
    assert table.mos_range == (0.0, 100.0)
    assert all(p.is_file() for p in table.paths)


def test_spaq_short_side_is_a_parameter(spaq_root):
    root = spaq_root("csv")
    assert load_dataset("spaq", root, short_side=384).short_side == 384
    assert load_dataset("spaq", root, short_side=None).short_side is None
    with pytest.raises(ConfigError, match=r"short_side=0 must be positive or None"):
        load_dataset("spaq", root, short_side=0)


def test_spaq_errors(spaq_root, tmp_path):
    root = spaq_root("csv")
    spaq_frame().rename(columns={"MOS": "Score"}).to_csv(root / f"{SPAQ_TABLE}.csv", index=False)
    with pytest.raises(DataError, match=r"missing 'Image name' or 'MOS' column"):
        load_dataset("spaq", root)
    (root / f"{SPAQ_TABLE}.csv").unlink()
    with pytest.raises(DataError, match=r"no 'MOS and Image attribute scores.xlsx' or '.csv' found"):
        load_dataset("spaq", root)
    (root / "Annotations").mkdir()
    (root / "Annotations" / f"{SPAQ_TABLE}.xlsx").write_bytes(b"PK\x03\x04 not really a zip")
    with pytest.raises(DataError, match=r"cannot be read as Excel .*; export it to CSV"):
        load_dataset("spaq", root)


# ================================================================== KADID-10k
def write_kadid(root: Path, write_image) -> pd.DataFrame:
    rows = []
    for ref in (1, 2, 3):
        for dist, level in ((1, 1), (1, 5), (2, 3)):
            name = f"I{ref:02d}_{dist:02d}_{level:02d}.png"
            write_image(root / "images" / name, seed=ref * 100 + dist * 10 + level)
            rows.append({"dist_img": name, "ref_img": f"I{ref:02d}.png",
                         "dmos": 1 + (ref + dist + level) % 5 * 0.9, "var": 0.25 * level})
    frame = pd.DataFrame(rows)
    frame.to_csv(root / "dmos.csv", index=False)
    return frame


def test_kadid(tmp_path, write_image):
    root = tmp_path / "kadid10k"
    raw = write_kadid(root, write_image)
    table = load_dataset("kadid10k", root)
    assert table.frame["image"].tolist() == ["images/" + n for n in raw["dist_img"]]
    np.testing.assert_allclose(table.mos, raw["dmos"])
    np.testing.assert_allclose(table.frame["std"], np.sqrt(raw["var"]))
    assert table.frame["group"].tolist() == raw["ref_img"].tolist()
    assert table.mos_range == (1.0, 5.0)
    assert table.frame["split"].isna().all()
    assert all(p.is_file() for p in table.paths)


def test_kadid_negative_variance_is_reported(tmp_path, write_image):
    root = tmp_path / "kadid10k"
    raw = write_kadid(root, write_image)
    raw.loc[4, "var"] = -0.5
    raw.to_csv(root / "dmos.csv", index=False)
    with pytest.raises(DataError, match=r"dmos.csv: 1 row\(s\) have a negative or infinite std: row 4"):
        load_dataset("kadid10k", root)


def test_kadid_missing_table_and_columns(tmp_path, write_image):
    root = tmp_path / "kadid10k"
    root.mkdir()
    with pytest.raises(DataError, match=r"dmos.csv: table not found"):
        load_dataset("kadid10k", root)
    raw = write_kadid(root, write_image)
    raw.drop(columns=["ref_img"]).to_csv(root / "dmos.csv", index=False)
    with pytest.raises(DataError, match=r"missing column\(s\) \['ref_img'\]; expected dist_img,ref_img,dmos,var"):
        load_dataset("kadid10k", root)


def test_kadid_splits_never_share_a_reference(tmp_path, write_image):
    root = tmp_path / "kadid10k"
    write_kadid(root, write_image)
    parts = split_table(load_dataset("kadid10k", root), seed=0, fractions=(1 / 3, 1 / 3, 1 / 3))
    refs = [set(parts[s].frame["group"]) for s in ("train", "val", "test")]
    assert all(len(r) == 1 for r in refs) and len(set.union(*refs)) == 3
    assert [len(parts[s]) for s in ("train", "val", "test")] == [3, 3, 3]


# ====================================================================== CSV
@pytest.fixture
def csv_root(tmp_path, write_image) -> Path:
    root = tmp_path / "mine"
    for i in range(4):
        write_image(root / "photos" / f"p{i}.jpg", seed=i)
    pd.DataFrame({"image": [f"photos/p{i}.jpg" for i in range(4)], "mos": [2.0, 3.5, 4.0, 5.0],
                  "std": [0.1, 0.2, 0.3, 0.4], "split": ["train", "train", "val", "test"],
                  "group": ["x", "x", "y", "z"]}).to_csv(root / "scores.csv", index=False)
    return root


def test_csv_folder(csv_root):
    table = load_dataset("csv", csv_root)
    assert table.name == "csv"
    assert table.frame["image"].tolist() == [f"photos/p{i}.jpg" for i in range(4)]
    np.testing.assert_array_equal(table.mos, [2.0, 3.5, 4.0, 5.0])
    np.testing.assert_array_equal(table.frame["std"], [0.1, 0.2, 0.3, 0.4])
    assert table.frame["split"].tolist() == ["train", "train", "val", "test"]
    assert table.frame["group"].tolist() == ["x", "x", "y", "z"]
    assert table.mos_range == (2.0, 5.0)  # observed, when not declared
    assert all(p.is_file() for p in table.paths)


def test_csv_declared_scale_name_and_table_path(csv_root, tmp_path):
    elsewhere = tmp_path / "tables" / "labels.csv"
    elsewhere.parent.mkdir()
    (csv_root / "scores.csv").rename(elsewhere)
    table = load_dataset("csv", csv_root, table=str(elsewhere), mos_range=[1, 5], name="phone")
    assert table.mos_range == (1.0, 5.0) and table.name == "phone"
    with pytest.raises(DataError, match=r"labels.csv: 1 row\(s\) have a MOS outside the declared scale \[3, 5\]"):
        load_dataset("csv", csv_root, table=str(elsewhere), mos_range=(3, 5))
    with pytest.raises(ConfigError, match=r"mos_range=\(5.0, 1.0\) must be two numbers, low < high"):
        load_dataset("csv", csv_root, table=str(elsewhere), mos_range=(5, 1))


def test_csv_minimal_columns(tmp_path, write_image):
    write_image(tmp_path / "a.png")
    write_image(tmp_path / "b.png")
    (tmp_path / "scores.csv").write_text("image,mos\na.png,1\nb.png,2\n")
    table = load_dataset("csv", tmp_path)
    assert table.frame["group"].tolist() == ["a.png", "b.png"]
    assert not table.has_official_split


def test_csv_without_mos_column(tmp_path):
    (tmp_path / "scores.csv").write_text("image,score\na.png,1\n")
    with pytest.raises(DataError, match=r"scores.csv: missing column\(s\) \['mos'\]"):
        load_dataset("csv", tmp_path)


# ================================================================ load_dataset
def test_every_loader_is_registered():
    assert list_datasets() == ["csv", "demo", "kadid10k", "koniq10k", "livec", "livec_jpeg", "spaq"]
    for info in DATASETS.values():
        assert info.title and info.layout and info.split and info.folder


def test_unknown_dataset_lists_the_valid_names(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_dataset("koniq", tmp_path)
    message = one_line(str(info.value))
    assert "unknown data set 'koniq'" in message
    assert all(name in message for name in list_datasets())


def test_unknown_option_lists_the_valid_ones(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_dataset("livec", tmp_path, keep_training=True)
    message = one_line(str(info.value))
    assert "unknown option(s) ['keep_training'] for data set 'livec'" in message
    assert "valid: ['keep_training_examples', 'subset', 'check_files', 'on_error']" in message


def test_missing_root_is_a_data_error(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(DataError) as info:
        load_dataset("koniq10k", missing)
    message = one_line(str(info.value))
    assert message.startswith(f"{missing}: data set folder not found for 'koniq10k'")
    assert "set data.root=FOLDER" in message and "iqalib datasets koniq10k" in message


def test_default_root_comes_from_iqalib_data(tmp_path, monkeypatch, csv_root):
    monkeypatch.setenv("IQALIB_DATA", str(csv_root.parent))
    csv_root.rename(csv_root.parent / "custom")
    assert len(load_dataset("csv")) == 4
    monkeypatch.setenv("IQALIB_DATA", str(tmp_path / "none"))
    with pytest.raises(DataError, match=r"none/custom: data set folder not found"):
        load_dataset("csv")


# ============================================================ real data sets
def real(shared_datasets: Path, *parts: str) -> Path:
    path = shared_datasets.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"{path} not present")
    return path


def test_real_livec_matches_the_mat_files(shared_datasets):
    root = real(shared_datasets, "LIVEC", "ChallengeDB_release")
    table = load_dataset("livec", root)  # check_files=True: every image must exist
    assert len(table) == 1162
    data = root / "Data"
    names = [str(n[0][0]) for n in loadmat(data / "AllImages_release.mat")["AllImages_release"]]
    mos = loadmat(data / "AllMOS_release.mat")["AllMOS_release"].ravel()
    std = loadmat(data / "AllStdDev_release.mat")["AllStdDev_release"].ravel()
    assert names[:7] == [f"t{i}.bmp" for i in range(1, 8)]
    np.testing.assert_array_equal(table.mos, mos[7:])
    np.testing.assert_array_equal(table.frame["std"].to_numpy(), std[7:])
    # Same stems in the same order: .bmp names were found as .png.
    assert [Path(p).stem for p in table.frame["image"]] == [Path(n).stem for n in names[7:]]
    assert all(p.is_file() for p in table.paths)
    assert table.frame["image"].is_unique


def test_real_livec_decodes_a_png_and_a_jpg(shared_datasets):
    table = load_dataset("livec", real(shared_datasets, "LIVEC", "ChallengeDB_release"))
    images = table.frame["image"]
    for suffix in (".png", ".JPG"):
        path = table.root / images[images.str.endswith(suffix)].iloc[0]
        arr = decode_image(path)
        assert arr.dtype == np.uint8 and arr.ndim == 3 and arr.shape[2] == 3
        assert min(arr.shape[:2]) >= 224


def test_real_koniq_official_split(shared_datasets):
    root = real(shared_datasets, "koniq10k", "koniq10k_distributions_sets.csv").parent
    table = load_dataset("koniq10k", root, check_files=False)
    assert len(table) == 10073
    counts = table.frame["split"].value_counts()
    assert (counts["train"], counts["val"], counts["test"]) == (7058, 1000, 2015)
    assert table.mos.min() >= 0 and table.mos.max() <= 100
    parts = split_table(table)
    assert [len(parts[s]) for s in ("train", "val", "test")] == [7058, 1000, 2015]


def test_real_koniq_1to5_scale_by_hand(shared_datasets):
    root = real(shared_datasets, "koniq10k", "koniq10k_distributions_sets.csv").parent
    table = load_dataset("koniq10k", root, label_scale="1-5", check_files=False)
    mos = dict(zip(table.frame["image"], table.mos))
    # 10004473376.jpg: c3=0.238095238095, c4=0.695238095238, c5=0.0666666666667
    assert mos["512x384/10004473376.jpg"] == pytest.approx(
        3 * 0.238095238095 + 4 * 0.695238095238 + 5 * 0.0666666666667, abs=1e-9)
    # 10007357496.jpg: c2=0.03125, c3=0.46875, c4=0.489583333333, c5=0.0104166666667
    assert mos["512x384/10007357496.jpg"] == pytest.approx(
        2 * 0.03125 + 3 * 0.46875 + 4 * 0.489583333333 + 5 * 0.0104166666667, abs=1e-9)
    assert table.mos.min() >= 1 and table.mos.max() <= 5
    assert table.frame["std"].notna().all()


def test_real_spaq(shared_datasets):
    table_file = real(shared_datasets, "SPAQ", f"{SPAQ_TABLE}.csv")
    table = load_dataset("spaq", table_file.parent, check_files=False)
    assert len(table) == 11125
    assert table.frame["image"].iloc[0] == "TestImage/00001.jpg"
    assert table.mos[0] == pytest.approx(48.86)
    assert table.mos.min() >= 0 and table.mos.max() <= 100
    assert not math.isnan(table.mos.mean())
