"""Is data ever the bottleneck? Loader wait of the engine's own training loop, by loader workers.

Runs ``iqalib.fit`` for one fine-tuning epoch (the whole model learns, so
every step needs fresh image patches) on the demo set, once per setting of
``train.workers`` (0: patches sliced in the training process; N: N loader
processes), and reads what the engine itself logs per epoch in
``history.csv``: patches/s and the fraction of the epoch spent waiting for the
next batch (issue 5's target: under 5%).
Run: ``python benchmarks/loader_wait.py [--model NAME] [--workers 0 2]``.
"""
from __future__ import annotations

import argparse
import os
import tempfile

import pandas as pd
import torch

from common import RESULTS, cpu_info, load_average, write_json

from iqalib.engine import fit


def one_epoch(model: str, workers: int, batch: int, patches: int, out_dir: str) -> dict:
    config = {
        "name": f"w{workers}", "out_dir": out_dir,
        "data": {"name": "demo", "fractions": [0.5, 0.25, 0.25]},
        "model": {"name": model, "pretrained": True},
        "train": {"epochs": 1, "batch_size": batch, "train_patches": patches, "test_patches": 1,
                  "workers": workers, "progress": False, "seed": 0},
    }
    fit(config)
    row = pd.read_csv(f"{out_dir}/w{workers}/round_0/history.csv").iloc[0]
    return {"patches": int(row["train_patches"]), "patches_per_s": round(float(row["patches_per_s"]), 2),
            "loader_wait_fraction": round(float(row["loader_wait_fraction"]), 5),
            "train_seconds": round(float(row["train_seconds"]), 1)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smart_iqa_lite0")
    ap.add_argument("--workers", type=int, nargs="+", default=[0, 2])
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--patches", type=int, default=1, help="training patches per image (150 images)")
    ap.add_argument("--out", default=str(RESULTS / "loader_wait.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    result = {"benchmark": "loader_wait", "machine": cpu_info(), "load_average_start": load_average(),
              "model": args.model, "data": "demo (150 training images)", "batch_size": args.batch,
              "fine_tuning": True, "settings": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in args.workers:
            result["settings"][f"workers_{workers}"] = one_epoch(args.model, workers, args.batch,
                                                                 args.patches, tmp)
            print(workers, result["settings"][f"workers_{workers}"], flush=True)
            write_json(args.out, result)
    result["load_average_end"] = load_average()
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
