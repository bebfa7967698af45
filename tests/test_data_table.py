"""The table contract: validation errors name the file, the rows and the fix, on one line."""
from __future__ import annotations

import re
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from iqalib.data.table import COLUMNS, IQATable, make_table, read_csv_table, validate_frame
from iqalib.errors import ConfigError, DataError

SOURCE = "scores.csv"


def frame_of(images, mos, **columns) -> pd.DataFrame:
    return pd.DataFrame({"image": images, "mos": mos, **columns})


def names(n: int) -> list[str]:
    return [f"img{i:02d}.png" for i in range(n)]


def data_error(frame, **kwargs) -> str:
    """Validate ``frame``, expecting a DataError; return its (one-line) message."""
    with pytest.raises(DataError) as info:
        validate_frame(frame, source=SOURCE, **kwargs)
    assert type(info.value) is DataError
    message = str(info.value)
    assert "\n" not in message and "\r" not in message, message
    assert message.startswith(SOURCE)
    return message


FIX = "fix the table or the files, or pass on_error='drop'"


# ------------------------------------------------------------------ clean tables
def test_clean_table_gets_every_column_with_defaults():
    out = validate_frame(frame_of([" a.png", "b/c.jpg "], [1, "2.5"]), source=SOURCE)
    assert list(out.columns) == list(COLUMNS)
    assert out["image"].tolist() == ["a.png", "b/c.jpg"]  # surrounding spaces stripped
    assert out["mos"].tolist() == [1.0, 2.5]
    assert out["mos"].dtype == np.float64
    assert out["std"].isna().all()
    assert out["split"].isna().all()
    assert out["group"].tolist() == ["a.png", "b/c.jpg"]  # each image its own group


def test_given_std_split_group_are_kept():
    frame = frame_of(["a", "b"], [1, 2], std=[0.5, 0.0], split=["train", "test"], group=[7, 7])
    out = validate_frame(frame, source=SOURCE)
    assert out["std"].tolist() == [0.5, 0.0]
    assert out["split"].tolist() == ["train", "test"]
    assert out["group"].tolist() == ["7", "7"]


def test_make_table_wraps_a_validated_frame(tmp_path):
    for name in ("a.png", "b.png", "c.png"):
        (tmp_path / name).write_bytes(b"x")
    table = make_table(frame_of(["a.png", "b.png", "c.png"], [10, 20, 30], split=["train", "val", "test"]),
                       name="mine", root=tmp_path, source=SOURCE, mos_range=(0, 100), short_side=64)
    assert isinstance(table, IQATable)
    assert len(table) == 3
    assert table.mos_range == (0, 100)
    assert table.short_side == 64
    assert table.paths == [tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"]
    np.testing.assert_array_equal(table.mos, [10.0, 20.0, 30.0])
    assert table.has_official_split
    assert table.label == "mine"
    sub = table.subset(np.array([False, True, True]))
    assert sub.frame["image"].tolist() == ["b.png", "c.png"]
    assert table.subset([2, 0]).frame["image"].tolist() == ["c.png", "a.png"]


def test_synthetic_tables_say_so_in_their_label(tmp_path):
    table = make_table(frame_of(["a"], [1]), name="demo", root=tmp_path, source=SOURCE,
                       mos_range=(0, 1), check_files=False, synthetic=True)
    assert table.label == "demo (synthetic)"
    assert not table.has_official_split


# ------------------------------------------------------------------ table shape
def test_missing_columns_are_named():
    message = data_error(pd.DataFrame({"img": ["a"], "score": [1.0]}))
    assert "missing column(s) ['image', 'mos']" in message
    assert "found ['img', 'score']" in message
    assert "rename them" in message


def test_missing_mos_column_alone():
    message = data_error(pd.DataFrame({"image": ["a"], "quality": [1.0]}))
    assert "missing column(s) ['mos']" in message


def test_empty_table():
    message = data_error(pd.DataFrame({"image": [], "mos": []}))
    assert "no rows" in message and "right file" in message


# ------------------------------------------------------------------ scores
@pytest.mark.parametrize(
    "bad, why",
    [
        (np.nan, "missing or non-numeric MOS"),
        (None, "missing or non-numeric MOS"),
        ("good", "missing or non-numeric MOS"),
        ("3,5", "missing or non-numeric MOS"),
        (np.inf, "infinite MOS"),
        (-np.inf, "infinite MOS"),
    ],
)
def test_unusable_scores_are_reported_by_row(bad, why):
    message = data_error(frame_of(names(3), [1.0, bad, 2.0]))
    assert f"1 row(s) have {'an' if why.startswith('inf') else 'a'} {why}: row 1 (img01.png)" in message
    assert FIX in message


def test_infinite_score_is_not_also_called_out_of_range():
    message = data_error(frame_of(names(2), [1.0, np.inf]), mos_range=(0, 100))
    assert "infinite MOS" in message
    assert "outside the declared scale" not in message


def test_out_of_range_scores_name_the_scale():
    message = data_error(frame_of(names(4), [50, 100.5, -0.5, 0]), mos_range=(0, 100))
    assert "2 row(s) have a MOS outside the declared scale [0, 100]: row 1 (img01.png), row 2 (img02.png)" in message


def test_published_rounding_at_the_scale_ends_is_tolerated():
    out = validate_frame(frame_of(names(2), [100 + 1e-9, -1e-9]), source=SOURCE, mos_range=(0, 100))
    assert len(out) == 2


def test_negative_std_is_reported():
    message = data_error(frame_of(names(2), [1, 2], std=[0.3, -0.1]))
    assert "1 row(s) have a negative or infinite std: row 1 (img01.png)" in message


def test_text_std_is_not_silently_turned_into_nan():
    message = data_error(frame_of(names(2), [1, 2], std=["0.3", "high"]))
    assert "1 row(s) have a non-numeric std: row 1 (img01.png)" in message


def test_missing_std_is_allowed():
    out = validate_frame(frame_of(names(2), [1, 2], std=[0.3, np.nan]), source=SOURCE)
    assert out["std"].isna().tolist() == [False, True]


def test_scale_mismatch_is_caught_on_real_sized_tables():
    # 1-5 ratings declared as 0-100 all lie inside the range: only their spread gives them away.
    mos = np.linspace(1.2, 4.8, 12)
    message = data_error(frame_of(names(12), mos), mos_range=(0, 100))
    assert "span only [1.2, 4.8] of the declared scale [0, 100]" in message
    assert "pass the scale the table really uses" in message


def test_scale_check_needs_enough_rows_to_judge():
    # Two or three rows can legitimately sit close together.
    out = validate_frame(frame_of(names(3), [40.0, 41.0, 42.0]), source=SOURCE, mos_range=(0, 100))
    assert len(out) == 3


def test_the_right_scale_passes():
    mos = np.linspace(1.2, 4.8, 12)
    assert len(validate_frame(frame_of(names(12), mos), source=SOURCE, mos_range=(1, 5))) == 12


# ------------------------------------------------------------------ names
def test_duplicate_names_list_every_copy():
    message = data_error(frame_of(["a.png", "b.png", "a.png"], [1, 2, 3]))
    assert ("2 row(s) name one image more than once, compared as resolved paths (row 0 = row 2): "
            "row 0 (a.png), row 2 (a.png)") in message


@pytest.mark.parametrize("name", ["../secret.png", "a/../../b.png", "/etc/passwd", "C:/x.png",
                                  "..\\x.png", "C:\\x.png", "\\\\server\\share\\x.png"])
def test_paths_escaping_the_root_are_refused(name):
    message = data_error(frame_of(["ok.png", name], [1, 2]))
    assert "1 row(s) name a path outside the data root (absolute or with '..'): row 1" in message


def test_dots_inside_a_name_are_fine():
    out = validate_frame(frame_of(["a..b.png", "dir/..hidden.png"], [1, 2]), source=SOURCE)
    assert len(out) == 2


@pytest.mark.parametrize("empty", ["", "   ", None, np.nan])
def test_empty_image_names_are_reported(empty):
    message = data_error(frame_of(["a.png", empty], [1, 2]))
    assert "1 row(s) have an empty image name: row 1" in message


def test_unknown_split_values_are_reported():
    message = data_error(frame_of(names(2), [1, 2], split=["train", "training"]))
    assert "have a split other than ('train', 'val', 'test'): row 1 (img01.png)" in message


def test_control_characters_in_names_keep_the_message_on_one_line():
    message = data_error(frame_of(["bad\nname.png", "ok.png"], [np.nan, 1]))
    assert "row 0 (bad\\nname.png)" in message


# ------------------------------------------------------------------ files
def test_all_missing_files_are_listed_in_one_error(tmp_path):
    present = ["a.png", "sub/b.png"]
    for name in present:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"x")
    listed = ["a.png", "gone1.png", "sub/b.png", "sub/gone2.png", "gone3.jpg"]
    message = data_error(frame_of(listed, [1, 2, 3, 4, 5]), root=tmp_path)
    assert f"3 row(s) name an image missing below {tmp_path}: " in message
    assert "row 1 (gone1.png), row 3 (sub/gone2.png), row 4 (gone3.jpg)" in message
    assert FIX in message


def test_many_missing_files_keep_an_exact_count(tmp_path):
    message = data_error(frame_of(names(25), range(25)), root=tmp_path)
    assert "25 row(s) name an image missing" in message
    assert "and 15 more" in message  # ten quoted, the rest counted
    assert "no usable row is left" in message


def test_a_folder_is_not_an_image_file(tmp_path):
    (tmp_path / "dir.png").mkdir()
    message = data_error(frame_of(["dir.png"], [1]), root=tmp_path)
    assert "name an image missing" in message


def test_check_files_false_skips_the_file_check(tmp_path):
    out = validate_frame(frame_of(names(2), [1, 2]), source=SOURCE, root=tmp_path, check_files=False)
    assert len(out) == 2


# ------------------------------------------------------------------ dropping
def test_drop_removes_exactly_the_bad_rows_with_a_warning(tmp_path):
    images = ["ok0.png", "nan.png", "ok1.png", "range.png", "../up.png", "dup.png", "dup.png",
              "missing.png", "ok2.png", "negstd.png"]
    for name in images:
        if name.startswith(("ok", "nan", "range", "dup", "negstd")):
            (tmp_path / name).write_bytes(b"x")
    frame = frame_of(images, [1, np.nan, 2, 200, 3, 4, 5, 6, 7, 8],
                     std=[0, 0, 0, 0, 0, 0, 0, 0, 0, -1])
    with pytest.warns(UserWarning) as record:
        out = validate_frame(frame, source=SOURCE, root=tmp_path, mos_range=(0, 100), on_error="drop")
    assert out["image"].tolist() == ["ok0.png", "ok1.png", "ok2.png"]
    assert out["mos"].tolist() == [1.0, 2.0, 7.0]
    assert out.index.tolist() == [0, 1, 2]
    assert len(record) == 1
    message = str(record[0].message)
    assert message.startswith(f"{SOURCE}: dropped 7 row(s): ")
    assert "\n" not in message
    for name in images:
        assert (f"({name})" in message) == (not name.startswith("ok"))


def test_drop_with_nothing_left_is_still_an_error():
    frame = frame_of(names(3), [np.nan, "x", np.inf])
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no "dropped" warning before the error
        message = data_error(frame, on_error="drop")
    assert "2 row(s) have a missing or non-numeric MOS" in message
    assert "1 row(s) have an infinite MOS" in message
    assert "no usable row is left; check the root folder and the table" in message


def test_drop_on_a_clean_table_warns_nothing():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        out = validate_frame(frame_of(names(2), [1, 2]), source=SOURCE, on_error="drop")
    assert len(out) == 2


def test_unknown_on_error_is_a_config_error():
    with pytest.raises(ConfigError, match=r"on_error='skip' is not one of \('raise', 'drop'\)"):
        validate_frame(frame_of(names(1), [1]), source=SOURCE, on_error="skip")


def test_input_frame_is_not_modified():
    frame = frame_of([" a.png "], ["1"])
    before = frame.copy()
    validate_frame(frame, source=SOURCE)
    pd.testing.assert_frame_equal(frame, before)


# ------------------------------------------------------------------ reading CSV
def read_error(path: Path, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        read_csv_table(path, **kwargs)
    assert type(info.value) is DataError
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(str(path))
    return message


def test_csv_round_trip(tmp_path):
    path = tmp_path / "t.csv"
    path.write_text("image,mos\na.png,1.5\nb.png,2\n", encoding="utf-8")
    assert read_csv_table(path).to_dict("list") == {"image": ["a.png", "b.png"], "mos": [1.5, 2.0]}


def test_missing_csv(tmp_path):
    message = read_error(tmp_path / "nope.csv")
    assert "table not found" in message and "iqalib datasets" in message


def test_non_utf8_csv_names_the_line(tmp_path):
    path = tmp_path / "latin1.csv"
    path.write_bytes("image,mos\na.png,1\ncaf\xe9.png,2\n".encode("latin-1"))
    message = read_error(path)
    # 10 bytes of header + 8 of the first row + "caf": the bad byte is at offset 21.
    assert "not UTF-8 text (line 3, byte 21)" in message
    assert "re-save the table as UTF-8 CSV" in message


def test_utf16_csv_is_not_utf8(tmp_path):
    path = tmp_path / "utf16.csv"
    path.write_bytes("image,mos\na.png,1\n".encode("utf-16"))
    assert "not UTF-8 text (line 1, byte 0)" in read_error(path)


@pytest.mark.parametrize(
    "content, reason",
    [
        (b"", "No columns to parse from file"),
        (b"image,mos\na.png,3\nb.png,4,5,6\n", "Expected 2 fields in line 3, saw 4"),
        (b'image,mos\n"a.png,3\n', "EOF inside string"),
    ],
)
def test_unparseable_csv(tmp_path, content, reason):
    path = tmp_path / "bad.csv"
    path.write_bytes(content)
    message = read_error(path)
    assert re.search(r"cannot be read as CSV \(.*\); check the file$", message)
    assert reason in message


def test_header_only_csv_is_an_empty_table(tmp_path):
    path = tmp_path / "header.csv"
    path.write_text("image,mos\n")
    with pytest.raises(DataError, match="the table has no rows"):
        validate_frame(read_csv_table(path), source=path)
