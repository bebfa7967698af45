"""The loss chapter's library: run configurations, label noise, verdicts and closing sentences (no training)."""
from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
from scipy.stats import norm

from iqalib.analysis import loss_study as study
from iqalib.analysis.ablation import ablation_configs
from iqalib.analysis.significance import MIN_ROUNDS_FOR_TESTS
from iqalib.data.table import IQATable
from iqalib.engine.provenance import fingerprint
from iqalib.errors import ConfigError, DataError

COMMON = dict(dataset="demo", split_seed=0, fractions=[0.5, 0.25, 0.25], seed=0, device="cpu", rounds=2,
              epochs=4, batch_size=32, train_patches=2, test_patches=2, trunk_lr=1e-3, freeze_backbone=True,
              progress=False)


def test_loss_configs_reuse_the_ablation_run_for_l1_and_name_the_others(tmp_path):
    configs = study.loss_configs(["l1", "ranking", "l1+rank"], out_dir=tmp_path,
                                 loss_options={"ranking": {"margin": 2.0}}, **COMMON)
    reference = ablation_configs(out_dir=tmp_path, **COMMON)["multiscale_attention"]
    assert fingerprint(configs["l1"]) == fingerprint(reference)  # chapter 4/5's run, read back
    assert configs["ranking"].name == "smart_iqa_lite0_loss_ranking"
    assert configs["l1+rank"].name == "smart_iqa_lite0_loss_l1_plus_rank"
    assert (configs["ranking"].train.loss, configs["ranking"].train.loss_options) == ("ranking", {"margin": 2.0})
    # Everything else is the reference's: same data, split, trunk, epochs, seed.
    assert replace(configs["ranking"].train, loss=None, loss_options={}) == reference.train
    assert configs["ranking"].data == reference.data and configs["ranking"].model == reference.model


@pytest.mark.parametrize("losses, options, error, message", [
    (["l1", "rankng"], None, ConfigError, "did you mean 'ranking'"),
    (["ranking"], None, DataError, "compares against 'l1'"),
    (["l1", "ranking"], {"fidelity": {"sigma": 3}}, DataError, "does not train: ['fidelity']"),
    (["l1", "ranking"], {"ranking": {"margn": 3}}, ConfigError, "has no option 'margn'"),
])
def test_loss_configs_refuse_bad_lists_and_options(tmp_path, losses, options, error, message):
    with pytest.raises(error, match=message.replace("(", r"\(").replace("[", r"\[")):
        study.loss_configs(losses, out_dir=tmp_path, loss_options=options, **COMMON)


def test_fidelity_scale_comes_from_the_table_unless_set():
    noise = {"median_rater_std": 19.4991}
    assert study.study_loss_options(["l1", "fidelity"], {}, noise) == {"fidelity": {"sigma": 19.499}}
    assert study.study_loss_options(["l1", "fidelity"], {"fidelity": {"sigma": 5}}, noise) == {
        "fidelity": {"sigma": 5}}
    assert study.study_loss_options(["l1", "fidelity"], {}, {"median_rater_std": float("nan")}) == {}
    assert study.study_loss_options(["l1", "ranking"], {}, noise) == {}


def make_table(mos, std):
    frame = pd.DataFrame({"image": [f"{i}.png" for i in range(len(mos))], "mos": mos, "std": std,
                          "split": None, "group": None})
    return IQATable("toy", root=".", frame=frame, mos_range=(0.0, 100.0))


def test_label_noise_matches_a_loop_over_all_pairs():
    rng = np.random.default_rng(0)
    mos, std = rng.uniform(0, 100, 40), rng.uniform(5, 20, 40)
    # Sampling many more pairs than exist approaches the mean over ordered pairs i != j.
    noise = study.label_noise(make_table(mos, std), max_pairs=400_000)
    slow = np.mean([norm.cdf(-abs(mos[i] - mos[j]) / math.hypot(std[i], std[j]))
                    for i in range(40) for j in range(40) if i != j])
    assert noise["pair_disagreement"] == pytest.approx(slow, rel=0.01)
    assert noise["rater_spread"] == pytest.approx(np.median(std) / np.std(mos, ddof=1))
    assert noise["median_rater_std"] == pytest.approx(np.median(std))
    unknown = study.label_noise(make_table(mos, np.full(40, np.nan)))
    assert math.isnan(unknown["pair_disagreement"]) and unknown["with_std"] == 0


def summary(deltas: dict, rounds: int, p: float):
    """compare_runs-like rows against L1: every round moves the way of its median ``d``."""
    p = p if rounds >= MIN_ROUNDS_FOR_TESTS else np.nan
    return pd.DataFrame([{"a": a, "b": "l1", "metric": "srcc", "rounds": rounds, "median_delta": d,
                          "mean_delta": d, "won": rounds if d > 0 else 0, "lost": rounds if d < 0 else 0,
                          "wilcoxon_p": p, "sign_p": min(1.0, 2 * p)} for a, d in deltas.items()])


@pytest.mark.parametrize("deltas, p, start", [
    ({"fidelity": -0.01, "soft_srcc": -0.02, "ranking": -0.03}, 0.01, "Supported:"),
    ({"fidelity": -0.01, "soft_srcc": -0.02, "ranking": -0.03}, 0.4, "Not supported:"),
    ({"fidelity": 0.01, "soft_srcc": 0.02, "ranking": 0.03}, 0.01, "Contradicted:"),
])
def test_seed_claim_verdict_follows_the_paired_tests(deltas, p, start):
    verdict = study.seed_claim_verdict(summary(deltas, 10, p))
    assert verdict.startswith(start)
    assert f"ranking {deltas['ranking']:+.2f}" in verdict
    assert f"p = {p:.3g} (sign test {min(1.0, 2 * p):.3g})" in verdict


def test_seed_claim_verdict_partly_and_mixed_and_untested():
    rows = summary({"fidelity": -0.01, "soft_srcc": -0.02, "ranking": 0.03}, 10, 0.01)
    rows.loc[rows["a"] == "fidelity", "wilcoxon_p"] = 0.5
    assert study.seed_claim_verdict(rows).startswith("Mixed: soft_srcc below L1, ranking above it")
    rows.loc[rows["a"] == "ranking", "wilcoxon_p"] = 0.5
    assert study.seed_claim_verdict(rows).startswith("Partly supported: soft_srcc")
    few = study.seed_claim_verdict(summary({"fidelity": -0.01, "soft_srcc": -0.02, "ranking": -0.03}, 2, 0.01))
    assert few.startswith("Untested: 2 rounds are too few for the book's rule") and "lean towards it" in few
    assert "lean against it" in study.seed_claim_verdict(summary({"ranking": 0.02}, 2, 0.01))
    assert study.seed_claim_verdict(summary({"mse": 0.02}, 10, 0.01)).startswith("Untested: no rank-based")


def test_noisy_labels_verdict_needs_two_data_sets_and_follows_their_order():
    one = pd.DataFrame([{"data": "livec", "rank_loss_gain": 0.01, "pair_disagreement": 0.25}])
    assert study.noisy_labels_verdict(one).startswith("Untested: loss runs with label-noise figures exist "
                                                      "for livec only")
    two = pd.concat([one, pd.DataFrame([{"data": "demo", "rank_loss_gain": -0.02,
                                         "pair_disagreement": 0.16}])])
    verdict = study.noisy_labels_verdict(two)
    assert verdict.startswith("Consistent with the guess") and "one observation each, not a test" in verdict
    two.loc[two["data"] == "demo", "rank_loss_gain"] = 0.05
    assert study.noisy_labels_verdict(two).startswith("Against the guess")


def test_studies_are_saved_and_read_back_across_profiles(tmp_path):
    tests = summary({"fidelity": -0.01, "ranking": 0.03, "mse": 0.5}, 2, np.nan)
    study.save_study(tmp_path / "a", profile="demo", data_label="demo (synthetic)", dataset="demo",
                     summary=tests, noise={"pair_disagreement": 0.16, "rater_spread": 0.5}, rounds=2)
    studies = study.read_studies({"demo": tmp_path / "a", "livec": tmp_path / "missing"})
    assert len(studies) == 1
    row = studies.iloc[0]
    assert row["rank_loss_gain"] == pytest.approx(0.01)  # the mean of fidelity and ranking, not mse
    assert row["pair_disagreement"] == 0.16 and row["profile"] == "demo"


def test_noise_sentence_orders_the_sets_and_checks_the_livec_premise():
    table = pd.DataFrame({"data": ["livec", "koniq10k"], "pair_disagreement": [0.245, 0.264]},
                         index=pd.Index(["livec", "koniq10k"], name="set"))
    sentence = study.noise_sentence(table)
    assert sentence.startswith("Rater disagreement per pair of images, from the noisiest labels down: "
                               "koniq10k 0.264, livec 0.245")
    assert "LIVE-C's labels are not noisier than KonIQ-10k's" in sentence


def loss_table(**overrides):
    rows = {
        "l1": dict(family="regression", scores="mos", srcc_median=0.80, srcc_iqr=0.02, plcc_median=0.80,
                   plcc_logistic_median=0.81, off_scale=0.0, pred_min=5, pred_max=95, max_diff_to_l1=0.0),
        "smooth_l1": dict(family="regression", scores="mos", srcc_median=0.80, srcc_iqr=0.02,
                          plcc_median=0.80, plcc_logistic_median=0.81, off_scale=0.0, pred_min=5, pred_max=95,
                          max_diff_to_l1=0.0),
        "soft_srcc": dict(family="rank", scores="free", srcc_median=0.85, srcc_iqr=0.02, plcc_median=0.70,
                          plcc_logistic_median=0.84, off_scale=0.5, pred_min=-300, pred_max=200,
                          max_diff_to_l1=400.0),
    }
    frame = pd.DataFrame.from_dict(rows, orient="index").assign(rounds=10)
    frame["srcc_min"], frame["srcc_max"] = frame["srcc_median"] - 0.05, frame["srcc_median"] + 0.05
    for key, value in overrides.items():
        frame.loc[key[0], key[1]] = value
    return frame


def test_what_the_numbers_say_names_the_best_loss_what_went_wrong_and_twins():
    tests = summary({"smooth_l1": 0.0, "soft_srcc": 0.05}, 10, 0.01)
    tests.loc[tests["a"] == "smooth_l1", "wilcoxon_p"] = 1.0
    sentences = study.what_the_numbers_say(loss_table(), tests, data_label="livec")
    text = " ".join(sentences)
    assert sentences[0] == ("On livec, soft_srcc has the highest median test SRCC (0.850) and l1 the lowest "
                            "(0.800), over 10 rounds.")
    assert "smooth_l1 trained the same model as L1" in text
    assert ("Each loss against L1, paired by split (median ΔSRCC over rounds, rounds above L1, the book's verdict "
            "on \"beats L1\"): smooth_l1 +0.000, above L1 in 0 of 10 rounds, no difference shown (signed-rank test p = "
            "1.00; 0 of 10 rounds for it, 0 against); soft_srcc +0.050, above L1 in 10 of 10 rounds, better than "
            "L1.") in text
    assert "rounds_significant" not in text
    assert "their RMSE against the MOS means nothing" in text and text.count("soft_srcc fix") == 1
    assert ("What went wrong: 1 loss(es) predict 5% or more of the test scores more than 25% of the MOS "
            "scale outside it, soft_srcc most often (50% of them, from -300 to 200)") in text
    assert "soft_srcc (+0.140)" in text  # the logistic map straightens its scores


def test_claim_rows_for_the_summary():
    tests = summary({"fidelity": -0.01, "soft_srcc": -0.02, "ranking": -0.03}, 10, 0.01)
    studies = pd.DataFrame([{"data": "livec", "rank_loss_gain": 0.01, "pair_disagreement": 0.25},
                            {"data": "demo (synthetic)", "rank_loss_gain": -0.02, "pair_disagreement": 0.16}])
    claim, noisy = study.loss_claim_rows(tests, studies)
    assert claim == {"claim": "regression_beats_rank", "verdict": "supported",
                     "edition": "median ΔSRCC vs L1 (paired by split) fidelity -0.010, soft_srcc -0.020, "
                                "ranking -0.030 over 10 rounds"}
    assert noisy == {"claim": "rank_losses_noisy_labels",
                     "verdict": "untested (consistent with the guess, but 2 data sets are 2 observations, not a test)",
                     "edition": "livec: rater disagreement 0.250, rank-loss gain +0.010; demo (synthetic): "
                                "rater disagreement 0.160, rank-loss gain -0.020"}
    few = study.loss_claim_rows(summary({"ranking": -0.03}, 2, 0.01), studies.iloc[:1])
    assert few[0]["verdict"] == "untested (2 rounds; the rule needs 6)"
    assert few[1]["verdict"] == ("untested (label noise and a loss study for one data set; the guess compares "
                                 "data sets of different label noise)")
    from iqalib.analysis.claims import CLAIMS

    assert CLAIMS[claim["claim"]][1] == CLAIMS[noisy["claim"]][1] == "06_losses"  # the summary table lists both


def test_closing_sentence_compares_each_loss_with_l1_paired_by_round():
    """The issue's case: three rounds; soft SRCC is above L1 in every round, its median 0.304 above."""
    per_round = pd.DataFrame({"round": [0, 1, 2], "l1": [0.30, 0.55, 0.42], "soft_srcc": [0.70, 0.62, 0.72],
                              "mse": [0.31, 0.50, 0.43]})
    rows = []
    for name in ("mse", "soft_srcc"):
        deltas = per_round[name] - per_round["l1"]  # by hand: mse +0.01, -0.05, +0.01; soft +0.40, +0.07, +0.30
        rows.append({"a": name, "b": "l1", "metric": "srcc", "rounds": 3, "median_delta": float(np.median(deltas)),
                     "won": int((deltas > 0).sum()), "lost": int((deltas < 0).sum()), "wilcoxon_p": np.nan})
    sentence = study.losses_vs_l1_sentence(pd.DataFrame(rows))
    assert sentence == ("Each loss against L1, paired by split (median ΔSRCC over rounds, rounds above L1, the "
                        "book's verdict on \"beats L1\"): mse +0.010, above L1 in 2 of 3 rounds; soft_srcc +0.300, "
                        "above L1 in 3 of 3 rounds; by the book's rule every comparison is untested (3 rounds; the "
                        "rule needs 6).")
