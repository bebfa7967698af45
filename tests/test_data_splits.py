"""Seeded, group-level train/val/test splits; the official split where there is one."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from iqalib.data.splits import split_table
from iqalib.data.table import make_table
from iqalib.errors import ConfigError

PARTS = ("train", "val", "test")


def table_of(n_images: int, *, group_size: int = 1, split=None):
    frame = pd.DataFrame({
        "image": [f"im{i:04d}.png" for i in range(n_images)],
        "mos": np.linspace(0, 100, n_images),
        "group": [f"ref{i // group_size:03d}" for i in range(n_images)] if group_size > 1 else None,
    })
    if split is not None:
        frame["split"] = split
    return make_table(frame, name="t", root=".", source="t.csv", mos_range=(0, 100), check_files=False)


def images_of(parts) -> list[list[str]]:
    return [parts[p].frame["image"].tolist() for p in PARTS]


def test_same_seed_same_split():
    table = table_of(200)
    assert images_of(split_table(table, seed=3)) == images_of(split_table(table, seed=3))


def test_other_seed_other_split():
    table = table_of(200)
    assert images_of(split_table(table, seed=3)) != images_of(split_table(table, seed=4))


def test_parts_are_disjoint_and_cover_every_row():
    table = table_of(200)
    parts = split_table(table, seed=0, fractions=(0.7, 0.1, 0.2))
    train, val, test = (set(names) for names in images_of(parts))
    assert not (train & val) and not (train & test) and not (val & test)
    assert train | val | test == set(table.frame["image"])
    assert [len(parts[p]) for p in PARTS] == [140, 20, 40]


def test_rows_keep_their_scores():
    table = table_of(50)
    mos = dict(zip(table.frame["image"], table.mos))
    for part in split_table(table, seed=1).values():
        assert all(mos[name] == score for name, score in zip(part.frame["image"], part.mos))


def test_split_does_not_depend_on_row_order():
    table = table_of(60, group_size=3)
    shuffled = table.subset(np.random.default_rng(9).permutation(len(table)))
    groups = [sorted(set(split_table(t, seed=5)[p].frame["group"])) for t in (table, shuffled) for p in PARTS]
    assert groups[:3] == groups[3:]


def test_groups_never_straddle_parts():
    table = table_of(300, group_size=5)  # 60 contents, 5 versions each
    parts = split_table(table, seed=2, fractions=(0.7, 0.1, 0.2))
    groups = [set(parts[p].frame["group"]) for p in PARTS]
    assert not (groups[0] & groups[1]) and not (groups[0] & groups[2]) and not (groups[1] & groups[2])
    assert [len(g) for g in groups] == [42, 6, 12]  # fractions apply to groups
    assert [len(parts[p]) for p in PARTS] == [210, 30, 60]


def test_official_split_wins_over_seed_and_fractions():
    split = ["train"] * 7 + ["val"] * 1 + ["test"] * 2
    table = table_of(10, split=split)
    for seed in (0, 1):
        parts = split_table(table, seed=seed, fractions=(0.5, 0.25, 0.25))
        assert images_of(parts) == [[f"im{i:04d}.png" for i in r] for r in (range(7), [7], [8, 9])]


def test_official_split_can_be_ignored():
    table = table_of(10, split=["train"] * 7 + ["val"] + ["test"] * 2)
    parts = split_table(table, seed=0, fractions=(0.6, 0.2, 0.2), official=False)
    assert [len(parts[p]) for p in PARTS] == [6, 2, 2]


def test_official_split_without_test_rows():
    table = table_of(4, split=["train", "train", "val", "val"])
    with pytest.raises(ConfigError, match="t: the official split has an empty train or test part"):
        split_table(table)


def test_no_validation_part_when_asked():
    parts = split_table(table_of(10), fractions=(0.8, 0.0, 0.2))
    assert [len(parts[p]) for p in PARTS] == [8, 0, 2]


@pytest.mark.parametrize(
    "fractions, message",
    [
        ((0.8, 0.2), r"must be three shares \(train, val, test\), train and test > 0"),
        ((0.9, 0.1, 0.0), "train and test > 0"),
        ((0.0, 0.5, 0.5), "train and test > 0"),
        ((1.2, -0.1, -0.1), "train and test > 0"),
        ((0.7, 0.2, 0.2), "sum to 1.1; they must sum to 1"),
        ((70, 10, 20), "sum to 100; they must sum to 1"),
    ],
)
def test_fraction_errors(fractions, message):
    with pytest.raises(ConfigError, match=message):
        split_table(table_of(20), fractions=fractions)


def test_too_few_groups():
    table = table_of(8, group_size=4)  # two contents
    with pytest.raises(ConfigError, match=r"t: 2 group\(s\) cannot be split as \(0.8, 0.1, 0.1\); use more data"):
        split_table(table)
