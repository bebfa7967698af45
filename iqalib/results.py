"""Reading finished runs back: their results, histories, predictions and checkpoints, as tables.

A finished run's folder holds ``summary.json``, one ``round_<i>/`` per round
(``results.json``, ``predictions.csv``, ``best.pt``) and its fingerprint
(:data:`iqalib.engine.runfolder.STAMP`). The readers here turn those files into
the dicts and tables the notebooks and the analyses use; they never train
(:mod:`iqalib.experiments` does).
"""
from __future__ import annotations

import json
from pathlib import Path

import pandas as pd

from iqalib.engine.runfolder import STAMP as FINGERPRINT
from iqalib.errors import ConfigError
from iqalib.files import read_result_json


def load_results(run_dir: str | Path) -> dict:
    """A finished run's ``summary.json`` plus every round's ``results.json``."""
    run_dir = Path(run_dir)
    summary = read_result_json(run_dir / "summary.json")  # an undefined metric (null) is NaN
    rounds = [read_result_json(p) for p in sorted(run_dir.glob("round_*/results.json"),
                                                          key=lambda p: int(p.parent.name.split("_")[1]))]
    return {**summary, "round_results": rounds}


def history_frame(results: dict) -> pd.DataFrame:
    """Per-epoch history of every round, one row per (round, epoch)."""
    return pd.concat([pd.DataFrame(r["history"]).assign(round=r["round"]) for r in results["round_results"]],
                     ignore_index=True)


def predictions_frame(run_dir: str | Path, round_index: int | None = None) -> pd.DataFrame:
    """Test predictions (image, mos, pred, round) of one round or all rounds."""
    run_dir = Path(run_dir)
    paths = ([run_dir / f"round_{round_index}" / "predictions.csv"] if round_index is not None
             else sorted(run_dir.glob("round_*/predictions.csv")))
    return pd.concat([pd.read_csv(p).assign(round=int(p.parent.name.split("_")[1])) for p in paths],
                     ignore_index=True)


def best_checkpoint(run_dir: str | Path, round_index: int = 0) -> Path:
    """The checkpoint round ``round_index`` selected on validation."""
    return Path(run_dir) / f"round_{round_index}" / "best.pt"


def results_table(results) -> pd.DataFrame:
    """One row per run: its model, data, rounds and the test metrics' median, min and max over rounds.

    ``results`` is a list of :func:`iqalib.experiments.run_or_load` dicts (or a dict of them by label).
    """
    items = results.items() if isinstance(results, dict) else ((r["name"], r) for r in results)
    rows = []
    for label, r in items:
        per_round = pd.DataFrame(r["test_per_round"])
        row = {"run": label, "model": r["model"], "data": r["data"], "rounds": r["rounds"]}
        for metric in ("srcc", "plcc"):
            row.update({f"{metric}_median": float(per_round[metric].median()),
                        f"{metric}_min": float(per_round[metric].min()),
                        f"{metric}_max": float(per_round[metric].max())})
        rows.append(row)
    return pd.DataFrame(rows)


def runs_table(out_dir: str | Path | None) -> pd.DataFrame:
    """Every finished run under ``out_dir`` (its ``summary.json``), with the settings that matter.

    Columns: run, model, data, rounds, epochs, freeze_backbone, trunk_lr,
    test SRCC/PLCC median and min/max over rounds. Sorted by run name; empty
    (with these columns) when nothing has finished yet or ``out_dir`` is None.
    """
    rows = []
    summaries = sorted(Path(out_dir).glob("*/summary.json")) if out_dir is not None else []
    for summary_path in summaries:
        run_dir = summary_path.parent
        results = load_results(run_dir)
        stamp = run_dir / FINGERPRINT
        train = json.loads(stamp.read_text())["config"]["train"] if stamp.is_file() else {}
        row = results_table([results]).iloc[0].to_dict()
        row.update(run=run_dir.name, epochs=train.get("epochs"), freeze_backbone=train.get("freeze_backbone"),
                   trunk_lr=train.get("trunk_lr"))
        rows.append(row)
    columns = ["run", "model", "data", "rounds", "epochs", "freeze_backbone", "trunk_lr",
               "srcc_median", "srcc_min", "srcc_max", "plcc_median", "plcc_min", "plcc_max"]
    return pd.DataFrame(rows, columns=columns)


def finished_results(out_dir: str | Path, name: str) -> dict:
    """The results of run ``name`` under ``out_dir``, which another notebook must have finished."""
    run_dir = Path(out_dir) / name
    if not (run_dir / "summary.json").is_file():
        raise ConfigError(f"no finished run {name!r} in {out_dir}; execute the notebook that trains it "
                          "first (03_baseline / 04_smart_iqa) with the same profile")
    return load_results(run_dir)
