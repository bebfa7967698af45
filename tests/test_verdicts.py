"""Every closing-sentence rule (each kept with its topic under iqalib.analysis) fires on small synthetic numbers,
and stays quiet otherwise."""
from __future__ import annotations

import itertools
import json
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from iqalib.analysis.ablation import pair_claim_rows
from iqalib.analysis.attention import collapsed_stage
from iqalib.analysis.attention_verdicts import attention_claim, attention_round_sentences, attention_sentences
from iqalib.analysis.claims import CLAIMS, claim_row, claims_table, record_claims, summary_sentences
from iqalib.analysis.cross_dataset import cross_dataset_sentences, cross_dataset_view, transfer_claim
from iqalib.analysis.dataset import source_sentences
from iqalib.analysis.linear_probe import probe_sentences
from iqalib.analysis.lr_sweep import lr_claim, lr_moves, lr_sentences
from iqalib.analysis.model_size import model_size_sentences
from iqalib.analysis.performance import performance_sentences, precision_sentences
from iqalib.analysis.recipes import recipe_sentences
from iqalib.analysis.runs import ceiling_sentences, headline_sentence, prediction_range_sentences, spread_sentences
from iqalib.analysis.selection import selection_sentences, selection_table
from iqalib.analysis.significance import (MIN_ROUNDS_FOR_TESTS, comparison_claim, comparison_sentences, decide,
                                          decision_rule, medians_disagree, pair_verdict, signed_rank_test)


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
    fired = selection_sentences(selection_table(_results(rounds=((1, 4, 0.7, 0.7), (3, 4, 0.7, 0.7)))))
    assert any("round 0 selected epoch 1 of 4" in s for s in fired)
    quiet = selection_sentences(selection_table(_results(rounds=((2, 4, 0.7, 0.7), (3, 4, 0.7, 0.7)))))
    assert not any("selected epoch 1" in s for s in quiet)
    single = selection_sentences(selection_table(_results(rounds=((1, 1, 0.7, 0.7),))))
    one_epoch_gap = selection_sentences(selection_table(_results(rounds=((1, 1, 0.01, 0.34),))))
    assert any("one split's SRCC is largely noise" in s for s in one_epoch_gap)
    assert not any("selected epoch 1" in s for s in single)
    assert any("no epoch to select" in s for s in single)


def test_validation_test_gap_fires_at_the_limit():
    noisy = selection_sentences(selection_table(_results(rounds=((2, 4, 0.28, 0.71), (3, 4, 0.76, 0.41)))))
    assert any("disagree on the selected epoch by up to 0.43" in s and "largely noise" in s for s in noisy)
    assert any("round 0: validation 0.28, test 0.71" in s for s in noisy)
    calm = selection_sentences(selection_table(_results(rounds=((2, 4, 0.70, 0.75), (3, 4, 0.76, 0.70)))))
    assert not any("largely noise" in s for s in calm)
    assert any("agree within 0.06" in s for s in calm)


def test_round_spread_fires_only_when_rounds_disagree():
    assert spread_sentences(_results(rounds=((2, 4, 0.7, 0.30), (2, 4, 0.7, 0.65))))
    assert spread_sentences(_results(rounds=((2, 4, 0.7, 0.60), (2, 4, 0.7, 0.65)))) == []
    assert spread_sentences(_results(rounds=((2, 4, 0.7, 0.60),))) == []


def test_headline_says_one_round_has_no_spread():
    assert headline_sentence(_results()) == ("m on demo (synthetic): test SRCC 0.720, PLCC 0.720 "
                                               "(one round, no spread).")
    assert "2 rounds: test SRCC median 0.500 (range 0.400 to 0.600)" in headline_sentence(
        _results(rounds=((2, 4, 0.7, 0.4), (2, 4, 0.7, 0.6))))


def test_predictions_far_outside_the_scale():
    mos = np.linspace(0, 100, 40)
    inside = pd.DataFrame({"mos": mos, "pred": mos * 0.9 + 5})
    assert prediction_range_sentences(inside, (0, 100)) == []
    # 4 of 40 (10%) more than 25 points outside [0, 100]
    outside = inside.assign(pred=np.r_[[-60, -40, 140, 180], mos[4:]])
    sentence, = prediction_range_sentences(outside, (0, 100), "m")
    assert sentence.startswith("m: 4 of 40 test predictions (10%)")
    # just outside the scale is not "far"
    near = inside.assign(pred=np.r_[[-10, 110, 105, -5], mos[4:]])
    assert prediction_range_sentences(near, (0, 100)) == []


# ------------------------------------------------------------------ data

def test_few_sources_make_coarse_intervals():
    few = source_sentences(pd.Series(["a"] * 25 + ["b"] * 25 + ["c"] * 25), 75)[0]
    assert "75 test images come from 3 source photographs" in few and "coarse" in few
    many = source_sentences(pd.Series([f"s{k % 20}" for k in range(80)]), 80)[0]
    assert "20 source photographs" in many and "coarse" not in many
    assert "resample images" in source_sentences(None, 50)[0]


# ------------------------------------------------------------------ comparisons

def exact_signed_rank_p(values) -> float:
    """Two-sided exact Wilcoxon signed-rank p re-derived by enumerating every sign pattern (no ties, no zeros)."""
    values = np.asarray(values, dtype=float)
    ranks = stats.rankdata(np.abs(values))
    observed = ranks[values > 0].sum()
    signs = np.array(list(itertools.product([0, 1], repeat=len(values))))
    w_plus = signs @ ranks
    return min(1.0, 2 * min((w_plus <= observed).mean(), (w_plus >= observed).mean()))


def test_the_rules_test_matches_an_exact_enumeration():
    rng = np.random.default_rng(5)
    for n in (6, 7, 10):
        for _ in range(5):
            values = rng.normal(0.02, 0.03, n)
            assert signed_rank_test(values)[0] == pytest.approx(exact_signed_rank_p(values))
    assert signed_rank_test([0.01] * 5) == (pytest.approx(np.nan, nan_ok=True),
                                             "a Wilcoxon test needs at least 6 rounds, this run has 5")
    assert signed_rank_test([0.0] * 6) == (1.0, "")


def _summary(deltas, significant, a="multiscale_attention", b="hyperiqa", sign_p=np.nan, note=""):
    rounds = len(deltas)
    return {"a": a, "b": b, "metric": "srcc", "rounds": rounds, "median_delta": float(np.median(deltas)),
            "a_better": float(np.mean(np.asarray(deltas) > 0)), "won": int((np.asarray(deltas) > 0).sum()),
            "lost": int((np.asarray(deltas) < 0).sum()), "rounds_significant": significant,
            "sign_p": sign_p, "wilcoxon_p": sign_p, "tests_note": note, "resampled": "by source (3 sources)"}


def test_pair_verdict_rules():
    six_wins = _summary([0.05] * 6, 1.0, sign_p=2 * 0.5**6)
    assert pair_verdict(six_wins) == "supported"
    six_losses = _summary([-0.05] * 6, 1.0, sign_p=2 * 0.5**6)
    assert pair_verdict(six_losses) == "contradicted"
    mixed = _summary([0.05, -0.02, 0.01, 0.03, -0.01, 0.02], 0.3, sign_p=0.69)
    assert pair_verdict(mixed) == "not supported (signed-rank test p = 0.69; 4 of 6 rounds for it, 2 against)"
    # fewer rounds than the rule needs: untested, however clearly every round went (one rule everywhere)
    two_clear = _summary([0.05, 0.04], 1.0, note="n")
    assert pair_verdict(two_clear) == "untested (2 rounds; the rule needs 6)"
    five_wins = decide([0.05] * 5)
    assert five_wins["verdict"] == "untested (5 rounds; the rule needs 6)" and five_wins["won"] == 5


def test_decide_is_a_signed_rank_test_of_the_paired_differences_and_the_rule_is_stated_once():
    # one narrow contrary round among seven: the signed-rank test (rank 1 against) finds the claim, p = 4 / 2**7,
    # where a sign test (6 of 7, p = 0.125) would not: the rule weighs each round by its size
    deltas = [0.03, 0.02, -0.005, 0.04, 0.05, 0.011, 0.021]
    decision = decide(deltas)
    assert decision["p"] == pytest.approx(exact_signed_rank_p(deltas)) and decision["p"] == pytest.approx(4 / 2**7)
    assert decision["sign_p"] == pytest.approx(stats.binomtest(6, 7).pvalue)
    assert decision["verdict"] == "supported"
    # the same directions with a large contrary round: not supported
    large = [0.03, 0.02, -0.06, 0.04, 0.05, 0.011, 0.021]
    assert decide(large)["p"] == pytest.approx(exact_signed_rank_p(large))
    assert decide(large)["verdict"] == (f"not supported (signed-rank test p = {exact_signed_rank_p(large):.2f}; "
                                        "6 of 7 rounds for it, 1 against)")
    assert decide([0.01] * 7)["verdict"] == "supported"
    # for RMSE a negative difference is for the claim
    assert decide([-0.5] * 6, lower_is_better=True)["verdict"] == "supported"
    rule = decision_rule()
    assert "paired difference" in rule and "Wilcoxon signed-rank test" in rule
    assert f"fewer than {MIN_ROUNDS_FOR_TESTS}" in rule


def test_paired_median_and_difference_of_medians_can_disagree_and_the_claim_says_both():
    # Three splits; A wins two by 0.2 and loses the middle one. Per-round differences +0.2, -0.094, +0.2:
    # their median is +0.2, while the medians of the arms (0.556 vs 0.650) differ by -0.094.
    a, b = [0.50, 0.556, 0.90], [0.30, 0.650, 0.70]
    deltas = np.subtract(a, b)
    assert np.median(deltas) == pytest.approx(0.2) and np.median(a) - np.median(b) == pytest.approx(-0.094)
    clause = medians_disagree(float(np.median(deltas)), float(np.median(a)), float(np.median(b)))
    assert "0.556 - 0.650 = -0.094" in clause and "ΔSRCC (+0.200)" in clause and "different splits" in clause
    assert medians_disagree(0.2, 0.7, 0.5) == ""  # same sign: nothing to explain
    results = lambda name, values: {"name": name, "test_per_round": [{"srcc": v} for v in values]}  # noqa: E731
    row = {**_summary(list(deltas), np.nan), "median_delta": float(np.median(deltas))}
    claim = comparison_claim("smart_vs_hyperiqa", row, results("smart", a), results("hyper", b))
    assert "median ΔSRCC +0.200 (paired by split) over 3 rounds" in claim["edition"]
    assert "the medians differ the other way" in claim["edition"]
    assert claim["verdict"] == "untested (3 rounds; the rule needs 6)"


def test_comparison_sentence_names_the_change_and_the_resampling():
    summary = pd.DataFrame([_summary([0.05, -0.01], 0.5, a="hyperiqa_seed_recipe", b="hyperiqa")])
    sentence, = comparison_sentences(summary, {"hyperiqa_seed_recipe": "(d')", "hyperiqa": "(d)"},
                                       {("hyperiqa_seed_recipe", "hyperiqa"): "the recipe"})
    assert sentence == ("(d') vs (d) (changes the recipe): median ΔSRCC +0.020 (paired by split), (d') better in "
                        "1 of 2 rounds; within a round (bootstrap by source (3 sources)) p < 0.05 in 1 of 2; "
                        "verdict: untested (2 rounds; the rule needs 6).")


def test_recipe_sentence_fires_only_when_recipes_differ():
    table = pd.DataFrame({"model": ["x", "y"], "optimizer": ["adam", "adamw"], "head widths": ["1", "2"]},
                         index=["A", "B"])
    differ, = recipe_sentences(table, "A", "B")
    assert "optimizer adam vs adamw" in differ and "mixes the two" in differ
    same, = recipe_sentences(table.assign(optimizer="adamw"), "A", "B")
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
    assert collapsed_stage(weights) == ("w2", 1.0)
    sentence, = attention_sentences(weights, None, "Supported: ...")
    assert sentence.startswith("Attention has collapsed onto stage 2") and "40 of 40" in sentence
    assert "no verdict" in sentence


def test_attention_that_varies_keeps_the_verdict():
    for weights in (_weights(top=0.85, share=1.0), _weights(top=0.95, share=0.4)):
        assert collapsed_stage(weights) is None
        statistics = SimpleNamespace(resampling="by image (60 images)")
        sentences = attention_sentences(weights, statistics, "Supported: because.")
        assert sentences[0] == "Supported: because." and "by image (60 images)" in sentences[1]


# ------------------------------------------------------------------ other chapters

def test_one_data_set_says_so_instead_of_a_matrix():
    one = pd.DataFrame([{"train": "demo", "test": "demo", "split": "test split", "n": 75, "srcc": 0.8, "plcc": 0.8}])
    one.attrs["skipped"] = {"livec": "not found"}
    sentence, = cross_dataset_sentences(one)
    assert sentence.startswith("Only demo is present on this machine (livec not found)")
    two = pd.concat([one, pd.DataFrame([{"train": "demo", "test": "livec", "split": "all images", "n": 1162,
                                         "srcc": 0.3, "plcc": 0.3}])], ignore_index=True)
    two.attrs["skipped"] = {}
    sentence, = cross_dataset_sentences(two)
    assert "ranks livec (all images) with SRCC 0.300, against 0.800" in sentence and "drop of 0.500" in sentence


def _three_rounds(srcc, rates, best_epoch=3):
    """A sweep with the same SRCC in each of 3 rounds per rate (rounds repeat the rate list)."""
    return pd.DataFrame({"srcc": list(srcc) * 3, "best_epoch": best_epoch}), list(rates) * 3


def test_learning_rate_jump_within_a_decade():
    sweep, rates = _three_rounds([0.13, 0.71, 0.70], [1e-3, 1e-2, 1e-1])
    sweep["best_epoch"] = [1, 3, 2] * 3
    fired = lr_sentences(sweep, rates, "head learning rate; trunk frozen")
    assert fired[0].startswith("Best median test SRCC 0.710 at head learning rate 0.01")
    assert any("from 0.001 to 0.01 the rate moves SRCC by +0.580" in s and "the same way in 3 of 3 rounds; the "
               "book's rule needs 6 rounds, so this step is untested" in s for s in fired)
    assert not any("training is fragile" in s for s in fired)  # 3 rounds: one rule, untested
    assert fired[-1] == ("By the book's rule, the claim that training is not fragile in its learning rate is "
                         "untested (3 rounds; the rule needs 6).")
    assert any("At 0.001 a round selected epoch 1" in s for s in fired)
    one_epoch = lr_sentences(sweep, rates, "rate", epochs=1)
    assert not any("selected epoch 1" in s for s in one_epoch)
    # one round per rate: the jump is reported, but not read as the rate's
    single = lr_sentences(sweep.iloc[:3], rates[:3], "rate")
    assert any("the same way in 1 of 1 round; the book's rule needs 6" in s for s in single)
    assert not any("training is fragile" in s for s in single)
    calm = lr_sentences(sweep.assign(srcc=[0.70, 0.71, 0.70] * 3, best_epoch=3), rates, "rate")
    assert not any("training is fragile" in s for s in calm) and any("at most 0.010" in s for s in calm)
    # two rates more than a decade apart are not "within one decade"
    far = lr_sentences(pd.DataFrame({"srcc": [0.13, 0.71], "best_epoch": [2, 2]}), [1e-4, 1e-2], "rate")
    assert not any("training is fragile" in s for s in far) and any("No two swept rates" in s for s in far)


def test_learning_rate_steps_are_paired_by_round_and_match_a_direct_computation():
    rng = np.random.default_rng(3)
    rates = [1e-4, 3e-4, 1e-3, 1e-1]
    split = rng.uniform(0.5, 0.9, 7)  # each round's split moves every rate alike
    effect = {1e-4: 0.0, 3e-4: 0.01, 1e-3: -0.08, 1e-1: 0.0}
    rows = [{"trunk_lr": r, "round": k, "srcc": split[k] + effect[r] + rng.normal(0, 0.004), "best_epoch": 3}
            for r in rates for k in range(7)]
    sweep = pd.DataFrame(rows).sample(frac=1, random_state=0)  # row order must not matter
    moves = lr_moves(sweep, sweep["trunk_lr"])
    assert [(m.a, m.b) for m in moves.itertuples()] == [(1e-4, 3e-4), (3e-4, 1e-3)]  # 1e-3 -> 1e-1: two decades
    wide = sweep.pivot(index="round", columns="trunk_lr", values="srcc")
    for move in moves.itertuples():
        diffs = (wide[move.b] - wide[move.a]).to_numpy()
        assert move.delta == pytest.approx(np.median(diffs))
        assert move.p == pytest.approx(exact_signed_rank_p(diffs))
    assert moves["fragile"].tolist() == [False, True]  # +0.01 is below LR_JUMP; -0.08 in 7 of 7 rounds
    assert moves["small"].tolist() == [True, False]  # every round's +0.01 move is below LR_JUMP: p = 0.016
    claim = lr_claim(sweep, sweep["trunk_lr"])["verdict"]
    assert claim.startswith("contradicted (from 0.0003 to 0.001 SRCC moves -0.0") and "7 of 7 rounds" in claim
    assert "signed-rank test p = 0.016" in claim
    calm = sweep.assign(srcc=sweep["srcc"] - sweep["trunk_lr"].map(effect))  # no effect: every step small
    assert lr_claim(calm, calm["trunk_lr"])["verdict"].startswith("supported (every step within one decade")


def test_learning_rate_step_that_the_rounds_disagree_on_is_not_read_as_the_rates():
    # 7 rounds: +0.2 in 5, -0.2 in 2 (all tied in size) -> median +0.2, signed-rank test p = 0.45 (normal
    # approximation: tied sizes): the rule finds no move
    up, down = [0.5, 0.7], [0.7, 0.5]
    sweep = pd.DataFrame({"srcc": up * 5 + down * 2, "round": np.repeat(range(7), 2), "best_epoch": 3})
    rates = [1e-3, 1e-2] * 7
    moves = lr_moves(sweep, rates)
    assert moves.loc[0, "same_way"] == 5 and not moves.loc[0, "fragile"] and not moves.loc[0, "small"]
    assert lr_claim(sweep, rates)["verdict"] == (
        "not supported (from 0.001 to 0.01 SRCC moves +0.200, signed-rank test p = 0.45: neither shown to move it by "
        "0.03 nor shown to stay below that)")
    assert any("but only 5 of 7 rounds moved that way (signed-rank test p = 0.45): by the book's rule the step does not "
               "move SRCC" in s for s in lr_sentences(sweep, rates, "rate"))
    # rounds that no two rates share pair nothing: no verdict, and no crash
    rates = [1e-3, 1e-2] * 3
    apart = pd.DataFrame({"srcc": [0.5, 0.7] * 3, "round": [0, 3, 1, 4, 2, 5], "best_epoch": 3})
    assert lr_claim(apart, rates)["verdict"] == (
        "untested (neighbouring rates share no round, so no split pairs them)")
    assert lr_sentences(apart, rates, "rate")[1] == (
        "Neighbouring rates within one decade share no round, so no split pairs them.")
    # 3 rounds per rate but only 2 shared: the rule counts the pairs
    shared_two = pd.DataFrame({"srcc": [0.5, 0.7] * 3, "round": [0, 0, 1, 1, 2, 5], "best_epoch": 3})
    assert lr_claim(shared_two, rates)["verdict"] == "untested (2 rounds; the rule needs 6)"


def test_cost_inconsistency_is_flagged():
    costs = pd.DataFrame({"gflops": [0.9, 31.0], "patches_per_s": [20.0, 2.0], "test_srcc": [0.7, np.nan]},
                         index=["lite0", "base"])
    sentences = model_size_sentences(costs)
    assert not any("Inconsistent" in s for s in sentences)
    assert any("lite0 ranks best" in s for s in sentences)
    wrong = model_size_sentences(costs.assign(patches_per_s=[2.0, 2.5]))
    assert any(s.startswith("Inconsistent measurement: base is measured at least as fast as lite0") for s in wrong)


def test_pipeline_above_the_model_alone_is_flagged():
    good = {"images_per_s": {"one_at_a_time": 2.0, "score_paths": 2.5}, "forward_only_images_per_s": 3.0}
    sentences = performance_sentences(good)
    assert sentences[0].startswith("Scoring reaches 2.50 images/s")
    assert sentences[1] == "Streaming is 1.25x the naive loop on this machine (faster)."
    slower = {"images_per_s": {"one_at_a_time": 2.0, "score_paths": 1.6, "score_paths_small_batch": 1.9},
              "forward_only_images_per_s": 3.0}
    assert performance_sentences(slower)[1].startswith("Streaming is 0.80x the naive loop on this machine "
                                                         "(slower); with a batch of one image's crops it scores 1.90")
    bad = {"images_per_s": {"one_at_a_time": 2.75, "score_paths": 2.25}, "forward_only_images_per_s": 1.68}
    assert performance_sentences(bad)[0].startswith("Inconsistent measurement: one_at_a_time and score_paths are")
    engine = pd.DataFrame({"max loader wait": [0.002, 0.001]})
    assert "0.20% of any epoch" in performance_sentences(None, engine)[1]
    # measured on a busy machine: said first, the rates still shown
    busy = {**good, "machine": {"cpus": 2}, "load_average_start": [11.2, 10.6, 10.7], "load_average_end": [9.4]}
    first, second = performance_sentences(busy)[:2]
    assert first.startswith("These rates were measured while other work loaded the machine (load average up to "
                            "11.2 on 2 CPUs)") and second.startswith("Scoring reaches 2.50 images/s")
    quiet = {**busy, "load_average_start": [0.4, 0.3, 0.2], "load_average_end": [1.9, 1.0, 0.5]}
    assert performance_sentences(quiet)[0].startswith("Scoring reaches")


# ------------------------------------------------------------------ the claims table

def test_claims_are_recorded_by_chapters_and_collected(tmp_path):
    rows = pair_claim_rows(pd.DataFrame([_summary([0.05, 0.04], 1.0, note="n")]))
    assert rows[0]["claim"] == "smart_vs_hyperiqa" and rows[0]["verdict"] == "untested (2 rounds; the rule needs 6)"
    record_claims(tmp_path, "04_smart_iqa", rows)
    table = claims_table(tmp_path, link=lambda stem: f"[{stem}]({stem}.ipynb)")
    assert len(table) == len(CLAIMS)
    first = table.iloc[0]
    assert first["chapter"] == "[04_smart_iqa](04_smart_iqa.ipynb)" and "0.9378" in first["seed (SMART-IQA report)"]
    assert first["this edition"] == "median ΔSRCC +0.045 (paired by split) over 2 rounds"
    assert table["verdict"].iloc[1:].str.startswith("untested (").all()  # every untested claim says why
    assert summary_sentences(table)[0].startswith(f"This edition decides 0 of the book's {len(CLAIMS)} claims")
    assert json.loads((tmp_path / "claims" / "04_smart_iqa.json").read_text())["chapter"] == "04_smart_iqa"
    with pytest.raises(KeyError, match="unknown claim"):
        claim_row("nonsense", "", "")


def test_transfer_lr_and_attention_claims():
    one = pd.DataFrame([{"train": "demo", "test": "demo", "split": "test split", "n": 75, "srcc": 0.8, "plcc": 0.8}])
    assert transfer_claim(one)["verdict"] == "untested (one data set)"
    two = pd.concat([one, pd.DataFrame([{"train": "demo", "test": "livec", "split": "all", "n": 9, "srcc": 0.7,
                                         "plcc": 0.7}])], ignore_index=True)
    assert transfer_claim(two)["verdict"] == "supported"
    assert transfer_claim(two.assign(srcc=[0.8, 0.3]))["verdict"].startswith("not supported (drop 0.50")
    # Simulated labels on either side: the number is reported, the claim is not tested by it.
    for flags in ([True, False], [False, True]):
        simulated = two.assign(srcc=[0.8, 0.3], synthetic=flags)
        assert transfer_claim(simulated)["verdict"].startswith("untested (the demo set's labels are simulated")
        assert "SRCC livec 0.300 vs 0.800" in transfer_claim(simulated)["edition"]
        assert "labels are simulated" in cross_dataset_sentences(simulated)[-1]
    three = pd.concat([two.assign(synthetic=False), pd.DataFrame([{
        "train": "livec", "test": "demo", "split": "all", "n": 9, "srcc": 0.1, "plcc": 0.1, "synthetic": True}])],
        ignore_index=True)
    assert transfer_claim(three)["verdict"] == "supported"  # decided by the real pair alone
    assert "labels are simulated" not in " ".join(cross_dataset_sentences(two.assign(synthetic=False)))
    sweep, rates = _three_rounds([0.13, 0.71], [1e-3, 1e-2])
    six = pd.concat([sweep, sweep], ignore_index=True)
    assert lr_claim(six, rates * 2)["verdict"] == (
        "contradicted (from 0.001 to 0.01 SRCC moves +0.580, the same way in 6 of 6 rounds, signed-rank test p = 0.031)")
    assert lr_claim(six.assign(srcc=[0.70, 0.71] * 6), rates * 2)["verdict"].startswith("supported (")
    assert lr_claim(sweep, rates)["verdict"] == "untested (3 rounds; the rule needs 6)"
    assert lr_claim(sweep, [1e-4, 1e-2] * 3)["verdict"] == "untested (no two rates within one decade)"
    assert lr_claim(sweep.iloc[:2], rates[:2])["verdict"] == "untested (1 round; the rule needs 6)"

    class Stats:
        alpha, n_images, resampling = 0.05, 40, "by image (40 images)"
        correlations = pd.DataFrame({"srcc": [0.3], "low": [0.1], "high": [0.5]}, index=["concentration"])

    assert attention_claim(_weights(top=0.5, share=1.0), Stats)["verdict"] == "supported"
    assert attention_claim(_weights(top=0.95, share=1.0), Stats)["verdict"] == \
        "untested (attention collapsed onto stage 2)"
    assert cross_dataset_view(two) is two and cross_dataset_view(one) is None


def test_inference_slower_than_training_is_flagged():
    costs = pd.DataFrame({"gflops": [9.1], "patches_per_s": [2.0]}, index=["smart_iqa_tiny"])
    assert any("trains at 2.8 patches/s" in s for s in model_size_sentences(costs, train_rates={"smart_iqa_tiny": 2.8}))
    assert not any("Inconsistent" in s for s in model_size_sentences(costs, train_rates={"smart_iqa_tiny": 1.0}))


def test_attention_verdict_resamples_sources_when_the_images_share_them():
    from iqalib import metrics
    from iqalib.analysis.attention import weights_vs_mos

    n = 60
    mos = np.linspace(0, 100, n)
    peak = 0.3 + 0.6 * mos / 100  # concentration rises with MOS
    rest = (1 - peak) / 3
    weights = pd.DataFrame({"image": [f"img{k}" for k in range(n)], "mos": mos, "w1": rest, "w2": peak,
                            "w3": rest, "w4": rest})
    groups = {f"img{k}": f"photo{k % 6}" for k in range(n)}
    statistics = weights_vs_mos(weights, n_boot=200, groups=groups)
    assert statistics.resampling == "by source (6 sources)"
    # the table's interval is the grouped bootstrap's, not the image bootstrap's
    labels = np.array([groups[i] for i in weights["image"]])
    low, high = metrics.bootstrap_ci(statistics.per_image["concentration"], mos, "srcc", n_boot=200,
                                     groups=labels)
    assert statistics.correlations.loc["concentration", ["low", "high"]].tolist() == [low, high]
    sentences = attention_sentences(weights, statistics, "Supported: by source.")
    assert sentences == ["Supported: by source.", "The bootstrap intervals resample by source (6 sources) "
                         "(images of one source are not independent)."]
    claim = attention_claim(weights, statistics)
    assert "(by source (6 sources))" in claim["edition"] and claim["verdict"] == "supported"
    # without shared sources (none given, or one per image): single images, said so
    for alone in (None, {f"img{k}": f"photo{k}" for k in range(n)}):
        by_image = weights_vs_mos(weights, n_boot=200, groups=alone)
        assert by_image.resampling == "by image (60 images)"
        assert attention_sentences(weights, by_image, "Supported.")[1] == (
            "The bootstrap intervals resample by image (60 images) (no two test images share a source).")
        assert "(by image (60 images))" in attention_claim(weights, by_image)["edition"]


# ------------------------------------------------------------------ the probe floor and the label ceilings
def _rounds(name, srcc):
    return {"name": name, "test_per_round": [{"round": r, "srcc": s} for r, s in enumerate(srcc)]}


def test_probe_sentences_pair_each_head_with_the_probe_round_by_round():
    probe = _rounds("linear_probe_lite0", [0.50, 0.86, 0.76])
    runs = {"a": _rounds("a", [0.87, 0.55, 0.59]), "b": _rounds("b", [0.6, 0.9, 0.8]),
            "c": _rounds("c", [0.4, 0.5, 0.6])}
    floor, a, b, c = probe_sentences(runs, probe)
    assert floor.endswith("scores test SRCC median 0.760 (range 0.500 to 0.860, 3 rounds).")
    # a: +0.37, -0.31, -0.17 -> median -0.170, above in 1 of 3
    assert a.startswith("a: median ΔSRCC to the probe -0.170 (per round -0.310 to +0.370) over 3 rounds, above the "
                        "probe in 1 of 3 rounds")
    assert a.endswith('by the book\'s rule, "a beats the probe" is untested (3 rounds; the rule needs 6).')
    # with the rule's rounds the verdict is the rule's: six rounds all above the probe
    six = probe_sentences({"d": _rounds("d", [0.9] * 6)}, _rounds("linear_probe_lite0", [0.8] * 6))[1]
    assert six.endswith('by the book\'s rule, "d beats the probe" is supported.')
    assert "above the probe in every round" in b and "below the probe in every round" in c
    assert probe_sentences(runs, {"test_per_round": []}) == []


def test_each_head_meets_the_probe_of_its_own_trunk():
    """koniq: HyperIQA reads ResNet-50, SMART-IQA Swin; a head is never set against another trunk's floor."""
    probes = [{**_rounds("linear_probe_resnet50", [0.5, 0.5, 0.5]), "trunk": "resnet50"},
              {**_rounds("linear_probe_swin_tiny", [0.9, 0.9, 0.9]), "trunk": "swin_tiny"}]
    runs = {"hyperiqa_resnet50": {**_rounds("h", [0.6, 0.6, 0.6]), "model": "hyperiqa_resnet50"},
            "smart_iqa_tiny": {**_rounds("t", [0.8, 0.8, 0.8]), "model": "smart_iqa_tiny"},
            "smart_iqa_base": {**_rounds("b", [0.95, 0.95, 0.95]), "model": "smart_iqa_base"}}
    floor_r, floor_t, hyper, tiny, base = probe_sentences(runs, probes)
    assert floor_r.startswith("The linear probe of resnet50 ") and floor_t.startswith("The linear probe of swin_tiny ")
    assert hyper.startswith("hyperiqa_resnet50: median ΔSRCC to the probe +0.100") and "every round" in hyper
    assert tiny.startswith("smart_iqa_tiny: median ΔSRCC to the probe -0.100")
    assert base == "smart_iqa_base reads another trunk (swin_base) than the probes here, so it is not compared with one."


def test_ceiling_sentences_say_whether_the_labels_or_the_model_limit_the_score():
    ceilings = pd.DataFrame({"noise_ceiling": [0.99, 0.97, 0.99], "distortion_oracle": [0.93, 0.69, 0.95]})
    runs = {"hyper": _rounds("hyper", [0.56, 0.74, 0.45]), "smart": _rounds("smart", [0.87, 0.55, 0.59])}
    sentence, = ceiling_sentences(ceilings, runs)
    assert "rater noise alone caps SRCC at median 0.990 (range 0.970 to 0.990, 3 rounds)" in sentence
    assert "reaches median 0.930 (range 0.690 to 0.950, 3 rounds)" in sentence
    assert sentence.endswith("The best model here, smart, has median 0.590: the labels are not what holds it back.")
    close, = ceiling_sentences(ceilings, {"m": _rounds("m", [0.97, 0.96, 0.98])})
    assert close.endswith("it is close to what the labels allow.")
    assert ceiling_sentences(None, runs) == []  # other data sets have no ceilings


def test_too_few_sources_give_no_interval_no_p_value_and_say_why():
    from iqalib.analysis.attention import claim_verdict, weights_vs_mos
    from iqalib.analysis.significance import combine_rounds, paired_round_differences

    n = 60
    mos = np.linspace(0, 100, n)
    peak = 0.3 + 0.6 * mos / 100
    rest = (1 - peak) / 3
    weights = pd.DataFrame({"image": [f"img{k}" for k in range(n)], "mos": mos, "w1": rest, "w2": peak,
                            "w3": rest, "w4": rest})
    for k in (2, 3, 4):  # 3, 10 and 35 distinct by-source resamples: no 95% interval from those
        groups = {f"img{i}": f"photo{i % k}" for i in range(n)}
        statistics = weights_vs_mos(weights, n_boot=200, groups=groups)
        assert statistics.correlations[["low", "high"]].isna().all().all()
        assert statistics.resampling == (f"by source ({k} sources): no interval, the images come from {k} sources, "
                                         "too few to resample (a by-source bootstrap needs at least 5)")
        assert attention_claim(weights, statistics)["verdict"] == "untested (too few sources for an interval)"
        sentences = attention_sentences(weights, statistics, claim_verdict(statistics))
        assert sentences == [claim_verdict(statistics)] and sentences[0].startswith("Untested: no interval")
    five = weights_vs_mos(weights, n_boot=200, groups={f"img{i}": f"photo{i % 5}" for i in range(n)})
    assert five.correlations[["low", "high"]].notna().all().all()

    rng = np.random.default_rng(0)
    frame = lambda pred: pd.DataFrame({"image": weights["image"], "mos": mos, "pred": pred, "round": 0})
    a, b = frame(mos + rng.normal(0, 5, n)), frame(mos + rng.normal(0, 30, n))
    per_round = paired_round_differences(a, b, n_boot=200, groups={f"img{i}": f"photo{i % 2}" for i in range(n)})
    assert per_round["p_value"].isna().all() and "no test, the images come from 2 sources" in per_round["resampled"][0]
    row = combine_rounds(per_round)
    assert np.isnan(row["rounds_significant"])
    sentence, = comparison_sentences(pd.DataFrame([row]))
    assert "no bootstrap test within a round (by source (2 sources): no test" in sentence
    assert sentence.endswith("verdict: untested (1 round; the rule needs 6).")
    by_image = combine_rounds(paired_round_differences(a, b, n_boot=200, groups=None))
    assert by_image["rounds_significant"] == 1.0  # 60 independent images: a clear difference is found


# ------------------------------------------------------------------ the attention claim across rounds

def _round_frame(direction: float, n: int = 45, seed: int = 0) -> pd.DataFrame:
    """Stage weights whose concentration follows MOS (direction > 0), opposes it (< 0), or is noise (0)."""
    rng = np.random.default_rng(seed)
    mos = np.linspace(0, 100, n)
    trend = mos / 100 if direction > 0 else 1 - mos / 100
    peak = 0.3 + 0.6 * (trend if direction else rng.uniform(0, 1, n))
    rest = (1 - peak) / 3
    return pd.DataFrame({"image": [f"i{k}" for k in range(n)], "mos": mos,
                         "w1": rest, "w2": peak, "w3": rest, "w4": rest})


def _by_round(directions) -> pd.DataFrame:
    from iqalib.analysis.attention import concentration_by_round

    frames = {r: _round_frame(d, seed=r) for r, d in enumerate(directions)}
    return concentration_by_round(None, range(len(directions)), n_boot=200, known=frames)


def test_attention_claim_is_judged_across_the_rounds_models():
    # 7 rounds, every model concentrates with MOS: signed-rank test p = 2 / 2**7 = 0.016
    supported = attention_claim(None, None, _by_round([1] * 7))
    assert supported["verdict"] == "supported"
    assert "of 7 round(s)' models" in supported["edition"] and "positive in 7" in supported["edition"]
    assert attention_claim(None, None, _by_round([-1] * 7))["verdict"] == "contradicted"
    # 4 of 7 the other way: not significant, whatever one model says
    by_round = _by_round([1, -1, 1, -1, 1, -1, -1])
    mixed = attention_claim(None, None, by_round)
    p = exact_signed_rank_p(by_round["srcc"])
    assert p > 0.05
    assert mixed["verdict"] == f"not supported (signed-rank test p = {p:.2f}; 3 of 7 rounds for it, 4 against)"
    # 3 rounds cannot carry the test (6 needed), even with every interval above 0
    three = _by_round([1, 1, 1])
    assert (three["low"] > 0).all()
    assert attention_claim(None, None, three)["verdict"] == "untested (3 rounds; the rule needs 6)"


def test_rounds_summary_matches_a_direct_signed_rank_test_and_leaves_collapsed_models_out():
    from scipy import stats

    from iqalib.analysis.attention import rounds_summary

    by_round = _by_round([1, 1, 1, 1, 1, 1, -1, 0])
    by_round.loc[7, "collapsed"] = "w2"  # as concentration_by_round marks a collapsed model
    summary = rounds_summary(by_round)
    kept = by_round["srcc"].to_numpy()[:7]
    assert (summary["rounds"], summary["usable"], summary["left_out"]) == (8, 7, 1)
    assert summary["median"] == pytest.approx(np.median(kept))
    assert (summary["positive"], summary["negative"]) == (6, 1)
    assert summary["sign_p"] == pytest.approx(stats.binomtest(6, 7).pvalue)
    p = exact_signed_rank_p(kept)
    assert summary["p"] == pytest.approx(p)
    sentences = attention_round_sentences(by_round)
    assert sentences[0].startswith("In 1 of 8 rounds the attention collapsed onto one stage")
    assert "positive in 6 of 7" in sentences[1]
    verdict = "supported" if p < 0.05 else f"not supported (signed-rank test p = {p:.2f}; 6 of 7 rounds for it, 1 against)"
    assert sentences[-1] == f"Across rounds (signed-rank test p = {p:.3f}) the claim is {verdict}."


def test_concentration_by_round_marks_a_collapsed_model_and_keeps_each_rounds_interval():
    from iqalib.analysis.attention import concentration_by_round, weights_vs_mos
    from iqalib.metrics import MetricWarning

    collapsed = _weights(top=0.95, share=1.0).assign(image=[f"i{k}" for k in range(40)])
    frames = {0: _round_frame(1), 1: collapsed}
    with pytest.warns(MetricWarning, match="pred is constant"):  # w1 is constant in the collapsed model
        by_round = concentration_by_round(None, [0, 1], n_boot=200, known=frames)
    assert list(by_round["collapsed"]) == ["", "w2"]
    direct = weights_vs_mos(frames[0], n_boot=200).correlations.loc["concentration"]
    assert by_round.loc[0, ["srcc", "low", "high"]].tolist() == pytest.approx(direct[["srcc", "low", "high"]].tolist())
    assert attention_claim(None, None, by_round.iloc[1:])["verdict"] == \
        "untested (attention collapsed or constant in every round)"


def _precision_result(fp32, bf16, **extra):
    arm = lambda srcc, wall: {"rounds": len(srcc), "test_srcc": srcc, "median_srcc": float(np.median(srcc)),  # noqa: E731
                              "wall_seconds": wall, "head_seconds": wall / 2}
    return {"profile": "livec", "tolerance": 0.005, "machine": {"cpus": 2}, "load_average_start": [0.5],
            "arms": {"fp32": arm(fp32, 600.0), "bf16": arm(bf16, 150.0) if bf16 else {"skipped": "no bf16"}},
            **extra}


def test_precision_sentences_weigh_the_srcc_change_against_the_tolerance():
    close = precision_sentences(_precision_result([0.80, 0.82, 0.84], [0.801, 0.823, 0.838]))
    assert "bf16 autocast gives median test SRCC 0.8230 against fp32's 0.8200 (+0.0030; within the 0.005" in close[0]
    assert "differ by 0.0020 in the median (largest 0.0030)" in close[0]
    assert close[1] == ("The run took 2.5 min in bf16 and 10.0 min in fp32 (4.0x), trunk pass included; "
                        "the head trainings alone 1.2 and 5.0 min.")
    far = precision_sentences(_precision_result([0.80, 0.82, 0.84], [0.80, 0.81, 0.83]))
    assert "(-0.0100; outside the 0.005 tolerance)" in far[0]
    assert precision_sentences(_precision_result([0.8], None)) == [
        "bf16 was not trained here: no bf16; `precision: auto` keeps fp32 on this CPU."]
    assert precision_sentences(None) == ["The precision benchmark (bf16 against fp32) was not run on this machine."]
    busy = precision_sentences(_precision_result([0.8], [0.8], load_average_end=[6.0]))
    assert busy[0].startswith("These rates were measured while other work loaded the machine")


def test_precision_control_arm_sets_the_floor_a_numerics_change_moves_a_run_by():
    result = _precision_result([0.80, 0.82, 0.84], [0.79, 0.83, 0.84])
    result["arms"]["fp32"]["threads"] = 2
    result["arms"]["fp32_1thread"] = {"threads": 1, "rounds": 3, "test_srcc": [0.806, 0.817, 0.84],
                                      "median_srcc": 0.817}
    sentences = precision_sentences(result)
    assert sentences[1] == ("The control, fp32 again on 1 thread instead of 2 (the same trunk features; only the "
                            "order of the head's sums changes), moves the median test SRCC by -0.0030 (less than "
                            "the 0.005 tolerance) and each round by 0.0030 in the median (largest 0.0060).")
    # bf16 moved the rounds by 0.01, 0.01, 0 (median 0.01): more than the control's 0.003
    assert sentences[2] == ("So bf16's round-by-round change (0.0100 in the median) is larger than what a change "
                            "of numerics alone does on this run.")
    result["arms"]["fp32_1thread"]["test_srcc"] = [0.78, 0.85, 0.84]
    assert "is within what a change of numerics alone does" in precision_sentences(result)[2]
