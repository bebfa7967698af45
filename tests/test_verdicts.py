"""Every sentence rule of iqalib.analysis.verdicts fires on small synthetic numbers, and stays quiet otherwise."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

from iqalib.analysis import verdicts as v
from iqalib.analysis.selection import selection_table


def _results(name="m", rounds=((1, 4, 0.70, 0.72),), data="demo (synthetic)"):
    """A run_or_load-like dict; rounds: (best_epoch, epochs, val_srcc, test_srcc) per round."""
    round_results = [{"round": r, "best_epoch": best, "val_srcc": val, "test": {"srcc": test, "plcc": test},
                      "history": [{"epoch": e + 1} for e in range(epochs)]}
                     for r, (best, epochs, val, test) in enumerate(rounds)]
    return {"name": name, "model": name, "data": data, "rounds": len(rounds),
            "test_per_round": [{"round": r["round"], "srcc": r["test"]["srcc"], "plcc": r["test"]["plcc"]}
                               for r in round_results],
            "round_results": round_results}


# ------------------------------------------------------------------ selection and spread

def test_selection_table_reports_the_gap_of_the_selected_epoch():
    table = selection_table(_results(rounds=((2, 4, 0.28, 0.71), (3, 4, 0.76, 0.41))))
    assert table["gap"].tolist() == pytest.approx([0.28 - 0.71, 0.76 - 0.41])
    assert table["selected_epoch"].tolist() == [2, 3] and table["epochs"].tolist() == [4, 4]


def test_epoch_one_selection_fires_only_when_later_epochs_existed():
    fired = v.selection_sentences(selection_table(_results(rounds=((1, 4, 0.7, 0.7), (3, 4, 0.7, 0.7)))))
    assert any("round 0 selected epoch 1 of 4" in s for s in fired)
    quiet = v.selection_sentences(selection_table(_results(rounds=((2, 4, 0.7, 0.7), (3, 4, 0.7, 0.7)))))
    assert not any("selected epoch 1" in s for s in quiet)
    single = v.selection_sentences(selection_table(_results(rounds=((1, 1, 0.7, 0.7),))))
    one_epoch_gap = v.selection_sentences(selection_table(_results(rounds=((1, 1, 0.01, 0.34),))))
    assert any("one split's SRCC is largely noise" in s for s in one_epoch_gap)
    assert not any("selected epoch 1" in s for s in single)
    assert any("no epoch to select" in s for s in single)


def test_validation_test_gap_fires_at_the_limit():
    noisy = v.selection_sentences(selection_table(_results(rounds=((2, 4, 0.28, 0.71), (3, 4, 0.76, 0.41)))))
    assert any("disagree on the selected epoch by up to 0.43" in s and "largely noise" in s for s in noisy)
    assert any("round 0: validation 0.28, test 0.71" in s for s in noisy)
    calm = v.selection_sentences(selection_table(_results(rounds=((2, 4, 0.70, 0.75), (3, 4, 0.76, 0.70)))))
    assert not any("largely noise" in s for s in calm)
    assert any("agree within 0.06" in s for s in calm)


def test_round_spread_fires_only_when_rounds_disagree():
    assert v.spread_sentences(_results(rounds=((2, 4, 0.7, 0.30), (2, 4, 0.7, 0.65))))
    assert v.spread_sentences(_results(rounds=((2, 4, 0.7, 0.60), (2, 4, 0.7, 0.65)))) == []
    assert v.spread_sentences(_results(rounds=((2, 4, 0.7, 0.60),))) == []


def test_headline_says_one_round_has_no_spread():
    assert v.headline_sentence(_results()) == ("m on demo (synthetic): test SRCC 0.720, PLCC 0.720 "
                                               "(one round, no spread).")
    assert "2 rounds: test SRCC median 0.500 (range 0.400 to 0.600)" in v.headline_sentence(
        _results(rounds=((2, 4, 0.7, 0.4), (2, 4, 0.7, 0.6))))


def test_predictions_far_outside_the_scale():
    mos = np.linspace(0, 100, 40)
    inside = pd.DataFrame({"mos": mos, "pred": mos * 0.9 + 5})
    assert v.prediction_range_sentences(inside, (0, 100)) == []
    # 4 of 40 (10%) more than 25 points outside [0, 100]
    outside = inside.assign(pred=np.r_[[-60, -40, 140, 180], mos[4:]])
    sentence, = v.prediction_range_sentences(outside, (0, 100), "m")
    assert sentence.startswith("m: 4 of 40 test predictions (10%)")
    # just outside the scale is not "far"
    near = inside.assign(pred=np.r_[[-10, 110, 105, -5], mos[4:]])
    assert v.prediction_range_sentences(near, (0, 100)) == []


# ------------------------------------------------------------------ data

def test_few_sources_make_coarse_intervals():
    few = v.source_sentences(pd.Series(["a"] * 25 + ["b"] * 25 + ["c"] * 25), 75)[0]
    assert "75 test images come from 3 source photographs" in few and "coarse" in few
    many = v.source_sentences(pd.Series([f"s{k % 20}" for k in range(80)]), 80)[0]
    assert "20 source photographs" in many and "coarse" not in many
    assert "resample images" in v.source_sentences(None, 50)[0]


# ------------------------------------------------------------------ comparisons

def _summary(deltas, significant, a="multiscale_attention", b="hyperiqa", sign_p=np.nan, note=""):
    rounds = len(deltas)
    return {"a": a, "b": b, "metric": "srcc", "rounds": rounds, "median_delta": float(np.median(deltas)),
            "a_better": float(np.mean(np.asarray(deltas) > 0)), "rounds_significant": significant,
            "sign_p": sign_p, "wilcoxon_p": sign_p, "tests_note": note, "resampled": "by source (3 sources)"}


def test_pair_verdict_rules():
    six_wins = _summary([0.05] * 6, 1.0, sign_p=2 * 0.5**6)
    assert v.pair_verdict(six_wins) == "supported"
    six_losses = _summary([-0.05] * 6, 1.0, sign_p=2 * 0.5**6)
    assert v.pair_verdict(six_losses) == "contradicted"
    mixed = _summary([0.05, -0.02, 0.01, 0.03, -0.01, 0.02], 0.3, sign_p=0.69)
    assert v.pair_verdict(mixed) == "not supported (sign test p = 0.69)"
    note = "a sign test needs at least 6 rounds, this run has 2"
    two_clear = _summary([0.05, 0.04], 1.0, note=note)
    assert v.pair_verdict(two_clear) == f"supported in every round, untested across rounds ({note})"
    two_unclear = _summary([0.05, 0.04], 0.5, note=note)
    assert v.pair_verdict(two_unclear) == f"not supported ({note})"


def test_comparison_sentence_names_the_change_and_the_resampling():
    summary = pd.DataFrame([_summary([0.05, -0.01], 0.5, a="hyperiqa_seed_recipe", b="hyperiqa")])
    sentence, = v.comparison_sentences(summary, {"hyperiqa_seed_recipe": "(d')", "hyperiqa": "(d)"},
                                       {("hyperiqa_seed_recipe", "hyperiqa"): "the recipe"})
    assert sentence.startswith("(d') vs (d) (changes the recipe): median ΔSRCC +0.020, (d') better in 1 of 2 "
                               "rounds; bootstrap by source (3 sources): p < 0.05 in 1 of 2; verdict: not supported")


def test_recipe_sentence_fires_only_when_recipes_differ():
    table = pd.DataFrame({"model": ["x", "y"], "optimizer": ["adam", "adamw"], "head widths": ["1", "2"]},
                         index=["A", "B"])
    differ, = v.recipe_sentences(table, "A", "B")
    assert "optimizer adam vs adamw" in differ and "mixes the two" in differ
    same, = v.recipe_sentences(table.assign(optimizer="adamw"), "A", "B")
    assert "same resolved settings" in same


# ------------------------------------------------------------------ attention

def _weights(n=40, top=0.95, share=1.0):
    """w2 = top on the first share of images, uniform on the rest."""
    k = int(round(share * n))
    w = np.full((n, 4), 0.25)
    w[:k] = [(1 - top) / 3, top, (1 - top) / 3, (1 - top) / 3]
    return pd.DataFrame(w, columns=["w1", "w2", "w3", "w4"]).assign(mos=np.linspace(0, 100, n))


def test_collapsed_attention_replaces_the_verdict():
    weights = _weights(top=0.95, share=1.0)
    assert v.collapsed_stage(weights) == ("w2", 1.0)
    sentence, = v.attention_sentences(weights, None, "Supported: ...")
    assert sentence.startswith("Attention has collapsed onto stage 2") and "40 of 40" in sentence
    assert "no verdict" in sentence


def test_attention_that_varies_keeps_the_verdict():
    for weights in (_weights(top=0.85, share=1.0), _weights(top=0.95, share=0.4)):
        assert v.collapsed_stage(weights) is None
        sentences = v.attention_sentences(weights, None, "Supported: because.")
        assert sentences[0] == "Supported: because."


# ------------------------------------------------------------------ other chapters

def test_one_data_set_says_so_instead_of_a_matrix():
    one = pd.DataFrame([{"train": "demo", "test": "demo", "split": "test split", "n": 75, "srcc": 0.8, "plcc": 0.8}])
    one.attrs["skipped"] = {"livec": "not found"}
    sentence, = v.cross_dataset_sentences(one)
    assert sentence.startswith("Only demo is present on this machine (livec not found)")
    two = pd.concat([one, pd.DataFrame([{"train": "demo", "test": "livec", "split": "all images", "n": 1162,
                                         "srcc": 0.3, "plcc": 0.3}])], ignore_index=True)
    two.attrs["skipped"] = {}
    sentence, = v.cross_dataset_sentences(two)
    assert "ranks livec (all images) with SRCC 0.300, against 0.800" in sentence and "drop of 0.500" in sentence


def test_learning_rate_jump_within_a_decade():
    sweep = pd.DataFrame({"srcc": [0.13, 0.71, 0.70], "best_epoch": [1, 3, 2]})
    fired = v.lr_sentences(sweep, [1e-3, 1e-2, 1e-1], "head learning rate; trunk frozen")
    assert fired[0].startswith("Best median test SRCC 0.710 at head learning rate 0.01")
    assert any("from 0.13 (at 0.001) to 0.71 (at 0.01)" in s for s in fired)
    assert any("At 0.001 a round selected epoch 1" in s for s in fired)
    one_epoch = v.lr_sentences(sweep, [1e-3, 1e-2, 1e-1], "rate", epochs=1)
    assert not any("selected epoch 1" in s for s in one_epoch)
    calm = v.lr_sentences(sweep.assign(srcc=[0.60, 0.71, 0.70], best_epoch=3), [1e-3, 1e-2, 1e-1], "rate")
    assert not any("fragile" in s for s in calm) and any("at most 0.11" in s for s in calm)
    # two rates more than a decade apart are not "within one decade"
    far = v.lr_sentences(pd.DataFrame({"srcc": [0.13, 0.71], "best_epoch": [2, 2]}), [1e-4, 1e-2], "rate")
    assert not any("fragile" in s for s in far)


def test_cost_inconsistency_is_flagged():
    costs = pd.DataFrame({"gflops": [0.9, 31.0], "patches_per_s": [20.0, 2.0], "test_srcc": [0.7, np.nan]},
                         index=["lite0", "base"])
    sentences = v.model_size_sentences(costs)
    assert not any("Inconsistent" in s for s in sentences)
    assert any("lite0 ranks best" in s for s in sentences)
    wrong = v.model_size_sentences(costs.assign(patches_per_s=[2.0, 2.5]))
    assert any(s.startswith("Inconsistent measurement: base is measured at least as fast as lite0") for s in wrong)


def test_pipeline_above_the_model_alone_is_flagged():
    good = {"images_per_s": {"one_at_a_time": 2.0, "score_paths": 2.5}, "forward_only_images_per_s": 3.0}
    sentences = v.performance_sentences(good)
    assert sentences[0].startswith("Scoring reaches 2.50 images/s")
    assert sentences[1] == "Streaming is 1.25x the naive loop on this machine (faster)."
    slower = {"images_per_s": {"one_at_a_time": 2.0, "score_paths": 1.6, "score_paths_small_batch": 1.9},
              "forward_only_images_per_s": 3.0}
    assert v.performance_sentences(slower)[1].startswith("Streaming is 0.80x the naive loop on this machine "
                                                         "(slower); with a batch of one image's crops it scores 1.90")
    bad = {"images_per_s": {"one_at_a_time": 2.75, "score_paths": 2.25}, "forward_only_images_per_s": 1.68}
    assert v.performance_sentences(bad)[0].startswith("Inconsistent measurement: one_at_a_time and score_paths are")
    engine = pd.DataFrame({"max loader wait": [0.002, 0.001]})
    assert "0.20% of any epoch" in v.performance_sentences(None, engine)[1]


# ------------------------------------------------------------------ the claims table

def test_claims_are_recorded_by_chapters_and_collected(tmp_path):
    rows = v.pair_claim_rows(pd.DataFrame([_summary([0.05, 0.04], 1.0, note="n")]))
    assert rows[0]["claim"] == "smart_vs_hyperiqa" and rows[0]["verdict"].startswith("supported in every round")
    v.record_claims(tmp_path, "04_smart_iqa", rows)
    table = v.claims_table(tmp_path, link=lambda stem: f"[{stem}]({stem}.ipynb)")
    assert len(table) == len(v.CLAIMS)
    first = table.iloc[0]
    assert first["chapter"] == "[04_smart_iqa](04_smart_iqa.ipynb)" and "0.9378" in first["seed (SMART-IQA report)"]
    assert first["this edition"] == "median ΔSRCC +0.045 over 2 rounds"
    assert (table["verdict"].iloc[1:] == "untested").all()
    assert v.summary_sentences(table) == [f"This edition tests 1 of the book's {len(v.CLAIMS)} claims: "
                                          "1 supported."]
    assert json.loads((tmp_path / "claims" / "04_smart_iqa.json").read_text())["chapter"] == "04_smart_iqa"
    with pytest.raises(KeyError, match="unknown claim"):
        v.claim_row("nonsense", "", "")


def test_transfer_lr_and_attention_claims():
    one = pd.DataFrame([{"train": "demo", "test": "demo", "split": "test split", "n": 75, "srcc": 0.8, "plcc": 0.8}])
    assert v.transfer_claim(one)["verdict"] == "untested (one data set)"
    two = pd.concat([one, pd.DataFrame([{"train": "demo", "test": "livec", "split": "all", "n": 9, "srcc": 0.7,
                                         "plcc": 0.7}])], ignore_index=True)
    assert v.transfer_claim(two)["verdict"] == "supported"
    assert v.transfer_claim(two.assign(srcc=[0.8, 0.3]))["verdict"].startswith("not supported (drop 0.50")
    sweep = pd.DataFrame({"srcc": [0.13, 0.71], "best_epoch": [2, 2]})
    assert v.lr_claim(sweep, [1e-3, 1e-2])["verdict"] == "contradicted (SRCC moves 0.58 within one decade)"
    assert v.lr_claim(sweep.assign(srcc=[0.65, 0.71]), [1e-3, 1e-2])["verdict"].startswith("supported")
    assert v.lr_claim(sweep, [1e-4, 1e-2])["verdict"] == "untested (no two rates within one decade)"

    class Stats:
        alpha, n_images = 0.05, 40
        correlations = pd.DataFrame({"srcc": [0.3], "low": [0.1], "high": [0.5]}, index=["concentration"])

    assert v.attention_claim(_weights(top=0.5, share=1.0), Stats)["verdict"] == "supported"
    assert v.attention_claim(_weights(top=0.95, share=1.0), Stats)["verdict"] == \
        "untested (attention collapsed onto stage 2)"
    assert v.cross_dataset_view(two) is two and v.cross_dataset_view(one) is None


def test_inference_slower_than_training_is_flagged():
    costs = pd.DataFrame({"gflops": [9.1], "patches_per_s": [2.0]}, index=["smart_iqa_tiny"])
    assert any("trains at 2.8 patches/s" in s for s in v.model_size_sentences(costs, train_rates={"smart_iqa_tiny": 2.8}))
    assert not any("Inconsistent" in s for s in v.model_size_sentences(costs, train_rates={"smart_iqa_tiny": 1.0}))


def test_attention_verdict_resamples_sources_when_the_images_share_them():
    from iqalib.analysis.attention import weights_vs_mos

    n = 60
    mos = np.linspace(0, 100, n)
    peak = 0.3 + 0.6 * mos / 100  # concentration rises with MOS
    rest = (1 - peak) / 3
    weights = pd.DataFrame({"image": [f"img{k}" for k in range(n)], "mos": mos, "w1": rest, "w2": peak,
                            "w3": rest, "w4": rest})
    statistics = weights_vs_mos(weights, n_boot=200)
    groups = {f"img{k}": f"photo{k % 6}" for k in range(n)}
    sentences = v.attention_sentences(weights, statistics, "Supported: by image.", groups)
    assert sentences[0].startswith("Resampled by source (6 sources)") and "the seed's claim is supported" in sentences[0]
    assert sentences[1].endswith("Supported: by image.")
    claim = v.attention_claim(weights, statistics, groups)
    assert "(by source (6 sources))" in claim["edition"] and claim["verdict"] == "supported"
    # without shared sources: the image interval, said so
    assert v.attention_sentences(weights, statistics, "Supported: by image.")[1] == (
        "The bootstrap interval resamples the 60 test images one by one.")
    assert "(by image)" in v.attention_claim(weights, statistics)["edition"]
