"""Experiments as the notebooks run them: build a run, reuse it if already done.

A notebook describes a run by a few parameters (data set, model, epochs...).
:func:`run_config` turns them into a validated
:class:`~iqalib.config.RunConfig`; :func:`run_or_load` trains it, or, when the
same configuration already finished in the same folder, reads its results
back. The configuration's fingerprint is stored beside the results, so a
changed parameter (or another profile writing to the same folder) always
retrains: a book is never built from stale runs.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pandas as pd

from iqalib.config import RunConfig, from_dict
from iqalib.engine.checkpoint import atomic_write_json

FINGERPRINT = "config_fingerprint.json"


def run_config(name: str, *, out_dir: str | Path, dataset: str = "demo", data_root: str | None = None,
               data_options: dict | None = None, model: str = "smart_iqa_lite0",
               model_options: dict | None = None, pretrained: bool | str = True, split_seed: int = 0,
               fractions=(0.8, 0.1, 0.1), image_cache: str | None = None, **train) -> RunConfig:
    """A run named ``name`` under ``out_dir``; ``train`` holds ``train`` section keys."""
    return from_dict({
        "name": name,
        "out_dir": str(out_dir),
        "data": {"name": dataset, "root": None if data_root is None else str(data_root),
                 "options": dict(data_options or {}), "split_seed": split_seed,
                 "fractions": list(fractions), "image_cache": image_cache},
        "model": {"name": model, "pretrained": pretrained, "options": dict(model_options or {})},
        "train": train,
    })


def fingerprint(config: RunConfig) -> str:
    """Hash of everything that changes a run's results (not cosmetic switches)."""
    data = config.to_dict()
    data["train"].pop("progress", None)
    data["train"].pop("workers", None)
    return hashlib.sha1(json.dumps(data, sort_keys=True, default=str).encode()).hexdigest()


def run_or_load(config: RunConfig, *, force: bool = False) -> dict:
    """Results of ``config``: trained now, or read back when this exact run already finished.

    Returns :func:`iqalib.engine.fit`'s dict (``summary``, ``test_per_round``,
    ``median_test_srcc``..., and ``round_results`` with each round's history).
    A run interrupted earlier is resumed from its last finished epoch.
    """
    from iqalib.engine import fit

    run_dir = config.run_dir
    stamp = run_dir / FINGERPRINT
    key = fingerprint(config)
    done = (run_dir / "summary.json").is_file() and stamp.is_file() and \
        json.loads(stamp.read_text()).get("fingerprint") == key
    if done and not force:
        return load_results(run_dir)
    same_config = stamp.is_file() and json.loads(stamp.read_text()).get("fingerprint") == key
    atomic_write_json(stamp, {"fingerprint": key, "config": config.to_dict()})
    return fit(config, resume=same_config and not force)


def load_results(run_dir: str | Path) -> dict:
    """A finished run's ``summary.json`` plus every round's ``results.json``."""
    run_dir = Path(run_dir)
    summary = json.loads((run_dir / "summary.json").read_text())
    rounds = [json.loads(p.read_text()) for p in sorted(run_dir.glob("round_*/results.json"),
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
    return Path(run_dir) / f"round_{round_index}" / "best.pt"
