"""The book's figures and display tables: what they draw and say, on small synthetic inputs."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
import pytest  # noqa: E402

from iqalib.analysis.heatmap import HeatMap  # noqa: E402
from iqalib.plots import ablation as ablation_plots  # noqa: E402
from iqalib.plots import attention as attention_plots  # noqa: E402
from iqalib.plots import training  # noqa: E402


def _rounds(n_rounds):
    rows = []
    for r in range(n_rounds):
        for k, label in enumerate(["(a)", "(b)", "(c)"]):
            rows.append({"label": label, "round": r, "srcc": 0.5 + 0.1 * k + 0.01 * r})
    return pd.DataFrame(rows)


@pytest.mark.parametrize("n_rounds, boxes", [(2, False), (5, True)])
def test_rounds_are_joined_dots_and_a_box_only_with_enough_rounds(n_rounds, boxes):
    fig = ablation_plots.plot_rounds(_rounds(n_rounds), "demo (synthetic)")
    ax = fig.axes[0]
    joined = [line for line in ax.get_lines() if line.get_label().startswith("round ")]
    assert len(joined) == n_rounds and all(len(line.get_xdata()) == 3 for line in joined)
    assert ("no box: a box plot needs at least 5 rounds" in ax.get_xlabel()) is not boxes
    assert bool(ax.patches) is boxes  # seaborn draws the boxes as patches


def _ablation_table(rounds):
    return pd.DataFrame([{"model": "m", "rounds": rounds, "srcc_median": 0.6, "srcc_iqr": 0.05, "srcc_min": 0.5,
                          "srcc_max": 0.7, "plcc_median": 0.6, "plcc_iqr": 0.05, "plcc_min": 0.5,
                          "plcc_max": 0.7}], index=["(a)"])


def test_ablation_table_leaves_out_what_the_rounds_cannot_support():
    two = ablation_plots.format_ablation_table(_ablation_table(2))
    assert two.loc["(a)", "SRCC"] == "0.600 (range 0.500 to 0.700)"
    assert two.attrs["note"] == "an IQR needs at least 4 rounds, this run has 2"
    one = ablation_plots.format_ablation_table(_ablation_table(1))
    assert one.loc["(a)", "SRCC"] == "0.600 (one round)"
    four = ablation_plots.format_ablation_table(_ablation_table(4))
    assert four.loc["(a)", "SRCC"] == "0.600 (IQR 0.050, range 0.500 to 0.700)" and four.attrs["note"] == ""


def test_comparisons_say_why_a_test_is_missing_instead_of_nan():
    summary = pd.DataFrame([{"a": "single_scale", "b": "hyperiqa", "metric": "srcc", "rounds": 2,
                             "median_delta": 0.01, "mean_delta": 0.01, "a_better": 0.5, "rounds_significant": 0.0,
                             "sign_p": np.nan, "wilcoxon_p": np.nan, "tests_note": "x", "resampled": "by image"}])
    shown = ablation_plots.format_comparisons(summary)
    assert shown.index[0] == "(a) vs (d)"
    assert shown.iloc[0]["Wilcoxon / sign p"] == "n/a (2 rounds; needs 6)"
    assert shown.iloc[0]["A better (rounds)"] == "1 of 2" and shown.iloc[0]["rounds"] == 2
    assert shown.iloc[0]["verdict"] == "untested (2 rounds; the rule needs 6)"
    assert "nan" not in shown.to_string().lower()
    untestable = ablation_plots.format_comparisons(summary.assign(rounds_significant=np.nan))
    assert untestable.iloc[0]["bootstrap p < 0.05 (rounds)"] == "n/a (too few sources; needs 5)"
    six = ablation_plots.format_comparisons(summary.assign(rounds=6, a_better=1.0, sign_p=0.03125,
                                                           wilcoxon_p=0.03125))
    assert six.iloc[0]["Wilcoxon / sign p"] == "0.0312 / 0.0312" and six.iloc[0]["verdict"] == "supported"


def test_one_data_set_draws_no_matrix():
    one = pd.DataFrame([{"train": "demo", "test": "demo", "srcc": 0.8}])
    assert training.metric_matrix(one) is None
    two = pd.concat([one, pd.DataFrame([{"train": "demo", "test": "livec", "srcc": 0.3}])])
    fig = training.metric_matrix(two)
    assert fig.axes[0].collections[0].get_cmap().name == "viridis"


def test_model_size_names_sit_in_the_legend_not_on_the_points():
    table = pd.DataFrame({"params": [4.7e6, 4.3e6], "gflops": [0.88, 0.84], "patches_per_s": [30.0, 29.0],
                          "test_srcc": [0.7, np.nan]}, index=["hyperiqa_lite0", "smart_iqa_lite0"])
    ax = training.model_size_scatter(table).axes[0]
    assert not ax.texts  # no annotations that could overprint
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert labels[0] == "hyperiqa_lite0: 4.7 M params, 30.0 patches/s, SRCC 0.700"


def test_lr_axis_shows_the_rate_that_changes():
    sweep = pd.DataFrame({"trunk_lr": [1e-4, 1e-3], "srcc": [0.5, 0.6], "model": "m", "data": "d"})
    ax = training.lr_sweep(sweep, rates=[1e-3, 1e-2], label="head (hyper network) learning rate").axes[0]
    assert ax.get_xlabel() == "head (hyper network) learning rate"
    assert list(ax.get_lines()[0].get_xdata()) == [1e-3, 1e-2]


def test_heat_maps_share_one_colour_map_and_one_scale_per_panel_type():
    rng = np.random.default_rng(0)

    def heat(scale):
        return HeatMap(image=np.zeros((8, 8, 3), np.uint8), attention_energy=scale * rng.random((8, 8)),
                       quality=10 * scale * rng.random((8, 8)), boxes=np.zeros((4, 4)), crop_scores=np.ones(4),
                       crop_weights=np.full((4, 4), 0.25))

    heatmaps = {"lowest": heat(1.0), "highest": heat(3.0)}
    selected = pd.DataFrame({"role": ["lowest", "highest"], "mos": [10.0, 90.0], "pred": [20.0, 80.0]})
    fig = attention_plots.plot_heatmaps(selected, heatmaps, "demo")
    images = [ax.get_images()[-1] for ax in fig.axes[:6] if ax.get_images()]
    energy = [im for im in images if im.get_alpha() == 0.65]
    quality = [im for im in images if im.get_alpha() is None and im.get_array().ndim == 2]
    assert len(energy) == 2 and len(quality) == 2
    assert {im.get_cmap().name for im in energy + quality} == {attention_plots.HEATMAP_CMAP} == {"viridis"}
    assert len({im.get_clim() for im in energy}) == 1 and len({im.get_clim() for im in quality}) == 1
    assert energy[0].get_clim()[1] == pytest.approx(max(h.attention_energy.max() for h in heatmaps.values()))


def test_attention_figures_and_tables_name_intervals_only_when_they_have_them():
    from iqalib.plots import attention as attention_plots

    by_round = pd.DataFrame({"n": [75, 75], "srcc": [0.3, -0.1], "low": [np.nan, np.nan], "high": [np.nan, np.nan],
                             "mean_max_weight": [0.3, 0.3], "collapsed": ["", "w2"]},
                            index=pd.Index([0, 1], name="round"))
    fig = attention_plots.plot_concentration_by_round(by_round, "demo")
    assert "no intervals: too few sources" in fig.axes[0].get_title() and "95%" not in fig.axes[0].get_title()
    with_one = by_round.assign(low=[0.1, np.nan], high=[0.5, np.nan])
    title = attention_plots.plot_concentration_by_round(with_one, "demo").axes[0].get_title()
    assert "95% intervals where the test images allow one" in title
    shown = attention_plots.format_by_round(with_one)
    assert shown["95% CI"].tolist() == ["[+0.100, +0.500]", "n/a (too few sources)"]
    assert shown["attention collapsed"].tolist() == ["no", "onto stage 2"] and shown["test images"].dtype == int
    assert "nan" not in shown.to_string().lower()
