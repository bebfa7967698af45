"""Attention hooks, heat maps, ablation bookkeeping and paired significance tests."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest
import torch
from scipy import stats

from iqalib.analysis.ablation import ABLATION_LABELS, RECIPE_ARM
from iqalib.analysis.recipes import head_lr_schedule, learning_rate_axis, recipe_differences, recipe_table
from iqalib.analysis.significance import source_groups, too_few_rounds
from iqalib.analysis import (ABLATION_CONFIGURATIONS, ablation_configs, ablation_table, attention_heatmap,
                             attention_hook, claim_verdict, combine_rounds, compare_runs, concentration,
                             crop_grid, paired_round_differences, select_images, stage_weights, trunk_features_key,
                             weights_vs_mos)
from iqalib.data.images import ImageStore
from iqalib.data.patches import PatchDataset, to_model_input
from iqalib.errors import ConfigError, DataError
from iqalib.models import create_model


@pytest.fixture(scope="module")
def smart_model():
    """A random-weight SMART-IQA Lite0 whose attention is far from uniform (so the checks mean something)."""
    torch.manual_seed(0)
    model = create_model("smart_iqa_lite0", pretrained=False).eval()
    for layer in model.multiscale_attention.net:
        if isinstance(layer, torch.nn.Linear):
            torch.nn.init.normal_(layer.weight, std=0.5)
            torch.nn.init.normal_(layer.bias, std=0.5)
    return model


def _images(seed=0, shapes=((240, 260), (230, 300))):
    rng = np.random.default_rng(seed)
    return [rng.integers(0, 256, size=(h, w, 3), dtype=np.uint8) for h, w in shapes]


def test_hook_sees_the_weights_the_module_returns(smart_model):
    x = torch.randn(3, 3, 224, 224)
    with torch.inference_mode(), attention_hook(smart_model) as seen:
        smart_model(x)
        pooled = smart_model.pool_stages(smart_model.forward_features(x))
        _, returned = smart_model.multiscale_attention(pooled[4:], context=pooled[3].flatten(1))
    assert len(seen) == 2  # the model's pass and the direct call
    torch.testing.assert_close(seen[0], returned.float())
    torch.testing.assert_close(seen[0].sum(dim=1), torch.ones(3))
    assert seen[0].max() > 0.3  # not the uniform 1/4: the check above compares real numbers
    # the hook is gone after the block
    with torch.inference_mode():
        smart_model(x)
    assert len(seen) == 2


def test_hook_needs_an_attention_model():
    model = create_model("smart_iqa_lite0", pretrained=False, attention=False)
    with pytest.raises(ConfigError, match="no stage attention"):
        with attention_hook(model):
            pass


def test_stage_weights_average_each_images_crops(smart_model):
    images, patches = _images(), 3
    # batch_size 4 makes one batch hold crops of both images: the bookkeeping must split them.
    scores, weights = stage_weights(smart_model, images, patches=patches, seed=5, batch_size=4)
    assert weights.shape == (2, 4)
    for i, image in enumerate(images):
        crops, _, _ = PatchDataset(ImageStore.from_arrays([image]), patches_per_image=patches, train=False,
                                   seed=5)[list(range(patches))]
        x = to_model_input(crops, smart_model.mean, smart_model.std)
        with torch.inference_mode(), attention_hook(smart_model) as seen:
            crop_scores = smart_model(x)
        np.testing.assert_allclose(weights[i], seen[0].mean(dim=0).numpy(), rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(scores[i], crop_scores.mean().item(), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(weights.sum(axis=1), 1.0, rtol=1e-6)


def test_select_images_picks_lowest_median_highest(tmp_path):
    frame = pd.DataFrame({"image": list("abcde"), "mos": [5.0, 1.0, 9.0, 3.0, 7.0], "pred": np.arange(5.0)})
    selected = select_images(frame, tmp_path / "selected_images.json")
    assert list(selected["role"]) == ["lowest", "median", "highest"]
    assert list(selected["image"]) == ["b", "a", "c"]
    saved = json.loads((tmp_path / "selected_images.json").read_text())
    assert [r["image"] for r in saved["images"]] == ["b", "a", "c"]
    assert saved["images"][0]["mos"] == 1.0


def test_crop_grid_covers_the_image():
    corners = crop_grid(300, 500, patch_size=224, stride=112)
    covered = np.zeros((300, 500), bool)
    for top, left in corners:
        covered[top : top + 224, left : left + 224] = True
    assert covered.all()
    assert corners[:, 0].max() == 300 - 224 and corners[:, 1].max() == 500 - 224
    with pytest.raises(DataError, match="smaller than"):
        crop_grid(200, 500)


def test_heatmap_has_the_image_shape_and_is_finite(smart_model):
    image = _images(shapes=((250, 330),))[0]
    heat = attention_heatmap(smart_model, image, stride=100)
    assert heat.attention_energy.shape == heat.quality.shape == image.shape[:2]
    assert np.isfinite(heat.attention_energy).all() and np.isfinite(heat.quality).all()
    assert (heat.attention_energy >= 0).all()
    np.testing.assert_allclose(heat.crop_weights.sum(axis=1), 1.0, rtol=1e-6)


def test_heatmap_quality_of_a_single_crop_is_the_model_score(smart_model):
    image = _images(shapes=((224, 224),))[0]
    heat = attention_heatmap(smart_model, image)
    x = to_model_input(torch.from_numpy(image).permute(2, 0, 1)[None], smart_model.mean, smart_model.std)
    with torch.inference_mode():
        score = smart_model(x).item()
    assert len(heat.boxes) == 1
    np.testing.assert_allclose(heat.quality, score, rtol=1e-5)


# ------------------------------------------------------------------ statistics

def _attention_frame(n=60, seed=0):
    rng = np.random.default_rng(seed)
    weights = rng.dirichlet(np.ones(4), size=n)
    return pd.DataFrame({"image": [f"i{k}" for k in range(n)], "mos": rng.uniform(0, 100, n),
                         **{f"w{s + 1}": weights[:, s] for s in range(4)}})


def test_weights_vs_mos_matches_scipy_spearman():
    frame = _attention_frame()
    result = weights_vs_mos(frame, n_boot=200)
    for column in ("w1", "w2", "w3", "w4"):
        expected = stats.spearmanr(frame[column], frame["mos"]).statistic
        assert result.correlations.loc[column, "srcc"] == pytest.approx(expected, abs=1e-12)
    w = frame[["w1", "w2", "w3", "w4"]].to_numpy()
    entropy = -(w * np.log(w)).sum(axis=1)
    expected = stats.spearmanr(1 - entropy / np.log(4), frame["mos"]).statistic
    assert result.correlations.loc["concentration", "srcc"] == pytest.approx(expected, abs=1e-12)
    assert list(result.terciles["n"]) == [20, 20, 20]
    low = result.per_image.loc[result.per_image["mos_tercile"] == "low", "mos"]
    assert low.max() < result.per_image.loc[result.per_image["mos_tercile"] == "high", "mos"].min()
    row = result.correlations.loc["w1"]
    assert row["low"] <= row["srcc"] <= row["high"]


def test_concentration_bounds():
    np.testing.assert_allclose(concentration([[0.25] * 4, [1.0, 0, 0, 0]]), [0.0, 1.0], atol=1e-12)


@pytest.mark.parametrize("direction, word", [(1, "Supported"), (-1, "Contradicted")])
def test_claim_verdict_follows_the_numbers(direction, word):
    n = 45
    mos = np.linspace(0, 100, n)
    # the largest weight grows (or shrinks) with MOS, from uniform-ish to peaked
    peak = 0.3 + 0.6 * (mos / 100 if direction > 0 else 1 - mos / 100)
    rest = (1 - peak) / 3
    frame = pd.DataFrame({"mos": mos, "w1": rest, "w2": peak, "w3": rest, "w4": rest})
    verdict = claim_verdict(weights_vs_mos(frame, n_boot=200))
    assert verdict.startswith(word)
    assert "45 test images" in verdict


# ------------------------------------------------------------------ significance

def _predictions(rounds=5, n=60, noise=1.0, seed=0):
    frames = []
    for r in range(rounds):
        rng = np.random.default_rng([seed, r])
        mos = np.random.default_rng(r).uniform(0, 100, n)  # same images and MOS for every model
        frames.append(pd.DataFrame({"image": [f"r{r}_{k}" for k in range(n)], "mos": mos,
                                    "pred": mos + rng.normal(0, noise, n), "round": r}))
    return pd.concat(frames, ignore_index=True)


def test_identical_predictions_give_no_difference():
    frame = _predictions(rounds=6)
    per_round = paired_round_differences(frame, frame.copy(), n_boot=200)
    assert (per_round["delta"] == 0).all() and (per_round["p_value"] == 1.0).all()
    summary = combine_rounds(per_round)
    assert summary["median_delta"] == 0 and summary["a_better"] == 0 and summary["sign_p"] == 1.0


def test_a_clearly_better_model_wins_every_round(tmp_path):
    good, bad = _predictions(rounds=6, noise=2.0, seed=1), _predictions(rounds=6, noise=40.0, seed=2)
    runs = {}
    for name, frame in (("good", good), ("bad", bad)):
        for r, part in frame.groupby("round"):
            folder = tmp_path / name / f"round_{r}"
            folder.mkdir(parents=True)
            part.drop(columns="round").to_csv(folder / "predictions.csv", index=False)
        runs[name] = tmp_path / name
    per_round, summary = compare_runs(runs, [("good", "bad")], n_boot=500)
    assert (per_round["delta"] > 0).all() and (per_round["p_value"] < 0.05).all()
    expected = [stats.spearmanr(p["pred"], p["mos"]).statistic for _, p in good.groupby("round")]
    np.testing.assert_allclose(per_round["value_a"], expected, atol=1e-12)
    row = summary.iloc[0]
    assert row["a_better"] == 1.0
    # 6 wins out of 6: two-sided sign test 2 * 0.5**6; the exact Wilcoxon test gives the same.
    assert row["sign_p"] == pytest.approx(2 * 0.5**6)
    assert row["wilcoxon_p"] == pytest.approx(2 / 2**6)
    assert row["tests_note"] == ""
    # prediction frames carry no data set: images are resampled, and the table says so
    assert set(per_round["resampled"]) == {"by image (60 images)"}


@pytest.mark.parametrize("rounds", [2, 5])
def test_fewer_than_six_rounds_skip_the_across_round_tests_and_say_why(rounds):
    frame = _predictions(rounds=rounds)
    summary = combine_rounds(paired_round_differences(frame, _predictions(rounds=rounds, seed=9), n_boot=100))
    assert np.isnan(summary["sign_p"]) and np.isnan(summary["wilcoxon_p"])
    assert summary["tests_note"] == f"a sign test needs at least 6 rounds, this run has {rounds}"


def test_minimum_rounds_per_statistic():
    assert too_few_rounds("iqr", 3) == "an IQR needs at least 4 rounds, this run has 3"
    assert too_few_rounds("iqr", 4) is None
    assert too_few_rounds("boxplot", 4) == "a box plot needs at least 5 rounds, this run has 4"
    assert too_few_rounds("wilcoxon", 6) is None and too_few_rounds("range", 1) is not None
    # the reason for 6: with 5 rounds all won, the exact two-sided p is still above 0.05
    assert stats.binomtest(5, 5).pvalue > 0.05 > stats.binomtest(6, 6).pvalue
    with pytest.raises(ValueError, match="unknown statistic"):
        too_few_rounds("median", 3)


def test_paired_rounds_resample_by_source_when_groups_are_given():
    a, b = _predictions(rounds=1, noise=2.0, seed=1), _predictions(rounds=1, noise=30.0, seed=2)
    groups = {image: f"photo_{k % 6}" for k, image in enumerate(a["image"])}
    per_round = paired_round_differences(a, b, n_boot=200, groups=groups)
    assert per_round["resampled"].iloc[0] == "by source (6 sources)"
    by_image = paired_round_differences(a, b, n_boot=200, groups=None)
    assert by_image["delta"].iloc[0] == per_round["delta"].iloc[0]  # the point estimate does not resample
    with pytest.raises(DataError, match="has no source in groups"):
        paired_round_differences(a, b, groups=dict(list(groups.items())[:5]))


def test_source_groups_come_from_the_runs_data_set(tmp_path):
    (tmp_path / "round_0").mkdir()
    config = {"data": {"name": "demo", "root": None, "options": {}}}
    (tmp_path / "round_0" / "results.json").write_text(json.dumps({"config": config}))
    groups = source_groups(tmp_path)
    assert groups is not None and groups.nunique() == 12 and len(groups) == 300
    assert groups["images/astronaut.png"] == "astronaut"
    assert source_groups(tmp_path / "missing") is None


def test_different_test_images_are_refused():
    a = _predictions(rounds=1)
    b = a.assign(image=a["image"] + "_other")
    with pytest.raises(DataError, match="different images"):
        paired_round_differences(a, b)


# ------------------------------------------------------------------ ablation bookkeeping

def test_ablation_configs_share_data_and_training():
    configs = ablation_configs(out_dir="runs/x", dataset="demo", split_seed=3, epochs=2, train_patches=2,
                               test_patches=2, freeze_backbone=True, rounds=2)
    assert set(configs) == set(ABLATION_CONFIGURATIONS) | {RECIPE_ARM}
    assert len({json.dumps(c.data.__dict__, sort_keys=True) for c in configs.values()}) == 1
    # the four original arms share the training keys; the recipe arm adds the seed's recipe to them
    assert len({json.dumps(c.train.__dict__, sort_keys=True) for n, c in configs.items() if n != RECIPE_ARM}) == 1
    assert configs["single_scale"].model.options == {"multiscale": False, "attention": False}
    assert configs["multiscale_concat"].model.options == {"multiscale": True, "attention": False}
    assert configs["hyperiqa"].model.name == configs["hyperiqa"].name == "hyperiqa_lite0"
    # (c) is the run notebook 3 trains: named after its model, no options
    assert configs["multiscale_attention"].name == "smart_iqa_lite0"
    assert configs["multiscale_attention"].model.options == {}
    # the switches build the intended heads
    for name, config in configs.items():
        model = create_model(config.model.name, pretrained=False, **config.model.options)
        assert (model.multiscale_attention is not None) == (name == "multiscale_attention")
    assert list(configs) == ["single_scale", "multiscale_concat", "multiscale_attention", RECIPE_ARM, "hyperiqa"]
    assert ablation_configs(out_dir="runs/x", seed_recipe_arm=False).keys() == ABLATION_CONFIGURATIONS.keys()


def test_recipe_arm_differs_from_single_scale_in_architecture_only_and_from_hyperiqa_in_recipe_only():
    configs = ablation_configs(out_dir="runs/x", dataset="demo", epochs=4, batch_size=32, train_patches=2,
                               test_patches=2, trunk_lr=1e-3, freeze_backbone=True, rounds=2)
    recipe = configs[RECIPE_ARM]
    assert recipe.name == "hyperiqa_lite0_seed_recipe" and recipe.model.name == "hyperiqa_lite0"
    assert recipe.train.trunk_lr == 1e-3 and recipe.train.epochs == 4  # the profile's keys are kept
    table = recipe_table(configs, ABLATION_LABELS)
    arm, single, baseline = (ABLATION_LABELS[n] for n in (RECIPE_ARM, "single_scale", "hyperiqa"))
    assert recipe_differences(table, arm, single) == ["head widths"]
    assert {"optimizer", "weight decay", "schedule", "grad clip", "dropout", "head lr"} \
        <= set(recipe_differences(table, arm, baseline))
    assert "head widths" not in recipe_differences(table, arm, baseline)
    # HyperIQA's own recipe, resolved as the engine resolves it: Adam, 5e-4, its step schedule (the
    # head rate stays at 10 x trunk_lr for 4 epochs); the seed's: AdamW, 2e-4, cosine, clip 1, dropout 0.4
    assert table.loc[baseline, ["optimizer", "weight decay", "head lr", "grad clip", "dropout"]].tolist() == \
        ["adam", "0.0005", "0.01", "none", "0"]
    assert table.loc[arm, ["optimizer", "weight decay", "grad clip", "dropout", "trunk lr"]].tolist() == \
        ["adamw", "0.0002", "1", "0.4", "frozen"]
    assert table.loc[arm, "head lr"].startswith("0.01 -> ")


def test_head_lr_schedule_follows_the_engine():
    from iqalib.config import TrainConfig
    from iqalib.models import hyperiqa_step_lr

    step = TrainConfig(epochs=12, trunk_lr=1e-3, head_lr_multiplier=10.0, schedule="hyperiqa_step")
    assert head_lr_schedule(step) == pytest.approx([hyperiqa_step_lr(e, 1e-3, 10.0)[1] for e in range(12)])
    cosine = TrainConfig(epochs=4, trunk_lr=1e-3, head_lr_multiplier=10.0, schedule="cosine", eta_min=0.0)
    assert head_lr_schedule(cosine) == pytest.approx([1e-2 * (1 + np.cos(np.pi * e / 4)) / 2 for e in range(4)])


def test_learning_rate_axis_names_what_the_sweep_moves(tmp_path):
    sweep = pd.DataFrame({"trunk_lr": [1e-4, 1e-3], "run": ["lr_a", "lr_b"], "srcc": [0.5, 0.6]})
    for frozen in (True, False):
        for run in ("lr_a", "lr_b"):
            folder = tmp_path / str(frozen) / run / "round_0"
            folder.mkdir(parents=True)
            (folder / "results.json").write_text(json.dumps(
                {"train_config": {"freeze_backbone": frozen, "head_lr_multiplier": 10.0}}))
    values, label = learning_rate_axis(sweep, tmp_path / "True")
    assert values.tolist() == pytest.approx([1e-3, 1e-2]) and label.startswith("head (hyper network) learning rate")
    assert "trunk frozen" in label
    values, label = learning_rate_axis(sweep, tmp_path / "False")
    assert values.tolist() == pytest.approx([1e-4, 1e-3]) and label == "trunk learning rate (head at 10x)"


def test_frozen_ablation_configurations_share_one_feature_bank():
    configs = ablation_configs(out_dir="runs/x", epochs=1, train_patches=3, test_patches=2, freeze_backbone=True)
    keys = {trunk_features_key(c) for c in configs.values()}
    assert len(keys) == 1 and None not in keys
    # more crops or another split of the same trunk: another bank / none when the trunk trains
    more = ablation_configs(out_dir="runs/x", epochs=1, train_patches=4, test_patches=2, freeze_backbone=True)
    assert trunk_features_key(more["hyperiqa"]) not in keys
    trained = ablation_configs(out_dir="runs/x", epochs=1, train_patches=3, test_patches=2)
    assert trunk_features_key(trained["hyperiqa"]) is None


def test_ablation_table_reports_median_and_spread():
    results = {"single_scale": {"model": "m", "rounds": 3, "data": "demo (synthetic)",
                                "test_per_round": [{"srcc": s, "plcc": s} for s in (0.5, 0.7, 0.6)]}}
    table = ablation_table(results)
    row = table.iloc[0]
    assert row["srcc_median"] == pytest.approx(0.6)
    assert row["srcc_min"] == 0.5 and row["srcc_max"] == 0.7
    assert row["srcc_iqr"] == pytest.approx(np.percentile([0.5, 0.6, 0.7], 75) - np.percentile([0.5, 0.6, 0.7], 25))
