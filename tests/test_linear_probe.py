"""The linear probe: closed-form ridge against a slow re-derivation, a synthetic linear problem,
and the probe on a frozen trunk's cached features in the heads' protocol and results format."""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch

from iqalib.analysis.linear_probe import ALPHAS, fit_ridge_path, image_means, linear_probe, stage_averages
from iqalib.data.images import cache_root
from iqalib.models.backbones import BACKBONES


# --------------------------------------------------------------- algebra
def slow_ridge(x: np.ndarray, y: np.ndarray, alpha: float) -> tuple[np.ndarray, float]:
    """The same ridge, re-derived: least squares on the augmented system [Z; sqrt(n alpha) I] w = [y - mean; 0]."""
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    z = (x - x.mean(axis=0)) / scale
    n, d = z.shape
    system = np.vstack([z, np.sqrt(n * alpha) * np.eye(d)])
    target = np.concatenate([y - y.mean(), np.zeros(d)])
    weights = np.linalg.lstsq(system, target, rcond=None)[0]
    return weights, float(y.mean())


@pytest.mark.parametrize("shape", [(50, 8), (12, 30)])  # more rows than features, and fewer
def test_closed_form_matches_least_squares_on_the_augmented_system(shape):
    rng = np.random.default_rng(0)
    x = rng.normal(size=shape) * rng.uniform(0.1, 10, size=shape[1]) + rng.normal(size=shape[1])
    x[:, 3] = 2.5  # a constant feature: standardised to nothing, weight 0
    y = rng.normal(size=shape[0]) * 7 + 40
    fits = fit_ridge_path(x, y, ALPHAS)
    assert [f.alpha for f in fits] == list(ALPHAS)
    for fit in fits:
        weights, intercept = slow_ridge(x, y, fit.alpha)
        np.testing.assert_allclose(fit.weights, weights, rtol=1e-7, atol=1e-9)
        assert fit.intercept == pytest.approx(intercept)
        assert fit.weights[3] == pytest.approx(0.0, abs=1e-9)
        new = rng.normal(size=(5, shape[1]))
        scale = x.std(axis=0)
        scale[scale == 0] = 1
        np.testing.assert_allclose(fit.predict(new), (new - x.mean(axis=0)) / scale @ weights + intercept,
                                   rtol=1e-7, atol=1e-7)


def test_ridge_recovers_a_linear_rule_and_shrinks_with_alpha():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(400, 6)) * [1, 5, 0.2, 3, 1, 10]
    true = np.array([2.0, -0.5, 10.0, 0.0, 1.0, 0.3])
    y = x @ true + 30 + rng.normal(scale=0.01, size=400)
    weak, strong = fit_ridge_path(x, y, [1e-8, 1e4])
    held_out = rng.normal(size=(100, 6)) * [1, 5, 0.2, 3, 1, 10]
    np.testing.assert_allclose(weak.predict(held_out), held_out @ true + 30, atol=0.01)
    np.testing.assert_allclose(weak.weights / weak.scale, true, atol=1e-3)  # back in the features' units
    assert np.abs(strong.weights).sum() < 0.01 * np.abs(weak.weights).sum()  # a strong ridge shrinks to the mean
    assert np.allclose(strong.predict(held_out), y.mean(), atol=1.0)


def test_bad_shapes_are_refused():
    with pytest.raises(ValueError, match="one row per target"):
        fit_ridge_path(np.zeros((5, 2)), np.zeros(4))


def test_stage_averages_are_the_global_average_of_each_stage():
    # Stage maps of 8x8 .. 1x1 grids (what the bank stores first), then the 7x7 maps (ignored).
    grids = [torch.rand(6, c, g, g) for c, g in zip((2, 3, 4, 5), (8, 4, 2, 1))]
    features = stage_averages(grids + [torch.rand(6, 9, 7, 7)] * 4)
    assert features.shape == (6, 2 + 3 + 4 + 5)
    np.testing.assert_allclose(features[:, 2:5], grids[1].mean(dim=(2, 3)).numpy(), rtol=1e-6)
    # The average of an equal-bin grid is the average of the map it pools.
    stage = torch.rand(6, 3, 28, 28)
    pooled = torch.nn.functional.adaptive_avg_pool2d(stage, 4)
    np.testing.assert_allclose(stage_averages([pooled] * 4)[:, :3], stage.mean(dim=(2, 3)).numpy(), rtol=1e-5)


def test_image_means_average_consecutive_crops():
    np.testing.assert_allclose(image_means(np.array([1, 3, 5, 7, 9, 11.0]), np.arange(3), 2), [2, 6, 10])


# --------------------------------------------------- the probe on a trunk
@pytest.fixture(scope="module")
def probe_config(mini_data, tmp_path_factory, one_thread):
    from iqalib.experiments import run_config

    out = tmp_path_factory.mktemp("probe")
    return run_config("smart_iqa_lite0", out_dir=out, dataset=mini_data["name"], data_root=mini_data["root"],
                      data_options=mini_data["options"], fractions=mini_data["fractions"], model="smart_iqa_lite0", rounds=2, epochs=1, batch_size=16, train_patches=2,
                      test_patches=2, patch_size=96, trunk_lr=1e-3, freeze_backbone=True, progress=False)


@pytest.fixture(scope="module")
def head_and_probe(probe_config):
    """A frozen-trunk head run, then the probe on the same config (same bank)."""
    from iqalib.experiments import run_or_load

    head = run_or_load(probe_config)
    banks = set((cache_root() / "features").glob("*.pt"))
    probe = linear_probe(probe_config)
    return {"head": head, "probe": probe, "new_banks": set((cache_root() / "features").glob("*.pt")) - banks}


@pytest.mark.slow
def test_probe_reads_the_heads_feature_bank_and_runs_their_protocol(head_and_probe, probe_config):
    probe, head = head_and_probe["probe"], head_and_probe["head"]
    assert head_and_probe["new_banks"] == set()  # no trunk pass of its own
    assert probe["name"] == probe["model"] == "linear_probe_lite0" and probe["rounds"] == 2
    run_dir = Path(probe_config.out_dir) / "linear_probe_lite0"
    for r, (mine, theirs) in enumerate(zip(probe["round_results"], head["round_results"])):
        assert mine["round"] == r and mine["split_sizes"] == theirs["split_sizes"]
        predictions = pd.read_csv(run_dir / f"round_{r}" / "predictions.csv")
        head_predictions = pd.read_csv(probe_config.run_dir / f"round_{r}" / "predictions.csv")
        assert predictions["image"].tolist() == head_predictions["image"].tolist()  # the same test images
        # The strength is the validation SRCC's best (the strongest among ties), never the test's.
        validation = pd.DataFrame(mine["validation"])
        assert validation["alpha"].tolist() == list(ALPHAS)
        best = validation[validation["val_srcc"] == validation["val_srcc"].max()]["alpha"].max()
        assert mine["alpha"] == best and mine["val_srcc"] == validation["val_srcc"].max()
        assert mine["test"]["n"] == len(predictions)
        assert mine["features"] == sum(BACKBONES["lite0"].channels)  # one average per channel and stage
    # The heads' table reads the probe like a run; a frozen-trunk probe beats chance on this slice.
    from iqalib.results import results_table

    table = results_table({"head": head, "probe": probe}).set_index("run")
    assert table.loc["probe", "model"] == "linear_probe_lite0" and table.loc["probe", "rounds"] == 2
    assert probe["median_test_srcc"] == pytest.approx(np.median([r["test"]["srcc"] for r in probe["round_results"]]))


@pytest.mark.slow
def test_probe_is_read_back_then_recomputed_when_asked_or_changed(head_and_probe, probe_config, monkeypatch):
    import dataclasses

    import iqalib.analysis.linear_probe as module

    def no_fit(*args, **kwargs):
        raise AssertionError("refitted although the same probe had finished")

    with monkeypatch.context() as patch:
        patch.setattr(module, "fit_ridge_path", no_fit)
        again = linear_probe(probe_config)
    assert again["test_per_round"] == head_and_probe["probe"]["test_per_round"]
    forced = linear_probe(probe_config, force=True)
    assert forced["test_per_round"] == head_and_probe["probe"]["test_per_round"]  # deterministic
    # One round instead of two: the folder holds one round, not a stale second one.
    fewer = dataclasses.replace(probe_config, train=dataclasses.replace(probe_config.train, rounds=1))
    one = linear_probe(fewer)
    folder = Path(probe_config.out_dir) / "linear_probe_lite0"
    assert one["rounds"] == 1 and sorted(p.name for p in folder.glob("round_*")) == ["round_0"]
    assert json.loads((folder / "summary.json").read_text())["rounds"] == 1
    assert one["test_per_round"][0] == head_and_probe["probe"]["test_per_round"][0]


@pytest.mark.slow
def test_a_fine_tuned_trunk_gets_the_same_probe_from_one_trunk_pass(head_and_probe, probe_config):
    """Without a bank (the trunk fine-tunes), the probe reads the pretrained trunk on the same crops."""
    import dataclasses

    tuned = dataclasses.replace(probe_config, train=dataclasses.replace(probe_config.train,
                                                                        freeze_backbone=False))
    banks = set((cache_root() / "features").glob("*.pt"))
    direct = linear_probe(tuned, name="linear_probe_direct")
    assert set((cache_root() / "features").glob("*.pt")) == banks  # no bank written for it
    for mine, banked in zip(direct["round_results"], head_and_probe["probe"]["round_results"]):
        assert mine["alpha"] == banked["alpha"]
        assert mine["test"]["srcc"] == pytest.approx(banked["test"]["srcc"], abs=1e-6)
