"""Experiments as the notebooks run them: build a run, reuse it if already done.

A notebook describes a run by a few parameters (data set, model, epochs...).
:func:`run_config` turns them into a validated
:class:`~iqalib.config.RunConfig`; :func:`run_or_load` trains it, or, when the
same run already finished in the same folder, reads its results back. Whether
it did is :func:`iqalib.engine.runfolder.claim_for_book`'s decision, by the
run's fingerprint (:mod:`iqalib.engine.provenance`: its configuration, the
code on the training path and its data): a changed parameter, another profile
writing to the same folder, changed training code or changed images retrain
(saying so in one printed line, and deleting the earlier run's files first),
so a book is never built from stale runs, and an edit to an analysis or a plot
retrains nothing. Reading finished runs back as tables is :mod:`iqalib.results`.
"""
from __future__ import annotations

import contextlib
import os
import statistics
import time
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from iqalib import metrics
from iqalib.config import RunConfig, from_dict
from iqalib.data.datasets import load_dataset
from iqalib.data.images import ImageStore
from iqalib.data.patches import to_model_input
from iqalib.engine.checkpoint import load_checkpoint
from iqalib.engine.fit import Data, PatchSource, fit, predict_images, resolve_device, resolved_train
from iqalib.engine.parallel import Job, run_jobs
from iqalib.engine.runfolder import book_run, finished_here
from iqalib.engine.score import load_trained
from iqalib.errors import ConfigError, IQAError
from iqalib.models import create_model, model_complexity
from iqalib.results import best_checkpoint, load_results, runs_table


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


def run_or_load(config: RunConfig, *, force: bool = False) -> dict:
    """Results of ``config``: trained now, or read back when this exact run already finished.

    Returns :func:`iqalib.engine.fit`'s dict (``summary``, ``test_per_round``,
    ``median_test_srcc``..., and ``round_results`` with each round's history).
    A run interrupted earlier (same configuration, same code) is resumed from
    its last finished epoch. A folder holding a run of another configuration or
    made by other code or on other data, or any run when ``force``, is cleared
    first (as ``iqalib train --force`` clears it), with one printed line saying
    why. The run folder's lock is held throughout.
    """
    with book_run(config, force=force) as (done, resume):
        if done:
            return load_results(config.run_dir)
        return fit(config, resume=resume)


def run_many(configs, *, devices=("cpu",), force: bool = False) -> list[dict]:
    """:func:`run_or_load` for many runs at once, one worker process per device.

    ``devices`` are GPU indices (``[0, 1, 2, 3]``: each worker sees only its
    GPU) or ``"cpu"`` slots; a worker takes the next run when its last one
    ends. Runs are independent (sweep points, ablation arms, models), so this
    scales with the number of devices. Finished runs are read back, not
    retrained; results come in the order of ``configs``, as
    :func:`run_or_load` would return them, from the same folders.
    """
    configs = list(configs)
    folders = [str(c.run_dir.resolve()) for c in configs]
    if len(set(folders)) < len(folders):
        raise ConfigError("two of the runs write to the same folder; give each config its own name")
    with contextlib.ExitStack() as held:  # this process holds every run's lock for its workers
        jobs = []
        for config in configs:
            done, resume = held.enter_context(book_run(config, force=force))
            if not done:
                jobs.append(Job(config, resume=resume))
        if jobs:
            run_jobs(jobs, [str(d) for d in devices])
    return [load_results(c.run_dir) for c in configs]


# ----------------------------------------------------- learning-rate sweep
def lr_sweep(name: str, trunk_lrs, *, reuse: dict | None = None, **run_keys) -> pd.DataFrame:
    """Train (or read back) one run per trunk learning rate; one row per (trunk_lr, round).

    Runs are named ``{name}_lr{trunk_lr:g}``; ``run_keys`` are :func:`run_config`'s
    other arguments (out_dir, dataset, model, epochs...). ``reuse`` maps a rate to
    another chapter's run name: when that run finished with exactly this rate's
    configuration, it is read back instead of trained again (else the rate trains
    under the sweep's name; the other run is never touched). Columns: trunk_lr,
    round, srcc, plcc, best_epoch, model, data, run.
    """
    reuse = {float(lr): run for lr, run in (reuse or {}).items() if lr is not None}
    rows = []
    for lr in map(float, trunk_lrs):
        config = run_config(f"{name}_lr{lr:g}", trunk_lr=lr, **run_keys)
        if lr in reuse:
            other = run_config(reuse[lr], trunk_lr=lr, **run_keys)
            config = other if finished_here(other) else config
        results = run_or_load(config)
        for r in results["round_results"]:
            rows.append({"trunk_lr": lr, "round": r["round"], "srcc": r["test"]["srcc"],
                         "plcc": r["test"]["plcc"], "best_epoch": r["best_epoch"],
                         "model": results["model"], "data": results["data"], "run": results["name"]})
    return pd.DataFrame(rows)


# ------------------------------------------------------- cross-data-set test
def _test_data(dataset: str, data_root, patch_size: int, max_images: int | None, seed: int):
    """A data set's table and decoded images for testing, optionally a seeded subsample."""
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
    state = load_checkpoint(checkpoint)
    config = from_dict(state["config"])
    model = load_trained(checkpoint, device=device)
    tc = resolved_train(config, model)
    data = _test_data(dataset, data_root, tc.patch_size, max_images, seed)
    source = PatchSource(model, data.store, data.indices(data.table), data.table.mos, tc, train=False,
                         device=torch.device(device), dtype=None)
    return {"data": data.table.label, "synthetic": data.table.synthetic,
            **metrics.evaluate_scores(predict_images(source), data.table.mos)}


def cross_dataset_matrix(run_dir: str | Path, test_sets: dict, *, max_images: int | None = None,
                         seed: int = 0, device: str = "cpu") -> pd.DataFrame:
    """SRCC/PLCC of a finished run's round-0 model on its own test split and on other data sets.

    ``test_sets`` maps data-set names to their roots (``None``: the default
    location). The training set's own entry is its test split (from the run);
    other sets are tested on all their images (or ``max_images`` of them).
    A set that cannot be loaded is skipped and listed with the reason in
    ``frame.attrs["skipped"]``, so a fresh machine without the real data
    still gets the in-data-set row. Columns: train, test, split, n, srcc, plcc,
    synthetic (the tested set's labels are simulated; in the first row, the
    training set's), so a verdict can tell a transfer between real sets from
    one that involves the demo set.
    """
    results = load_results(run_dir)
    own = results["round_results"][0]
    train_name = own["config"]["data"]["name"]
    rows = [{"train": results["data"], "test": results["data"], "split": "test split",
             "n": own["test"]["n"], "srcc": own["test"]["srcc"], "plcc": own["test"]["plcc"],
             "synthetic": bool(own.get("synthetic", False))}]
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
                     "n": scores["n"], "srcc": scores["srcc"], "plcc": scores["plcc"],
                     "synthetic": bool(scores["synthetic"])})
    frame = pd.DataFrame(rows)
    frame.attrs["skipped"] = skipped
    return frame


# ------------------------------------------------------------ cost of models
def timed_batches(runners: dict, *, repeats: int, warmup: int, clock=None, sync=None) -> dict[str, list[float]]:
    """Seconds of ``repeats`` calls of every runner, round-robin, after ``warmup`` untimed calls of each.

    ``runners`` maps names to zero-argument callables (one batch each).
    Round-robin (A, B, C, A, B, C...) puts every runner under the same
    conditions: a burst of load from other processes slows all of them, not
    one. ``sync`` is called before reading the clock (CUDA's synchronize).
    """
    clock = clock or time.perf_counter
    sync = sync or (lambda: None)
    for run in runners.values():
        for _ in range(warmup):  # allocators, kernel selection, thread-pool start: not the model's speed
            run()
    times = {name: [] for name in runners}
    for _ in range(repeats):
        for name, run in runners.items():
            sync()
            start = clock()
            run()
            sync()
            times[name].append(clock() - start)
    return times


def pipeline_input(model, batch_size: int, input_size: int = 224, device: str = "cpu", seed: int = 0):
    """A batch laid out as iqalib's loaders lay it out: (N, 3, H, W) views of decoded (H, W, 3) bytes.

    Patches are sliced from images stored as (H, W, 3) uint8 and viewed as
    NCHW (:class:`iqalib.data.patches.PatchDataset`), so the model receives
    channels-last strides. Convolutions run at a different speed on that
    layout than on a contiguous NCHW tensor (EfficientNet-Lite0 about 1.5x
    faster on a CPU), so a speed meant to match the pipelines' must be
    measured on this layout, not on ``torch.randn(N, 3, H, W)``.
    """
    pixels = np.random.default_rng(seed).integers(0, 256, size=(batch_size, input_size, input_size, 3),
                                                  dtype=np.uint8)
    patches = torch.from_numpy(pixels).permute(0, 3, 1, 2)  # as PatchDataset returns them
    return to_model_input(patches, model.mean, model.std, device=device)


def measure_throughputs(model_names, *, batch_size: int = 8, input_size: int = 224, repeats: int = 3,
                        warmup: int = 2, device: str = "cpu") -> dict[str, dict]:
    """Inference patches per second of several models, measured side by side (:func:`timed_batches`).

    Random weights (the cost does not depend on them), input in the
    pipelines' layout (:func:`pipeline_input`). Per model:
    ``patches_per_s`` from the fastest timed batch (other processes can only
    slow a batch down, so the fastest is the least disturbed: timeit's rule),
    ``patches_per_s_median``, and ``seconds`` (every timed batch).
    """
    if repeats < 1 or warmup < 0:
        raise ValueError(f"repeats must be >= 1 and warmup >= 0, got {repeats} and {warmup}")
    device = str(resolve_device(device))  # "auto", as in the book profiles: CUDA when there is one
    models = {name: create_model(name, pretrained=False).to(device).eval() for name in model_names}
    inputs = {name: pipeline_input(m, batch_size, input_size, device) for name, m in models.items()}
    sync = torch.cuda.synchronize if device.startswith("cuda") else None
    with torch.inference_mode():
        times = timed_batches({name: (lambda m=m, x=inputs[name]: m(x)) for name, m in models.items()},
                              repeats=repeats, warmup=warmup, sync=sync)
    return {name: {"patches_per_s": batch_size / min(t), "patches_per_s_median": batch_size / statistics.median(t),
                   "seconds": t} for name, t in times.items()}


def measure_throughput(model_name: str, *, batch_size: int = 8, input_size: int = 224, repeats: int = 3,
                       warmup: int = 2, device: str = "cpu") -> float:
    """Inference patches per second of ``model_name``: :func:`measure_throughputs` of one model."""
    return measure_throughputs([model_name], batch_size=batch_size, input_size=input_size, repeats=repeats,
                               warmup=warmup, device=device)[model_name]["patches_per_s"]


def model_cost_table(models, *, out_dir: str | Path | None = None, batch_size: int = 8,
                     repeats: int = 3, warmup: int = 2, device: str = "cpu") -> pd.DataFrame:
    """Parameters, GFLOPs per 224x224 patch, measured patches/s and, where a run exists, test SRCC.

    Throughput is measured for all models side by side, round-robin, after
    ``warmup`` batches each (:func:`measure_throughputs`): ``patches_per_s``
    (fastest batch) and ``patches_per_s_median``, in patches, not images.
    ``frame.attrs`` holds the torch threads and the load average before and
    after. Accuracy comes from a finished run under ``out_dir`` of the same
    model: the one named after the model (chapters 3 and 4), else the one
    with the most rounds; its name is in ``run``.
    """
    runs = runs_table(out_dir)
    load_before = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    speeds = measure_throughputs(models, batch_size=batch_size, repeats=repeats, warmup=warmup, device=device)
    load_after = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    rows = []
    for name in models:
        row = {"model": name, **model_complexity(name)}
        row["gflops"] = row["flops"] / 1e9
        row["patches_per_s"] = speeds[name]["patches_per_s"]
        row["patches_per_s_median"] = speeds[name]["patches_per_s_median"]
        mine = runs[runs["model"] == name].assign(other_name=lambda f: f["run"] != name)
        mine = mine.sort_values(["other_name", "rounds", "run"], ascending=[True, False, True])
        row.update(run=mine["run"].iloc[0] if len(mine) else None,
                   data=mine["data"].iloc[0] if len(mine) else None,
                   test_srcc=float(mine["srcc_median"].iloc[0]) if len(mine) else float("nan"))
        rows.append(row)
    table = pd.DataFrame(rows).set_index("model")
    table.attrs.update(batch_size=batch_size, repeats=repeats, warmup=warmup, threads=torch.get_num_threads(),
                       load_average=(load_before, load_after))
    return table


def train_models(models, **run_keys) -> dict[str, dict]:
    """:func:`run_or_load` one run per model, each named after its model; results by model name."""
    return {model: run_or_load(run_config(model, model=model, **run_keys)) for model in models}


def available_tables(sets: dict) -> tuple[dict, dict]:
    """Load each ``{name: root}`` that is present; returns (tables by name, reasons by missing name)."""
    tables, missing = {}, {}
    for name, root in sets.items():
        try:
            tables[name] = load_dataset(name, root)
        except IQAError as exc:
            missing[name] = str(exc)
    return tables, missing
