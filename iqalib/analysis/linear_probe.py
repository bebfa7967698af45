"""The linear probe: ridge regression on the frozen trunk's pooled stage features.

The floor a hyper network must beat to be worth its parameters. For every
crop the trunk's four stage maps are averaged over space (one global average
per stage, concatenated: 24 + 40 + 112 + 320 = 496 numbers for
EfficientNet-Lite0, 1,920 for Swin-B), and a ridge regression maps them to
the MOS. Nothing else is learned.

The features come from the frozen-trunk feature bank the heads read
(:func:`iqalib.engine.features.feature_bank`, the same crops, the same disk
cache), so the probe costs no trunk pass of its own when a frozen-trunk head
of the same trunk ran first. Heads that fine-tune their trunk (the koniq
profile) keep no bank; then one pass of the pretrained trunk over the same
crops computes the stage averages alone (:func:`trunk_stage_averages`). The bank stores the stage maps average-pooled to
the LDA grids (8, 4, 2, 1 at 224x224); the mean of such a grid is the stage's
global average exactly when the grid divides the map (56, 28, 14 and 7
pixels at 224x224), which holds for every trunk of the library at its patch
size.

The protocol is the heads' (:mod:`iqalib.engine.fit`): round ``r`` splits
the table with seed ``split_seed + r``; the ridge is fitted on every cached
crop of the training images (one row per crop, the image's MOS as target),
the ridge strength is the one of :data:`ALPHAS` with the best validation SRCC
(images scored, as the heads score them, by the mean prediction over their
first ``test_patches`` crops), and only that fit scores the test split, once.
Features are standardised with the training rows' mean and standard
deviation, so one grid of strengths suits every trunk. The closed form, for
standardised features ``X`` (n rows) and centred targets ``y``::

    w = (X'X / n + alpha I)^-1 X'y / n,   intercept = mean(y)

i.e. the minimiser of ``|Xw - y|^2 / n + alpha |w|^2``, solved for every
``alpha`` at once from one eigendecomposition of ``X'X / n``.

Results land in ``out_dir/linear_probe_<trunk>/`` in the heads' format
(``summary.json``, ``round_<r>/results.json`` and ``predictions.csv``), so
:func:`iqalib.results.results_table`, ``runs_table`` and the paired tests
of :func:`iqalib.analysis.compare_runs` read the probe like any run.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from pathlib import Path
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from iqalib import metrics
from iqalib.analysis.runs import srcc_by_round
from iqalib.analysis.significance import decide
from iqalib.analysis.words import counted, spread_words
from iqalib.config import RunConfig, from_dict
from iqalib.data.patches import PatchDataset, make_loader, to_model_input
from iqalib.data.splits import split_table
from iqalib.engine.features import feature_bank
from iqalib.engine.fit import make_model, prepare_data, resolve_device, resolved_train, seed_everything
from iqalib.engine.provenance import code_identity
from iqalib.engine.runfolder import STAMP, clear_run
from iqalib.engine.runlock import run_lock
from iqalib.errors import ConfigError
from iqalib.files import atomic_write_json, atomic_write_text
from iqalib.models import list_models, model_trunk
from iqalib.results import load_results

ALPHAS = tuple(10.0 ** e for e in range(-4, 5))  # ridge strengths tried on validation, standardised features
PROBE_VERSION = 1  # bump when the probe's results would change for the same inputs
# The probe's code lies off the training path, so its fingerprint adds this module's source.
PROBE_CODE = ("analysis/linear_probe.py",)


# ------------------------------------------------------------------ algebra
@dataclasses.dataclass
class Ridge:
    """A fitted ridge regression: ``predict(x) = ((x - mean) / scale) @ weights + intercept``."""

    mean: np.ndarray
    scale: np.ndarray
    weights: np.ndarray
    intercept: float
    alpha: float

    def predict(self, x: np.ndarray) -> np.ndarray:
        return ((np.asarray(x, np.float64) - self.mean) / self.scale) @ self.weights + self.intercept


def fit_ridge_path(x: np.ndarray, y: np.ndarray, alphas=ALPHAS) -> list[Ridge]:
    """One :class:`Ridge` per ``alpha``, minimising ``|Xw - y|^2 / n + alpha |w|^2`` in closed form.

    ``X`` is ``x`` standardised with its own column means and standard
    deviations (a constant column is left unscaled, its weight is then 0);
    the intercept is the mean of ``y``.
    """
    x = np.asarray(x, np.float64)
    y = np.asarray(y, np.float64)
    if x.ndim != 2 or len(x) != len(y) or len(y) < 2:
        raise ValueError(f"need a 2-D x with one row per target and at least 2 rows, got {x.shape} and {y.shape}")
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    z = (x - mean) / scale
    centre = float(y.mean())
    n = len(y)
    gram = z.T @ z / n
    moment = z.T @ (y - centre) / n
    values, vectors = np.linalg.eigh(gram)
    values = np.clip(values, 0.0, None)  # round-off can make zero eigenvalues slightly negative
    projected = vectors.T @ moment
    return [Ridge(mean, scale, vectors @ (projected / (values + alpha)), centre, float(alpha))
            for alpha in alphas]


def stage_averages(bank_features) -> np.ndarray:
    """``(rows, sum of stage channels)``: the global average of each of the four stages, concatenated.

    ``bank_features`` is :attr:`FeatureBank.features` (the model's
    ``pool_stages`` output: four LDA grids, then four 7x7 maps); the grids'
    means are the stages' global averages (see the module docstring).
    """
    return np.concatenate([f.float().mean(dim=(2, 3)).numpy() for f in bank_features[:4]], axis=1)


def trunk_stage_averages(model, data, train, crops: int, *, device) -> np.ndarray:
    """:func:`stage_averages` computed by a trunk pass over the bank's crops, for a trunk without a bank.

    The same ``crops`` fixed crops per image as :func:`iqalib.engine.features.feature_bank`
    (crop rule, seed and patch size of ``train``), image-major, but only the
    four stage averages are kept: a few KiB per crop where a bank of Swin-B's
    pooled maps would take hundreds.
    """
    dataset = PatchDataset(data.store, patch_size=train.patch_size, patches_per_image=crops, train=False,
                           seed=train.seed, test_crops=train.test_crops)
    loader = make_loader(dataset, batch_size=train.batch_size, shuffle=False, workers=train.workers)
    model.eval()
    parts = []
    with torch.inference_mode():
        for patches, _, _ in loader:
            x = to_model_input(patches, model.mean, model.std, device=device, channels_last=train.channels_last)
            parts.append(torch.cat([s.float().mean(dim=(2, 3)) for s in model.forward_features(x)], 1).cpu())
    return torch.cat(parts).numpy()


def image_means(values: np.ndarray, images: np.ndarray, crops: int) -> np.ndarray:
    """Per-image mean of ``crops`` consecutive rows each (rows image-major)."""
    return np.asarray(values).reshape(len(images), crops).mean(axis=1)


# ---------------------------------------------------------------- protocol
def _fingerprint(config: RunConfig, train, alphas, trunk: str) -> str:
    """What the probe's results depend on, hashed: data, trunk, crops, rounds, strengths and the code."""
    data = dataclasses.asdict(config.data)
    data.pop("image_cache", None)
    parts = {"version": PROBE_VERSION, "data": data, "trunk": trunk,
             "pretrained": str(config.model.pretrained), "rounds": config.train.rounds,
             "crops": max(train.train_patches, train.test_patches), "test_patches": train.test_patches,
             "patch": train.patch_size, "test_crops": train.test_crops, "seed": train.seed,
             "alphas": [float(a) for a in alphas], "from_bank": config.train.freeze_backbone,
             "code": code_identity(also=PROBE_CODE)}
    return hashlib.sha1(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def linear_probe(config, *, alphas=ALPHAS, name: str | None = None, force: bool = False) -> dict:
    """Fit and test the linear probe on ``config``'s trunk, data, splits and crops; results like a run's.

    ``config`` is a head's run configuration (e.g. the one of chapter 04), or
    a head run's results (:func:`iqalib.experiments.run_or_load`), whose
    configuration is then used: its trunk, pretrained weights, data set, split
    seed and fractions, rounds, crops (``train_patches``/``test_patches``),
    patch size, crop rule, seed and device; not the head, optimiser or epochs.
    With ``freeze_backbone`` the features come from the heads' feature bank;
    a fine-tuned trunk has none, and one pass of the pretrained trunk over the
    same crops gives them (the probe always reads the trunk as pretrained). Results are
    written to ``config.out_dir / name`` (default ``linear_probe_<trunk>``, e.g.
    ``linear_probe_lite0``: one probe per trunk serves every head on it) and read
    back when the same probe already finished there. Returns
    :func:`iqalib.results.load_results`' dict: ``test_per_round``,
    ``median_test_srcc``..., and ``round_results`` (each with the chosen
    ``alpha`` and the validation SRCC of every strength in ``validation``).
    """
    if isinstance(config, dict):
        config = from_dict(config["round_results"][0]["config"])
    device = resolve_device(config.train.device)
    seed_everything(config.train.seed)  # as fit does before it builds the bank: the same bank key
    model = make_model(config, device)
    train = resolved_train(config, model)
    key = _fingerprint(config, train, alphas, model.backbone.name)  # not the head: heads of a trunk share it
    name = name or f"linear_probe_{model.backbone.name}"
    run_dir = Path(config.out_dir) / name
    with run_lock(run_dir):
        summary_path = run_dir / "summary.json"
        if not force and summary_path.is_file():
            try:
                if json.loads(summary_path.read_text()).get("probe_fingerprint") == key:
                    return load_results(run_dir)
            except ValueError:
                pass  # a damaged summary: compute again
        clear_run(run_dir)  # never mix the files of two probes (e.g. fewer rounds than before)
        data = prepare_data(config)
        crops = max(train.train_patches, train.test_patches)
        if config.train.freeze_backbone:  # the heads' cached bank: no trunk pass of its own
            features = stage_averages(feature_bank(model, data, train, device=device).features)
        else:  # the heads fine-tune the trunk and keep no bank: one pass, stage averages only
            features = trunk_stage_averages(model, data, train, crops, device=device)
        trunk = model.backbone.name  # which heads this probe is the floor of (same trunk)
        del model
        rounds = [_probe_round(config, data, features, crops, train, r, alphas, name)
                  for r in range(config.train.rounds)]
        stamp_config = {**config.to_dict(), "name": name,
                        "train": {"freeze_backbone": True, "epochs": None, "trunk_lr": None,
                                  "train_patches": crops, "test_patches": train.test_patches,
                                  "seed": train.seed},
                        "probe": {"alphas": [float(a) for a in alphas], "version": PROBE_VERSION}}
        atomic_write_json(run_dir / STAMP, {"fingerprint": key, "config": stamp_config})
        for result in rounds:
            atomic_write_json(run_dir / f"round_{result['round']}" / "results.json", result)
        table = pd.DataFrame([{"round": r["round"], **r["test"]} for r in rounds])
        summary = metrics.summarize_rounds(table.drop(columns=["round"]))
        atomic_write_json(summary_path, {
            "name": name, "model": name, "trunk": trunk,
            "data": rounds[0]["data"], "rounds": len(rounds),
            "test_per_round": table.to_dict(orient="records"),
            "summary": summary.reset_index().to_dict(orient="records"),
            "median_test_srcc": float(np.median(table["srcc"])),
            "median_test_plcc": float(np.median(table["plcc"])),
            "probe_fingerprint": key,
        })
        return load_results(run_dir)


def _probe_round(config: RunConfig, data, features: np.ndarray, k: int, train, round_index: int, alphas,
                 name: str) -> dict:
    """One round: fit on the training crops, choose the strength on validation, score the test split."""
    started = time.perf_counter()
    parts = split_table(data.table, seed=config.data.split_seed + round_index,
                        fractions=tuple(config.data.fractions), official=config.data.official_split)
    if len(parts["val"]) < 2:
        raise ConfigError("the validation split has fewer than 2 images; the probe's ridge strength is "
                          "chosen on it (data.fractions)")
    index = {s: data.indices(p) for s, p in parts.items()}
    mos = {s: np.asarray(p.mos, np.float64) for s, p in parts.items()}

    def rows(images: np.ndarray, crops: int) -> np.ndarray:  # bank rows, image-major
        return (np.asarray(images)[:, None] * k + np.arange(crops)[None, :]).reshape(-1)

    train_rows = rows(index["train"], k)
    fits = fit_ridge_path(features[train_rows], np.repeat(mos["train"], k), alphas)

    def scores(fit: Ridge, split: str) -> np.ndarray:
        crops = train.test_patches
        return image_means(fit.predict(features[rows(index[split], crops)]), index[split], crops)

    validation = []
    for fit in fits:
        predicted = scores(fit, "val")
        validation.append({"alpha": fit.alpha, "val_srcc": metrics.srcc(predicted, mos["val"]),
                           "val_plcc": metrics.plcc(predicted, mos["val"])})
    val_srcc = np.array([v["val_srcc"] for v in validation], np.float64)
    val_srcc = np.where(np.isfinite(val_srcc), val_srcc, -np.inf)
    # The strongest ridge among the best (ties: the simpler model).
    chosen = max(range(len(fits)), key=lambda i: (val_srcc[i], fits[i].alpha))
    best = fits[chosen]
    test_pred = scores(best, "test")
    test = metrics.evaluate_scores(test_pred, mos["test"])
    out = Path(config.out_dir) / name / f"round_{round_index}"
    atomic_write_text(out / "predictions.csv", pd.DataFrame({
        "image": parts["test"].frame["image"], "mos": mos["test"], "pred": test_pred}).to_csv(index=False))
    return {
        "name": name, "round": round_index, "model": name, "data": data.table.label,
        "synthetic": data.table.synthetic, "split_sizes": {s: len(p) for s, p in parts.items()},
        "best_epoch": None, "alpha": best.alpha, "val_srcc": validation[chosen]["val_srcc"],
        "validation": validation, "features": int(features.shape[1]), "train_rows": int(len(train_rows)),
        "test": test, "train_seconds": time.perf_counter() - started, "history": [],
    }


# ---------------------------------------------------------------- what the probe says about the heads
def probe_sentences(runs: Mapping[str, Mapping], probes: Mapping | Sequence[Mapping]) -> list[str]:
    """Each learned head against the linear probe of its own trunk on the same rounds (same splits,
    same crops): the floor a hyper network must beat to be worth its parameters.

    ``probes``: one probe's results or several (one per trunk, e.g. ResNet-50 and Swin-B in the koniq
    edition). A head is set only against a probe of the trunk it reads (its ``model``'s trunk against
    the probe's ``trunk``); a head without one is named, not compared with another trunk's floor.
    """
    probes = [probes] if isinstance(probes, Mapping) else list(probes)
    probes = [p for p in probes if srcc_by_round(p)]
    if not probes:
        return []
    out = []
    for probe in probes:
        trunk = f" of {probe['trunk']}" if len(probes) > 1 and probe.get("trunk") else ""
        out.append(f"The linear probe{trunk} (ridge regression on the frozen trunk's four pooled stages) scores "
                   f"test SRCC {spread_words(list(srcc_by_round(probe).values()))}.")
    for name, results in runs.items():
        probe = _probe_of(results, probes)
        if probe is None:
            out.append(f"{name} reads another trunk ({_trunk(results)}) than the probe"
                       f"{'s' if len(probes) > 1 else ''} here, so it is not compared with one.")
            continue
        mine, floor = srcc_by_round(results), srcc_by_round(probe)
        shared = sorted(set(mine) & set(floor))
        if not shared:
            continue
        deltas = np.array([mine[r] - floor[r] for r in shared])
        spread = f" (per round {deltas.min():+.3f} to {deltas.max():+.3f})" if len(deltas) > 1 else ""
        out.append(f"{name}: median ΔSRCC to the probe {np.median(deltas):+.3f}{spread} over "
                   f"{counted(len(shared), 'round')}, {_against_the_probe(deltas)}; by the book's rule, "
                   f"\"{name} beats the probe\" is {decide(deltas)['verdict']}.")
    return out


def _against_the_probe(deltas: np.ndarray) -> str:
    """A head's verdict from its per-round differences to the probe."""
    above = int((deltas > 0).sum())
    if above == len(deltas):
        return "above the probe in every round: the learned head adds to what a linear read-out finds"
    if above == 0:
        return ("below the probe in every round: on this profile the head does not yet earn its "
                "parameters over a ridge regression on the same features")
    return (f"above the probe in {above} of {len(deltas)} rounds: on this profile the head is not "
            "reliably better than a ridge regression on the same features")


def _trunk(results: Mapping) -> str | None:
    """The trunk a run's model reads (None when the results name no registered model)."""
    model = results.get("model")
    return model_trunk(model) if model in list_models() else None


def _probe_of(results: Mapping, probes: Sequence[Mapping]) -> Mapping | None:
    """The probe of the run's trunk; with one probe that names no trunk, that probe (older results)."""
    if len(probes) == 1 and not probes[0].get("trunk"):
        return probes[0]
    trunk = _trunk(results)
    return next((p for p in probes if trunk is not None and p.get("trunk") == trunk), None)
