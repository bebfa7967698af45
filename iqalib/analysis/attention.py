"""What SMART-IQA's stage attention looks at, read from a trained model.

:class:`~iqalib.models.attention.MultiScaleAttention` returns ``(fused,
weights)``; :func:`attention_hook` registers a forward hook on
``model.multiscale_attention`` and collects ``weights`` (one row of four stage
weights per patch) for every forward pass. An image is scored as HyperIQA
scores it, on fixed test crops, and both its score and its stage weights are
the mean over those crops (:func:`stage_weights`), so an image gets one
4-vector that still sums to 1.

On top of that: a table per image (:func:`attention_for_images`,
:func:`attention_for_run`), the three images the seed showed (lowest, median
and highest MOS, :func:`select_images`), the JSON files the seed wrote
(``selected_images.json``, ``attention_results.json``), and the statistics
the seed did not compute: stage weights against MOS over the whole test set
(:func:`weights_vs_mos`), which test its claim that high-quality images
concentrate their attention on one stage (:func:`claim_verdict`), for one
round's model and, because one trained model is one draw of the training, for
the model of every round (:func:`concentration_by_round`, :func:`rounds_summary`).
"""
from __future__ import annotations

import json
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator, Mapping, Sequence

import numpy as np
import pandas as pd
import torch

from iqalib import metrics
from iqalib.analysis.significance import sign_test, signed_rank_test
from iqalib.data.datasets import load_dataset
from iqalib.data.images import ImageStore
from iqalib.data.patches import PatchDataset, mean_per_image, to_model_input
from iqalib.data.splits import split_table
from iqalib.data.table import IQATable
from iqalib.engine import load_trained
from iqalib.engine.fit import resolve_device
from iqalib.errors import ConfigError, DataError
from iqalib.results import best_checkpoint
from iqalib.files import atomic_write_json

STAGE_COLUMNS = ("w1", "w2", "w3", "w4")
UNIFORM_WEIGHT = 1 / len(STAGE_COLUMNS)
TERCILES = ("low", "middle", "high")
# Attention has collapsed onto one stage when that stage's weight is >= COLLAPSE_WEIGHT on more than
# COLLAPSE_SHARE of the images: the weights then barely vary, and a test of them against MOS measures noise.
COLLAPSE_WEIGHT = 0.9
COLLAPSE_SHARE = 0.5
SELECTED_ROLES = ("lowest", "median", "highest")


# ------------------------------------------------------------------ reading the weights

def attention_module(model):
    """``model.multiscale_attention``, or a ConfigError when the model has no stage attention."""
    module = getattr(model, "multiscale_attention", None)
    if module is None:
        name = getattr(model, "model_name", type(model).__name__)
        raise ConfigError(f"model {name!r} has no stage attention (multiscale_attention is None); "
                          "use a SMART-IQA model with multiscale=True and attention=True")
    return module


@contextmanager
def attention_hook(model) -> Iterator[list[torch.Tensor]]:
    """Collect the stage weights of every forward pass of ``model.multiscale_attention``.

    Yields a list that grows by one (N, 4) float32 CPU tensor per forward pass
    (N patches); the hook is removed on exit, even after an error.
    """
    module = attention_module(model)
    collected: list[torch.Tensor] = []

    def keep_weights(_module, _inputs, output):
        _fused, weights = output
        collected.append(weights.detach().float().cpu())

    handle = module.register_forward_hook(keep_weights)
    try:
        yield collected
    finally:
        handle.remove()


def _as_store(images) -> ImageStore:
    if isinstance(images, ImageStore):
        return images
    arrays = [np.asarray(a, dtype=np.uint8) for a in images]
    bad = [i for i, a in enumerate(arrays) if a.ndim != 3 or a.shape[2] != 3]
    if bad:
        raise DataError(f"image {bad[0]} has shape {arrays[bad[0]].shape}; expected (H, W, 3) uint8 RGB")
    return ImageStore.from_arrays(arrays)


def stage_weights(model, images, *, patches: int = 25, patch_size: int = 224, seed: int = 0,
                  test_crops: str = "random", batch_size: int = 64) -> tuple[np.ndarray, np.ndarray]:
    """Scores (n,) and stage weights (n, 4) of ``images``, each the mean over the image's test crops.

    ``images`` is an :class:`~iqalib.data.images.ImageStore` or a sequence of
    (H, W, 3) uint8 arrays at least ``patch_size`` on each side. The crops are
    the ones training scored with (:class:`~iqalib.data.patches.PatchDataset`,
    ``train=False``, same ``seed`` and ``test_crops``), so with the run's
    ``test_patches`` and seed the scores reproduce the run's predictions.
    """
    store = _as_store(images)
    dataset = PatchDataset(store, patch_size=patch_size, patches_per_image=patches, train=False,
                           seed=seed, test_crops=test_crops)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    scores, weights, owners = [], [], []
    try:
        with attention_hook(model) as seen, torch.inference_mode():
            for start in range(0, len(dataset), batch_size):
                crops, _, image_index = dataset.__getitems__(range(start, min(start + batch_size, len(dataset))))
                x = to_model_input(crops, model.mean, model.std, device=device)
                scores.append(model(x).float().cpu())
                weights.append(seen[-1])
                owners.append(image_index)
    finally:
        model.train(was_training)
    return _image_means(scores, weights, owners, len(store))


def _image_means(scores, weights, owners, n: int) -> tuple[np.ndarray, np.ndarray]:
    """Per image (``n``), the mean score and stage weights of its patches, from the batches' scores,
    the hook's weight rows and each patch's image index."""
    index, per_patch = torch.cat(owners), torch.cat(weights)
    if len(per_patch) != len(index):
        raise RuntimeError(f"the hook saw {len(per_patch)} weight rows for {len(index)} patches")
    mean_weights = np.stack([mean_per_image(per_patch[:, s], index, n) for s in range(per_patch.shape[1])], axis=1)
    return mean_per_image(torch.cat(scores), index, n), mean_weights


def _frame(names, mos, pred: np.ndarray, weights: np.ndarray) -> pd.DataFrame:
    """One row per image: ``image, mos, pred, w1..w4``."""
    frame = pd.DataFrame({"image": [str(n) for n in names], "mos": mos, "pred": pred})
    for s, column in enumerate(STAGE_COLUMNS):
        frame[column] = weights[:, s]
    return frame


def _with_run_pred(frame: pd.DataFrame, run_dir: str | Path, round_index: int) -> pd.DataFrame:
    """``frame`` with a ``run_pred`` column: the prediction the run itself stored for each image."""
    stored = pd.read_csv(Path(run_dir) / f"round_{round_index}" / "predictions.csv")
    stored = stored[["image", "pred"]].astype({"image": str}).rename(columns={"pred": "run_pred"})
    return frame.merge(stored, on="image", how="left")


def attention_for_images(model, paths: Sequence[str | Path], mos=None, *, names: Sequence[str] | None = None,
                         short_side: int | None = None, patches: int = 25, patch_size: int = 224,
                         seed: int = 0, test_crops: str = "random", batch_size: int = 64) -> pd.DataFrame:
    """One row per image: ``image, mos, pred, w1..w4`` (weights averaged over the test crops).

    Images are decoded with the data set's ``short_side`` convention (as in
    training); ``names`` (default: the paths) fill the ``image`` column and
    ``mos`` (optional) the ``mos`` column.
    """
    paths = [Path(p) for p in paths]
    store = ImageStore.build(paths, short_side=short_side, min_side=patch_size)
    pred, weights = stage_weights(model, store, patches=patches, patch_size=patch_size, seed=seed,
                                  test_crops=test_crops, batch_size=batch_size)
    return _frame(names if names is not None else paths,
                  np.nan if mos is None else np.asarray(mos, dtype=np.float64), pred, weights)


def attention_for_table(model, table: IQATable, **options) -> pd.DataFrame:
    """:func:`attention_for_images` for every image of ``table`` (its names, MOS and resize rule)."""
    return attention_for_images(model, table.paths, table.mos, names=list(table.frame["image"]),
                                short_side=table.short_side, **options)


def run_round_results(run_dir: str | Path, round_index: int = 0) -> dict:
    """``round_<r>/results.json`` of a finished run."""
    path = Path(run_dir) / f"round_{round_index}" / "results.json"
    if not path.is_file():
        raise DataError(f"{path}: no results for round {round_index}; train the run first (run_or_load)")
    return json.loads(path.read_text())


def round_test_split(run_dir: str | Path, round_index: int = 0, table: IQATable | None = None) -> IQATable:
    """The test images of one round of a run, rebuilt from its stored configuration (``table``: the
    run's data set when the caller has already loaded it).

    Checked against the run's ``predictions.csv``: a data set that changed
    since the run raises a DataError instead of silently analysing other images.
    """
    data = run_round_results(run_dir, round_index)["config"]["data"]
    if table is None:
        table = load_dataset(data["name"], data["root"], **(data.get("options") or {}))
    test = split_table(table, seed=data["split_seed"] + round_index, fractions=tuple(data["fractions"]),
                       official=data.get("official_split", True))["test"]
    stored = Path(run_dir) / f"round_{round_index}" / "predictions.csv"
    if stored.is_file():
        expected = set(pd.read_csv(stored)["image"].astype(str))
        if set(test.frame["image"].astype(str)) != expected:
            raise DataError(f"{stored}: the test split rebuilt from the run's configuration differs from "
                            "the one it was scored on; retrain the run (run_or_load(..., force=True))")
    return test


def load_round_model(run_dir: str | Path, round_index: int = 0, device: str = "auto"):
    """The selected (best) model of one round, in eval mode; ``device`` as in training (``auto``: cuda if any)."""
    checkpoint = best_checkpoint(run_dir, round_index)
    if not checkpoint.is_file():
        raise DataError(f"{checkpoint}: no selected model for round {round_index}; train the run first")
    return load_trained(checkpoint, device=resolve_device(device))


def attention_for_run(run_dir: str | Path, round_index: int = 0, *, patches: int | None = None,
                      device: str = "auto", batch_size: int = 64) -> pd.DataFrame:
    """:func:`attention_for_table` on a round's test split with its selected (best) model.

    Crops follow the round's training configuration (``test_patches``,
    ``seed``, ``test_crops``) unless ``patches`` is given. A ``run_pred``
    column holds the prediction the run itself stored, for comparison.
    """
    train = run_round_results(run_dir, round_index)["train_config"]
    model = load_round_model(run_dir, round_index, device)
    frame = attention_for_table(model, round_test_split(run_dir, round_index),
                                patches=patches or train["test_patches"], patch_size=train["patch_size"],
                                seed=train["seed"], test_crops=train["test_crops"], batch_size=batch_size)
    return _with_run_pred(frame, run_dir, round_index)


def attention_from_features(run_dir: str | Path, rounds: Sequence[int], *,
                            device: str = "auto") -> dict[int, pd.DataFrame] | None:
    """:func:`attention_for_run`'s frame for each of ``rounds``, read from the run's cached trunk features.

    A frozen-trunk run scored every test crop from one bank of pooled trunk
    features (:func:`iqalib.engine.features.feature_bank`, cached on disk by
    the training), and the attention reads only those pooled maps. So each
    round's selected head on the bank's rows of its test images gives the
    weights of exactly the crops the run scored (``pred`` equals ``run_pred``
    up to rounding), without a pass of the trunk: the bank is read once for
    all rounds. None for a run whose trunk trained (no bank describes it).
    """
    from iqalib.engine.features import feature_bank  # lazy: the engine's training modules
    from iqalib.engine.fit import FeatureSource, as_config, make_model, prepare_data, resolved_train
    from iqalib.engine.precision import autocast_dtype

    rounds = list(rounds)
    if not rounds:
        return {}
    config = as_config(run_round_results(run_dir, rounds[0])["config"])
    if not config.train.freeze_backbone:
        return None
    config.train.progress = False
    torch_device = resolve_device(device)
    data = prepare_data(config)
    trunk = make_model(config, torch_device)
    tc = resolved_train(config, trunk)
    bank = feature_bank(trunk, data, tc, device=torch_device)
    dtype = autocast_dtype(torch_device, tc.precision)
    frames = {}
    for r in rounds:
        model = load_round_model(run_dir, r, device)
        test = round_test_split(run_dir, r, data.table)
        source = FeatureSource(model, bank, data.indices(test), test.mos, tc.test_patches, tc,
                               device=torch_device, dtype=dtype)
        scores, weights, owners = [], [], []
        with attention_hook(model) as seen, torch.inference_mode():
            for batch in source.loader(0, shuffle=False):
                pred, _, images = source.forward(batch)
                scores.append(pred.cpu())
                weights.append(seen[-1])
                owners.append(images)
        pred, weights = _image_means(scores, weights, owners, len(test))
        frames[r] = _with_run_pred(_frame(test.frame["image"], test.mos, pred, weights), run_dir, r)
    return frames


# ------------------------------------------------------------------ the seed's three images

def select_images(frame: pd.DataFrame, path: str | Path | None = None) -> pd.DataFrame:
    """The lowest-, median- and highest-MOS rows of ``frame`` (needs ``image`` and ``mos``).

    The median image is the one whose MOS is closest to the median MOS (the
    first such row on a tie). Adds a ``role`` column (lowest, median,
    highest) and, with ``path``, writes them as ``selected_images.json``.
    """
    missing = {"image", "mos"} - set(frame.columns)
    if missing:
        raise DataError(f"select_images needs columns image and mos; missing {sorted(missing)}")
    if len(frame) < 3:
        raise DataError(f"select_images needs at least 3 images, got {len(frame)}")
    mos = frame["mos"].to_numpy(dtype=np.float64)
    rows = [int(np.argmin(mos)), int(np.argmin(np.abs(mos - np.median(mos)))), int(np.argmax(mos))]
    selected = frame.iloc[rows].copy()
    selected.insert(0, "role", SELECTED_ROLES)
    selected = selected.reset_index(drop=True)
    if path is not None:
        atomic_write_json(Path(path), {"images": _records(selected)})
    return selected


def _records(frame: pd.DataFrame) -> list[dict]:
    """JSON-ready rows; the stage columns become one ``weights`` list."""
    out = []
    for row in frame.to_dict(orient="records"):
        weights = [float(row.pop(c)) for c in STAGE_COLUMNS if c in row]
        record = {k: (float(v) if isinstance(v, (np.floating, float)) else v) for k, v in row.items()}
        if weights:
            record["weights"] = weights
        out.append(record)
    return out


def attention_results_json(frame: pd.DataFrame, path: str | Path, *, selected: pd.DataFrame | None = None,
                           statistics: "AttentionStatistics | None" = None, meta: dict | None = None) -> Path:
    """Write ``attention_results.json``: every image's prediction and stage weights.

    Also the selected images, the whole-test-set statistics and their
    verdict when given, and ``meta`` (data label, model, round...) as is.
    """
    payload: dict = {**(meta or {}), "stages": list(STAGE_COLUMNS), "images": _records(frame)}
    if selected is not None:
        payload["selected"] = _records(selected)
    if statistics is not None:
        payload["statistics"] = {
            "n_images": statistics.n_images,
            "correlations": statistics.correlations.reset_index().to_dict(orient="records"),
            "terciles": statistics.terciles.reset_index().to_dict(orient="records"),
            "verdict": claim_verdict(statistics),
        }
    path = Path(path)
    atomic_write_json(path, payload)
    return path


# ------------------------------------------------------------------ weights against MOS

def concentration(weights) -> np.ndarray:
    """1 - entropy / log(4) of each weight row: 0 for uniform weights, 1 for all weight on one stage."""
    w = np.asarray(weights, dtype=np.float64)
    with np.errstate(divide="ignore", invalid="ignore"):
        entropy = -np.where(w > 0, w * np.log(w), 0.0).sum(axis=1)
    return 1.0 - entropy / np.log(w.shape[1])


def mos_terciles(mos) -> pd.Categorical:
    """low / middle / high thirds of ``mos`` by rank (ties broken by order, so the thirds are equal)."""
    ranks = pd.Series(np.asarray(mos, dtype=np.float64)).rank(method="first")
    return pd.Categorical(pd.qcut(ranks, 3, labels=list(TERCILES)), categories=list(TERCILES), ordered=True)


@dataclass
class AttentionStatistics:
    """Stage weights against MOS over a set of images (see :func:`weights_vs_mos`)."""

    n_images: int
    correlations: pd.DataFrame  # index: w1..w4, max_weight, concentration; columns srcc, low, high
    terciles: pd.DataFrame  # index: MOS tercile; mean weights, max weight, concentration, dominant stage
    per_image: pd.DataFrame  # the input plus max_weight, concentration, dominant_stage, mos_tercile
    alpha: float
    resampling: str = "by image"  # what the bootstrap intervals resample (iqalib.metrics.resampling_unit)


def _source_labels(frame: pd.DataFrame, groups) -> np.ndarray | None:
    """Each image's source from ``groups`` (image -> source), or None where images do not share sources
    (no groups, an image without a source, or one source per image): then images are resampled."""
    if groups is None or "image" not in frame:
        return None
    labels = frame["image"].map(dict(groups))
    if labels.isna().any() or labels.nunique() < 2 or labels.nunique() == len(labels):
        return None
    return labels.astype(str).to_numpy()


def weights_vs_mos(frame: pd.DataFrame, *, n_boot: int = 1000, alpha: float = 0.05,
                   seed: int = 0, groups=None) -> AttentionStatistics:
    """How stage weights vary with MOS over all images of ``frame`` (``mos, w1..w4``[, ``image``]).

    ``correlations``: Spearman correlation with MOS (and a percentile
    bootstrap interval, :func:`iqalib.metrics.bootstrap_ci`) of each stage
    weight, of the largest weight and of the :func:`concentration`. The
    bootstrap resamples whole sources where ``groups`` (image -> source, e.g.
    :func:`iqalib.analysis.significance.source_groups`) gives the images shared
    ones (images of one photograph are not independent), single images
    otherwise; ``resampling`` says which.
    ``terciles``: per MOS third, the mean weights, mean largest weight and
    concentration, and the share of images whose largest weight is each stage.
    """
    missing = {"mos", *STAGE_COLUMNS} - set(frame.columns)
    if missing:
        raise DataError(f"weights_vs_mos needs columns mos, w1..w4; missing {sorted(missing)}")
    if len(frame) < 6:
        raise DataError(f"weights_vs_mos needs at least 6 images (two per MOS tercile), got {len(frame)}")
    per_image = frame.reset_index(drop=True).copy()
    weights = per_image[list(STAGE_COLUMNS)].to_numpy(dtype=np.float64)
    per_image["max_weight"] = weights.max(axis=1)
    per_image["concentration"] = concentration(weights)
    per_image["dominant_stage"] = np.array(STAGE_COLUMNS)[weights.argmax(axis=1)]
    per_image["mos_tercile"] = mos_terciles(per_image["mos"])
    mos = per_image["mos"].to_numpy(dtype=np.float64)
    sources = _source_labels(per_image, groups)
    too_few = metrics.too_few_sources(sources)

    rows = {}
    for column in (*STAGE_COLUMNS, "max_weight", "concentration"):
        values = per_image[column].to_numpy(dtype=np.float64)
        low, high = (np.nan, np.nan) if too_few else metrics.bootstrap_ci(
            values, mos, "srcc", n_boot=n_boot, alpha=alpha, seed=seed, groups=sources)
        rows[column] = {"srcc": metrics.srcc(values, mos), "low": low, "high": high}
    correlations = pd.DataFrame.from_dict(rows, orient="index")
    correlations.index.name = "statistic"

    grouped = per_image.groupby("mos_tercile", observed=False)
    terciles = grouped[["mos", *STAGE_COLUMNS, "max_weight", "concentration"]].mean()
    terciles.insert(0, "n", grouped.size())
    shares = pd.crosstab(per_image["mos_tercile"], per_image["dominant_stage"], normalize="index")
    for column in STAGE_COLUMNS:
        terciles[f"dominant_{column}"] = shares[column] if column in shares else 0.0
    resampling = metrics.resampling_unit(sources, len(per_image))
    return AttentionStatistics(len(per_image), correlations, terciles, per_image, alpha,
                               f"{resampling}: no interval, {too_few}" if too_few else resampling)


def claim_verdict(stats: AttentionStatistics) -> str:
    """A sentence on the seed's claim ("high-quality images concentrate on one stage"), from the numbers.

    The claim is read as: concentration rises with MOS. It is *supported*
    when the bootstrap interval of Spearman(concentration, MOS) lies above 0,
    *contradicted* when it lies below 0, and *not supported* otherwise. The
    sentence also says how far the weights are from uniform at all.
    """
    row = stats.correlations.loc["concentration"]
    level = round(100 * (1 - stats.alpha))
    interval = (f"{level}% bootstrap CI [{row['low']:+.3f}, {row['high']:+.3f}]"
                if np.isfinite(row["low"]) and np.isfinite(row["high"]) else "no interval")
    srcc = f"{row['srcc']:+.3f}" if np.isfinite(row["srcc"]) else "undefined"
    numbers = f"Spearman(concentration, MOS) = {srcc}, {interval} over {stats.n_images} test images"
    top, bottom = stats.terciles.loc["high"], stats.terciles.loc["low"]
    terciles = (f"mean largest stage weight {top['max_weight']:.3f} in the highest MOS third vs "
                f"{bottom['max_weight']:.3f} in the lowest (uniform attention: {UNIFORM_WEIGHT:.2f})")
    if not np.isfinite(row["srcc"]):
        verdict = "Undecided: the concentration or the MOS is constant, so no correlation can be computed"
    elif not (np.isfinite(row["low"]) and np.isfinite(row["high"])):
        unit, _, why = stats.resampling.partition(": no interval, ")
        verdict = f"Untested: no interval ({unit}: {why})" if why else f"Untested: no interval ({unit})"
    elif row["low"] > 0:
        verdict = "Supported: higher-quality images concentrate their attention on fewer stages"
    elif row["high"] < 0:
        verdict = "Contradicted: higher-quality images spread their attention more evenly over the stages"
    else:
        verdict = "Not supported: no reliable relation between MOS and how concentrated the attention is"
    mean_max = float(stats.per_image["max_weight"].mean())
    if mean_max < UNIFORM_WEIGHT + 0.05:
        terciles += f"; the weights stay close to uniform (mean largest weight {mean_max:.3f})"
    return f"{verdict} ({numbers}; {terciles})."


def collapsed_stage(weights: pd.DataFrame, columns: Sequence[str] = STAGE_COLUMNS):
    """``(stage column, share of images)`` when one stage has weight >= :data:`COLLAPSE_WEIGHT` on more than
    :data:`COLLAPSE_SHARE` of the images, else None."""
    values = weights[list(columns)].to_numpy(dtype=float)
    shares = (values >= COLLAPSE_WEIGHT).mean(axis=0)
    best = int(shares.argmax())
    return (columns[best], float(shares[best])) if shares[best] > COLLAPSE_SHARE else None


# ------------------------------------------------------------------ every round's model

def concentration_by_round(run_dir: str | Path, rounds: Sequence[int], *, patches: int | None = None,
                           device: str = "auto", n_boot: int = 1000, alpha: float = 0.05, seed: int = 0,
                           groups=None, known: Mapping[int, pd.DataFrame] | None = None) -> pd.DataFrame:
    """Spearman(concentration, MOS) of each round's selected model on that round's own test split.

    One trained model is one draw of the training (its split, its
    initialisation, its crops), and the seed's claim is about the method, so
    it has to hold for the models of the rounds, not only for the one looked
    at in depth. ``known`` maps rounds whose :func:`attention_for_run` frame
    is already at hand (not recomputed); the others are read from the run's
    cached trunk features (:func:`attention_from_features`) where its trunk
    was frozen and ``patches`` is None (the run's own crops), else
    recomputed from the images; ``groups`` is passed to
    :func:`weights_vs_mos`. Index ``round``; columns ``n``, ``srcc``, ``low``,
    ``high`` (the round's bootstrap interval, NaN with too few sources),
    ``mean_max_weight`` and ``collapsed`` (the stage the attention collapsed
    onto, :func:`collapsed_stage`, or "").
    """
    known = dict(known or {})
    missing = [r for r in rounds if r not in known]
    if missing and patches is None:  # the run's own crops: read from its cached trunk features
        known.update(attention_from_features(run_dir, missing, device=device) or {})
    rows = []
    for r in rounds:
        frame = known[r] if r in known else attention_for_run(run_dir, r, patches=patches, device=device)
        statistics = weights_vs_mos(frame, n_boot=n_boot, alpha=alpha, seed=seed, groups=groups)
        row = statistics.correlations.loc["concentration"]
        collapse = collapsed_stage(frame)
        rows.append({"round": int(r), "n": statistics.n_images, "srcc": float(row["srcc"]),
                     "low": float(row["low"]), "high": float(row["high"]),
                     "mean_max_weight": float(statistics.per_image["max_weight"].mean()),
                     "collapsed": collapse[0] if collapse else ""})
    if not rows:
        raise DataError("concentration_by_round: no rounds given")
    return pd.DataFrame(rows).set_index("round")


def rounds_summary(by_round: pd.DataFrame) -> dict:
    """Spearman(concentration, MOS) over the rounds' models (rows of :func:`concentration_by_round`).

    Rounds whose attention collapsed onto one stage, or whose correlation is
    undefined, are left out (``left_out``): their weights barely vary, so
    their correlation measures noise. ``p`` is the book's rule's test of the
    remaining correlations against 0, a two-sided Wilcoxon signed-rank test
    (:func:`iqalib.analysis.significance.signed_rank_test`; ``sign_p`` the sign
    test beside it), NaN with too few rounds, with the reason in ``tests_note``.
    """
    usable = by_round[(by_round["collapsed"] == "") & np.isfinite(by_round["srcc"])]
    values = usable["srcc"].to_numpy(dtype=np.float64)
    p, note = signed_rank_test(values)
    sign_p, _ = sign_test(values)
    empty = not len(values)
    return {"rounds": len(by_round), "usable": len(values), "left_out": len(by_round) - len(values),
            "median": np.nan if empty else float(np.median(values)),
            "min": np.nan if empty else float(values.min()), "max": np.nan if empty else float(values.max()),
            "positive": int((values > 0).sum()), "negative": int((values < 0).sum()),
            "interval_above": int((usable["low"] > 0).sum()), "interval_below": int((usable["high"] < 0).sum()),
            "p": p, "sign_p": sign_p, "tests_note": note}
