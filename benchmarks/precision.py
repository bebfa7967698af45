"""A book profile's chapter-3 run in fp32 and in bf16 autocast: same splits, seeds and budget.

``train.precision: auto`` picks bf16 on a CPU only where a quick matmul probe
shows it faster (:mod:`iqalib.engine.precision`). This measures what that
choice does to a real run: chapter 3's configuration of a profile (by default
``livec``: HyperIQA's head on the frozen Lite0 trunk, 10 rounds of an
80/10/10 split) trained twice, once per precision, each from its own trunk
pass. Reported per precision: every round's test SRCC/PLCC, the median and
range, the wall time of the whole run (trunk pass included) and of the head
trainings alone; and the paired median SRCC difference (bf16 - fp32; the
goal: within 0.005). Where the probe finds bf16 slower than fp32 (no native
bf16), bf16 is not trained: emulated bf16 runs about 100x slower, and the
result says so instead.

``--control`` adds a third arm: fp32 again, on 1 thread instead of the
machine's threads, reading the fp32 arm's trunk features. Only the order of
the head's floating-point sums changes, so its SRCC change is the floor that
any numerics change (bf16 included) moves a run by; the tolerance is read
against it.

Runs are written to ``--runs`` (default ``runs/bench/precision/<profile>``,
one folder per precision, never mixed with the book's runs), and so is the
cache of trunk features (``$IQALIB_CACHE`` is set to ``<runs>/cache``), so
each precision pays its own trunk pass and the user's cache is not touched.
A finished run is read back, so an interrupted benchmark continues where it
stopped.
The profile defaults to ``livec`` where its data set is present, else ``demo``.
Run: ``python benchmarks/precision.py [--profile P] [--rounds N] [--epochs N] [--control] [--out JSON]``.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np
import torch

from common import RESULTS, cpu_info, load_average, write_json

from iqalib.book import ROOT, load_profile
from iqalib.engine.precision import cpu_probe
from iqalib.experiments import run_config, run_or_load

PRECISIONS = ("fp32", "bf16")
TOLERANCE = 0.005  # the largest median SRCC change bf16 may cost
RUN_KEYS = ("rounds", "epochs", "batch_size", "train_patches", "test_patches", "trunk_lr", "freeze_backbone")


def chapter3_keys(profile: str, rounds: int | None, epochs: int | None) -> dict:
    params = load_profile(profile, ROOT)["03_baseline"]
    keys = {k: params["recipe"][k] for k in RUN_KEYS if k in params["recipe"]}
    keys.update({k: v for k, v in (("rounds", rounds), ("epochs", epochs)) if v is not None})
    data_root = params.get("data_root")
    if data_root is not None and not Path(data_root).is_absolute():
        data_root = str((ROOT / data_root).resolve())
    return {"model": params["model"], "dataset": params["dataset"], "data_root": data_root,
            "split_seed": params["split_seed"], "fractions": params["fractions"], "seed": params["seed"], **keys}


CONTROL = "fp32_1thread"  # the control arm: fp32 on one thread


def measure(keys: dict, precision: str, out: Path, threads: int | None = None) -> dict:
    """Train (or read back) the run in ``precision``; ``threads`` names a control arm run on that many threads."""
    name = f"{keys['model']}_{precision}" + (f"_{threads}thread" if threads else "")
    config = run_config(name, out_dir=out, device="cpu", precision=precision, progress=False, **keys)
    previous = torch.get_num_threads()
    torch.set_num_threads(threads or previous)
    try:
        start = time.perf_counter()
        results = run_or_load(config)
        wall = time.perf_counter() - start
    finally:
        torch.set_num_threads(previous)
    rounds = results["round_results"]
    srcc = [r["test"]["srcc"] for r in rounds]
    plcc = [r["test"]["plcc"] for r in rounds]
    head = float(sum(r["train_seconds"] for r in rounds))
    return {"precision": rounds[0]["precision"]["precision"], "threads": threads or previous,
            "rounds": len(rounds), "test_srcc": srcc, "test_plcc": plcc,
            "median_srcc": float(np.median(srcc)), "min_srcc": float(np.min(srcc)), "max_srcc": float(np.max(srcc)),
            "median_plcc": float(np.median(plcc)), "head_seconds": head,
            # a run read back from an earlier call costs nothing now: its wall time is then unknown
            "wall_seconds": wall if wall > 0.5 * head else None}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--profile", default=None, help="default: livec where its data set is present, else demo")
    ap.add_argument("--rounds", type=int, default=None, help="default: the profile's chapter-3 rounds")
    ap.add_argument("--epochs", type=int, default=None, help="default: the profile's chapter-3 epochs")
    ap.add_argument("--runs", type=Path, default=None, help="run folders (default runs/bench/precision/PROFILE)")
    ap.add_argument("--out", type=Path, default=RESULTS / "precision.json", help="the result JSON")
    ap.add_argument("--control", action="store_true",
                    help="also train fp32 on 1 thread: the SRCC change of a numerics change alone")
    args = ap.parse_args(argv)
    if args.profile is None:
        livec = chapter3_keys("livec", None, None)["data_root"]
        args.profile = "livec" if livec and Path(livec).exists() else "demo"
    keys = chapter3_keys(args.profile, args.rounds, args.epochs)
    if keys["data_root"] is not None and not Path(keys["data_root"]).exists():
        print(f"error: {args.profile}'s data set is not at {keys['data_root']}; edit params/{args.profile}.yaml "
              "or choose --profile demo", file=sys.stderr)
        return 2
    out = (args.runs or ROOT / "runs" / "bench" / "precision" / args.profile).resolve()
    os.environ["IQALIB_CACHE"] = str(out / "cache")  # read at each use: each precision builds its own bank
    probe = cpu_probe()
    result = {"benchmark": "precision", "machine": cpu_info(), "load_average_start": load_average(),
              "profile": args.profile, "run": {k: v for k, v in keys.items() if k != "data_root"},
              "probe": probe, "tolerance": TOLERANCE, "arms": {}}
    rates = probe["probe"]
    for precision in PRECISIONS:
        if precision == "bf16" and rates["bf16_gflops"] <= rates["fp32_gflops"]:
            result["arms"]["bf16"] = {"skipped": (f"the probe finds bf16 slower than fp32 on this CPU "
                                                  f"({rates['bf16_gflops']:.2f} vs {rates['fp32_gflops']:.2f} GFLOP/s)")}
            continue
        result["arms"][precision] = measure(keys, precision, out)
        write_json(args.out, result)
    if args.control and torch.get_num_threads() < 2:
        result["arms"][CONTROL] = {"skipped": "torch runs on 1 thread here: the control needs 2 or more "
                                              "threads to change the order of the sums"}
    elif args.control:  # after fp32: it reads fp32's cached trunk features
        result["arms"][CONTROL] = measure(keys, "fp32", out, threads=1)
        write_json(args.out, result)
    arms = result["arms"]
    for arm, prefix in (("bf16", ""), (CONTROL, "control_")):  # each arm against fp32, round by round
        if "test_srcc" in arms.get(arm, {}):
            diff = np.subtract(arms[arm]["test_srcc"], arms["fp32"]["test_srcc"])
            result[f"{prefix}paired_median_srcc_diff"] = float(np.median(diff))
            result[f"{prefix}median_srcc_diff"] = arms[arm]["median_srcc"] - arms["fp32"]["median_srcc"]
    result["load_average_end"] = load_average()
    write_json(args.out, result)
    print(args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
