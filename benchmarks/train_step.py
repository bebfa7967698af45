"""Patches/s of one training step on this CPU, setting against setting, and its share of a matmul's FLOP/s.

A training step is what the engine does per batch: forward on normalised
random patches (N, 3, 224, 224), L1 loss against random targets, backward,
AdamW step. Each model is measured under these settings, side by side in
one run:

* ``fp32``: float32, NCHW (the default);
* ``fp32_cl``: float32, ``channels_last`` model and input;
* ``bf16`` / ``bf16_cl``: ``torch.autocast('cpu', dtype=torch.bfloat16)``,
  without and with ``channels_last``;
* ``compile_cl``: ``torch.compile`` (inductor) of the model, fp32,
  ``channels_last``; the optimizer step stays eager. Compile time is
  reported separately and excluded from the step time.

FLOPs of a step: 3x the forward FLOPs counted by
:class:`torch.utils.flop_counter.FlopCounterMode` on a real fp32 batch
(convolutions and matrix products; a multiply-add is 2 FLOPs; optimizer and
elementwise work not counted). The counter's own backward count is kept as
``counted_step`` but not used: it overcounts grouped (depthwise) conv
backward by about the group count. Achieved GFLOP/s = step FLOPs / median step time; its fraction is
taken against a large square matmul of the same dtype, measured at the start
and at the end of this run (median of both), so the load of the machine
affects both sides alike.

bf16 without hardware support (no ``avx512_bf16`` / ``amx_bf16``) runs
through slow fallback kernels: a whole step would take minutes. With
``--bf16 auto`` (default) such a CPU gets only a probe, one bf16 +
channels_last step of the first model at batch 1, plus the bf16 matmul rate.

Each model's fp32 inference rate is measured in the same run by chapter 10's
own function (:func:`iqalib.experiments.measure_throughputs`: forward only,
eval mode, same batch), so "scoring is faster than training" is checked on
one machine under one load.

Also profiles where the time of a ``hyperiqa_lite0`` step goes
(``torch.profiler``, top ops by self CPU time).

Run: ``python benchmarks/train_step.py [--models ...] [--batch N] [--iters N] [--out PATH]``.
"""
from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import torch
import torch.nn.functional as F

from common import bf16_native, cpu_info, load_average, matmul_gflops, write_json

from iqalib.experiments import measure_throughputs
from iqalib.models import create_model, model_complexity

HERE = Path(__file__).resolve().parent
DEFAULT_MODELS = ("hyperiqa_lite0", "smart_iqa_lite0", "hyperiqa_resnet50", "smart_iqa_tiny")
SETTINGS = {
    # name: (autocast bf16, channels_last, torch.compile)
    "fp32": (False, False, False),
    "fp32_cl": (False, True, False),
    "bf16": (True, False, False),
    "bf16_cl": (True, True, False),
    "compile_cl": (False, True, True),
}
PATCH = 224


# ---------------------------------------------------------------- training step

def build(name: str, channels_last: bool, compiled: bool):
    torch.manual_seed(0)
    model = create_model(name, pretrained=False).train()
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=2e-4)
    forward = torch.compile(model) if compiled else model
    return model, forward, optimizer


def make_batch(batch: int, channels_last: bool):
    generator = torch.Generator().manual_seed(1)
    x = torch.randn(batch, 3, PATCH, PATCH, generator=generator)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    return x, torch.rand(batch, generator=generator)


def train_step(forward, optimizer, x, y, bf16: bool) -> None:
    with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        scores = forward(x)
    loss = F.l1_loss(scores.float(), y)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    optimizer.step()


def step_flops(name: str, batch: int) -> dict:
    """FLOPs of forward + backward of one fp32 step, counted on the real model."""
    from torch.utils.flop_counter import FlopCounterMode

    model, forward, optimizer = build(name, channels_last=False, compiled=False)
    x, y = make_batch(batch, channels_last=False)
    with FlopCounterMode(display=False) as counter:
        scores = forward(x)
        forward_flops = counter.get_total_flops()
        F.l1_loss(scores, y).backward()
    counted = counter.get_total_flops()
    # FlopCounterMode overcounts the backward of grouped (depthwise) convolutions by about the group
    # count (lite0's counted backward is ~36x its forward), so the step is taken as 3x the forward.
    return {"forward": int(forward_flops), "step": int(3 * forward_flops),
            "counted_step": int(counted), "counted_step_over_forward": round(counted / forward_flops, 2),
            "params": sum(p.numel() for p in model.parameters())}


def time_setting(name: str, setting: str, batch: int, warmup: int, iters: int) -> dict:
    """Median seconds of a step under ``setting``; warm-up steps (and compilation) excluded."""
    bf16, channels_last, compiled = SETTINGS[setting]
    _, forward, optimizer = build(name, channels_last, compiled)
    x, y = make_batch(batch, channels_last)
    first_start = time.perf_counter()
    train_step(forward, optimizer, x, y, bf16)
    first_s = time.perf_counter() - first_start
    for _ in range(warmup - 1):
        train_step(forward, optimizer, x, y, bf16)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        train_step(forward, optimizer, x, y, bf16)
        times.append(time.perf_counter() - start)
    median = statistics.median(times)
    result = {"batch": batch, "iters": iters, "median_s": round(median, 4), "min_s": round(min(times), 4),
              "max_s": round(max(times), 4), "patches_per_s": round(batch / median, 2)}
    if compiled:
        result["first_step_s_with_compile"] = round(first_s, 2)
    return result


def inference_rate(name: str, batch: int, warmup: int, iters: int) -> dict:
    """fp32 inference patches/s by chapter 10's own path (:func:`iqalib.experiments.measure_throughputs`).

    Measured in this run, on this machine, so the check "scoring is faster
    than training" compares two numbers of one machine and one load.
    """
    rates = measure_throughputs([name], batch_size=batch, repeats=iters, warmup=warmup)[name]
    return {"batch": batch, "precision": "fp32", "mode": "forward only, eval mode, no gradients",
            "patches_per_s": round(rates["patches_per_s"], 2),
            "patches_per_s_median": round(rates["patches_per_s_median"], 2)}


# ---------------------------------------------------------------- profile

def profile_top_ops(name: str, batch: int, channels_last: bool, top: int = 10) -> dict:
    """Top ``top`` ops by self CPU time over two profiled steps (after one warm-up)."""
    from torch.profiler import ProfilerActivity, profile

    _, forward, optimizer = build(name, channels_last, compiled=False)
    x, y = make_batch(batch, channels_last)
    train_step(forward, optimizer, x, y, False)
    with profile(activities=[ProfilerActivity.CPU]) as prof:
        for _ in range(2):
            train_step(forward, optimizer, x, y, False)
    events = sorted(prof.key_averages(), key=lambda e: e.self_cpu_time_total, reverse=True)
    total = sum(e.self_cpu_time_total for e in events)
    ops = [{"op": e.key, "calls": e.count // 2, "self_ms_per_step": round(e.self_cpu_time_total / 2e3, 2),
            "self_share": round(e.self_cpu_time_total / total, 3)} for e in events[:top]]
    return {"model": name, "batch": batch, "setting": "fp32_cl" if channels_last else "fp32",
            "step_ms_profiled": round(total / 2e3, 1), "top_ops": ops}


# ---------------------------------------------------------------- report

def print_table(result: dict) -> None:
    ref = result["matmul"]
    print(f"\n{result['machine']['model_name']}, {result['machine']['threads']} threads, torch "
          f"{result['machine']['torch']}; load {result['load_average_start']} -> {result['load_average_end']}")
    print(f"matmul fp32 {ref['fp32']['gflops']} GFLOP/s (n={ref['fp32']['size']}), "
          f"bf16 {ref['bf16']['gflops']} GFLOP/s (n={ref['bf16']['size']})")
    print(f"{'model':<20}{'setting':<12}{'patch/s':>9}{'step s':>9}{'GFLOP/s':>9}{'of mm':>7}")
    for name, entry in result["models"].items():
        for setting, row in entry["settings"].items():
            if "skipped" in row:
                print(f"{name:<20}{setting:<12}  skipped: {row['skipped'][:60]}")
                continue
            print(f"{name:<20}{setting:<12}{row['patches_per_s']:>9.2f}{row['median_s']:>9.3f}"
                  f"{row['gflops']:>9.1f}{row['fraction_of_matmul']:>7.0%}")
    probe = result.get("bf16_probe")
    if probe and "patches_per_s" in probe:
        print(f"bf16 probe ({probe['model']}, {probe['setting']}, batch {probe['batch']}): "
              f"{probe['patches_per_s']:.3f} patches/s, {probe['gflops']:.2f} GFLOP/s")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=list(DEFAULT_MODELS))
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--warmup", type=int, default=2, help="untimed steps per setting (the first compiles)")
    ap.add_argument("--iters", type=int, default=5, help="timed steps per setting; the median is reported")
    ap.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    ap.add_argument("--compile-models", nargs="*", default=[],
                    help="models that also get the compile setting (off by default: inductor compiling a "
                         "training graph takes many minutes on 2 shared cores)")
    ap.add_argument("--bf16", choices=("auto", "always", "never"), default="auto",
                    help="auto: full bf16 settings only on CPUs with native bf16, else one probe step")
    ap.add_argument("--profile-model", default="hyperiqa_lite0")
    ap.add_argument("--out", type=Path, default=HERE / "results" / "train_step.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    started = time.perf_counter()
    machine = cpu_info()
    load_start = load_average()
    run_bf16 = args.bf16 == "always" or (args.bf16 == "auto" and bf16_native(machine))
    matmul_runs = {"fp32": [matmul_gflops(torch.float32)], "bf16": [matmul_gflops(torch.bfloat16)]}

    models = {}
    for name in args.models:
        flops = step_flops(name, args.batch)
        entry = {"flops_per_step": flops, "forward_gflops_per_patch": round(flops["forward"] / args.batch / 1e9, 3),
                 "settings": {}}
        for setting in args.settings:
            bf16, _, compiled = SETTINGS[setting]
            if compiled and name not in args.compile_models:
                entry["settings"][setting] = {"skipped": "not in --compile-models"}
            elif bf16 and not run_bf16:
                entry["settings"][setting] = {"skipped": "--bf16 never" if args.bf16 == "never" else
                                              "no native bf16 on this CPU (see bf16_probe and matmul.bf16)"}
            else:
                try:
                    entry["settings"][setting] = time_setting(name, setting, args.batch, args.warmup, args.iters)
                except Exception as error:  # e.g. inductor cannot compile here: report, keep measuring
                    entry["settings"][setting] = {"skipped": f"failed: {type(error).__name__}: {str(error)[:300]}"}
            print(f"{name} {setting}: {entry['settings'][setting]}", flush=True)
        entry["inference"] = inference_rate(name, args.batch, args.warmup, args.iters)
        print(f"{name} inference: {entry['inference']}", flush=True)
        models[name] = entry
        write_json(args.out, {"benchmark": "train_step", "partial": True, "machine": machine,
                              "load_average_start": load_start, "matmul_runs": matmul_runs, "models": models})

    probe = None
    if not run_bf16 and args.bf16 == "auto" and any(SETTINGS[s][0] for s in args.settings):
        # One step, no warm-up: an upper bound on the step time, enough to show the order of magnitude.
        name = args.models[0]
        _, forward, optimizer = build(name, channels_last=True, compiled=False)
        x, y = make_batch(1, channels_last=True)
        start = time.perf_counter()
        train_step(forward, optimizer, x, y, True)
        seconds = time.perf_counter() - start
        probe = {"model": name, "setting": "bf16_cl", "batch": 1, "iters": 1, "warmup": 0,
                 "step_s": round(seconds, 2), "patches_per_s": round(1 / seconds, 3),
                 "gflops": round(models[name]["flops_per_step"]["step"] / args.batch / seconds / 1e9, 3)}
        print(f"bf16 probe: {probe}", flush=True)

    profile = profile_top_ops(args.profile_model, args.batch, channels_last=True) if args.profile_model else None
    matmul_runs["fp32"].append(matmul_gflops(torch.float32))
    matmul_runs["bf16"].append(matmul_gflops(torch.bfloat16))
    matmul = {dtype: {"size": runs[-1]["size"], "gflops": round(statistics.median(r["gflops"] for r in runs), 2),
                      "runs": runs} for dtype, runs in matmul_runs.items()}

    for entry in models.values():
        for setting, row in entry["settings"].items():
            if "median_s" in row:
                reference = matmul["bf16" if SETTINGS[setting][0] else "fp32"]["gflops"]
                row["gflops"] = round(entry["flops_per_step"]["step"] / row["median_s"] / 1e9, 2)
                row["fraction_of_matmul"] = round(row["gflops"] / reference, 3)
        timed = {s: r for s, r in entry["settings"].items() if "patches_per_s" in r}
        if timed:
            best = max(timed, key=lambda s: timed[s]["patches_per_s"])
            entry["best"] = {"setting": best, "patches_per_s": timed[best]["patches_per_s"],
                             "fraction_of_matmul": timed[best]["fraction_of_matmul"]}
    if probe:
        probe["fraction_of_bf16_matmul"] = round(probe["gflops"] / matmul["bf16"]["gflops"], 3)

    result = {
        "benchmark": "train_step",
        "machine": machine,
        "bf16_native": bf16_native(machine),
        "load_average_start": load_start,
        "load_average_end": load_average(),
        "step": "forward + L1 loss + backward + AdamW step, random normalised patches, model in train mode",
        "flop_count": "step = 3 x forward FLOPs from torch.utils.flop_counter.FlopCounterMode (conv and matmul, "
                      "multiply-add = 2); counted_step (the counter's forward + backward) overcounts depthwise "
                      "conv backward and is not used",
        "batch": args.batch, "warmup": args.warmup, "iters": args.iters,
        "matmul": matmul,
        "models": models,
        "bf16_probe": probe,
        "profile": profile,
        "forward_gflops_check": {name: round(model_complexity(name)["flops"] / 1e9, 3) for name in args.models},
        "wall_s": round(time.perf_counter() - started, 1),
    }
    write_json(args.out, result)
    print_table(result)
    print(f"wrote {args.out} ({result['wall_s']} s)")
    return result


if __name__ == "__main__":
    main()
