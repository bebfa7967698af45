"""Scoring a folder: iqalib's streaming scorer vs. one image at a time.

* ``one_at_a_time``: for each file, decode it, cut its test crops, run the
  model on them (a batch of ``patches``), average; nothing overlaps.
* ``score_paths``: what ``iqalib score`` runs: two threads decode a bounded
  number of images ahead while the model runs, and crops of several images
  share a batch of ``batch_size``.

Both score the same generated 512x384 JPEGs with the same crops, so their
scores agree (checked). The model's forward rate on ready-made tensors at
the same batch size is the ceiling both are set against.
Run: ``python benchmarks/scoring.py [--images N] [--patches P] [--model NAME]``.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from common import RESULTS, cpu_info, load_average, write_json

from iqalib.data.images import decode_image
from iqalib.engine.score import _crops, score_paths
from iqalib.models import create_model
from iqalib.data.patches import to_model_input


def make_images(folder: Path, n: int, seed: int = 0) -> list[Path]:
    """Smooth random colour fields plus noise: JPEG-sized like KonIQ's 512x384 files."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(n):
        low = rng.integers(0, 256, size=(12, 16, 3), dtype=np.uint8)
        img = np.asarray(Image.fromarray(low).resize((512, 384), Image.BICUBIC), dtype=np.int16)
        img = np.clip(img + rng.integers(-20, 21, size=img.shape), 0, 255).astype(np.uint8)
        path = folder / f"img_{i:05d}.jpg"
        Image.fromarray(img).save(path, quality=90)
        paths.append(path)
    return paths


def one_at_a_time(model, paths, patches: int) -> list[float]:
    scores = []
    with torch.inference_mode():
        for path in paths:
            crops = _crops(decode_image(path, min_side=224), patches, 224, seed=0)
            x = to_model_input(crops, model.mean, model.std, device="cpu")
            scores.append(float(model(x).mean()))
    return scores


def forward_ceiling(model, batch: int, iters: int = 3) -> float:
    """Patches/s of the model alone on ready-made input."""
    x = torch.randn(batch, 3, 224, 224)
    with torch.inference_mode():
        model(x)
        start = time.perf_counter()
        for _ in range(iters):
            model(x)
    return batch * iters / (time.perf_counter() - start)


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--patches", type=int, default=10)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--model", default="hyperiqa_lite0")
    ap.add_argument("--out", default=str(RESULTS / "scoring.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    torch.manual_seed(0)
    model = create_model(args.model, pretrained=False).eval()
    result = {"benchmark": "scoring", "machine": cpu_info(), "load_average_start": load_average(),
              "model": args.model, "images": args.images, "patches_per_image": args.patches,
              "batch_size": args.batch, "image_size": "512x384 JPEG"}
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_images(Path(tmp), args.images)
        start = time.perf_counter()
        naive = one_at_a_time(model, paths, args.patches)
        naive_s = time.perf_counter() - start
        start = time.perf_counter()
        ours = score_paths(model, paths, patches=args.patches, batch_size=args.batch, errors=None)
        ours_s = time.perf_counter() - start
    ceiling = forward_ceiling(model, args.batch)
    result.update({
        "images_per_s": {"one_at_a_time": round(args.images / naive_s, 2),
                         "score_paths": round(args.images / ours_s, 2)},
        "speedup": round(naive_s / ours_s, 2),
        "forward_only_images_per_s": round(ceiling / args.patches, 2),
        "score_paths_fraction_of_forward_only": round(args.images / ours_s / (ceiling / args.patches), 2),
        "max_abs_score_difference": float(np.max(np.abs(np.asarray(naive) - ours["score"].to_numpy()))),
        "load_average_end": load_average(),
    })
    write_json(args.out, result)
    print(result)
    return result


if __name__ == "__main__":
    main()
