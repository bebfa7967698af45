"""The ``iqalib`` command line, called in-process: outputs, exit codes, one-line errors."""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from iqalib.cli import main
from iqalib.errors import ConfigError
from iqalib.models import list_models


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: small tensors run faster on one thread


@pytest.fixture(scope="module")
def run_yaml(demo_table, tmp_path_factory) -> Path:
    """A tiny frozen-trunk run on 24 demo images (2 per reference)."""
    folder = tmp_path_factory.mktemp("cli")
    frame = demo_table.frame
    keep = frame["distortion"].isin(["pristine", "gaussian_noise"]) & frame["level"].isin([0, 3])
    frame.loc[keep, ["image", "mos", "std", "group"]].to_csv(folder / "scores.csv", index=False)
    config = {"name": "cli", "out_dir": str(folder / "runs"),
              "data": {"name": "csv", "root": str(demo_table.root), "fractions": [0.5, 0.25, 0.25],
                       "options": {"table": str(folder / "scores.csv"), "mos_range": [0, 100]}},
              "model": {"name": "smart_iqa_lite0", "pretrained": True},
              "train": {"epochs": 3, "batch_size": 16, "train_patches": 2, "test_patches": 2,
                        "patch_size": 96, "trunk_lr": 1e-4, "freeze_backbone": True, "progress": False}}
    path = folder / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


@pytest.fixture(scope="module")
def trained_cli(run_yaml):
    """``iqalib train run.yaml train.epochs=1 train.trunk_lr=1e-3``: exit code, output, run folder."""
    with pytest.MonkeyPatch.context():
        code = main(["train", str(run_yaml), "train.epochs=1", "train.trunk_lr=1e-3"])
    return code, run_yaml.parent / "runs" / "cli"


def test_train_with_overrides_writes_the_summary(trained_cli, capsys):
    code, run = trained_cli
    assert code == 0
    summary = json.loads((run / "summary.json").read_text())
    assert summary["rounds"] == 1 and summary["model"] == "smart_iqa_lite0"
    results = json.loads((run / "round_0" / "results.json").read_text())
    assert results["train_config"]["epochs"] == 1 and results["train_config"]["trunk_lr"] == 1e-3
    assert len(results["history"]) == 1


def test_unknown_key_exits_2_with_one_line_and_no_traceback(run_yaml, capsys):
    assert main(["train", str(run_yaml), "train.epoch=2"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ")
    assert "'train.epoch'" in lines[0] and "valid:" in lines[0] and "Traceback" not in captured.err


def test_debug_shows_the_exception(run_yaml):
    with pytest.raises(ConfigError, match="train.epoch"):
        main(["--debug", "train", str(run_yaml), "train.epoch=2"])


def test_evaluate_prints_the_test_metrics_of_the_run(trained_cli, capsys):
    _, run = trained_cli
    capsys.readouterr()
    assert main(["evaluate", str(run / "round_0" / "best.pt"), "--split", "test"]) == 0
    printed = json.loads(capsys.readouterr().out)
    results = json.loads((run / "round_0" / "results.json").read_text())
    assert printed["split"] == "test" and printed["n"] == results["test"]["n"] == 6
    # Same split, same crops, same weights: the numbers fit's own test scoring wrote.
    assert printed["srcc"] == pytest.approx(results["test"]["srcc"], abs=1e-9)
    assert printed["plcc"] == pytest.approx(results["test"]["plcc"], abs=1e-6)


def test_score_folder_with_a_corrupt_file(trained_cli, demo_table, tmp_path, capsys):
    _, run = trained_cli
    photos = tmp_path / "photos"
    photos.mkdir()
    for name in demo_table.frame["image"][:3]:
        (photos / Path(name).name).write_bytes((demo_table.root / name).read_bytes())
    (photos / "zero.png").write_bytes(b"")
    out = tmp_path / "scores.csv"
    code = main(["score", str(photos), "--checkpoint", str(run / "round_0" / "best.pt"),
                 "--patches", "2", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 1
    table = pd.read_csv(out, keep_default_na=False)
    assert len(table) == 4
    good = table[~table["image"].str.endswith("zero.png")]
    assert len(good) == 3 and (good["error"] == "").all()
    assert pd.to_numeric(good["score"]).notna().all()
    assert "zero.png" in captured.err and "1 of 4 image(s) could not be scored" in captured.err


def test_models_lists_every_registered_model(capsys):
    assert main(["models"]) == 0
    printed = capsys.readouterr().out.split()
    assert printed == list_models() and len(printed) == 6
    assert {"hyperiqa_resnet50", "smart_iqa_base", "smart_iqa_lite0"} <= set(printed)


def test_datasets_prints_layouts(capsys):
    assert main(["datasets"]) == 0
    out = capsys.readouterr().out
    for name in ("koniq10k", "livec", "spaq", "kadid10k", "csv", "demo"):
        assert f"\n{name}: " in f"\n{out}"
    assert "scores.csv" in out and "split:" in out
    assert main(["datasets", "nosuch"]) == 2
    assert "unknown data set 'nosuch'" in capsys.readouterr().err


def test_download_list(capsys):
    assert main(["download", "--list"]) == 0
    out = capsys.readouterr().out
    assert out.strip() and "koniq10k" in out


def _subparsers():
    import argparse

    from iqalib.cli import build_parser

    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [("iqalib", parser), *sub.choices.items()]


def test_every_argument_has_help_and_help_shows_its_default():
    import argparse

    checked = 0
    for name, parser in _subparsers():
        text = parser.format_help()
        for action in parser._actions:
            if isinstance(action, (argparse._HelpAction, argparse._SubParsersAction)):
                continue
            assert action.help and action.help.strip(), f"{name} {action.dest}: no help text"
            if action.default not in (None, False):  # a value: --help must show it
                assert f"default: {action.default}" in " ".join(text.split()), f"{name} {action.dest}"
                checked += 1
    assert checked >= 5  # --split test, --root data, --batch-size 64, --preprocess, --profile ...


def test_bare_train_prints_its_usage_with_an_example_and_starts_nothing(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    assert main(["train"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("usage: iqalib train") and "iqalib train params/runs/smoke.yaml" in err
    assert "error: give a run configuration" in err
    assert not list(tmp_path.iterdir())  # no run folder was made


def test_train_with_settings_only_reads_them_as_overrides(tmp_path, monkeypatch, capsys):
    """``iqalib train key=value``: no file named 'train.epoch=2' is looked for; the setting is checked."""
    monkeypatch.chdir(tmp_path)
    assert main(["train", "train.epoch=2"]) == 2
    err = capsys.readouterr().err
    assert "did you mean 'train.epochs'?" in err and "not found" not in err
    assert main(["train", "rounds=1"]) == 2
    assert "did you mean 'train.rounds'?" in capsys.readouterr().err
    assert main(["train", "root=photos"]) == 2
    assert "did you mean 'data.root'?" in capsys.readouterr().err


def test_datasets_say_which_direction_is_better(capsys):
    assert main(["datasets", "livec"]) == 0
    assert "  scores: MOS 0-100, higher is better" in capsys.readouterr().out
    assert main(["datasets", "csv"]) == 0
    assert "lower prediction is better" in capsys.readouterr().out


def test_summary_json_is_strict_json_with_null_for_an_undefined_metric(tmp_path):
    """NaN is not JSON: iqalib writes null, rejects what it could not make strict, and reads null as NaN."""
    import math

    import numpy as np

    from iqalib.files import atomic_write_json, read_result_json
    from iqalib.results import load_results, results_table

    def strict(text):
        return json.loads(text, parse_constant=lambda c: pytest.fail(f"non-JSON constant {c}"))

    summary = {"name": "r", "model": "m", "data": "d", "rounds": 1, "median_test_srcc": float("nan"),
               "median_test_plcc": np.float64(0.5), "test_per_round": [{"srcc": np.nan, "plcc": np.inf}],
               "config": {"data": {"root": None}}, "sizes": np.array([1, 2])}
    atomic_write_json(tmp_path / "summary.json", summary)
    atomic_write_json(tmp_path / "round_0" / "results.json", {"round": 0, "test": {"srcc": -np.inf}})
    stored = strict((tmp_path / "summary.json").read_text())
    assert stored["median_test_srcc"] is None and stored["test_per_round"] == [{"srcc": None, "plcc": None}]
    assert stored["median_test_plcc"] == 0.5 and stored["sizes"] == [1, 2]
    back = load_results(tmp_path)
    assert math.isnan(back["median_test_srcc"]) and math.isnan(back["round_results"][0]["test"]["srcc"])
    assert back["config"]["data"]["root"] is None  # a setting's None stays None
    assert math.isnan(results_table([back])["srcc_median"].iloc[0])
    assert read_result_json(tmp_path / "round_0" / "results.json")["round"] == 0
    with pytest.raises(TypeError, match="object is not JSON serialisable"):
        atomic_write_json(tmp_path / "x.json", {"a": object()})
