"""Shared fixtures: one cache folder per session, the real data sets, tiny images.

Real data sets live in ``../shared/datasets`` next to the repository (override
with ``$IQALIB_SHARED_DATASETS``); tests that need them skip where it is absent,
as on a user's machine.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_datasets_dir() -> Path:
    """Where the real data sets are: ``$IQALIB_SHARED_DATASETS`` or ``../shared/datasets``."""
    override = os.environ.get("IQALIB_SHARED_DATASETS")
    return Path(override) if override else REPO_ROOT.parent / "shared" / "datasets"


# Numbers in tests must not depend on which CPU runs them: some have native bf16 and would get
# bf16 autocast from ``precision: auto``. tests/test_precision.py exercises the choice itself.
os.environ.setdefault("IQALIB_CPU_PRECISION", "fp32")


# Fixtures that cost minutes: a test that uses one gets its mark even where the decorator was
# forgotten, so `make test` (the tests with none of pyproject's markers) never pays for them.
COSTLY_FIXTURES = {"smoke_book": "book", "tiny_book": "book", "rehearsal": "rehearsal",
                   "koniq_standin": "slow", "torchrun_run": "subprocess", "fine_tuned": "subprocess"}


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(config, items):
    for item in items:
        for fixture, mark in COSTLY_FIXTURES.items():
            if fixture in getattr(item, "fixturenames", ()) and item.get_closest_marker(mark) is None:
                item.add_marker(getattr(pytest.mark, mark))


@pytest.fixture(scope="session", autouse=True)
def session_cache(tmp_path_factory) -> Path:
    """``$IQALIB_CACHE`` for the whole session: nothing lands in ``~/.cache``, and
    expensive artefacts (the demo set) are built once per session, not per test."""
    previous = os.environ.get("IQALIB_CACHE")
    path = tmp_path_factory.mktemp("cache")
    os.environ["IQALIB_CACHE"] = str(path)
    yield path
    if previous is None:
        os.environ.pop("IQALIB_CACHE", None)
    else:
        os.environ["IQALIB_CACHE"] = previous


@pytest.fixture
def private_cache(tmp_path, monkeypatch) -> Path:
    """A fresh ``$IQALIB_CACHE`` for tests that inspect what gets cached."""
    path = tmp_path / "private-cache"
    monkeypatch.setenv("IQALIB_CACHE", str(path))
    return path


@pytest.fixture(scope="session")
def shared_datasets() -> Path:
    """The real data sets folder; the test is skipped where it is absent."""
    root = shared_datasets_dir()
    if not root.is_dir():
        pytest.skip(f"real data sets not present at {root} (set IQALIB_SHARED_DATASETS)")
    return root


@pytest.fixture(scope="session")
def demo_table():
    """The embedded (synthetic) demo set, built once per session in the session cache."""
    from iqalib.data.datasets import load_dataset

    return load_dataset("demo")


def noise_image(height: int, width: int, seed: int = 0) -> np.ndarray:
    """An (H, W, 3) uint8 array of random pixels: every crop of it is unique."""
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture
def write_image():
    """``write_image(path, height=.., width=.., seed=..)`` saves a noise image
    (format from the suffix; PIL's format name for odd suffixes like ``.JPG``)
    and returns the array that was written."""

    def write(path: Path, height: int = 24, width: int = 32, seed: int = 0) -> np.ndarray:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        arr = noise_image(height, width, seed)
        Image.fromarray(arr).save(path)
        return arr

    return write


# A 60-image slice of the demo set (5 of its distortion/level cells), scores spread over 20..95.
MINI_SET = [("pristine", 0), ("gaussian_blur", 2), ("gaussian_noise", 1), ("gaussian_noise", 3), ("darken", 4)]


@pytest.fixture(scope="module")
def tiny_set(tmp_path_factory) -> Path:
    """tests/faults_support.py's 16 noise images and their scores.csv, written once per module
    (the engine, fault, bad-input and run-folder tests train on it in seconds)."""
    from faults_support import write_tiny_set

    return write_tiny_set(tmp_path_factory.mktemp("set"))


@pytest.fixture(scope="module")
def one_thread():
    """One torch thread for a module (its tiny models run faster so, and timings do not matter)."""
    import torch

    previous = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(previous)


@pytest.fixture(scope="module")
def mini_data(demo_table, tmp_path_factory) -> dict:
    """The ``data`` section of a run on the 60-image demo slice (a csv table over the demo images)."""
    frame = demo_table.frame
    keep = [(d, lv) in MINI_SET for d, lv in zip(frame["distortion"], frame["level"])]
    table = tmp_path_factory.mktemp("mini") / "scores.csv"
    frame.loc[keep, ["image", "mos", "std", "group"]].to_csv(table, index=False)
    return {"name": "csv", "root": str(demo_table.root), "fractions": [0.5, 0.25, 0.25],
            "options": {"table": str(table), "mos_range": [0, 100]}}
