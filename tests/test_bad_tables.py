"""Bad score tables as users hand them over: a CSV on disk, through ``load_dataset``, ``iqalib train``
and ``iqalib score``.

The row-level rules (every offending row listed in one line, drop with a
warning) are unit-tested on in-memory frames in tests/test_data_table.py; the
data sets' own table layouts in tests/test_data_datasets.py. Here each problem
arrives as a file, and the message must name that file, the rows and the fix.
"""
from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from faults_support import cli_error, noise_png, write_yaml
from iqalib.cli import main
from iqalib.data.datasets import load_dataset
from iqalib.engine.score import expand_paths
from iqalib.errors import ConfigError, DataError

FIX = "fix the table or the files, or pass on_error='drop' (data.on_error=drop in a run config) to skip these rows"


@pytest.fixture
def root(tmp_path) -> Path:
    """A data set folder with four images and no table yet."""
    folder = tmp_path / "set"
    for i in range(4):
        noise_png(folder / "images" / f"img{i}.png", 70, 80, seed=i)
    return folder


def table_error(root: Path, content: str | bytes, **options) -> str:
    """Write ``content`` as ``root/scores.csv``, load it, expect a DataError; return its one line."""
    path = root / "scores.csv"
    path.write_bytes(content if isinstance(content, bytes) else content.encode())
    with pytest.raises(DataError) as info:
        load_dataset("csv", root, **options)
    assert type(info.value) is DataError
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"{path}: "), message  # the file is named first
    return message


ROWS = "images/img0.png,10\nimages/img1.png,{bad}\nimages/img2.png,60\nimages/img3.png,90\n"


def test_missing_columns_are_named_with_what_was_found(root):
    message = table_error(root, "file,score\nimages/img0.png,3\n")
    assert "missing column(s) ['image', 'mos']; found ['file', 'score']; rename them" in message


@pytest.mark.parametrize("content, expected", [
    ("", "cannot be read as CSV (No columns to parse from file); check the file"),
    ("image,mos\n", "the table has no rows; check that it is the right file"),
    ("\n\n\n", "cannot be read as CSV (No columns to parse from file); check the file"),
])
def test_empty_tables(root, content, expected):
    assert expected in table_error(root, content)


@pytest.mark.parametrize("bad, problem", [
    ("", "1 row(s) have a missing or non-numeric MOS: row 1 (images/img1.png)"),
    ("nan", "1 row(s) have a missing or non-numeric MOS: row 1 (images/img1.png)"),
    ("good", "1 row(s) have a missing or non-numeric MOS: row 1 (images/img1.png)"),
    ("3,5", None),  # a decimal comma splits the row: the CSV itself is malformed
    ("inf", "1 row(s) have an infinite MOS: row 1 (images/img1.png)"),
    ("-4", "1 row(s) have a MOS outside the declared scale [0, 100]: row 1 (images/img1.png)"),
    ("100.5", "1 row(s) have a MOS outside the declared scale [0, 100]: row 1 (images/img1.png)"),
])
def test_unusable_scores_name_the_row_and_the_fix(root, bad, problem):
    message = table_error(root, "image,mos\n" + ROWS.format(bad=bad), mos_range=[0, 100])
    if problem is None:
        assert "cannot be read as CSV (Error tokenizing data. C error: Expected 2 fields in line 3, saw 3)" in message
    else:
        assert problem in message and message.endswith(FIX)


def test_negative_scores_are_fine_when_no_scale_is_declared(root):
    """Without ``mos_range`` the csv loader takes the observed min..max as the scale (documented)."""
    (root / "scores.csv").write_text("image,mos\n" + ROWS.format(bad=-4))
    table = load_dataset("csv", root)
    assert table.mos_range == (-4.0, 90.0) and len(table) == 4


def test_duplicate_names_list_every_copy(root):
    message = table_error(root, "image,mos\nimages/img0.png,1\nimages/img1.png,2\nimages/img0.png,3\n")
    assert ("2 row(s) name one image more than once, compared as resolved paths (row 0 = row 2): "
            "row 0 (images/img0.png), row 2 (images/img0.png)") in message


@pytest.mark.parametrize("name", ["../outside.png", "images/../../outside.png", "ABSOLUTE"])
def test_names_escaping_the_root_are_refused_even_when_the_file_exists(root, name):
    outside = noise_png(root.parent / "outside.png", 40, 50)  # a real file the table must not reach
    name = str(outside) if name == "ABSOLUTE" else name
    content = f"image,mos\nimages/img0.png,10\n{name},20\nimages/img2.png,30\n"
    message = table_error(root, content)
    assert f"1 row(s) name a path outside the data root (absolute or with '..'): row 1 ({name})" in message
    # Dropping skips the row; the file outside is never part of the table.
    with pytest.warns(UserWarning, match=r"dropped 1 row\(s\)"):
        table = load_dataset("csv", root, on_error="drop")
    assert outside not in table.paths and len(table) == 2


def test_non_utf8_bytes_name_the_line_and_the_fix(root):
    content = "image,mos\nimages/img0.png,10\nimages/caf\xe9.png,20\n".encode("latin-1")
    message = table_error(root, content)
    assert "not UTF-8 text (line 3, byte 39); re-save the table as UTF-8 CSV" in message


def test_a_scale_that_does_not_match_the_declared_one(root):
    # 1-5 ratings declared as 0-100: each one is in range, only their spread gives them away.
    names = [f"images/img{i % 4}_{i}.png" for i in range(12)]
    frame = pd.DataFrame({"image": names, "mos": np.linspace(1.2, 4.8, 12)})
    message = table_error(root, frame.to_csv(index=False), mos_range=[0, 100], check_files=False)
    assert "the MOS values span only [1.2, 4.8] of the declared scale [0, 100]" in message
    assert message.endswith("pass the scale the table really uses")


def test_koniq_table_with_the_1to5_mos_under_the_0to100_scale(tmp_path):
    """The scores table's MOS column is 1-5 (MOS_zscore is 0-100): a sets table carrying it is caught."""
    root = tmp_path / "koniq10k"
    root.mkdir()
    dist = np.random.default_rng(0).integers(1, 40, (12, 5))
    mos = dist @ np.arange(1, 6) / dist.sum(axis=1)
    pd.DataFrame({"image_name": [f"{i}.jpg" for i in range(12)], **{f"c{k}": dist[:, k - 1] for k in range(1, 6)},
                  "MOS": mos, "SD": 0.5, "set": "training"}).to_csv(root / "koniq10k_distributions_sets.csv",
                                                                     index=False)
    with pytest.raises(DataError) as info:
        load_dataset("koniq10k", root, check_files=False)
    message = str(info.value)
    assert message.startswith(f"{root / 'koniq10k_distributions_sets.csv'}: the MOS values span only")
    assert "of the declared scale [0, 100]; pass the scale the table really uses" in message
    assert len(load_dataset("koniq10k", root, check_files=False, label_scale="1-5")) == 12


@pytest.mark.parametrize("mos_range, expected", [
    ("0-100", "mos_range='0-100' must be two numbers [low, high], e.g. [0, 100]"),
    ([0, "high"], "mos_range=[0, 'high'] must be two numbers [low, high]"),
    ([100, 0], "mos_range=(100.0, 0.0) must be two numbers, low < high"),
    ([0, 50, 100], "mos_range=(0.0, 50.0, 100.0) must be two numbers, low < high"),
])
def test_a_malformed_declared_scale_is_a_config_error(root, mos_range, expected):
    (root / "scores.csv").write_text("image,mos\n" + ROWS.format(bad=20))
    with pytest.raises(ConfigError) as info:
        load_dataset("csv", root, mos_range=mos_range)
    assert expected in str(info.value)


# ----------------------------------------------------------------- the CLI
def run_yaml(root: Path, tmp_path: Path) -> Path:
    return write_yaml(tmp_path / "run.yaml", {
        "name": "t", "out_dir": str(tmp_path / "runs"),
        "data": {"name": "csv", "root": str(root), "options": {"mos_range": [0, 100]}},
        "model": {"name": "smart_iqa_lite0"}, "train": {"epochs": 1, "patch_size": 32, "progress": False}})


def test_train_with_a_bad_table_is_one_line_naming_file_row_and_fix(root, tmp_path, capsys):
    (root / "scores.csv").write_text("image,mos\n" + ROWS.format(bad="good"))
    config = run_yaml(root, tmp_path)
    cli_error(capsys, ["train", str(config)], DataError, f"{root / 'scores.csv'}: ",
              "1 row(s) have a missing or non-numeric MOS: row 1 (images/img1.png)", "data.on_error=drop")
    assert not (tmp_path / "runs").exists()


def test_train_with_a_malformed_scale_override(root, tmp_path, capsys):
    (root / "scores.csv").write_text("image,mos\n" + ROWS.format(bad=20))
    cli_error(capsys, ["train", str(run_yaml(root, tmp_path)), "data.options.mos_range=0-100"], ConfigError,
              "mos_range='0-100' must be two numbers [low, high]")


def test_score_reads_a_csv_of_paths_with_the_same_care(root, tmp_path):
    bad = tmp_path / "list.csv"
    bad.write_bytes("image\nimages/caf\xe9.png\n".encode("latin-1"))
    with pytest.raises(DataError, match=r"list\.csv: not UTF-8 text \(line 2, byte 16\); re-save the table"):
        expand_paths([bad])
    header = tmp_path / "header.csv"
    header.write_text("image\n")
    with pytest.raises(DataError, match=r"header\.csv: lists no images; give one path per row"):
        expand_paths([header])
    good = tmp_path / "good.csv"
    good.write_text(f"image\n{root / 'images' / 'img0.png'}\n")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert expand_paths([good]) == [root / "images" / "img0.png"]


def test_score_with_an_unreadable_csv_exits_2_on_one_line(root, tmp_path, capsys):
    from faults_support import scoring_checkpoint

    checkpoint = scoring_checkpoint(tmp_path / "best.pt")
    bad = tmp_path / "list.csv"
    bad.write_bytes(b"image\n\xff\xfe\n")
    cli_error(capsys, ["score", str(bad), "--checkpoint", str(checkpoint)], DataError,
              f"{bad}: not UTF-8 text (line 2, byte 6)")
    assert main(["score", str(root / "images"), "--checkpoint", str(checkpoint), "--patches", "1",
                 "--out", str(tmp_path / "s.csv")]) == 0
