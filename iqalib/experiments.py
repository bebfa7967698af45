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

    done, resume = _claim(config, force)
    if done:
        return load_results(config.run_dir)
    return fit(config, resume=resume)


def _claim(config: RunConfig, force: bool) -> tuple[bool, bool]:
    """(finished already, resume): stamps the run folder with ``config``'s fingerprint when it must train."""
    run_dir = config.run_dir
    stamp = run_dir / FINGERPRINT
    key = fingerprint(config)
    same_config = stamp.is_file() and json.loads(stamp.read_text()).get("fingerprint") == key
    if same_config and (run_dir / "summary.json").is_file() and not force:
        return True, False
    atomic_write_json(stamp, {"fingerprint": key, "config": config.to_dict()})
    return False, same_config and not force


def run_many(configs, *, devices=("cpu",), force: bool = False) -> list[dict]:
    """:func:`run_or_load` for many runs at once, one worker process per device.

    ``devices`` are GPU indices (``[0, 1, 2, 3]``: each worker sees only its
    GPU) or ``"cpu"`` slots; a worker takes the next run when its last one
    ends. Runs are independent (sweep points, ablation arms, models), so this
    scales with the number of devices. Finished runs are read back, not
    retrained; results come in the order of ``configs``, as
    :func:`run_or_load` would return them, from the same folders.
    """
    from iqalib.engine.parallel import Job, run_jobs
    from iqalib.errors import ConfigError

    configs = list(configs)
    folders = [str(c.run_dir.resolve()) for c in configs]
    if len(set(folders)) < len(folders):
        raise ConfigError("two of the runs write to the same folder; give each config its own name")
    jobs = []
    for config in configs:
        done, resume = _claim(config, force)
        if not done:
            jobs.append(Job(config, resume=resume))
    if jobs:
        run_jobs(jobs, [str(d) for d in devices])
    return [load_results(c.run_dir) for c in configs]


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


# ------------------------------------------------------------ tables of runs
def results_table(results) -> pd.DataFrame:
    """One row per run: its model, data, rounds and the test metrics' median, min and max over rounds.

    ``results`` is a list of :func:`run_or_load` dicts (or a dict of them by label).
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


# ----------------------------------------------------- learning-rate sweep
def lr_sweep(name: str, trunk_lrs, **run_keys) -> pd.DataFrame:
    """Train (or read back) one run per trunk learning rate; one row per (trunk_lr, round).

    Runs are named ``{name}_lr{trunk_lr:g}``; ``run_keys`` are :func:`run_config`'s
    other arguments (out_dir, dataset, model, epochs...). Columns: trunk_lr,
    round, srcc, plcc, best_epoch, model, data, run.
    """
    rows = []
    for lr in trunk_lrs:
        results = run_or_load(run_config(f"{name}_lr{lr:g}", trunk_lr=float(lr), **run_keys))
        for r in results["round_results"]:
            rows.append({"trunk_lr": float(lr), "round": r["round"], "srcc": r["test"]["srcc"],
                         "plcc": r["test"]["plcc"], "best_epoch": r["best_epoch"],
                         "model": results["model"], "data": results["data"], "run": results["name"]})
    return pd.DataFrame(rows)


# ------------------------------------------------------- cross-data-set test
def _test_data(dataset: str, data_root, patch_size: int, max_images: int | None, seed: int):
    """A data set's table and decoded images for testing, optionally a seeded subsample."""
    import numpy as np

    from iqalib.data.datasets import load_dataset
    from iqalib.data.images import ImageStore
    from iqalib.engine.fit import Data

    table = load_dataset(dataset, data_root)
    if max_images is not None and len(table) > max_images:
        rows = np.sort(np.random.default_rng(seed).choice(len(table), max_images, replace=False))
        table = table.subset(rows)
    store = ImageStore.build(table.paths, short_side=table.short_side, on_error="drop")
    keep = store.valid() & (store.shapes >= patch_size).all(axis=1)
    if not keep.all():
        table = table.subset(keep)
        store = ImageStore.from_arrays([store[i] for i in np.flatnonzero(keep)])
    return Data(table, store)


def evaluate_checkpoint(checkpoint: str | Path, dataset: str, data_root: str | None = None, *,
                        max_images: int | None = None, seed: int = 0, device: str = "cpu") -> dict:
    """Test a trained model on every image of another data set (``iqalib evaluate --dataset``).

    The run's own test-crop settings are used; ``max_images`` tests a seeded
    random subsample instead (for quick CPU checks). Returns
    :func:`iqalib.metrics.evaluate_scores` plus ``data`` (the set's label).
    """
    import torch

    from iqalib import metrics
    from iqalib.config import from_dict
    from iqalib.engine.checkpoint import load_checkpoint
    from iqalib.engine.fit import PatchSource, predict_images, resolved_train
    from iqalib.engine.score import load_trained

    state = load_checkpoint(checkpoint)
    config = from_dict(state["config"])
    model = load_trained(checkpoint, device=device)
    tc = resolved_train(config, model)
    data = _test_data(dataset, data_root, tc.patch_size, max_images, seed)
    source = PatchSource(model, data.store, data.indices(data.table), data.table.mos, tc, train=False,
                         device=torch.device(device), dtype=None)
    return {"data": data.table.label, **metrics.evaluate_scores(predict_images(source), data.table.mos)}


def cross_dataset_matrix(run_dir: str | Path, test_sets: dict, *, max_images: int | None = None,
                         seed: int = 0, device: str = "cpu") -> pd.DataFrame:
    """SRCC/PLCC of a finished run's round-0 model on its own test split and on other data sets.

    ``test_sets`` maps data-set names to their roots (``None``: the default
    location). The training set's own entry is its test split (from the run);
    other sets are tested on all their images (or ``max_images`` of them).
    A set that cannot be loaded is skipped and listed with the reason in
    ``frame.attrs["skipped"]``, so a fresh machine without the real data
    still gets the in-data-set row. Columns: train, test, split, n, srcc, plcc.
    """
    from iqalib.errors import IQAError

    results = load_results(run_dir)
    own = results["round_results"][0]
    train_name = own["config"]["data"]["name"]
    rows = [{"train": results["data"], "test": results["data"], "split": "test split",
             "n": own["test"]["n"], "srcc": own["test"]["srcc"], "plcc": own["test"]["plcc"]}]
    skipped = {}
    for name, root in test_sets.items():
        if name == train_name:
            continue
        try:
            scores = evaluate_checkpoint(best_checkpoint(run_dir, 0), name, root, max_images=max_images,
                                         seed=seed, device=device)
        except IQAError as exc:
            skipped[name] = str(exc)
            continue
        rows.append({"train": results["data"], "test": scores["data"],
                     "split": "all images" if max_images is None else f"random {scores['n']} images",
                     "n": scores["n"], "srcc": scores["srcc"], "plcc": scores["plcc"]})
    frame = pd.DataFrame(rows)
    frame.attrs["skipped"] = skipped
    return frame


# ------------------------------------------------------------ cost of models
def measure_throughput(model_name: str, *, batch_size: int = 8, input_size: int = 224, repeats: int = 3,
                       device: str = "cpu") -> float:
    """Inference patches per second of ``model_name`` (random weights; the cost does not depend on them).

    One warm-up batch, then the median over ``repeats`` timed batches.
    """
    import statistics
    import time

    import torch

    from iqalib.engine.fit import resolve_device
    from iqalib.models import create_model

    device = str(resolve_device(device))  # "auto", as in the book profiles: CUDA when there is one
    model = create_model(model_name, pretrained=False).to(device).eval()
    x = torch.randn(batch_size, 3, input_size, input_size, device=device)
    times = []
    with torch.inference_mode():
        for i in range(repeats + 1):
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            t0 = time.perf_counter()
            model(x)
            if device.startswith("cuda"):
                torch.cuda.synchronize()
            if i:  # the first batch warms up allocators and kernels
                times.append(time.perf_counter() - t0)
    return batch_size / statistics.median(times)


def model_cost_table(models, *, out_dir: str | Path | None = None, batch_size: int = 8,
                     repeats: int = 3, device: str = "cpu") -> pd.DataFrame:
    """Parameters, GFLOPs per 224x224 patch, measured patches/s and, where a run exists, test SRCC.

    Accuracy comes from a finished run under ``out_dir`` of the same model: the
    one named after the model (chapters 2 and 3), else the one with the most
    rounds; its name is in ``run``.
    """
    from iqalib.models import model_complexity

    runs = runs_table(out_dir)
    rows = []
    for name in models:
        row = {"model": name, **model_complexity(name)}
        row["gflops"] = row["flops"] / 1e9
        row["images_per_s"] = measure_throughput(name, batch_size=batch_size, repeats=repeats, device=device)
        mine = runs[runs["model"] == name].assign(other_name=lambda f: f["run"] != name)
        mine = mine.sort_values(["other_name", "rounds", "run"], ascending=[True, False, True])
        row.update(run=mine["run"].iloc[0] if len(mine) else None,
                   data=mine["data"].iloc[0] if len(mine) else None,
                   test_srcc=float(mine["srcc_median"].iloc[0]) if len(mine) else float("nan"))
        rows.append(row)
    return pd.DataFrame(rows).set_index("model")


def train_models(models, **run_keys) -> dict[str, dict]:
    """:func:`run_or_load` one run per model, each named after its model; results by model name."""
    return {model: run_or_load(run_config(model, model=model, **run_keys)) for model in models}


def finished_results(out_dir: str | Path, name: str) -> dict:
    """The results of run ``name`` under ``out_dir``, which another notebook must have finished."""
    from iqalib.errors import ConfigError

    run_dir = Path(out_dir) / name
    if not (run_dir / "summary.json").is_file():
        raise ConfigError(f"no finished run {name!r} in {out_dir}; execute the notebook that trains it "
                          "first (02_baseline / 03_smart_iqa) with the same profile")
    return load_results(run_dir)


def available_tables(sets: dict) -> tuple[dict, dict]:
    """Load each ``{name: root}`` that is present; returns (tables by name, reasons by missing name)."""
    from iqalib.data.datasets import load_dataset
    from iqalib.errors import IQAError

    tables, missing = {}, {}
    for name, root in sets.items():
        try:
            tables[name] = load_dataset(name, root)
        except IQAError as exc:
            missing[name] = str(exc)
    return tables, missing
