"""Tables for the performance chapter, read from ``benchmarks/results/*.json`` and the runs' own logs.

Every benchmark script (``benchmarks/``, run by ``make bench``) writes one
JSON file; each function here turns one of them into a small table, or
returns None when that benchmark has not been run on this machine (the
chapter then says so instead of showing a number from elsewhere).
:func:`engine_log_table` summarises what the training engine itself logged
per epoch (patches/s, loader wait) in the runs of a book profile.

:func:`performance_sentences` and :func:`precision_sentences` close the
chapter: a pipeline measured above the model-alone ceiling is reported as a
measurement error, and bf16's change of SRCC is weighed against what a
change of numerics alone does.

**One machine per table.** Every benchmark and chapter 10's own measurement
record the same machine block (:func:`machine_block`: CPU model, CPU count,
torch threads, instruction-set limits); :func:`machine_label` names it, and
numbers with different labels are never put in one table or compared
(:func:`speed_tables` gives one table per machine). Each row of a speed table
says what was counted, in which unit, at which batch and precision, and
carries the measurement's own check: a row its check rejects says why.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
from pathlib import Path
from typing import Mapping

import numpy as np
import pandas as pd
import torch

from iqalib.analysis.words import counted
from iqalib.engine.precision import isa_limits
from iqalib.numerics import denormal_state

LOADER_WAIT_TARGET = 0.05  # share of an epoch spent waiting for data that the engine aims to stay under
SAME_SPEED = 0.05  # streaming within this fraction of the naive loop's rate is "no different"


def read_result(results_dir: str | Path, name: str) -> dict | None:
    path = Path(results_dir) / f"{name}.json"
    if not path.is_file():
        return None
    return json.loads(path.read_text())


CPU_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_tile")


def machine_block() -> dict:
    """This machine as every speed measurement records it: CPU model, flags, torch, threads, ISA limits."""
    fields = {}
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=True).stdout
        fields = {k.strip(): v.strip() for k, _, v in (line.partition(":") for line in out.splitlines())}
    except (OSError, subprocess.CalledProcessError):
        pass
    flags = set(fields.get("Flags", "").split())
    return {
        "model_name": fields.get("Model name", platform.processor() or platform.machine()),
        "cpus": os.cpu_count(),
        "flags": {f: f in flags for f in CPU_FLAGS},
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "isa_limits": isa_limits(),  # e.g. ONEDNN_MAX_CPU_ISA=AVX2: this CPU measured as a lesser one
        "mkldnn": torch.backends.mkldnn.is_available(),
        "denormals": denormal_state(),  # flushed by iqalib.numerics unless IQALIB_DENORMALS=keep
    }


def machine_label(machine: Mapping | None) -> str:
    """The name of a machine block; two measurements are comparable only when their labels are equal.

    CPU model, CPU count, the instruction set torch used, any limit put on it,
    and the torch threads: the same CPU limited to AVX2 or run on one thread is
    another machine for speed. A block that lacks a field says so.
    """
    machine = machine or {}
    cpu = machine.get("model_name") or (f"{machine['processor']} (CPU model not recorded)"
                                        if machine.get("processor") else "CPU not recorded")
    parts = [cpu, f"{machine.get('cpus', '?')} CPUs", machine.get("cpu_capability") or "ISA not recorded"]
    if machine.get("isa_limits"):
        parts.append("limited by " + " ".join(f"{k}={v}" for k, v in sorted(machine["isa_limits"].items())))
    threads = machine.get("threads", "?")
    parts.append(f"{threads} thread" + ("" if threads == 1 else "s"))
    return ", ".join(parts)


def machine_line(result: dict | None) -> str:
    """One line naming the machine and the load a result was measured under."""
    if not result:
        return "not measured"
    machine = result.get("machine") or {}
    cpu = machine.get("model_name") or machine.get("processor") or result.get("device", "?")
    parts = [f"{cpu}, {machine.get('cpus', '?')} CPUs, torch {machine.get('torch', result.get('torch', '?'))}"]
    if machine.get("isa_limits"):  # the CPU was measured as a lesser one
        parts.append("limited by " + " ".join(f"{k}={v}" for k, v in sorted(machine["isa_limits"].items())))
    if "load_average_start" in result:
        parts.append(f"1-min load average {result['load_average_start'][0]} at the start")
    return "; ".join(parts)


def patch_pipeline_table(results_dir) -> pd.DataFrame | None:
    r = read_result(results_dir, "patch_pipeline")
    if r is None:
        return None
    rows = []
    for what, key, speedup in (("uint8 patches", "uint8_patches_per_s", "speedup_uint8"),
                               ("normalised float patches", "normalised_float_patches_per_s",
                                "speedup_normalised")):
        rows.append({"output": what, "decode per patch (original)": r[key]["decode_per_patch"],
                     "decode once (iqalib)": r[key]["decode_once"], "speed-up": r[speedup]})
    return pd.DataFrame(rows).set_index("output")


def train_step_table(results_dir) -> pd.DataFrame | None:
    r = read_result(results_dir, "train_step")
    if r is None:
        return None
    rows = []
    for model, entry in r["models"].items():
        for setting, m in entry["settings"].items():
            if "patches_per_s" not in m:
                continue
            rows.append({"model": model, "setting": setting, "batch": m["batch"],
                         "training step, patches/s (median)": m["patches_per_s"],
                         "step GFLOP/s (3x forward FLOPs)": m["gflops"], "of matmul": m["fraction_of_matmul"]})
        if entry.get("inference"):  # iqalib.experiments.measure_throughputs in the same run: chapter 10's path
            inference = entry["inference"]
            rows.append({"model": model, "setting": "inference, fp32", "batch": inference["batch"],
                         "inference, patches/s (median)": inference["patches_per_s_median"]})
    return pd.DataFrame(rows).set_index(["model", "setting"])


def train_step_reference(results_dir) -> dict | None:
    """The ``train_step`` benchmark as a cross-check of inference speed: its machine and per-model rates.

    ``rates``: per model, fp32 training-step patches/s of the fastest step
    (batch / ``min_s``) of its faster fp32 setting, the same rule as
    :func:`iqalib.experiments.measure_throughputs` applies to inference, so
    the two compare like with like. ``machine`` is the :func:`machine_label`
    (compare only on equal labels). None when the benchmark was not run.
    """
    r = read_result(results_dir, "train_step")
    if r is None:
        return None
    rates = {}
    for model, entry in r["models"].items():
        fastest = [m["batch"] / m["min_s"] for setting, m in entry["settings"].items()
                   if setting.startswith("fp32") and m.get("min_s")]
        if fastest:
            rates[model] = max(fastest)
    return {"machine": machine_label(r.get("machine")), "batch": r.get("batch"), "rates": rates}


def head_training_table(results_dir) -> pd.DataFrame | None:
    r = read_result(results_dir, "head_training")
    if r is None:
        return None
    rows = []
    for model, m in r["models"].items():
        rows.append({
            "model": model,
            "cached features, patches/s": m["patches_per_s"]["cached_features"],
            "trunk every step, patches/s": m["patches_per_s"]["trunk_every_step"],
            "speed-up": m["speedup"],
            "head GFLOP/s": m["head_train_gflops"],
            "of matmul": m.get("head_fraction_of_matmul"),
            "LIVE-C epoch, 10 patches (s)": m["livec_epoch_s"]["cached_10_patches"],
            "LIVE-C epoch, 2 patches (s)": m["livec_epoch_s"]["cached_2_patches"],
            "ablation, cached (min)": m["livec_ablation_minutes"]["cached_features"],
            "ablation, trunk every step (min)": m["livec_ablation_minutes"]["trunk_every_step"],
        })
    return pd.DataFrame(rows).set_index("model")


def loader_wait_table(results_dir) -> pd.DataFrame | None:
    r = read_result(results_dir, "loader_wait")
    if r is None:
        return None
    frame = pd.DataFrame(r["settings"]).T
    frame.index.name = f"{r['model']}, fine-tuning"
    return frame


def scoring_table(results_dir) -> pd.DataFrame | None:
    """Scoring rates in images/s, the model-alone ceiling and each pipeline's share of it.

    Results written before the ceiling was measured at both batch sizes (no
    ``consistent`` key) are shown as they are, with ``consistent`` computed
    here: a pipeline faster than the model alone means the measurement is wrong.
    """
    r = read_result(results_dir, "scoring")
    if r is None:
        return None
    rates = r["images_per_s"]
    ceiling = r["forward_only_images_per_s"]
    row = {"model": r["model"], "images": r["images"], "patches per image": r["patches_per_image"],
           "one at a time (images/s)": rates["one_at_a_time"],
           f"iqalib score, batch {r['batch_size']} (images/s)": rates["score_paths"]}
    if "score_paths_small_batch" in rates:
        row[f"iqalib score, batch {r['patches_per_image']} (images/s)"] = rates["score_paths_small_batch"]
    row.update({"speed-up": r["speedup"], "model alone, best batch (images/s)": ceiling,
                "consistent": r.get("consistent", all(v <= ceiling * 1.05 for v in rates.values()))})
    return pd.DataFrame([row]).set_index("model")


def score_memory_table(results_dir) -> pd.DataFrame | None:
    """Peak RSS of ``iqalib score`` by number of images, whatever keys the script wrote per run."""
    r = read_result(results_dir, "score_memory")
    if r is None:
        return None
    runs = r.get("runs") or r.get("results") or []
    return pd.DataFrame(runs) if runs else pd.DataFrame([{k: v for k, v in r.items() if k != "machine"}])


def gpu_step_table(results_dir) -> pd.DataFrame | None:
    r = read_result(results_dir, "gpu_step")
    if r is None:
        return None
    return pd.DataFrame([{
        "device": r["device"], "model": r["model"], "batch": r["batch"], **r["setting"],
        "train patches/s": r["step"]["train_patches_per_s"], "eval patches/s": r["step"]["eval_patches_per_s"],
        "train TFLOP/s": r["step"]["train_tflops"], "matmul TFLOP/s": r["matmul_tflops"],
        "of matmul": r["step"]["train_fraction_of_matmul"],
        "KonIQ epoch (min)": r["projection"]["koniq_epoch_minutes"],
        "KonIQ test pass (min)": r["projection"]["koniq_test_pass_minutes"],
    }]).set_index("device")


def engine_log_table(out_dir: str | Path) -> pd.DataFrame:
    """Per run under ``out_dir``: epochs logged, patches/s of first and later epochs, the largest loader wait.

    The first epoch of a round carries one-time costs (allocators, kernel
    selection, and whatever a round sets up lazily), so it is reported apart:
    ``first epoch patches/s`` (median over rounds) and ``patches/s`` (median
    over the later epochs of all rounds; the first epoch's when a round has
    only one). The one-time trunk feature pass is never in these numbers: the
    engine times an epoch's training steps only.
    """
    rows = []
    for history in sorted(Path(out_dir).glob("*/round_*/history.csv")):
        frame = pd.read_csv(history)
        if frame.empty or "loader_wait_fraction" not in frame:
            continue
        rate = frame["patches_per_s"].to_numpy(dtype=float)
        for position, value in enumerate(rate):
            rows.append({"run": history.parent.parent.name, "first": position == 0, "only": len(rate) == 1,
                         "patches/s": value, "wait": float(frame["loader_wait_fraction"].iloc[position])})
    columns = ["epochs", "first epoch patches/s", "patches/s", "max loader wait"]
    if not rows:
        return pd.DataFrame(columns=columns)
    epochs = pd.DataFrame(rows)
    table = {}
    for run, part in epochs.groupby("run"):
        later = part[~part["first"] | part["only"]]
        table[run] = {"epochs": len(part), "first epoch patches/s": part.loc[part["first"], "patches/s"].median(),
                      "patches/s": later["patches/s"].median(), "max loader wait": part["wait"].max()}
    return pd.DataFrame.from_dict(table, orient="index")[columns]


def run_time_table(out_dir: str | Path) -> pd.DataFrame:
    """Per run under ``out_dir``: rounds and the training wall time they logged (minutes, summed).

    This is the compute the profile cost when its runs were made, whether or not
    this execution of the book reused them; the one-time trunk feature pass and
    image decoding are not included.
    """
    rows = []
    for path in sorted(Path(out_dir).glob("*/round_*/results.json")):
        result = json.loads(path.read_text())
        rows.append({"run": path.parent.parent.name, "seconds": float(result.get("train_seconds", 0.0))})
    if not rows:
        return pd.DataFrame(columns=["rounds", "training minutes"])
    runs = pd.DataFrame(rows).groupby("run")["seconds"]
    table = pd.DataFrame({"rounds": runs.count(), "training minutes": runs.sum() / 60})
    table.loc["all runs"] = [table["rounds"].sum(), table["training minutes"].sum()]
    return table


def precision_table(results_dir) -> pd.DataFrame | None:
    """A profile's chapter-3 run in fp32 and bf16 (``benchmarks/precision.py``): SRCC and wall time per precision.

    A ``fp32_1thread`` row is the control arm: fp32 again on one thread (only the order of sums changes).
    """
    r = read_result(results_dir, "precision")
    if r is None:
        return None
    rows = []
    for precision, arm in r["arms"].items():
        if "skipped" in arm:
            rows.append({"precision": precision, "rounds": 0, "note": arm["skipped"]})
            continue
        wall = arm.get("wall_seconds")
        rows.append({"precision": precision, "rounds": arm["rounds"], "threads": arm.get("threads"),
                     "median test SRCC": round(arm["median_srcc"], 4),
                     "SRCC range": f"{arm['min_srcc']:.3f} to {arm['max_srcc']:.3f}",
                     "median test PLCC": round(arm["median_plcc"], 4),
                     "run wall time (min)": None if wall is None else round(wall / 60, 2),
                     "head training (min)": round(arm["head_seconds"] / 60, 2), "note": ""})
    return pd.DataFrame(rows).set_index("precision")


def trunk_pass_table(results_dir) -> pd.DataFrame | None:
    """The trunk pass in every way the CPU offers (``benchmarks/trunk_pass.py``): crops/s, the gain over the
    setting the feature bank uses today, and the features' distance from eager fp32; then the training steps
    of a trunk that learns (whole, or its last stages on cached earlier ones), where measured."""
    r = read_result(results_dir, "trunk_pass")
    if r is None:
        return None
    today = r["crops_per_s"].get(r["today"])
    rows = [{"pass": name, "crops/s": rate, "x today": round(rate / today, 2) if today else None,
             "error vs eager fp32": r["error_vs_eager_fp32"].get(name),
             "note": "today's feature bank" if name == r["today"] else ""}
            for name, rate in r["crops_per_s"].items()]
    rows += [{"pass": name, "crops/s": None, "x today": None, "error vs eager fp32": None,
              "note": f"skipped: {why}"} for name, why in r.get("skipped", {}).items()]
    rows += [{"pass": f"training step, {name}", "crops/s": rate, "x today": None, "error vs eager fp32": None,
              "note": "forward, backward and AdamW of the trained blocks"}
             for name, rate in (r.get("train_step_crops_per_s") or {}).items()]
    return pd.DataFrame(rows).set_index("pass")


TABLES = {"patch_pipeline": patch_pipeline_table, "train_step": train_step_table,
          "head_training": head_training_table, "loader_wait": loader_wait_table,
          "scoring": scoring_table, "score_memory": score_memory_table, "gpu_step": gpu_step_table,
          "precision": precision_table, "trunk_pass": trunk_pass_table}


def benchmark_report(results_dir: str | Path, name: str):
    """Print which machine measured benchmark ``name``; return its table, or a line saying it was not run."""
    result = read_result(results_dir, name)
    if result is None:
        return f"{name}: not run on this machine (python benchmarks/{name}.py)"
    print(f"{name}: {machine_line(result)}")
    return TABLES[name](results_dir)


# ------------------------------------------------------------------ headline speeds, one table per machine

SPEED_COLUMNS = ["benchmark", "measured", "model", "batch", "precision", "rate", "unit", "check"]
SPEED_BENCHMARKS = ("train_step", "head_training", "scoring")
STEP_GFLOPS = "GFLOP/s (3x the forward's conv and matmul FLOPs)"  # a step = forward + backward (2x forward)


def _speed_row(benchmark: str, measured: str, rate: float, unit: str, *, model: str = "", batch=None,
               precision: str = "fp32", check: str = "ok") -> dict:
    return {"benchmark": benchmark, "measured": measured, "model": model, "batch": batch,
            "precision": precision, "rate": float(rate), "unit": unit, "check": check}


def _train_step_rows(r: Mapping) -> list[dict]:
    """The matmul reference, each model's fastest setting (patches/s and GFLOP/s), and inference in the same run."""
    rows = []
    matmul = (r.get("matmul") or {}).get("fp32")
    if matmul:
        rows.append(_speed_row("train_step", f"{matmul['size']}x{matmul['size']} matrix product",
                               matmul["gflops"], "GFLOP/s (2n^3 FLOPs)"))
    for model, entry in r["models"].items():
        best = entry.get("best")
        if not best:
            continue
        step = entry["settings"][best["setting"]]
        precision = "bf16 autocast" if best["setting"].startswith("bf16") else "fp32"
        what = f"training step, whole model ({best['setting']}), median step"
        rows.append(_speed_row("train_step", what, step["patches_per_s"], "patches/s", model=model,
                               batch=step["batch"], precision=precision))
        rows.append(_speed_row("train_step", what, step["gflops"], STEP_GFLOPS, model=model,
                               batch=step["batch"], precision=precision))
        inference = entry.get("inference")  # iqalib.experiments.measure_throughputs, in the same run
        if inference:
            slower = inference["patches_per_s_median"] < step["patches_per_s"]
            rows.append(_speed_row(
                "train_step", "inference, forward only (eval, no gradients), median batch",
                inference["patches_per_s_median"], "patches/s", model=model, batch=inference["batch"],
                check=(f"rejected: slower than this model's training step ({step['patches_per_s']:.2f} "
                       "patches/s) in the same run" if slower else "ok")))
    return rows


def _head_training_rows(r: Mapping) -> list[dict]:
    rows = []
    for model, m in r["models"].items():
        what = "training step, head only on cached trunk features"
        rows.append(_speed_row("head_training", what, m["patches_per_s"]["cached_features"], "patches/s",
                               model=model, batch=m["batch"]))
        rows.append(_speed_row("head_training", what, m["head_train_gflops"], STEP_GFLOPS, model=model,
                               batch=m["batch"]))
    return rows


def _scoring_rows(r: Mapping) -> list[dict]:
    rates, ceiling = r["images_per_s"], r["forward_only_images_per_s"]
    consistent = r.get("consistent", all(v <= ceiling * 1.05 for v in rates.values()))
    unit = f"images/s ({r['patches_per_image']} crops each)"
    check = "ok" if consistent else "rejected: a pipeline measured faster than the model alone, which cannot be"
    return [_speed_row("scoring", "iqalib score (decode, crop, forward)", rates["score_paths"], unit,
                       model=r["model"], batch=r["batch_size"], check=check),
            _speed_row("scoring", "model alone on ready crops, better batch", ceiling, unit, model=r["model"],
                       check=check)]


_SPEED_ROWS = {"train_step": _train_step_rows, "head_training": _head_training_rows, "scoring": _scoring_rows}


def speed_rows(name: str, result: Mapping) -> pd.DataFrame:
    """The headline speeds of one benchmark result, one row per number, with its unit and its check.

    A row its own check rejects keeps its number and says why in ``check``
    (a figure must not show it); a result measured under load says so there too.
    """
    rows = pd.DataFrame(_SPEED_ROWS[name](result), columns=SPEED_COLUMNS).astype({"batch": "Int64"})
    busy = loaded_machine(result)
    if busy:
        load = max(max(result.get(k) or [0.0]) for k in ("load_average_start", "load_average_end"))
        rows.loc[rows["check"] == "ok", "check"] = f"measured under load {load:.1f}"
    return rows


def speed_tables(results_dir: str | Path, names=SPEED_BENCHMARKS) -> dict[str, pd.DataFrame]:
    """The headline speeds of benchmarks ``names``, one table per machine (:func:`machine_label`).

    Numbers measured on different machines, or the same CPU under other
    instruction-set limits or thread counts, never share a table. Benchmarks
    not run are left out.
    """
    tables: dict[str, list[pd.DataFrame]] = {}
    for name in names:
        result = read_result(results_dir, name)
        if result is not None:
            tables.setdefault(machine_label(result.get("machine")), []).append(speed_rows(name, result))
    return {label: pd.concat(parts, ignore_index=True) for label, parts in tables.items()}


def machines_table(results_dir: str | Path, names=tuple(TABLES)) -> pd.DataFrame:
    """Which machine measured each benchmark in ``results_dir`` (:func:`machine_label`), and under what load."""
    rows = []
    for name in names:
        result = read_result(results_dir, name)
        if result is None:
            continue
        loads = [v for k in ("load_average_start", "load_average_end") for v in result.get(k) or []]
        load = max(loads) if loads else np.nan
        rows.append({"benchmark": name, "machine": machine_label(result.get("machine")),
                     "largest 1-min load average": load})
    return pd.DataFrame(rows, columns=["benchmark", "machine", "largest 1-min load average"]).set_index("benchmark")


# ------------------------------------------------------------------ what the numbers say

def loaded_machine(result: Mapping) -> str | None:
    """A warning when a benchmark ran while other work held the CPUs (load average above their count)."""
    cpus = (result.get("machine") or {}).get("cpus") or 1
    loads = [max(result.get(key) or [0.0]) for key in ("load_average_start", "load_average_end")]
    if max(loads) <= cpus:
        return None
    return (f"These rates were measured while other work loaded the machine (load average up to "
            f"{max(loads):.1f} on {cpus} CPUs): they show that machine's share, not what it can do; "
            "`make bench` on a quiet machine measures again.")


def _scoring_sentences(scoring: Mapping) -> list[str]:
    """The scoring pipelines against the model-alone ceiling, and streaming against the naive loop."""
    out = [busy] if (busy := loaded_machine(scoring)) else []
    rates = scoring["images_per_s"]
    ceiling = scoring["forward_only_images_per_s"]
    above = [name for name, value in rates.items() if value > ceiling]
    if above:
        return out + [f"Inconsistent measurement: {' and '.join(above)} {'is' if len(above) == 1 else 'are'} "
                      "measured faster than the model alone "
                      f"({ceiling:.2f} images/s), which cannot be; re-measure on a quiet machine."]
    out.append(f"Scoring reaches {rates['score_paths']:.2f} images/s with iqalib score and "
               f"{rates['one_at_a_time']:.2f} one image at a time, against {ceiling:.2f} for the model "
               f"alone: the pipelines run at {rates['score_paths'] / ceiling:.0%} and "
               f"{rates['one_at_a_time'] / ceiling:.0%} of the ceiling.")
    speedup = rates["score_paths"] / rates["one_at_a_time"]
    sentence = (f"Streaming is {speedup:.2f}x the naive loop on this machine ("
                + ("faster" if speedup > 1 + SAME_SPEED else "slower" if speedup < 1 - SAME_SPEED
                   else "no different") + ")")
    if "score_paths_small_batch" in rates:
        sentence += (f"; with a batch of one image's crops it scores {rates['score_paths_small_batch']:.2f} "
                     "images/s, which separates the effect of the larger batch from that of the decode "
                     "threads")
    return out + [sentence + "."]


def performance_sentences(scoring: Mapping | None, engine: pd.DataFrame | None = None) -> list[str]:
    """The scoring benchmark against its ceiling, and the engine's loader wait."""
    out = (["The scoring benchmark was not run on this machine."] if scoring is None
           else _scoring_sentences(scoring))
    if engine is not None and len(engine) and "max loader wait" in engine:
        wait = float(engine["max loader wait"].max())
        out.append(f"Waiting for data took at most {100 * wait:.2f}% of any epoch of this profile's runs "
                   f"({'under' if wait < LOADER_WAIT_TARGET else 'above'} the {LOADER_WAIT_TARGET:.0%} target).")
    return out


def precision_sentences(result: Mapping | None) -> list[str]:
    """bf16 autocast against fp32 on one profile's chapter-3 run (``benchmarks/precision.py``)."""
    if result is None:
        return ["The precision benchmark (bf16 against fp32) was not run on this machine."]
    arms, tolerance = result["arms"], float(result.get("tolerance", 0.005))
    out = [loaded] if (loaded := loaded_machine(result)) else []
    skipped = arms.get("bf16", {}).get("skipped")
    if skipped or "fp32" not in arms or "test_srcc" not in arms.get("bf16", {}):
        return out + [f"bf16 was not trained here: {skipped or 'the benchmark did not finish'}; "
                      "`precision: auto` keeps fp32 on this CPU."]
    fp32, bf16 = arms["fp32"], arms["bf16"]
    diff = bf16["median_srcc"] - fp32["median_srcc"]
    paired = np.subtract(bf16["test_srcc"], fp32["test_srcc"])
    within = abs(diff) <= tolerance
    out.append(f"On {result['profile']}'s chapter-3 run ({fp32['rounds']} rounds), bf16 autocast gives median test "
               f"SRCC {bf16['median_srcc']:.4f} against fp32's {fp32['median_srcc']:.4f} ({diff:+.4f}; "
               f"{'within' if within else 'outside'} the {tolerance:g} tolerance); round by round the two differ "
               f"by {np.median(np.abs(paired)):.4f} in the median (largest {np.abs(paired).max():.4f}).")
    control = arms.get("fp32_1thread", {})
    if "test_srcc" in control:  # fp32 again on one thread: a change of numerics alone
        out += _numerics_control_sentences(control, fp32, paired, tolerance)
    if fp32.get("wall_seconds") and bf16.get("wall_seconds"):
        out.append(f"The run took {bf16['wall_seconds'] / 60:.1f} min in bf16 and {fp32['wall_seconds'] / 60:.1f} "
                   f"min in fp32 ({fp32['wall_seconds'] / bf16['wall_seconds']:.1f}x), trunk pass included; the head "
                   f"trainings alone {bf16['head_seconds'] / 60:.1f} and {fp32['head_seconds'] / 60:.1f} min.")
    return out


def _numerics_control_sentences(control: Mapping, fp32: Mapping, paired: np.ndarray, tolerance: float) -> list[str]:
    """fp32 on one thread against fp32 on several: how far a change of numerics alone moves the run."""
    floor = np.abs(np.subtract(control["test_srcc"], fp32["test_srcc"]))
    change = control["median_srcc"] - fp32["median_srcc"]
    moved = np.median(np.abs(paired))
    return [f"The control, fp32 again on {counted(int(control['threads']), 'thread')} instead of "
            f"{fp32.get('threads', 'several')} (the same trunk features; only the order of the head's sums "
            f"changes), moves the median test SRCC by {change:+.4f} "
            f"({'more' if abs(change) > tolerance else 'less'} than the {tolerance:g} tolerance) and each "
            f"round by {np.median(floor):.4f} in the median (largest {floor.max():.4f}).",
            f"So bf16's round-by-round change ({moved:.4f} in the median) is "
            + ("larger than" if moved > np.median(floor) else "within")
            + " what a change of numerics alone does on this run."]
