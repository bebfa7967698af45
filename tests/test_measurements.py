"""The throughput measurements' logic (never their speed): warm-up, round-robin, units, ceilings."""
from __future__ import annotations

import importlib
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from iqalib.data.patches import to_model_input
from iqalib.experiments import model_cost_table, timed_batches

BENCHMARKS = Path(__file__).resolve().parents[1] / "benchmarks"


class FakeClock:
    """A clock that each timed call advances by that call's scripted duration."""

    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


def test_timed_batches_warm_up_first_then_alternate_the_runners():
    calls, clock = [], FakeClock()
    durations = {"a": iter([9.0, 9.0, 1.0, 3.0, 2.0]), "b": iter([5.0, 5.0, 4.0, 6.0, 5.0])}

    def runner(name):
        def run():
            calls.append(name)
            clock.now += next(durations[name])
        return run

    times = timed_batches({"a": runner("a"), "b": runner("b")}, repeats=3, warmup=2, clock=clock)
    # warm-up calls of each model first (untimed), then a, b, a, b, a, b
    assert calls == ["a", "a", "b", "b", "a", "b", "a", "b", "a", "b"]
    assert times == {"a": [1.0, 3.0, 2.0], "b": [4.0, 6.0, 5.0]}


def test_model_cost_table_reports_patches_per_second_from_the_fastest_batch(monkeypatch):
    import iqalib.experiments as experiments

    def fake_timed(runners, *, repeats, warmup, clock=None, sync=None):
        assert warmup == 2 and repeats == 3
        return {name: [0.5, 0.25, 1.0] for name in runners}

    monkeypatch.setattr(experiments, "timed_batches", fake_timed)
    table = model_cost_table(["hyperiqa_lite0", "smart_iqa_lite0"], batch_size=2, repeats=3, warmup=2)
    assert "images_per_s" not in table  # the unit is the patch: the column says so
    assert table.loc["hyperiqa_lite0", "patches_per_s"] == pytest.approx(2 / 0.25)
    assert table.loc["hyperiqa_lite0", "patches_per_s_median"] == pytest.approx(2 / 0.5)
    assert table.attrs["warmup"] == 2 and table.attrs["threads"] >= 1 and len(table.attrs["load_average"]) == 2


@pytest.fixture
def scoring():
    sys.path.insert(0, str(BENCHMARKS))
    try:
        yield importlib.import_module("scoring")
    finally:
        sys.path.remove(str(BENCHMARKS))


def test_scoring_ceiling_is_the_better_batch_and_a_pipeline_above_it_is_flagged(scoring):
    # 10 images, 5 crops each; the model alone: 0.02 s per patch at batch 5, 0.04 at batch 64
    ok = scoring.summarise(10, 5, {"one_at_a_time": 2.0, "score_paths": 1.5, "score_paths_small_batch": 1.2},
                           {5: 0.02, 64: 0.04})
    assert ok["forward_only_images_per_s"] == pytest.approx(10.0)  # 1 / (0.02 * 5): the better batch
    assert ok["forward_only_images_per_s_by_batch"] == {"5": 10.0, "64": 5.0}
    assert ok["images_per_s"]["score_paths"] == pytest.approx(6.67, abs=0.01)
    assert ok["speedup"] == pytest.approx(2.0 / 1.5, abs=0.01) and ok["consistent"]
    # a pipeline "faster than the model alone" cannot be: flagged
    bad = scoring.summarise(10, 5, {"one_at_a_time": 0.5, "score_paths": 1.5, "score_paths_small_batch": 1.2},
                            {5: 0.02, 64: 0.04})
    assert not bad["consistent"] and bad["fraction_of_forward_only"]["one_at_a_time"] == pytest.approx(2.0)


def test_best_of_trials_warms_up_then_keeps_the_fastest(scoring, monkeypatch):
    clock, calls = FakeClock(), []
    durations = iter([100.0, 3.0, 1.0, 2.0])  # warm-up (slow, untimed), then three trials

    def run():
        calls.append(1)
        clock.now += next(durations)

    monkeypatch.setattr(scoring.time, "perf_counter", clock)
    assert scoring.best_of_trials({"x": run}, trials=3) == {"x": 1.0}
    assert len(calls) == 4


class LayoutProbe(torch.nn.Module):
    """Stands in for a model: records the memory layout of every batch it is given."""

    mean, std = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)

    def __init__(self):
        super().__init__()
        self.layouts = []

    def forward(self, x):
        self.layouts.append((x.shape[1:], x.is_contiguous(), x.is_contiguous(memory_format=torch.channels_last)))
        return x.mean(dim=(1, 2, 3))


def test_throughput_input_has_the_pipelines_layout():
    from iqalib.data.images import ImageStore
    from iqalib.data.patches import PatchDataset
    from iqalib.experiments import pipeline_input

    probe = LayoutProbe()
    x = pipeline_input(probe, 4)
    # channels-last strides, as PatchDataset's NHWC bytes viewed as NCHW give them, not contiguous NCHW
    assert x.shape == (4, 3, 224, 224) and x.is_contiguous(memory_format=torch.channels_last)
    assert not x.is_contiguous()
    store = ImageStore.from_arrays([np.zeros((240, 260, 3), np.uint8)])
    patches, _, _ = PatchDataset(store, patch_size=224, patches_per_image=2, train=False).__getitems__([0, 1])
    loader_layout = to_model_input(patches, probe.mean, probe.std)
    assert loader_layout.stride() == x[:2].stride()


def test_scoring_ceiling_is_timed_on_the_input_the_pipelines_feed(scoring):
    from iqalib.engine.score import score_arrays

    rng = np.random.default_rng(0)
    image = rng.integers(0, 256, size=(384, 512, 3), dtype=np.uint8)
    probe = LayoutProbe()
    list(score_arrays(probe, [(0, image)], patches=3, batch_size=3))
    pipeline = probe.layouts[-1]
    ceiling = scoring.ceiling_input(probe, image, 3)
    probe(ceiling)
    assert probe.layouts[-1] == pipeline
    assert pipeline[2] is True  # channels-last strides: what the old torch.randn ceiling did not have
