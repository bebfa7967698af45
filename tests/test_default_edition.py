"""The default edition (`make book`) reads only what the repository holds: the same book for every reader.

A notebook reads data only through its parameters (tests/test_book.py checks the one parameters
cell), so the default profile naming nothing outside the repository, and no notebook naming a
folder of its own, is what makes the pages identical with and without ../shared.
"""
from __future__ import annotations

import re
from pathlib import Path

from iqalib.book import NOTEBOOKS, load_profile
from iqalib.cli import build_parser
from iqalib.data.datasets import DATASETS

ROOT = Path(__file__).resolve().parents[1]


def _values(node):
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _values(value)
    elif isinstance(node, (list, tuple)):
        for value in node:
            yield from _values(value)
    else:
        yield node


def _outside_repository(text: str) -> bool:
    if "shared" in text.split("/") or text.startswith(("~", "/")):
        return True
    return ".." in Path(text).parts and not (ROOT / text).resolve().is_relative_to(ROOT)


def test_make_book_and_iqalib_book_build_the_default_profile():
    assert re.search(r"^PROFILE \?= default$", (ROOT / "Makefile").read_text(), re.M)
    book = next(a for a in build_parser()._subparsers._group_actions[0].choices["book"]._actions
                if a.dest == "profile")
    assert book.default == "default"


def test_the_default_profile_names_nothing_outside_the_repository():
    profile = load_profile("default")
    assert set(profile) == set(NOTEBOOKS)
    for stem, parameters in profile.items():
        assert parameters["dataset"] == "livec_jpeg" and parameters["data_root"] is None, stem
        for value in _values(parameters):
            if isinstance(value, str):
                assert not _outside_repository(value), (stem, value)
    # the other data sets it shows are built from the package, not found on this machine
    for stem, key in (("01_data", "other_sets"), ("08_cross_dataset", "test_sets")):
        assert all(root is None and name == "demo" for name, root in profile[stem][key].items())
    assert profile["06_losses"]["noise_sets"] == {} and profile["06_losses"]["other_out_dirs"] == {}
    assert profile["02_inside_the_model"]["image_sets"] == {}


def test_the_embedded_data_set_is_where_the_default_profile_reads_it():
    table_root = DATASETS["livec_jpeg"].loader.__defaults__[0]
    assert Path(table_root).resolve().is_relative_to(ROOT)
    assert (Path(table_root) / "scores.csv").is_file()


def test_no_notebook_names_a_data_folder_of_its_own():
    for stem in NOTEBOOKS:
        source = (ROOT / "notebooks" / f"{stem}.py").read_text()
        assert "../shared" not in source and "shared/datasets" not in source, stem
        assert "IQALIB_SHARED" not in source, stem
