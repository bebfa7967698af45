"""Training engine: learning, honest selection, resume, divergence, checkpoints, rounds, scoring.

Every run here trains on a 60-image slice of the demo set (5 images of each of
the 12 references), 96-pixel crops, two crops per image, on the offline Lite0
trunk, so a run takes seconds on a CPU. Torch runs on one thread in this
module: on a shared 2-core machine, two threads fighting other processes were
several times slower, and one thread also keeps runs bit-for-bit repeatable.
"""
from __future__ import annotations

import importlib
import math
import os
import signal
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
import torch
import torch.nn.functional as F
import yaml

from iqalib import metrics
from iqalib.data.datasets import load_dataset
from iqalib.data.splits import split_table
from iqalib.engine import fit, load_trained, predict, score_paths
from iqalib.experiments import run_config
from iqalib.engine.checkpoint import FORMAT, load_checkpoint, save_checkpoint
from iqalib.engine.fit import TrainingDiverged
from iqalib.engine.runlock import StaleLockWarning
from iqalib.engine.score import expand_paths
from iqalib.errors import CheckpointError, ConfigError
from iqalib.models.backbones import Backbone
from signal_support import START_LIMIT, start_paused_train

# iqalib.engine exports the function ``fit``, which hides the module of that name.
fit_module = importlib.import_module("iqalib.engine.fit")
features_module = importlib.import_module("iqalib.engine.features")

# Wall-clock fields of a history row: everything else must repeat exactly.
TIMING = {"train_seconds", "patches_per_s", "loader_wait_fraction", "val_seconds"}


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: small tensors run faster on one thread


def tiny_config(mini_data, out_dir, name="run", *, model="smart_iqa_lite0", **train) -> dict:
    settings = dict(epochs=3, batch_size=16, train_patches=2, test_patches=2, patch_size=96,
                    trunk_lr=1e-3, freeze_backbone=True, progress=False)
    settings.update(train)
    return {"name": name, "out_dir": str(out_dir), "data": mini_data,
            "model": {"name": model, "pretrained": True}, "train": settings}


def same_history(a: list[dict], b: list[dict]) -> bool:
    strip = [[{k: v for k, v in row.items() if k not in TIMING} for row in h] for h in (a, b)]
    return strip[0] == strip[1]


class PredictSpy:
    """Records every ``predict_images`` call (the engine's only way to score a split)."""

    def __init__(self):
        self.original = fit_module.predict_images
        self.outputs: list[np.ndarray] = []

    def __call__(self, source):
        out = self.original(source)
        self.outputs.append(out)
        return out


@pytest.fixture(scope="module")
def trained(mini_data, tmp_path_factory):
    """One uninterrupted 3-epoch frozen-trunk run shared by many tests, with its predict calls."""
    out = tmp_path_factory.mktemp("trained")
    spy = PredictSpy()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fit_module, "predict_images", spy)
        result = fit(tiny_config(mini_data, out))
    return {"result": result, "round": result["round_results"][0], "dir": out / "run" / "round_0",
            "calls": spy.outputs, "config": tiny_config(mini_data, out)}


# ------------------------------------------------------------- learning
def test_short_training_lowers_the_loss_and_beats_chance(trained):
    history = trained["round"]["history"]
    assert history[-1]["train_loss"] < 0.8 * history[0]["train_loss"]
    # Measured on this slice (CPU, split seeds 0 and 1): test SRCC 0.83 and 0.72 on
    # 15 held-out images of 3 unseen references. Under chance SRCC on 15 images has
    # a standard deviation of about 1/sqrt(14) = 0.27, so 0.5 is well clear of it.
    test = trained["round"]["test"]
    assert test["srcc"] > 0.5 and test["plcc"] > 0.3
    assert trained["round"]["split_sizes"] == {"train": 30, "val": 15, "test": 15}


def test_selection_uses_validation_only_and_scores_test_once(trained, mini_data):
    round_ = trained["round"]
    history = round_["history"]
    val_srcc = [row["val_srcc"] for row in history]
    assert round_["best_epoch"] == int(np.argmax(val_srcc)) + 1
    assert round_["val_srcc"] == max(val_srcc)
    # One predict call per epoch (validation) and exactly one more (test) at the end.
    calls = trained["calls"]
    assert len(calls) == len(history) + 1
    table = load_dataset("csv", mini_data["root"], **mini_data["options"])
    parts = split_table(table, seed=0, fractions=(0.5, 0.25, 0.25))
    for pred, row in zip(calls, history):
        assert metrics.srcc(pred, parts["val"].mos) == pytest.approx(row["val_srcc"], abs=1e-12)
    written = pd.read_csv(trained["dir"] / "predictions.csv")
    assert list(written["image"]) == list(parts["test"].frame["image"])
    np.testing.assert_allclose(written["pred"], calls[-1], rtol=1e-6)
    assert metrics.srcc(calls[-1], parts["test"].mos) == pytest.approx(round_["test"]["srcc"], abs=1e-12)


def test_run_writes_its_artifacts(trained):
    folder = trained["dir"]
    for name in ("last.pt", "best.pt", "history.csv", "predictions.csv", "results.json"):
        assert (folder / name).is_file(), name
    assert not list(folder.glob(".*.tmp"))
    history = pd.read_csv(folder / "history.csv")
    assert list(history["epoch"]) == [1, 2, 3]
    best = load_checkpoint(folder / "best.pt", model_name="smart_iqa_lite0")
    assert best["epoch"] + 1 == trained["round"]["best_epoch"] and best["round"] == 0


# --------------------------------------------------------------- resume
def crash_at(epoch_index: int):
    """A train_one_epoch that dies (as Ctrl-C would) when it reaches ``epoch_index``."""
    original = fit_module.train_one_epoch

    def train_one_epoch(source, model, optimizer, loss_fn, tc, epoch):
        if epoch == epoch_index:
            raise KeyboardInterrupt
        return original(source, model, optimizer, loss_fn, tc, epoch)

    return train_one_epoch


@pytest.mark.slow
def test_resume_after_a_crash_equals_the_uninterrupted_run_frozen(trained, mini_data, tmp_path, monkeypatch):
    config = tiny_config(mini_data, tmp_path)
    with monkeypatch.context() as mp:
        mp.setattr(fit_module, "train_one_epoch", crash_at(2))
        with pytest.raises(KeyboardInterrupt):
            fit(config)
    assert load_checkpoint(tmp_path / "run" / "round_0" / "last.pt")["epoch"] == 1
    resumed = fit(config, resume=True)["round_results"][0]
    assert same_history(resumed["history"], trained["round"]["history"])
    assert resumed["test"] == trained["round"]["test"]
    assert resumed["best_epoch"] == trained["round"]["best_epoch"]


@pytest.mark.slow
def test_resume_after_a_crash_equals_the_uninterrupted_run_full_fine_tuning(mini_data, tmp_path, monkeypatch):
    # HyperIQA's own recipe (Adam, step schedule) with the trunk learning too.
    settings = dict(model="hyperiqa_lite0", epochs=2, train_patches=1, test_patches=1, trunk_lr=1e-4,
                    freeze_backbone=False)
    whole = fit(tiny_config(mini_data, tmp_path / "whole", **settings))["round_results"][0]
    config = tiny_config(mini_data, tmp_path / "crashed", **settings)
    with monkeypatch.context() as mp:
        mp.setattr(fit_module, "train_one_epoch", crash_at(1))
        with pytest.raises(KeyboardInterrupt):
            fit(config)
    resumed = fit(config, resume=True)["round_results"][0]
    assert same_history(resumed["history"], whole["history"])
    assert resumed["test"] == whole["test"]
    # The trunk did move: this is not the frozen case again.
    first = load_checkpoint(tmp_path / "whole" / "run" / "round_0" / "last.pt")["model"]
    fresh = fit_module.create_model("hyperiqa_lite0", pretrained=True).state_dict()
    name = next(k for k in first if k.startswith("backbone.") and first[k].is_floating_point())
    assert not torch.equal(first[name], fresh[name])


@pytest.mark.subprocess
def test_sigkill_mid_run_then_resume_equals_the_uninterrupted_run(trained, tmp_path):
    """A real ``kill -9`` of ``iqalib train`` after its first checkpoint, then ``--resume``."""
    config = dict(trained["config"], out_dir=str(tmp_path))
    path = tmp_path / "run.yaml"
    path.write_text(yaml.safe_dump(config))
    last = tmp_path / "run" / "round_0" / "last.pt"
    env = dict(os.environ, OMP_NUM_THREADS="1")  # the same arithmetic as this process
    # The child waits after writing last.pt, so the kill lands there however loaded the machine is.
    proc, _ = start_paused_train([str(path)], env=env)
    try:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=START_LIMIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == -signal.SIGKILL
    assert not (tmp_path / "run" / "summary.json").exists()
    assert load_checkpoint(last)["epoch"] == 0  # killed after the first of three epochs
    # The killed process could not release its run lock: the resume says so and takes it over.
    with pytest.warns(StaleLockWarning, match=f"pid {proc.pid} .* is no longer running"):
        resumed = fit(path, resume=True)["round_results"][0]
    assert same_history(resumed["history"], trained["round"]["history"])
    assert resumed["test"] == trained["round"]["test"]


# ---------------------------------------------------------- divergence
def test_nan_loss_stops_the_run_and_keeps_the_last_good_checkpoint(mini_data, tmp_path, monkeypatch):
    original = fit_module.train_one_epoch

    def nan_in_second_epoch(source, model, optimizer, loss_fn, tc, epoch):
        if epoch == 1:
            def loss_fn(pred, target):
                return F.l1_loss(pred, target) * float("nan")
        return original(source, model, optimizer, loss_fn, tc, epoch)

    monkeypatch.setattr(fit_module, "train_one_epoch", nan_in_second_epoch)
    with pytest.raises(TrainingDiverged) as info:
        fit(tiny_config(mini_data, tmp_path, epochs=2))
    message = str(info.value)
    last = tmp_path / "run" / "round_0" / "last.pt"
    assert "\n" not in message
    assert "the loss became nan at epoch 2" in message and "train.trunk_lr" in message
    assert f"the last good checkpoint is {last} (epoch 1)" in message
    state = load_checkpoint(last, model_name="smart_iqa_lite0")
    assert state["epoch"] == 0 and len(state["history"]) == 1
    assert all(torch.isfinite(t).all() for t in state["model"].values() if t.is_floating_point())


def test_nan_in_the_first_epoch_says_nothing_was_saved(mini_data, tmp_path, monkeypatch):
    original = fit_module.train_one_epoch

    def nan_loss(source, model, optimizer, loss_fn, tc, epoch):
        return original(source, model, optimizer, lambda pred, target: (pred - target).abs().mean() * float("nan"),
                        tc, epoch)

    monkeypatch.setattr(fit_module, "train_one_epoch", nan_loss)
    with pytest.raises(TrainingDiverged, match="no epoch had finished, nothing was saved"):
        fit(tiny_config(mini_data, tmp_path, epochs=1))
    assert not (tmp_path / "run" / "round_0" / "last.pt").exists()


# ---------------------------------------------------- bad configurations
def test_patch_larger_than_the_images_is_a_config_error(mini_data, tmp_path):
    with pytest.raises(ConfigError) as info:
        fit(tiny_config(mini_data, tmp_path, patch_size=300))
    message = str(info.value)
    assert "train.patch_size=300 is larger than 60 of 60 image(s)" in message
    assert "at most 288 fits all" in message and "\n" not in message


@pytest.mark.parametrize("section, value, expected", [
    ("model", {"name": "smart_iqa_huge"}, "unknown model 'smart_iqa_huge'; valid models: hyperiqa_lite0, "),
    ("model", {"name": "smart_iqa_lite0", "options": {"multiscal": True}}, "['multiscal']"),
    ("data", {"name": "livec2"}, "unknown data set 'livec2'; choose one of ['csv', 'demo', "),
])
def test_unknown_names_list_the_valid_ones(mini_data, tmp_path, section, value, expected):
    config = tiny_config(mini_data, tmp_path)
    config[section] = value
    with pytest.raises(ConfigError) as info:
        fit(config)
    assert expected in str(info.value)


# ----------------------------------------------------------- checkpoints
class Payload:
    """A custom class: unpickling it would run arbitrary code paths."""

    def __reduce__(self):
        return (print, ("pwned",))


def test_a_failed_write_leaves_the_previous_checkpoint_intact(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    save_checkpoint(path, {"model_name": "m", "epoch": 1, "model": {"w": torch.ones(3)}})
    before = path.read_bytes()

    def disk_full(obj, f):
        f.write(b"PK\x03\x04 half a checkpoint")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full)
    with pytest.raises(OSError, match="No space left"):
        save_checkpoint(path, {"model_name": "m", "epoch": 2, "model": {"w": torch.zeros(3)}})
    monkeypatch.undo()
    assert path.read_bytes() == before
    assert load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # no temporary file left


def test_load_checkpoint_refuses_pickled_objects(tmp_path, capsys):
    path = tmp_path / "evil.pt"
    torch.save({"format": FORMAT, "model_name": "m", "model": {}, "extra": Payload()}, path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(path)
    assert "weights_only=True" in str(info.value) and str(path) in str(info.value)
    assert "pwned" not in capsys.readouterr().out


def test_load_checkpoint_refuses_truncated_and_foreign_files(tmp_path):
    good = tmp_path / "good.pt"
    save_checkpoint(good, {"model_name": "smart_iqa_lite0", "model": {"w": torch.randn(1000)}})
    truncated = tmp_path / "truncated.pt"
    truncated.write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    with pytest.raises(CheckpointError, match=r"truncated\.pt: not a readable checkpoint, truncated or corrupt"):
        load_checkpoint(truncated)
    text = tmp_path / "notes.pt"
    text.write_text("these are not weights\n")
    with pytest.raises(CheckpointError, match=r"notes\.pt: not a"):
        load_checkpoint(text)
    plain = tmp_path / "state_dict.pt"
    torch.save({"w": torch.ones(2)}, plain)
    with pytest.raises(CheckpointError, match=r"state_dict\.pt: not an iqalib checkpoint"):
        load_checkpoint(plain)
    with pytest.raises(CheckpointError, match="holds a 'smart_iqa_lite0' model, not 'hyperiqa_lite0'"):
        load_checkpoint(good, model_name="hyperiqa_lite0")
    with pytest.raises(CheckpointError, match=r"missing\.pt: checkpoint not found"):
        load_checkpoint(tmp_path / "missing.pt")


def test_load_trained_refuses_weights_of_another_architecture(trained, tmp_path):
    state = load_checkpoint(trained["dir"] / "best.pt")
    relabelled = tmp_path / "relabelled.pt"
    save_checkpoint(relabelled, {**{k: v for k, v in state.items() if k != "format"},
                                 "model_name": "hyperiqa_lite0", "config": {}})
    with pytest.raises(CheckpointError, match="weights do not fit 'hyperiqa_lite0'"):
        load_trained(relabelled)


# --------------------------------------------------------------- rounds
def test_rounds_report_the_median_and_share_one_feature_bank(mini_data, tmp_path, monkeypatch, private_cache):
    banks, trunk_patches = [], []
    original_bank = features_module.feature_bank
    original_forward = Backbone.forward

    def counting_bank(*args, **kwargs):
        banks.append(1)
        return original_bank(*args, **kwargs)

    def counting_forward(self, x):
        trunk_patches.append(len(x))
        return original_forward(self, x)

    monkeypatch.setattr(fit_module, "feature_bank", counting_bank)  # where the training loop looks it up
    monkeypatch.setattr(Backbone, "forward", counting_forward)
    result = fit(tiny_config(mini_data, tmp_path, epochs=1, rounds=2))
    assert len(banks) == 1
    assert sum(trunk_patches) == 60 * 2  # one trunk pass: 60 images x 2 crops, for both rounds
    run = tmp_path / "run"
    assert sorted(p.name for p in run.iterdir()) == ["round_0", "round_1", "summary.json"]
    per_round = [r["test"]["srcc"] for r in result["round_results"]]
    assert result["median_test_srcc"] == pytest.approx(float(np.median(per_round)), abs=1e-12)
    summary = pd.read_json(run / "summary.json", typ="series")
    assert summary["median_test_srcc"] == pytest.approx(float(np.median(per_round)), abs=1e-12)
    assert [r["srcc"] for r in summary["test_per_round"]] == pytest.approx(per_round, abs=1e-12)
    # Round r splits with split_seed + r: the rounds test on different references.
    tests = [set(pd.read_csv(run / f"round_{r}" / "predictions.csv")["image"]) for r in (0, 1)]
    assert tests[0] != tests[1]


# --------------------------------------------------------------- scoring
@pytest.fixture(scope="module")
def photo_folder(demo_table, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("photos")
    for name in demo_table.frame["image"][:3]:
        (folder / Path(name).name).write_bytes((demo_table.root / name).read_bytes())
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is not a jpeg")
    return folder


def test_score_paths_scores_the_good_images_and_reports_the_corrupt_one(trained, photo_folder):
    model = load_trained(trained["dir"] / "best.pt")
    assert model.patch_size == 96  # the training crop size travels with the checkpoint
    paths = expand_paths([photo_folder])
    table = score_paths(model, paths, patches=4, errors=None)
    broken = table["image"].str.endswith("broken.jpg")
    assert broken.sum() == 1 and len(table) == 4
    assert np.isfinite(table.loc[~broken, "score"]).all() and (table.loc[~broken, "error"] == "").all()
    assert math.isnan(table.loc[broken, "score"].item()) and table.loc[broken, "error"].item() != ""
    # predict() is deterministic and agrees with score_paths for the same image.
    first = Path(table.loc[~broken, "image"].iloc[0])
    once, twice = predict(model, first, patches=4), predict(model, first, patches=4)
    assert once == twice
    assert once == pytest.approx(table.loc[~broken, "score"].iloc[0], rel=1e-5)


def test_frozen_training_rotates_through_every_cached_crop():
    """Train reads `patches` crops per image and epoch, moving on each epoch; val/test keep the first ones."""
    from types import SimpleNamespace

    from iqalib.engine.fit import FeatureSource

    k, patches, images = 10, 3, np.array([4, 0, 7])
    bank = SimpleNamespace(patches_per_image=k, features=[])
    tc = SimpleNamespace(seed=0, batch_size=4)
    train = FeatureSource(None, bank, images, [1.0, 2.0, 3.0], patches, tc, device="cpu", dtype=None,
                          rotate=True)
    val = FeatureSource(None, bank, images, [1.0, 2.0, 3.0], patches, tc, device="cpu", dtype=None)
    # Image 4's crops live in bank rows 40..49.
    assert train.rows(0)[:3].tolist() == [40, 41, 42]
    assert train.rows(1)[:3].tolist() == [43, 44, 45]
    assert train.rows(3)[:3].tolist() == [49, 40, 41]  # wraps around
    seen = set()
    for epoch in range(4):  # ceil(10 / 3) epochs use every crop
        rows = train.rows(epoch)
        assert len(rows) == patches * len(images)
        seen |= {int(r) for r in rows if 40 <= r < 50}
    assert seen == set(range(40, 50))
    assert val.rows(0).tolist() == val.rows(5).tolist() == [40, 41, 42, 0, 1, 2, 70, 71, 72]
    # A batch's rows, scores and image indices stay aligned after shuffling.
    for rows, scores, owners in train.loader(2, shuffle=True):
        assert torch.equal(rows // k, torch.as_tensor(images)[owners])
        assert torch.equal(scores, torch.tensor([1.0, 2.0, 3.0])[owners])


# ------------------------------------------------------------- raters' spread to the loss
def test_rater_std_reaches_a_loss_that_takes_it_and_only_where_every_image_has_one():
    assert fit_module.rater_std_per_image([4.0, 6.5]).tolist() == [4.0, 6.5]
    for unknown in ([4.0, float("nan")], [4.0, 0.0], []):
        assert fit_module.rater_std_per_image(unknown) is None  # one fixed scale, never a mix
    source = SimpleNamespace(rater_std=torch.tensor([1.0, 2.0, 3.0]))
    assert fit_module._rater_std(source, torch.tensor([2, 0, 2]), torch.device("cpu")).tolist() == [3.0, 1.0, 3.0]
    assert fit_module._rater_std(SimpleNamespace(rater_std=None), torch.tensor([0]), torch.device("cpu")) is None


@pytest.mark.slow
def test_fidelity_trains_with_each_training_image_s_rater_std(mini_data, tmp_path, monkeypatch):
    seen = []
    original = fit_module.train_one_epoch

    def spy(source, model, optimizer, loss_fn, tc, epoch):
        seen.append(None if source.rater_std is None else source.rater_std.clone())
        return original(source, model, optimizer, loss_fn, tc, epoch)

    monkeypatch.setattr(fit_module, "train_one_epoch", spy)
    fit(tiny_config(mini_data, tmp_path, loss="fidelity", epochs=1))
    fit(tiny_config(mini_data, tmp_path, name="l1", epochs=1))  # L1 has no use for it
    table = load_dataset("csv", mini_data["root"], **mini_data["options"])
    train = split_table(table, seed=0, fractions=(0.5, 0.25, 0.25))["train"]
    assert np.isfinite(train.std).all() and (train.std > 0).all()  # the demo's simulated raters
    assert seen[0] is not None and np.allclose(seen[0].numpy(), train.std) and seen[1] is None


def test_a_scored_part_too_small_for_its_metrics_is_a_one_line_config_error(tmp_path, write_image):
    # 10 images as 40/30/30: validation and test hold 3 images, one fewer than PLCC's logistic fit needs
    root = tmp_path / "tiny"
    for i in range(10):
        write_image(root / f"im{i}.png", height=40, width=40, seed=i)
    (root / "scores.csv").write_text("image,mos\n" + "".join(f"im{i}.png,{10 * i + 5}\n" for i in range(10)))
    config = run_config("too_small", out_dir=tmp_path / "runs", dataset="csv", data_root=root,
                        model="hyperiqa_lite0", pretrained=False, fractions=(0.4, 0.3, 0.3), epochs=1,
                        patch_size=32, train_patches=1, test_patches=1, batch_size=4, freeze_backbone=True,
                        device="cpu", progress=False)
    with pytest.raises(ConfigError) as info:
        fit(config)
    message = str(info.value)
    assert "data.fractions=[0.4, 0.3, 0.3]: the val part of round 0 holds 3 image(s)" in message
    assert "need at least 4" in message and "\n" not in message
