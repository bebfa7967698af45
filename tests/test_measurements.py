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


# ------------------------------------------------------------------ one machine per table, checks, units

EPYC = {"model_name": "AMD EPYC", "cpus": 2, "cpu_capability": "AVX2", "threads": 2}
XEON = {"model_name": "Intel Xeon", "cpus": 2, "cpu_capability": "AVX512", "threads": 2}


def _step(patches_per_s, gflops, batch=8):
    return {"batch": batch, "iters": 5, "median_s": batch / patches_per_s, "min_s": batch / (patches_per_s * 1.1),
            "patches_per_s": patches_per_s, "gflops": gflops, "fraction_of_matmul": gflops / 100}


def _train_step(machine, inference=None):
    entry = {"settings": {"fp32": _step(7.0, 19.0), "fp32_cl": _step(11.0, 29.0),
                          "bf16": {"skipped": "no native bf16"}},
             "best": {"setting": "fp32_cl", "patches_per_s": 11.0, "fraction_of_matmul": 0.29}}
    if inference is not None:
        entry["inference"] = {"batch": 8, "patches_per_s": inference, "patches_per_s_median": inference}
    return {"machine": machine, "batch": 8, "load_average_start": [0.5], "load_average_end": [0.6],
            "matmul": {"fp32": {"size": 4096, "gflops": 117.0}}, "models": {"hyperiqa_lite0": entry}}


def _scoring(machine, consistent=True):
    return {"machine": machine, "model": "hyperiqa_lite0", "patches_per_image": 10, "batch_size": 64,
            "images_per_s": {"one_at_a_time": 0.3, "score_paths": 0.4 if consistent else 0.9},
            "forward_only_images_per_s": 0.5, "consistent": consistent,
            "load_average_start": [0.1], "load_average_end": [0.2]}


def _write(folder, **results):
    import json

    for name, result in results.items():
        (folder / f"{name}.json").write_text(json.dumps(result))


def test_machine_label_separates_cpus_limits_and_threads():
    from iqalib.analysis.performance import machine_label

    assert machine_label(EPYC) == "AMD EPYC, 2 CPUs, AVX2, 2 threads"
    assert machine_label({**XEON, "isa_limits": {"ONEDNN_MAX_CPU_ISA": "AVX2"}}) != machine_label(XEON)
    assert machine_label({**EPYC, "threads": 1}) == "AMD EPYC, 2 CPUs, AVX2, 1 thread"
    assert machine_label({"processor": "x86_64", "cpus": 2}).startswith("x86_64 (CPU model not recorded)")


def test_results_of_two_machines_give_two_tables_each_from_one_machine(tmp_path):
    from iqalib.analysis import performance as perf

    _write(tmp_path, train_step=_train_step(EPYC), scoring=_scoring(XEON))
    tables = perf.speed_tables(tmp_path)
    assert sorted(tables) == ["AMD EPYC, 2 CPUs, AVX2, 2 threads", "Intel Xeon, 2 CPUs, AVX512, 2 threads"]
    assert set(tables["AMD EPYC, 2 CPUs, AVX2, 2 threads"]["benchmark"]) == {"train_step"}
    assert set(tables["Intel Xeon, 2 CPUs, AVX512, 2 threads"]["benchmark"]) == {"scoring"}
    assert list(perf.machines_table(tmp_path)["machine"]) == ["AMD EPYC, 2 CPUs, AVX2, 2 threads",
                                                              "Intel Xeon, 2 CPUs, AVX512, 2 threads"]
    # the same machine: one table
    _write(tmp_path, scoring=_scoring(EPYC))
    assert list(perf.speed_tables(tmp_path)) == ["AMD EPYC, 2 CPUs, AVX2, 2 threads"]


def test_speed_rows_state_their_unit_and_what_was_counted(tmp_path):
    from iqalib.analysis import performance as perf

    rows = perf.speed_rows("train_step", _train_step(EPYC, inference=30.0))
    step_gflops = "GFLOP/s (3x the forward's conv and matmul FLOPs)"
    assert set(rows["unit"]) == {"patches/s", step_gflops, "GFLOP/s (2n^3 FLOPs)"}
    step = rows[rows["measured"].str.startswith("training step, whole model")]
    assert list(step["rate"]) == [11.0, 29.0] and list(step["unit"]) == ["patches/s", step_gflops]
    assert (rows["check"] == "ok").all()
    scoring = perf.speed_rows("scoring", _scoring(EPYC))
    assert set(scoring["unit"]) == {"images/s (10 crops each)"}


def test_a_row_its_own_check_rejects_says_why(tmp_path):
    from iqalib.analysis import performance as perf

    slow = perf.speed_rows("train_step", _train_step(EPYC, inference=5.0))  # scores slower than it trains
    inference = slow[slow["measured"].str.startswith("inference")]
    assert inference["check"].iloc[0].startswith("rejected: slower than this model's training step")
    above = perf.speed_rows("scoring", _scoring(EPYC, consistent=False))
    assert above["check"].str.startswith("rejected:").all()
    loaded = perf.speed_rows("scoring", {**_scoring(EPYC), "load_average_start": [7.5]})
    assert (loaded["check"] == "measured under load 7.5").all()


def _costs(machine="AMD EPYC, 2 CPUs, AVX2, 2 threads", lite=20.0, smart=19.0, base=2.0):
    import pandas as pd

    costs = pd.DataFrame({"params": [4.7e6, 4.3e6, 8.8e7], "gflops": [0.88, 0.84, 31.0],
                          "patches_per_s": [lite, smart, base], "test_srcc": [0.70, 0.75, np.nan]},
                         index=["hyperiqa_lite0", "smart_iqa_lite0", "smart_iqa_base"])
    costs.attrs["conditions"] = {"machine": machine}
    return costs


def test_inference_is_checked_against_training_only_on_the_same_machine(tmp_path):
    from iqalib.analysis import model_size
    from iqalib.analysis import performance as perf

    _write(tmp_path, train_step=_train_step(EPYC))
    reference = perf.train_step_reference(tmp_path)
    assert reference["rates"]["hyperiqa_lite0"] == pytest.approx(11.0 * 1.1)  # fastest step, as inference
    rates, note = model_size.comparable_train_rates(_costs(lite=9.9), reference)
    assert rates and note is None
    checks = model_size.speed_checks(_costs(lite=9.9), train_rates=rates)
    assert checks["hyperiqa_lite0"].startswith("rejected: scores slower than it trains")
    assert checks["smart_iqa_lite0"] == "ok"
    # measured elsewhere: not compared, and the page says so
    rates, note = model_size.comparable_train_rates(_costs(machine="Intel Xeon, 2 CPUs, AVX512, 2 threads"),
                                                    reference)
    assert rates == {} and "AMD EPYC" in note and "Intel Xeon" in note
    assert model_size.comparable_train_rates(_costs(), None)[0] == {}


def test_a_rejected_speed_is_not_plotted():
    from iqalib.analysis import model_size

    costs = _costs(base=25.0)  # 35x lite0's FLOPs, measured faster: both speeds cannot be right
    costs["speed check"] = model_size.speed_checks(costs)
    assert costs.loc["smart_iqa_base", "speed check"].startswith("rejected: smart_iqa_base measured at least")
    assert costs.loc["hyperiqa_lite0", "speed check"].startswith("rejected:")
    assert list(model_size.plotted_costs(costs).index) == []  # smart_iqa_lite0 too is under 1/4 of base's FLOPs
    fine = _costs()
    fine["speed check"] = model_size.speed_checks(fine)
    assert list(model_size.plotted_costs(fine).index) == list(fine.index)
    sentences = model_size.model_size_sentences(costs)
    assert "its measured speed is rejected below" in sentences[0]


def _pair(p, median_delta, rounds=8, a_better=0.9, tests_note=""):
    return {"a": "smart_iqa_lite0", "b": "hyperiqa_lite0", "metric": "srcc", "rounds": rounds,
            "median_delta": median_delta, "a_better": a_better, "rounds_significant": 0.5,
            "wilcoxon_p": p, "tests_note": tests_note}


def test_worth_its_cost_needs_a_significant_gain_within_the_budget():
    from iqalib.analysis.model_size import COST_BUDGET, worth_cost_claim

    costs = _costs()
    costs["speed check"] = "ok"
    claim = worth_cost_claim(_pair(0.01, 0.04), costs, "smart_iqa_lite0", "hyperiqa_lite0")
    assert claim["claim"] == "smart_worth_cost" and claim["verdict"] == "supported"
    assert "0.95x the GFLOPs per patch" in claim["edition"] and "measured time" in claim["edition"]
    # significant, but the measured time is 2x HyperIQA's: over the budget
    dear = costs.assign(patches_per_s=[20.0, 20.0 / (COST_BUDGET + 0.5), 2.0])
    assert worth_cost_claim(_pair(0.01, 0.04), dear, "smart_iqa_lite0", "hyperiqa_lite0")["verdict"].startswith(
        "not supported (a significant gain, but 2.00x the cost")
    # a rejected speed is not used: the FLOPs alone decide the cost
    dear["speed check"] = ["ok", "rejected: x", "ok"]
    assert worth_cost_claim(_pair(0.01, 0.04), dear, "smart_iqa_lite0", "hyperiqa_lite0")["verdict"] == "supported"
    # the gain decides by the book's rule: significant the other way, not significant, too few rounds
    assert worth_cost_claim(_pair(0.01, -0.04, a_better=0.1), costs, "smart_iqa_lite0",
                            "hyperiqa_lite0")["verdict"].startswith("contradicted")
    assert worth_cost_claim(_pair(0.3, 0.01), costs, "smart_iqa_lite0",
                            "hyperiqa_lite0")["verdict"].startswith("not supported (no significant gain")
    few = _pair(np.nan, 0.04, rounds=3, tests_note="3 rounds; the rule needs 6")
    assert worth_cost_claim(few, costs, "smart_iqa_lite0", "hyperiqa_lite0")["verdict"].startswith("untested")
    assert worth_cost_claim(None, costs, "smart_iqa_lite0", "hyperiqa_lite0", "no run")["verdict"] == \
        "untested (no run)"


def test_trunk_pass_table_shows_each_path_its_gain_over_today_and_what_was_skipped(tmp_path):
    from iqalib.analysis import performance as perf

    result = {"machine": XEON, "today": "bf16", "native_bf16": True,
              "crops_per_s": {"eager_fp32": 40.0, "bf16": 60.0, "openvino_fp32": 120.0},
              "error_vs_eager_fp32": {"eager_fp32": 0.0, "bf16": 0.08, "openvino_fp32": 3e-6},
              "skipped": {"onnxruntime_fp32": "ModuleNotFoundError: No module named 'onnxruntime'"},
              "train_step_crops_per_s": {"whole_trunk_fp32": 7.5, "from_stage3_bf16": 30.0}}
    _write(tmp_path, trunk_pass=result)
    table = perf.trunk_pass_table(tmp_path)
    assert table.loc["openvino_fp32", "x today"] == 2.0 and table.loc["bf16", "note"] == "today's feature bank"
    assert table.loc["onnxruntime_fp32", "note"].startswith("skipped: ModuleNotFoundError")
    assert table.loc["training step, whole_trunk_fp32", "crops/s"] == 7.5
    assert "trunk_pass" in perf.TABLES and perf.benchmark_report(tmp_path, "trunk_pass") is not None
