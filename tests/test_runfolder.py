"""The book's runs survive an edit that cannot change them, and only such an edit.

Real smoke runs (16 images, one epoch, one crop, frozen trunk) through
:func:`iqalib.experiments.run_or_load`. The code hash is pointed at a copy of
iqalib's sources (``provenance.PACKAGE_ROOT``), so "editing" a file edits the
copy and never the package under test.
"""
from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest

from faults_support import noise_png, tiny_config, write_tiny_set
from iqalib.config import from_dict
from iqalib.engine import provenance
from iqalib.experiments import run_or_load

SOURCES = Path(provenance.__file__).resolve().parents[1]


@pytest.fixture
def sources(tmp_path, monkeypatch):
    """A copy of iqalib's sources that the code hash reads."""
    copy = tmp_path / "iqalib_copy"
    shutil.copytree(SOURCES, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(provenance, "PACKAGE_ROOT", copy)
    provenance.code_identity.cache_clear()
    yield copy
    provenance.code_identity.cache_clear()


def _edit(path: Path) -> None:
    path.write_text(path.read_text() + "\n# an edit\n")
    provenance.code_identity.cache_clear()  # a new process would hash the sources afresh


def _no_training(monkeypatch):
    monkeypatch.setattr(sys.modules["iqalib.experiments"], "fit", lambda *a, **k: pytest.fail("trained again"))


def test_code_paths_are_the_training_path_only():
    files = {p.relative_to(SOURCES).as_posix() for p in provenance.code_files(SOURCES)}
    assert {"engine/fit.py", "models/hyperiqa.py", "data/table.py", "losses.py", "config.py", "files.py"} <= files
    assert not {f for f in files if f.split("/")[0] in ("analysis", "plots")}
    assert not {"book.py", "cli.py", "experiments.py"} & files
    assert all((SOURCES / part).exists() for part in provenance.CODE_PATHS)  # no stale entry


def test_editing_an_analysis_or_a_plot_keeps_the_finished_run(sources, tmp_path, monkeypatch, capsys):
    config = from_dict(tiny_config(write_tiny_set(tmp_path / "set"), tmp_path / "runs"))
    first = run_or_load(config)
    _edit(next((sources / "analysis").glob("*.py")))
    _edit(next((sources / "plots").glob("*.py")))
    _edit(sources / "book.py")
    capsys.readouterr()
    with monkeypatch.context() as patch:
        _no_training(patch)
        again = run_or_load(config)
    assert capsys.readouterr().out == ""
    assert again["median_test_srcc"] == first["median_test_srcc"]


def test_editing_the_linear_probe_recomputes_it_and_keeps_every_run(sources, tmp_path):
    from iqalib.analysis import linear_probe as probe

    config = from_dict(tiny_config(write_tiny_set(tmp_path / "set"), tmp_path / "runs"))

    def probe_key() -> str:  # what decides whether a finished probe is read back
        return probe._fingerprint(config, config.train, probe.ALPHAS, "lite0")

    before, runs_code = probe_key(), provenance.code_identity()
    _edit(sources / "analysis" / "words.py")
    assert probe_key() == before  # an analysis the probe's numbers do not depend on
    _edit(sources / "analysis" / "linear_probe.py")
    assert probe_key() != before
    assert provenance.code_identity() == runs_code  # the runs' fingerprint does not cover the probe


@pytest.mark.parametrize("edited", ["engine/fit.py", pytest.param("models/hyperiqa.py", marks=pytest.mark.slow)])
def test_editing_the_training_loop_or_a_model_retrains(edited, sources, tmp_path, capsys):
    config = from_dict(tiny_config(write_tiny_set(tmp_path / "set"), tmp_path / "runs"))
    first = run_or_load(config)
    _edit(sources / edited)
    capsys.readouterr()
    again = run_or_load(config)
    now = provenance.code_identity()
    assert now["sources"] != first["code"]["sources"]
    assert capsys.readouterr().out.splitlines() == [
        f"rerunning 'run' in {config.run_dir}: it was made by other code (iqalib {now['version']}, sources "
        f"{first['code']['sources']}; now iqalib {now['version']}, sources {now['sources']}); "
        "its earlier files are deleted"]
    assert again["code"] == now


@pytest.mark.slow
def test_a_changed_image_retrains_and_an_unchanged_set_is_read_back(tmp_path, monkeypatch, capsys):
    root = write_tiny_set(tmp_path / "set")
    config = from_dict(tiny_config(root, tmp_path / "runs"))
    run_or_load(config)
    capsys.readouterr()
    with monkeypatch.context() as patch:
        _no_training(patch)
        run_or_load(config)  # same files: the hashes are remembered, nothing is trained
    assert capsys.readouterr().out == ""
    noise_png(root / "images" / "img03.png", seed=99)  # same name, other pixels
    run_or_load(config)
    printed = capsys.readouterr().out
    assert printed.startswith(f"rerunning 'run' in {config.run_dir}: its data changed (table ")
    assert printed.rstrip().endswith("its earlier files are deleted")
