"""iqalib.metrics against SciPy, hand derivations and bootstrap definitions."""
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from iqalib import metrics
from iqalib.metrics import (
    LogisticParams,
    MetricWarning,
    bootstrap_ci,
    evaluate_scores,
    krcc,
    logistic_fit,
    logistic_map,
    paired_bootstrap_difference,
    plcc,
    plcc_logistic,
    rmse,
    srcc,
    summarize_rounds,
)


def noisy_pair(seed, n=200, ties=False, noise=1.0):
    """Predictions and MOS with a monotone nonlinear relation plus noise."""
    rng = np.random.default_rng(seed)
    pred = rng.normal(size=n)
    mos = 3.0 / (1.0 + np.exp(-2.0 * pred)) + rng.normal(scale=noise, size=n)
    if ties:  # coarse rounding, as with integer ratings, creates many ties
        pred, mos = np.round(pred, 1), np.round(mos)
    return pred, mos


# ----------------------------------------------------------- against SciPy


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("seed", range(8))
def test_correlations_match_scipy(seed, ties):
    pred, mos = noisy_pair(seed, n=30 + 40 * seed, ties=ties)
    if seed % 2:
        mos = -mos  # decreasing relations too
    assert srcc(pred, mos) == pytest.approx(stats.spearmanr(pred, mos).statistic, abs=1e-12)
    assert krcc(pred, mos) == pytest.approx(stats.kendalltau(pred, mos).statistic, abs=1e-12)
    assert plcc(pred, mos) == pytest.approx(stats.pearsonr(pred, mos).statistic, abs=1e-12)
    assert rmse(pred, mos) == pytest.approx(np.sqrt(np.mean((pred - mos) ** 2)), rel=1e-12)


# -------------------------------------------------------------- by hand


def test_perfect_monotone_and_reversed():
    pred = np.arange(10.0)
    mos = np.exp(pred)  # monotone but far from linear
    assert srcc(pred, mos) == 1.0
    assert krcc(pred, mos) == pytest.approx(1.0, abs=1e-12)  # SciPy's tau-b rounds to 1 - 1e-16
    assert plcc(pred, mos) < 1.0
    assert srcc(pred, -mos) == -1.0
    assert krcc(pred, -mos) == pytest.approx(-1.0, abs=1e-12)
    assert plcc(pred, 2 * pred + 1) == pytest.approx(1.0)


def test_small_case_with_ties_by_hand():
    pred = [1, 2, 2, 3]
    mos = [1, 3, 2, 4]
    # SRCC: average ranks pred (1, 2.5, 2.5, 4), mos (1, 3, 2, 4); deviations
    # from 2.5 are (-1.5, 0, 0, 1.5) and (-1.5, .5, -.5, 1.5): sum of products
    # 4.5, sums of squares 4.5 and 5, so r = 4.5 / sqrt(22.5) = sqrt(0.9).
    assert srcc(pred, mos) == pytest.approx(math.sqrt(0.9), abs=1e-12)
    # KRCC tau-b: of 6 pairs, 5 concordant, 0 discordant, 1 tied in pred only
    # (the two 2s): (5 - 0) / sqrt((5 + 0 + 1) * (5 + 0 + 0)) = 5 / sqrt(30).
    assert krcc(pred, mos) == pytest.approx(5 / math.sqrt(30), abs=1e-12)
    # PLCC: deviations (-1, 0, 0, 1) and (-1.5, .5, -.5, 1.5): 3 / sqrt(2 * 5).
    assert plcc(pred, mos) == pytest.approx(3 / math.sqrt(10), abs=1e-12)
    # RMSE: errors (0, -1, 0, -1), mean square 0.5.
    assert rmse(pred, mos) == pytest.approx(math.sqrt(0.5), abs=1e-12)


# -------------------------------------------------------- undefined cases


@pytest.mark.parametrize("metric", [srcc, krcc, plcc, plcc_logistic])
def test_constant_predictions_give_nan_with_warning(metric):
    with pytest.warns(MetricWarning, match="pred is constant"):
        assert math.isnan(metric([0.3] * 6, [1, 2, 3, 4, 5, 6]))


def test_constant_detection_is_exact_not_a_variance_threshold():
    # The mean of repeated 0.1s is not exactly 0.1, so a variance test would
    # see tiny non-zero deviations and report a spurious correlation.
    with pytest.warns(MetricWarning):
        assert math.isnan(plcc([0.1] * 7, np.arange(7.0)))


def test_evaluate_scores_constant_predictions():
    with pytest.warns(MetricWarning):
        scores = evaluate_scores([2.0] * 5, [1, 2, 3, 4, 5])
    assert all(math.isnan(scores[k]) for k in ("srcc", "krcc", "plcc", "plcc_logistic"))
    # Errors 1, 0, -1, -2, -3: mean square 15 / 5.
    assert scores["rmse"] == pytest.approx(math.sqrt(3.0))
    assert scores["n"] == 5


# ------------------------------------------------------------ bad input


def test_nan_input_names_argument_and_count():
    with pytest.raises(ValueError, match=r"mos contains 2 NaN and 0 inf"):
        srcc([1, 2, 3, 4], [1, np.nan, 3, np.nan])
    with pytest.raises(ValueError, match=r"pred contains 0 NaN and 1 inf"):
        plcc([1, np.inf, 3], [1, 2, 3])
    with pytest.raises(ValueError, match=r"pred_b contains 1 NaN"):
        paired_bootstrap_difference([1, 2, 3], [1, np.nan, 3], [1, 2, 3])


def test_length_mismatch():
    with pytest.raises(ValueError, match="pred has 3 values but mos has 4"):
        krcc([1, 2, 3], [1, 2, 3, 4])


def test_too_few_pairs():
    with pytest.raises(ValueError, match="at least 2"):
        srcc([1.0], [2.0])
    with pytest.raises(ValueError, match="at least 4"):
        plcc_logistic([1, 2, 3], [1, 2, 3])


def test_not_one_dimensional():
    with pytest.raises(ValueError, match=r"pred must be 1-D, got shape \(3, 1\)"):
        srcc([[1], [2], [3]], [1, 2, 3])


def test_non_numeric():
    with pytest.raises(ValueError, match="mos must be numeric"):
        srcc([1, 2, 3], ["a", "b", "c"])


def test_accepts_lists_series_and_tensors():
    pred, mos = noisy_pair(0, n=50)
    expected = srcc(pred, mos)
    assert srcc(list(pred), pd.Series(mos)) == expected
    torch = pytest.importorskip("torch")
    tensor_pred = torch.tensor(pred, requires_grad=True)  # as a model's output would be
    assert srcc(tensor_pred, torch.tensor(mos)) == pytest.approx(expected)


# ----------------------------------------------------------- logistic fit


@pytest.mark.parametrize("params", [(5.0, 1.0, 0.5, 0.8), (10.0, 90.0, 40.0, 12.0)])
def test_logistic_fit_recovers_parameters(params):
    # Noiseless data from a known curve; the second one is decreasing.
    pred = np.linspace(params[2] - 4 * params[3], params[2] + 4 * params[3], 60)
    mos = logistic_map(pred, params)
    fitted = logistic_fit(pred, mos)
    assert isinstance(fitted, LogisticParams)
    np.testing.assert_allclose(fitted, params, rtol=1e-6)
    assert rmse(pred, mos, logistic=True) == pytest.approx(0.0, abs=1e-6)


def test_logistic_map_formula():
    b1, b2, b3, b4 = 4.0, 1.0, 2.0, -0.5  # the formula uses |b4|
    x = np.array([0.0, 2.0, 3.0])
    expected = (b1 - b2) / (1 + np.exp(-(x - b3) / abs(b4))) + b2
    np.testing.assert_allclose(logistic_map(x, (b1, b2, b3, b4)), expected, rtol=1e-12)


@pytest.mark.parametrize("seed", range(4))
def test_logistic_plcc_not_below_raw_on_sigmoid_relation(seed):
    pred, mos = noisy_pair(seed, n=300, noise=0.2)
    raw = plcc(pred, mos)
    logistic = plcc_logistic(pred, mos)
    assert logistic > raw
    # The mapped predictions are what the value claims to correlate.
    mapped = logistic_map(pred, logistic_fit(pred, mos))
    assert logistic == pytest.approx(stats.pearsonr(mapped, mos).statistic, abs=1e-12)


def test_logistic_plcc_is_positive_for_decreasing_relation():
    pred, mos = noisy_pair(1, n=200, noise=0.2)
    assert plcc_logistic(pred, -mos) >= abs(plcc(pred, -mos))


def test_logistic_fit_failure_falls_back_to_raw_plcc(monkeypatch):
    def no_convergence(*args, **kwargs):
        raise RuntimeError("Optimal parameters not found")

    monkeypatch.setattr(metrics, "curve_fit", no_convergence)
    pred, mos = noisy_pair(2, n=40)
    with pytest.warns(MetricWarning, match="returning raw PLCC"):
        assert plcc_logistic(pred, mos) == plcc(pred, mos)
    with pytest.raises(metrics.LogisticFitError):
        logistic_fit(pred, mos)
    slope, intercept = np.polyfit(pred, mos, 1)
    with pytest.warns(MetricWarning, match="straight line"):
        assert rmse(pred, mos, logistic=True) == pytest.approx(rmse(slope * pred + intercept, mos))


def test_evaluate_scores_matches_individual_metrics():
    pred, mos = noisy_pair(3, n=120, ties=True)
    scores = evaluate_scores(pred, mos)
    assert list(scores) == ["srcc", "krcc", "plcc", "plcc_logistic", "rmse", "n"]
    assert scores["srcc"] == srcc(pred, mos)
    assert scores["krcc"] == krcc(pred, mos)
    assert scores["plcc"] == plcc(pred, mos)
    assert scores["plcc_logistic"] == plcc_logistic(pred, mos)
    assert scores["rmse"] == rmse(pred, mos)
    assert scores["n"] == 120


# -------------------------------------------------------------- bootstrap


@pytest.mark.parametrize("metric, reference", [
    ("srcc", lambda p, m: stats.spearmanr(p, m).statistic),
    ("krcc", lambda p, m: stats.kendalltau(p, m).statistic),
    ("plcc", lambda p, m: stats.pearsonr(p, m).statistic),
    ("rmse", lambda p, m: np.sqrt(np.mean((p - m) ** 2))),
])
def test_bootstrap_ci_is_the_percentile_interval_of_resampled_metric(metric, reference):
    # Rebuild the definition with a plain loop: same seeded index draws,
    # SciPy's metric per resample, percentiles at alpha/2 and 1 - alpha/2.
    pred, mos = noisy_pair(4, n=60, ties=True)
    n_boot, alpha, seed = 200, 0.1, 7
    rows = np.random.default_rng(seed).integers(0, 60, size=(n_boot, 60))
    values = [reference(pred[r], mos[r]) for r in rows]
    expected = np.percentile(values, [5, 95])
    low, high = bootstrap_ci(pred, mos, metric, n_boot=n_boot, alpha=alpha, seed=seed)
    np.testing.assert_allclose([low, high], expected, rtol=1e-10)


@pytest.mark.parametrize("metric", ["srcc", "krcc", "plcc", "plcc_logistic", "rmse"])
def test_bootstrap_ci_contains_point_estimate(metric):
    pred, mos = noisy_pair(5, n=80)
    point = getattr(metrics, metric)
    low, high = bootstrap_ci(pred, mos, metric, n_boot=100)
    assert low < point(pred, mos) < high


def test_bootstrap_ci_is_deterministic_per_seed():
    pred, mos = noisy_pair(6, n=100)
    assert bootstrap_ci(pred, mos, seed=3) == bootstrap_ci(pred, mos, seed=3)
    assert bootstrap_ci(pred, mos, seed=3) != bootstrap_ci(pred, mos, seed=4)


def test_bootstrap_ci_same_across_resample_blocks(monkeypatch):
    # Large test sets are resampled in blocks; the blocks must continue one
    # random stream so the interval does not depend on the block size.
    pred, mos = noisy_pair(6, n=100)
    whole = bootstrap_ci(pred, mos, n_boot=300)
    monkeypatch.setattr(metrics, "_BLOCK_ENTRIES", 100 * 7)  # blocks of 7 resamples
    assert bootstrap_ci(pred, mos, n_boot=300) == whole


def test_bootstrap_ci_narrows_with_more_images():
    small = bootstrap_ci(*noisy_pair(7, n=50), n_boot=500)
    large = bootstrap_ci(*noisy_pair(7, n=2000), n_boot=500)
    assert large[1] - large[0] < small[1] - small[0]


def test_bootstrap_rejects_unknown_metric_and_bad_alpha():
    with pytest.raises(ValueError, match="unknown metric 'auc'"):
        bootstrap_ci([1, 2, 3], [1, 2, 3], metric="auc")
    with pytest.raises(ValueError, match="alpha"):
        bootstrap_ci([1, 2, 3], [1, 2, 3], alpha=1.5)


def test_paired_bootstrap_identical_models():
    pred, mos = noisy_pair(8, n=100)
    result = paired_bootstrap_difference(pred, pred.copy(), mos, n_boot=200)
    assert result == {"delta": 0.0, "low": 0.0, "high": 0.0, "p_value": 1.0}


def test_paired_bootstrap_clearly_better_model():
    rng = np.random.default_rng(9)
    mos = rng.uniform(1, 5, size=300)
    good = mos + rng.normal(scale=0.1, size=300)
    poor = mos + rng.normal(scale=2.0, size=300)
    n_boot = 500
    result = paired_bootstrap_difference(good, poor, mos, n_boot=n_boot)
    assert result["delta"] == pytest.approx(srcc(good, mos) - srcc(poor, mos))
    assert 0 < result["low"] < result["delta"] < result["high"]
    # Every resample favours the good model: the smallest p the +1 rule allows.
    assert result["p_value"] == pytest.approx(2 / (n_boot + 1))
    swapped = paired_bootstrap_difference(poor, good, mos, n_boot=n_boot)
    assert swapped["delta"] == pytest.approx(-result["delta"])
    assert (swapped["low"], swapped["high"]) == pytest.approx((-result["high"], -result["low"]))
    assert swapped["p_value"] == result["p_value"]


def test_paired_bootstrap_p_value_from_tails():
    # Two comparable models: p must equal twice the smaller tail count (+1 rule).
    rng = np.random.default_rng(10)
    mos = rng.uniform(1, 5, size=80)
    a = mos + rng.normal(size=80)
    b = mos + rng.normal(size=80)
    n_boot, seed = 300, 11
    rows = np.random.default_rng(seed).integers(0, 80, size=(n_boot, 80))
    d = np.array([stats.spearmanr(a[r], mos[r]).statistic - stats.spearmanr(b[r], mos[r]).statistic
                  for r in rows])
    expected = min(1.0, 2 * (min((d <= 0).sum(), (d >= 0).sum()) + 1) / (n_boot + 1))
    result = paired_bootstrap_difference(a, b, mos, n_boot=n_boot, seed=seed)
    assert result["p_value"] == pytest.approx(expected)
    assert 0.0 < result["p_value"] <= 1.0


# ----------------------------------------------------------------- rounds


def round_results():
    rng = np.random.default_rng(12)
    return [{"srcc": s, "plcc": p, "n": 200, "round": i}
            for i, (s, p) in enumerate(zip(rng.uniform(0.8, 0.9, 10), rng.uniform(0.8, 0.9, 10)))]


def test_summarize_rounds_statistics():
    results = round_results()
    summary = summarize_rounds(results)
    assert list(summary.index) == ["srcc", "plcc"]  # bookkeeping columns left out
    for metric in ("srcc", "plcc"):
        values = np.array([r[metric] for r in results])
        row = summary.loc[metric]
        assert row["median"] == np.median(values)
        assert row["mean"] == pytest.approx(values.mean())
        assert row["std"] == pytest.approx(values.std(ddof=1))
        assert (row["min"], row["max"]) == (values.min(), values.max())
        assert (row["q25"], row["q75"]) == tuple(np.percentile(values, [25, 75]))
        assert row["iqr"] == pytest.approx(row["q75"] - row["q25"])
        assert row["n_rounds"] == 10


def test_summarize_rounds_accepts_dataframe_and_skips_nan():
    results = round_results()
    frame = pd.DataFrame(results)
    pd.testing.assert_frame_equal(summarize_rounds(frame), summarize_rounds(results))
    frame.loc[0, "srcc"] = np.nan
    row = summarize_rounds(frame, metrics=["srcc"]).loc["srcc"]
    assert row["n_rounds"] == 9
    assert row["median"] == np.median(frame["srcc"].dropna())


def test_summarize_rounds_errors():
    with pytest.raises(ValueError, match="empty"):
        summarize_rounds([])
    with pytest.raises(ValueError, match=r"\['krcc'\] not in results"):
        summarize_rounds(round_results(), metrics=["krcc"])
