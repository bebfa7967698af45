"""Bootstrap by source (iqalib.metrics, groups=...) against a slow, loop-by-loop reference."""
import numpy as np
import pytest
from scipy import stats

from iqalib.metrics import bootstrap_ci, paired_bootstrap_difference, resampling_unit


def _slow_resamples(groups, n_boot, seed):
    """Index lists of a source bootstrap, written as plainly as possible.

    Sources are numbered in sorted order of their labels; each resample draws
    that many sources with replacement (one ``integers`` call per resample)
    and takes every image of each drawn source, in image order.
    """
    labels = sorted(set(groups))
    members = {label: [i for i, g in enumerate(groups) if g == label] for label in labels}
    rng = np.random.default_rng(seed)
    resamples = []
    for _ in range(n_boot):
        picks = rng.integers(0, len(labels), size=len(labels))
        index = []
        for pick in picks:
            for i in members[labels[pick]]:
                index.append(i)
        resamples.append(index)
    return resamples


def _slow_interval(values, alpha):
    values = [v for v in values if np.isfinite(v)]
    return tuple(np.percentile(values, [100 * alpha / 2, 100 * (1 - alpha / 2)]))


def _sources(sizes, seed=0):
    """Images of len(sizes) sources; images of one source share a source effect (not independent)."""
    rng = np.random.default_rng(seed)
    groups, mos, pred = [], [], []
    for k, size in enumerate(sizes):
        effect = rng.normal(0, 20)
        m = rng.uniform(0, 100, size)
        groups += [f"photo_{k}"] * size
        mos += list(m)
        pred += list(m + effect + rng.normal(0, 15, size))
    return np.array(groups), np.array(mos), np.array(pred)


@pytest.mark.parametrize("sizes", [(25, 25, 25), (3, 7, 1, 12, 5, 9)], ids=["equal", "unequal"])
def test_grouped_bootstrap_ci_matches_the_slow_reference(sizes):
    groups, mos, pred = _sources(sizes)
    n_boot, alpha, seed = 300, 0.1, 11
    reference = [stats.spearmanr(pred[idx], mos[idx]).statistic
                 for idx in _slow_resamples(list(groups), n_boot, seed)]
    low, high = bootstrap_ci(pred, mos, "srcc", n_boot=n_boot, alpha=alpha, seed=seed, groups=groups)
    assert (low, high) == pytest.approx(_slow_interval(reference, alpha), abs=1e-12)


@pytest.mark.parametrize("sizes", [(25, 25, 25), (4, 10, 2, 8)], ids=["equal", "unequal"])
def test_grouped_paired_difference_matches_the_slow_reference(sizes):
    groups, mos, pred_a = _sources(sizes, seed=1)
    pred_b = mos + np.random.default_rng(5).normal(0, 40, mos.size)
    n_boot, seed = 400, 3
    differences = []
    for idx in _slow_resamples(list(groups), n_boot, seed):
        differences.append(stats.pearsonr(pred_a[idx], mos[idx]).statistic
                           - stats.pearsonr(pred_b[idx], mos[idx]).statistic)
    differences = np.array(differences)
    tail = min((differences <= 0).sum(), (differences >= 0).sum()) + 1
    result = paired_bootstrap_difference(pred_a, pred_b, mos, "plcc", n_boot=n_boot, seed=seed, groups=groups)
    assert (result["low"], result["high"]) == pytest.approx(_slow_interval(differences, 0.05), abs=1e-12)
    assert result["p_value"] == pytest.approx(min(1.0, 2 * tail / (n_boot + 1)))
    assert result["delta"] == pytest.approx(stats.pearsonr(pred_a, mos).statistic
                                            - stats.pearsonr(pred_b, mos).statistic)


def test_source_bootstrap_is_wider_than_image_bootstrap_when_sources_differ():
    # Each source has its own slope: whether the model ranks well depends on the source, which an
    # image bootstrap (80 images taken as independent) hides. Measured widths over seeds 0-4:
    # 0.44-0.53 by image, 0.78-1.06 by source.
    rng = np.random.default_rng(0)
    groups = np.repeat([f"s{k}" for k in range(8)], 10)
    slope = np.repeat(rng.uniform(-1, 1.5, 8), 10)
    mos = rng.uniform(0, 100, 80)
    pred = slope * mos + rng.normal(0, 10, 80)
    by_image = bootstrap_ci(pred, mos, n_boot=500)
    by_source = bootstrap_ci(pred, mos, n_boot=500, groups=groups)
    assert by_source[1] - by_source[0] > 1.5 * (by_image[1] - by_image[0])


def test_one_image_per_source_is_the_image_bootstrap():
    _, mos, pred = _sources((40,), seed=2)
    names = [f"img_{i}" for i in range(mos.size)]
    assert bootstrap_ci(pred, mos, groups=names) == bootstrap_ci(pred, mos)
    assert resampling_unit(names) == "by image (40 images)"


def test_resampling_unit_names_the_sources():
    groups, _, _ = _sources((25, 25, 25))
    assert resampling_unit(groups) == "by source (3 sources)"
    assert resampling_unit(None, 75) == "by image (75 images)"


def test_bad_groups_are_one_line_errors():
    groups, mos, pred = _sources((5, 5))
    with pytest.raises(ValueError, match="groups has 9 labels but there are 10 images"):
        bootstrap_ci(pred, mos, groups=groups[:9])
    with pytest.raises(ValueError, match="all images share one source"):
        bootstrap_ci(pred, mos, groups=["same"] * mos.size)
