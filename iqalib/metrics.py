"""Score predictions against MOS the way IQA papers report them.

Point metrics
    :func:`srcc` (Spearman, average ranks for ties), :func:`krcc` (Kendall
    tau-b), :func:`plcc` (raw Pearson), :func:`plcc_logistic` (Pearson after
    the VQEG 4-parameter logistic mapping), :func:`rmse`, and
    :func:`evaluate_scores`, which returns all of them as one dict.
Logistic mapping
    :func:`logistic_fit` and :func:`logistic_map`.
Uncertainty
    :func:`bootstrap_ci` (percentile bootstrap) and
    :func:`paired_bootstrap_difference` (two models, same resamples). Both
    resample images, or, given ``groups`` (the source photograph of each
    image: the demo set's and KADID-10k's reference), whole sources, because
    images that share a source are not independent; :func:`resampling_unit`
    says which in words.
Rounds
    :func:`summarize_rounds`: median/mean/spread over repeated train/test
    rounds (HyperIQA reports the median of 10).

Inputs may be lists, NumPy arrays, pandas Series or CPU torch tensors; they
must be 1-D, of equal length and finite, otherwise a one-line
:class:`ValueError` names the argument. A correlation with a constant input
is undefined: it is returned as ``nan`` (like SciPy) with a
:class:`MetricWarning`, never an exception.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Mapping, Sequence
from typing import NamedTuple

import numpy as np
import pandas as pd
from scipy import stats
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.special import expit

__all__ = [
    "METRICS",
    "LogisticFitError",
    "LogisticParams",
    "MetricWarning",
    "bootstrap_ci",
    "evaluate_scores",
    "krcc",
    "logistic_fit",
    "logistic_map",
    "paired_bootstrap_difference",
    "plcc",
    "plcc_logistic",
    "resampling_unit",
    "rmse",
    "srcc",
    "summarize_rounds",
]

# Names accepted by bootstrap_ci / paired_bootstrap_difference, in report order.
METRICS = ("srcc", "krcc", "plcc", "plcc_logistic", "rmse")
# Columns of a per-round results table that are bookkeeping, not metrics.
_BOOKKEEPING_COLUMNS = ("n", "round", "seed")
_SUMMARY_STATISTICS = ("median", "mean", "std", "min", "max", "q25", "q75", "iqr")
_MIN_PAIRS = 2
# A 4-parameter fit needs at least as many points as parameters.
_MIN_PAIRS_LOGISTIC = 4
MIN_SCORED_IMAGES = _MIN_PAIRS_LOGISTIC  # the fewest images a scored part may hold
# Bootstrap resample matrices are processed in blocks of about this many
# entries so that memory stays bounded for large test sets.
_BLOCK_ENTRIES = 2_000_000


class MetricWarning(RuntimeWarning):
    """A metric is undefined (constant input) or fell back to a simpler form."""


class LogisticFitError(RuntimeError):
    """The 4-parameter logistic did not converge on the given data."""


class LogisticParams(NamedTuple):
    """Parameters of ``f(x) = (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2``.

    ``b1`` and ``b2`` are the upper and lower asymptotes (swapped for a
    decreasing relation), ``b3`` the midpoint and ``b4`` (> 0) the scale.
    """

    b1: float
    b2: float
    b3: float
    b4: float


# ---------------------------------------------------------------- input checks


def _as_vector(values, name: str) -> np.ndarray:
    """``values`` as a finite 1-D float64 array, or a ValueError naming ``name``."""
    if hasattr(values, "detach"):  # torch tensor; torch itself is not imported
        values = values.detach().cpu().numpy()
    try:
        array = np.asarray(values, dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numeric, got {type(values).__name__}") from None
    if array.ndim != 1:
        raise ValueError(f"{name} must be 1-D, got shape {array.shape}; "
                         "flatten it first (e.g. .ravel())")
    n_nan = int(np.isnan(array).sum())
    n_inf = int(np.isinf(array).sum())
    if n_nan or n_inf:
        raise ValueError(
            f"{name} contains {n_nan} NaN and {n_inf} inf values out of {array.size}; "
            "drop or fix those images before scoring"
        )
    return array


def _paired(pred, mos, min_pairs: int = _MIN_PAIRS, *, pred_name: str = "pred"):
    """Validated ``(pred, mos)`` arrays of equal length >= ``min_pairs``."""
    pred = _as_vector(pred, pred_name)
    mos = _as_vector(mos, "mos")
    if pred.size != mos.size:
        raise ValueError(f"{pred_name} has {pred.size} values but mos has {mos.size}; "
                         "they must match one to one")
    if pred.size < min_pairs:
        raise ValueError(f"need at least {min_pairs} (pred, mos) pairs, got {pred.size}")
    return pred, mos


def _is_constant(rows: np.ndarray) -> np.ndarray:
    # Exact comparison, not a zero variance test: the mean of n equal floats
    # need not equal them, which would leave tiny non-zero deviations.
    return (rows == rows[..., :1]).all(axis=-1)


def _warn_if_constant(pred: np.ndarray, mos: np.ndarray, what: str) -> None:
    for name, values in (("pred", pred), ("mos", mos)):
        if _is_constant(values):
            warnings.warn(f"{what}: {name} is constant, so the correlation is undefined; "
                          "returning nan", MetricWarning, stacklevel=3)


# ------------------------------------------------------- row-wise computation
# Every metric is computed on a (rows, n) matrix: one row is the full data
# for a point estimate, many rows are bootstrap resamples.


def _pearson_rows(x: np.ndarray, y: np.ndarray) -> np.ndarray:
    undefined = _is_constant(x) | _is_constant(y)
    xc = x - x.mean(axis=-1, keepdims=True)
    yc = y - y.mean(axis=-1, keepdims=True)
    denominator = np.sqrt((xc * xc).sum(axis=-1) * (yc * yc).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        r = (xc * yc).sum(axis=-1) / denominator
    # Rounding can push |r| a hair past 1 for perfectly linear data.
    return np.where(undefined, np.nan, np.clip(r, -1.0, 1.0))


def _srcc_rows(pred: np.ndarray, mos: np.ndarray) -> np.ndarray:
    # Spearman = Pearson on average ranks, which is how ties are handled.
    return _pearson_rows(stats.rankdata(pred, axis=-1), stats.rankdata(mos, axis=-1))


def _krcc_rows(pred: np.ndarray, mos: np.ndarray) -> np.ndarray:
    undefined = _is_constant(pred) | _is_constant(mos)
    # Tau-b is O(n log n) per row in SciPy; an all-pairs vectorised form
    # would need O(n^2) memory per resample.
    return np.array([np.nan if skip else stats.kendalltau(p, m, variant="b").statistic
                     for p, m, skip in zip(pred, mos, undefined)])


def _rmse_rows(pred: np.ndarray, mos: np.ndarray) -> np.ndarray:
    return np.sqrt(np.mean((pred - mos) ** 2, axis=-1))


def _plcc_logistic_one(pred: np.ndarray, mos: np.ndarray) -> tuple[float, bool]:
    """Logistic PLCC of one row and whether the fit worked (else raw PLCC)."""
    if _is_constant(pred) or _is_constant(mos):
        return np.nan, True
    try:
        mapped = logistic_map(pred, _logistic_fit_checked(pred, mos))
    except LogisticFitError:
        return float(_pearson_rows(pred, mos)), False
    return float(_pearson_rows(mapped, mos)), True


def _plcc_logistic_rows(pred: np.ndarray, mos: np.ndarray) -> np.ndarray:
    results = [_plcc_logistic_one(p, m) for p, m in zip(pred, mos)]
    failures = sum(not fitted for _, fitted in results)
    if failures:
        warnings.warn(f"plcc_logistic: the logistic fit failed on {failures} of {len(results)} "
                      "resamples; raw PLCC was used for those", MetricWarning, stacklevel=4)
    return np.array([value for value, _ in results])


_ROW_METRICS: dict[str, Callable[[np.ndarray, np.ndarray], np.ndarray]] = {
    "srcc": _srcc_rows,
    "krcc": _krcc_rows,
    "plcc": _pearson_rows,
    "plcc_logistic": _plcc_logistic_rows,
    "rmse": _rmse_rows,
}


# --------------------------------------------------------------- point metrics


def srcc(pred, mos) -> float:
    """Spearman rank correlation; ties get average ranks (as ``scipy.stats.spearmanr``)."""
    pred, mos = _paired(pred, mos)
    _warn_if_constant(pred, mos, "srcc")
    return float(_srcc_rows(pred, mos))


def krcc(pred, mos) -> float:
    """Kendall rank correlation, tau-b variant (as ``scipy.stats.kendalltau``)."""
    pred, mos = _paired(pred, mos)
    _warn_if_constant(pred, mos, "krcc")
    return float(_krcc_rows(pred[None], mos[None])[0])


def plcc(pred, mos) -> float:
    """Pearson linear correlation of the raw predictions."""
    pred, mos = _paired(pred, mos)
    _warn_if_constant(pred, mos, "plcc")
    return float(_pearson_rows(pred, mos))


def plcc_logistic(pred, mos) -> float:
    """Pearson correlation after mapping ``pred`` with the fitted 4-parameter logistic.

    This is the VQEG protocol most IQA papers follow. At the least-squares
    optimum the result is non-negative and at least ``abs(plcc(pred, mos))``
    (a very wide logistic is nearly linear). If the fit does not converge the
    raw :func:`plcc` is returned with a :class:`MetricWarning`.
    Needs at least 4 pairs.
    """
    pred, mos = _paired(pred, mos, _MIN_PAIRS_LOGISTIC)
    _warn_if_constant(pred, mos, "plcc_logistic")
    value, fitted = _plcc_logistic_one(pred, mos)
    if not fitted:
        warnings.warn("plcc_logistic: the logistic fit did not converge; returning raw PLCC",
                      MetricWarning, stacklevel=2)
    return value


def rmse(pred, mos, *, logistic: bool = False) -> float:
    """Root mean squared error of ``pred`` against ``mos``.

    Raw by default, which is meaningful when the model regresses MOS on its
    own scale. With ``logistic=True`` the predictions are first mapped by the
    fitted logistic (VQEG); if that fit fails, a least-squares straight line
    is used instead, with a :class:`MetricWarning`.
    """
    if not logistic:
        pred, mos = _paired(pred, mos)
        return float(_rmse_rows(pred, mos))
    pred, mos = _paired(pred, mos, _MIN_PAIRS_LOGISTIC)
    try:
        mapped = logistic_map(pred, _logistic_fit_checked(pred, mos))
    except LogisticFitError:
        warnings.warn("rmse: the logistic fit did not converge; "
                      "mapping pred with a straight line instead", MetricWarning, stacklevel=2)
        slope, intercept = np.polyfit(pred, mos, 1)
        mapped = slope * pred + intercept
    return float(_rmse_rows(mapped, mos))


def evaluate_scores(pred, mos) -> dict[str, float | int]:
    """All point metrics at once: ``srcc, krcc, plcc, plcc_logistic, rmse`` (raw) and ``n``.

    Warns at most once per problem (constant input, failed logistic fit).
    Needs at least 4 pairs, for the logistic fit.
    """
    pred, mos = _paired(pred, mos, _MIN_PAIRS_LOGISTIC)
    _warn_if_constant(pred, mos, "evaluate_scores")
    logistic_value, fitted = _plcc_logistic_one(pred, mos)
    if not fitted:
        warnings.warn("evaluate_scores: the logistic fit did not converge; "
                      "plcc_logistic is raw PLCC", MetricWarning, stacklevel=2)
    return {
        "srcc": float(_srcc_rows(pred, mos)),
        "krcc": float(_krcc_rows(pred[None], mos[None])[0]),
        "plcc": float(_pearson_rows(pred, mos)),
        "plcc_logistic": logistic_value,
        "rmse": float(_rmse_rows(pred, mos)),
        "n": int(pred.size),
    }


# ------------------------------------------------------------ logistic mapping


def _logistic(x, b1, b2, b3, b4):
    # expit instead of 1 / (1 + exp(.)) avoids overflow warnings far from b3;
    # the floor keeps a collapsing scale from dividing by zero mid-fit.
    return b2 + (b1 - b2) * expit((x - b3) / np.maximum(np.abs(b4), 1e-12))


def logistic_map(pred, params: LogisticParams | Sequence[float]) -> np.ndarray:
    """Apply ``f(x) = (b1 - b2) / (1 + exp(-(x - b3) / |b4|)) + b2`` to ``pred``."""
    b1, b2, b3, b4 = (float(p) for p in params)
    return _logistic(_as_vector(pred, "pred"), b1, b2, b3, b4)


def logistic_fit(pred, mos) -> LogisticParams:
    """Least-squares fit of the 4-parameter logistic mapping ``pred`` to ``mos``.

    Starts from ``b1 = max(mos)``, ``b2 = min(mos)`` (swapped when the
    relation is decreasing), ``b3 = mean(pred)``, ``b4 = std(pred) / 2``.
    Raises :class:`LogisticFitError` if the fit does not converge.
    """
    pred, mos = _paired(pred, mos, _MIN_PAIRS_LOGISTIC)
    if _is_constant(pred) or _is_constant(mos):
        raise LogisticFitError("logistic_fit: pred or mos is constant; there is no curve to fit")
    return _logistic_fit_checked(pred, mos)


def _logistic_fit_checked(pred: np.ndarray, mos: np.ndarray) -> LogisticParams:
    # Fit in standardised units so that one starting point and the optimiser's
    # tolerances suit any MOS or score scale; the map back is exact.
    x_mean, x_std = pred.mean(), pred.std()
    y_mean, y_std = mos.mean(), mos.std()
    x = (pred - x_mean) / x_std
    y = (mos - y_mean) / y_std
    high, low = y.max(), y.min()
    if _pearson_rows(x, y) < 0:
        high, low = low, high
    try:
        with warnings.catch_warnings():
            # An inestimable covariance is irrelevant here: only the curve is used.
            warnings.simplefilter("ignore", OptimizeWarning)
            (c1, c2, c3, c4), _ = curve_fit(_logistic, x, y, p0=(high, low, 0.0, 0.5),
                                            maxfev=10_000)
    except (RuntimeError, ValueError) as error:
        raise LogisticFitError(f"logistic fit did not converge: {error}") from None
    params = LogisticParams(
        b1=float(y_mean + y_std * c1),
        b2=float(y_mean + y_std * c2),
        b3=float(x_mean + x_std * c3),
        b4=float(x_std * abs(c4)),
    )
    if not np.all(np.isfinite(params)):
        raise LogisticFitError(f"logistic fit diverged to {params}")
    return params


# ------------------------------------------------------------------- bootstrap


def _row_metric(metric: str) -> Callable[[np.ndarray, np.ndarray], np.ndarray]:
    try:
        return _ROW_METRICS[metric]
    except KeyError:
        raise ValueError(f"unknown metric {metric!r}; choose one of {', '.join(METRICS)}") from None


def _resample_blocks(n: int, n_boot: int, seed: int):
    """Yield blocks of bootstrap index rows, ``n_boot`` rows in all, from one seeded stream."""
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    rng = np.random.default_rng(seed)
    block = max(1, _BLOCK_ENTRIES // n)
    for start in range(0, n_boot, block):
        yield rng.integers(0, n, size=(min(block, n_boot - start), n))


def _group_members(groups, n: int) -> list[np.ndarray] | None:
    """Image positions of each source, sources in sorted order of their labels; None: by image.

    ``None`` also when every source has one image (resampling sources is then
    resampling images, and the image stream is used, so the result is the same).
    """
    if groups is None:
        return None
    labels = np.asarray(groups.detach().cpu().numpy() if hasattr(groups, "detach") else groups)
    if labels.ndim != 1 or labels.size != n:
        raise ValueError(f"groups has {labels.size} labels but there are {n} images; "
                         "pass one source label per image")
    if pd.isna(pd.Series(labels)).any():
        raise ValueError("groups contains missing labels; give every image its source")
    _, codes = np.unique(labels.astype(str), return_inverse=True)
    members = [np.flatnonzero(codes == g) for g in range(codes.max() + 1)]
    if len(members) == n:
        return None
    if len(members) < 2:
        raise ValueError("all images share one source, so sources cannot be resampled; "
                         "pass groups=None to resample images")
    return members


def _grouped_resample_blocks(members: list[np.ndarray], n_boot: int, seed: int):
    """Yield blocks of index rows: each row draws ``len(members)`` sources with replacement, all their images.

    Draws come from one seeded stream, one row of source picks per resample
    (the same draws as ``rng.integers(0, G, size=G)`` called ``n_boot`` times).
    Rows of one block have equal length (sources differ in size, so resamples
    do too); the block order does not matter to a percentile or a tail count.
    """
    if n_boot < 1:
        raise ValueError(f"n_boot must be at least 1, got {n_boot}")
    picks = np.random.default_rng(seed).integers(0, len(members), size=(n_boot, len(members)))
    sizes = np.array([m.size for m in members])
    if (sizes == sizes[0]).all():  # equal sources (the demo set): one gather, no Python loop
        rows = np.stack(members)[picks].reshape(n_boot, -1)
        block = max(1, _BLOCK_ENTRIES // rows.shape[1])
        for start in range(0, n_boot, block):
            yield rows[start:start + block]
        return
    lengths = sizes[picks].sum(axis=1)
    for length in np.unique(lengths):
        chosen = np.flatnonzero(lengths == length)
        block = max(1, _BLOCK_ENTRIES // int(length))
        for start in range(0, chosen.size, block):
            yield np.stack([np.concatenate([members[g] for g in picks[r]]) for r in chosen[start:start + block]])


def _index_blocks(n: int, n_boot: int, seed: int, groups):
    members = _group_members(groups, n)
    if members is None:
        return _resample_blocks(n, n_boot, seed)
    return _grouped_resample_blocks(members, n_boot, seed)


# Fewer sources than this give too few distinct by-source resamples for a 95% interval or a 5%
# test (2 sources: 3 distinct resamples; 4: 35; 5: 126): the analyses then say so, not a number.
MIN_BOOTSTRAP_SOURCES = 5


def too_few_sources(groups) -> str | None:
    """None when ``groups`` (one source label per image, or None) can be bootstrapped by source or
    are not shared (then images are resampled), else the reason in words."""
    if groups is None:
        return None
    labels = pd.Series(np.asarray(groups)).astype(str)
    n_sources = labels.nunique()
    if n_sources == len(labels) or n_sources >= MIN_BOOTSTRAP_SOURCES:
        return None
    return (f"the images come from {n_sources} source{'s' if n_sources != 1 else ''}, too few to resample "
            f"(a by-source bootstrap needs at least {MIN_BOOTSTRAP_SOURCES})")


def resampling_unit(groups=None, n: int | None = None) -> str:
    """What a bootstrap with these ``groups`` resamples, in words: "by source (3 sources)" or "by image".

    ``n`` (the number of images) is needed only to say how many images.
    """
    if groups is not None:
        labels = pd.Series(np.asarray(groups)).astype(str)
        n_sources = labels.nunique()
        if n_sources < len(labels):
            return f"by source ({n_sources} sources)"
        n = len(labels)
    return "by image" if n is None else f"by image ({n} images)"


def _check_alpha(alpha: float) -> None:
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie strictly between 0 and 1, got {alpha}")


def bootstrap_ci(pred, mos, metric: str = "srcc", n_boot: int = 1000, alpha: float = 0.05,
                 seed: int = 0, groups=None) -> tuple[float, float]:
    """Percentile bootstrap ``(low, high)`` interval of ``metric``.

    Without ``groups`` images are resampled with replacement; with ``groups``
    (one source label per image) whole sources are, each resample drawing as
    many sources as there are, with all their images: images of one source
    share content and are not independent, and resampling them one by one
    would give too narrow an interval. (With few sources the interval is
    coarse: three sources allow only ten distinct resamples.) Resamples come
    from a generator seeded with ``seed``, so the interval is reproducible.
    Resamples on which the metric is undefined (e.g. all-tied ranks in a tiny
    set) are dropped; if all are, the interval is ``(nan, nan)``. ``metric``
    is one of :data:`METRICS`; ``srcc``, ``plcc`` and ``rmse`` are
    vectorised, ``krcc`` and ``plcc_logistic`` loop over resamples and are slower.
    """
    compute = _row_metric(metric)
    _check_alpha(alpha)
    pred, mos = _paired(pred, mos, _MIN_PAIRS_LOGISTIC if metric == "plcc_logistic" else _MIN_PAIRS)
    values = np.concatenate([compute(pred[idx], mos[idx])
                             for idx in _index_blocks(pred.size, n_boot, seed, groups)])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return (np.nan, np.nan)
    low, high = np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    return (float(low), float(high))


def paired_bootstrap_difference(pred_a, pred_b, mos, metric: str = "srcc", n_boot: int = 1000,
                                alpha: float = 0.05, seed: int = 0, groups=None) -> dict[str, float]:
    """Compare two models on the same images: ``metric(a) - metric(b)`` with a CI and p-value.

    Both models are scored on the same resamples (of images, or of whole
    sources given ``groups``, as in :func:`bootstrap_ci`), so the
    image-level correlation between them cancels out. Returns ``delta`` (on
    the full data), the percentile interval ``low``/``high`` at level
    ``1 - alpha``, and a two-sided ``p_value``: twice the smaller bootstrap
    tail on either side of zero, ``2 * min(#(d <= 0) + 1, #(d >= 0) + 1) /
    (n_boot + 1)`` capped at 1. The +1 keeps p above zero for a finite number
    of resamples; identical models give exactly 1. For ``rmse`` a negative
    delta means ``a`` is better.
    """
    compute = _row_metric(metric)
    _check_alpha(alpha)
    min_pairs = _MIN_PAIRS_LOGISTIC if metric == "plcc_logistic" else _MIN_PAIRS
    pred_a, mos = _paired(pred_a, mos, min_pairs, pred_name="pred_a")
    pred_b, _ = _paired(pred_b, mos, min_pairs, pred_name="pred_b")
    delta = float(compute(pred_a[None], mos[None])[0] - compute(pred_b[None], mos[None])[0])
    differences = np.concatenate([
        compute(pred_a[idx], mos[idx]) - compute(pred_b[idx], mos[idx])
        for idx in _index_blocks(mos.size, n_boot, seed, groups)
    ])
    differences = differences[np.isfinite(differences)]
    if differences.size == 0:
        return {"delta": delta, "low": np.nan, "high": np.nan, "p_value": np.nan}
    low, high = np.percentile(differences, [100 * alpha / 2, 100 * (1 - alpha / 2)])
    tail = min((differences <= 0).sum(), (differences >= 0).sum()) + 1
    p_value = min(1.0, 2.0 * tail / (differences.size + 1))
    return {"delta": delta, "low": float(low), "high": float(high), "p_value": float(p_value)}


# ---------------------------------------------------------------------- rounds


def summarize_rounds(results: Sequence[Mapping[str, float]] | pd.DataFrame,
                     metrics: Sequence[str] | None = None) -> pd.DataFrame:
    """Per-metric summary over repeated rounds, one row per metric.

    ``results`` holds one entry per round (e.g. :func:`evaluate_scores`
    dicts). ``metrics`` defaults to every numeric column except the
    bookkeeping columns ``n``, ``round`` and ``seed``. Columns: ``median``
    (HyperIQA's headline number), ``mean``, ``std`` (sample, ddof=1; nan for
    one round), ``min``, ``max``, ``q25``, ``q75``, ``iqr`` and ``n_rounds``
    (rounds where the metric is not NaN).
    """
    frame = results if isinstance(results, pd.DataFrame) else pd.DataFrame(list(results))
    if frame.empty:
        raise ValueError("summarize_rounds: results are empty; pass one dict or row per round")
    if metrics is None:
        metrics = [column for column in frame.select_dtypes("number").columns
                   if column not in _BOOKKEEPING_COLUMNS]
        if not metrics:
            raise ValueError("summarize_rounds: no numeric metric columns among "
                             f"{list(frame.columns)}")
    missing = [m for m in metrics if m not in frame.columns]
    if missing:
        raise ValueError(f"summarize_rounds: metrics {missing} not in results columns "
                         f"{list(frame.columns)}")
    rows = {}
    for metric in metrics:
        try:
            values = frame[metric].to_numpy(dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"summarize_rounds: column {metric!r} is not numeric") from None
        values = values[~np.isnan(values)]
        if values.size == 0:
            rows[metric] = {**dict.fromkeys(_SUMMARY_STATISTICS, np.nan), "n_rounds": 0}
            continue
        q25, q75 = np.percentile(values, [25, 75])
        rows[metric] = {
            "median": float(np.median(values)),
            "mean": float(values.mean()),
            "std": float(values.std(ddof=1)) if values.size > 1 else np.nan,
            "min": float(values.min()),
            "max": float(values.max()),
            "q25": float(q25),
            "q75": float(q75),
            "iqr": float(q75 - q25),
            "n_rounds": int(values.size),
        }
    summary = pd.DataFrame.from_dict(rows, orient="index")
    summary.index.name = "metric"
    return summary
