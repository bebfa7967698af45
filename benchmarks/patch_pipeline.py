"""Patches/s: decode-once store vs. the original decode-per-patch pipeline.

Both pipelines produce the same thing, normalised float 224x224 training
patches with random crops and flips, from the same images:

* ``decode_per_patch``: what the original HyperIQA code does, for every patch
  open and decode the whole file, then RandomCrop + flip + ToTensor + Normalize.
* ``decode_once``: iqalib's pipeline, the images decoded once into an
  ImageStore, patches sliced by PatchDataset, normalised by to_model_input.
  The one-time decode is timed separately and also reported amortised over
  one HyperIQA epoch (25 patches per image).

Uses LIVE-C from ``../shared/datasets`` when present, else the demo set.
Run: ``python benchmarks/patch_pipeline.py [--images N] [--workers W]``.
"""
from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from common import cpu_info

from iqalib.data.datasets import load_dataset
from iqalib.data.images import ImageStore
from iqalib.data.patches import PatchDataset, make_loader, to_model_input

MEAN, STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)
PATCH = 224
KONIQ_IMAGES, KONIQ_HW = 10_073, (384, 512)
HERE = Path(__file__).resolve().parent


def pick_images(n: int):
    shared = Path(os.environ.get("IQALIB_SHARED_DATASETS", HERE.parents[1] / "shared" / "datasets"))
    livec = shared / "LIVEC" / "ChallengeDB_release"
    table = load_dataset("livec", livec) if livec.is_dir() else load_dataset("demo")
    return table.label, table.paths[:n]


def decode_per_patch(paths, n_patches: int, normalise: bool, seed: int = 0) -> float:
    """The original pipeline: one full decode per patch. Returns patches/s."""
    from torchvision import transforms

    steps = [transforms.RandomCrop(PATCH), transforms.RandomHorizontalFlip()]
    steps += [transforms.ToTensor(), transforms.Normalize(MEAN, STD)] if normalise else [transforms.PILToTensor()]
    tf = transforms.Compose(steps)
    torch.manual_seed(seed)
    rng = np.random.default_rng(seed)
    start = time.perf_counter()
    for _ in range(n_patches):
        with Image.open(paths[rng.integers(len(paths))]) as img:
            tf(img.convert("RGB"))
    return n_patches / (time.perf_counter() - start)


def decode_once(store: ImageStore, n_patches: int, workers: int, normalise: bool, batch: int = 96) -> float:
    """iqalib's pipeline over a ready store. Returns patches/s."""
    per_image = max(1, n_patches // len(store))
    data = PatchDataset(store, patch_size=PATCH, patches_per_image=per_image, train=True)
    loader = make_loader(data, batch_size=batch, shuffle=True, workers=workers)
    done = 0
    start = time.perf_counter()
    for patches, _, _ in loader:
        if normalise:
            to_model_input(patches, MEAN, STD)
        done += len(patches)
    return done / (time.perf_counter() - start)


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=200, help="images to use")
    ap.add_argument("--naive-patches", type=int, default=300)
    ap.add_argument("--patches", type=int, default=10_000)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "patch_pipeline.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, os.cpu_count() or 1))

    label, paths = pick_images(args.images)
    naive_u8 = decode_per_patch(paths, args.naive_patches, normalise=False)
    naive = decode_per_patch(paths, args.naive_patches, normalise=True)
    t0 = time.perf_counter()
    store = ImageStore.build(paths, min_side=PATCH)
    decode_s = time.perf_counter() - t0
    once_u8 = decode_once(store, args.patches, args.workers, normalise=False)
    once = decode_once(store, args.patches // 2, args.workers, normalise=True)
    epoch_patches = 25 * len(paths)
    amortised = epoch_patches / (decode_s + epoch_patches / once_u8)
    result = {
        "benchmark": "patch_pipeline",
        "data": label,
        "images": len(paths),
        "machine": cpu_info(),  # the block every speed measurement records
        "loader_workers": args.workers,
        "uint8_patches_per_s": {"decode_per_patch": round(naive_u8, 1), "decode_once": round(once_u8, 1)},
        "speedup_uint8": round(once_u8 / naive_u8, 1),
        "normalised_float_patches_per_s": {"decode_per_patch": round(naive, 1), "decode_once": round(once, 1)},
        "speedup_normalised": round(once / naive, 1),
        "one_time_decode_s": round(decode_s, 3),
        "first_epoch_uint8_patches_per_s_including_decode": round(amortised, 1),
        "store_mb": round(store.nbytes / 2**20, 1),
        "koniq10k_512x384_cache_gib": round(KONIQ_IMAGES * KONIQ_HW[0] * KONIQ_HW[1] * 3 / 2**30, 2),
        "note": "decode_once delivers uint8 batches; in training the normalisation runs on the "
                "model's device as part of the step (negligible on a GPU)",
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(result, indent=2))
    return result


if __name__ == "__main__":
    main()
