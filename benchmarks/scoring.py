"""Scoring a folder: iqalib's streaming scorer vs. one image at a time, against the model alone.

* ``one_at_a_time``: for each file, decode it, cut its test crops, run the
  model on them (a batch of ``patches``), average; nothing overlaps.
* ``score_paths``: what ``iqalib score`` runs: two threads decode a bounded
  number of images ahead while the model runs, and crops of several images
  share a batch of ``batch_size``; also measured at ``batch_size = patches``
  (``score_paths_small_batch``), which separates the effect of the bigger
  batch from that of the decode threads.
* the ceiling: the model's forward rate on ready-made tensors, at each batch
  size the pipelines use; the ceiling is the faster of the two, since a
  pipeline can choose either. The tensors are crops prepared exactly as the
  pipelines prepare theirs (:func:`ceiling_input`: channels-last strides); an
  earlier version timed a contiguous ``torch.randn`` batch, on which
  EfficientNet-Lite0 runs about 1.5x slower, and its "ceiling" came out below
  both pipelines.

Both pipelines score the same generated 512x384 JPEGs with the same crops, so
their scores agree (checked). Every measurement is made ``--trials`` times,
round-robin (pipelines and ceilings alternate, so a burst of load from other
processes hits all of them), after one untimed warm-up pass of each; the
fastest trial counts (other processes can only slow a trial down). A result
in which a pipeline beats the ceiling is flagged ``consistent: false``.
Run: ``python benchmarks/scoring.py [--images N] [--patches P] [--model NAME] [--trials T]``.
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

from common import RESULTS, call_times, cpu_info, load_average, write_json

from iqalib.data.images import ImageStore, decode_image
from iqalib.data.patches import PatchDataset, to_model_input
from iqalib.engine.score import score_arrays, score_paths
from iqalib.models import create_model


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
    """Decode one file, score its crops in one batch, next file: the same crops as score_paths, no overlap."""
    scores = []
    for path in paths:
        image = decode_image(path, min_side=224)
        (_, score), = score_arrays(model, [(0, image)], patches=patches, batch_size=patches)
        scores.append(score)
    return scores


def ceiling_input(model, image: np.ndarray, batch: int) -> torch.Tensor:
    """``batch`` test crops of one decoded image, prepared exactly as the pipelines prepare theirs.

    Crops come from :class:`PatchDataset` (NHWC bytes viewed as NCHW, so
    channels-last strides) through ``to_model_input``. A ``torch.randn``
    batch is contiguous NCHW instead, on which EfficientNet-Lite0 runs about
    1.5x slower on a CPU: measured that way, "the model alone" came out
    slower than the pipelines that contain it.
    """
    store = ImageStore.from_arrays([image])
    crops = PatchDataset(store, patch_size=224, patches_per_image=batch, train=False, seed=0)
    patches, _, _ = crops.__getitems__(list(range(batch)))
    return to_model_input(patches, model.mean, model.std, device="cpu")


def forward_seconds(model, x: torch.Tensor, iters: int = 3) -> float:
    """Seconds per patch of the model alone on ready-made input ``x`` (after one warm-up call), fastest of ``iters``."""
    with torch.inference_mode():
        return min(call_times(lambda: model(x), iters)) / len(x)


def best_of_trials(runners: dict, trials: int) -> dict[str, float]:
    """Fastest of ``trials`` round-robin runs of every zero-argument runner (seconds); one untimed warm-up each."""
    for run in runners.values():
        run()
    best = {name: float("inf") for name in runners}
    for _ in range(trials):
        for name, run in runners.items():
            start = time.perf_counter()
            run()
            best[name] = min(best[name], time.perf_counter() - start)
    return best


def summarise(images: int, patches: int, seconds: dict[str, float], per_patch: dict[int, float]) -> dict:
    """Rates in images/s, the ceiling (best batch size) and whether every pipeline stays below it."""
    rates = {name: images / s for name, s in seconds.items()}
    ceilings = {batch: 1 / (per_patch_s * patches) for batch, per_patch_s in per_patch.items()}
    ceiling = max(ceilings.values())
    return {
        "images_per_s": {name: round(rate, 2) for name, rate in rates.items()},
        "speedup": round(seconds["one_at_a_time"] / seconds["score_paths"], 2),
        "forward_only_images_per_s": round(ceiling, 2),
        "forward_only_images_per_s_by_batch": {str(b): round(c, 2) for b, c in ceilings.items()},
        "fraction_of_forward_only": {name: round(rate / ceiling, 2) for name, rate in rates.items()},
        "consistent": all(rate <= ceiling * 1.05 for rate in rates.values()),
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, default=48)
    ap.add_argument("--patches", type=int, default=10)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--trials", type=int, default=3)
    ap.add_argument("--model", default="hyperiqa_lite0")
    ap.add_argument("--out", default=str(RESULTS / "scoring.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    torch.manual_seed(0)
    model = create_model(args.model, pretrained=False).eval()
    result = {"benchmark": "scoring", "machine": cpu_info(), "load_average_start": load_average(),
              "model": args.model, "images": args.images, "patches_per_image": args.patches,
              "batch_size": args.batch, "trials": args.trials, "image_size": "512x384 JPEG",
              "timing": "fastest of the trials, round-robin, after one warm-up pass each"}
    scores = {}
    with tempfile.TemporaryDirectory() as tmp:
        paths = make_images(Path(tmp), args.images)

        def naive():
            scores["naive"] = one_at_a_time(model, paths, args.patches)

        def ours(batch):
            def run():
                scores[f"ours_{batch}"] = score_paths(model, paths, patches=args.patches, batch_size=batch,
                                                      errors=None)
            return run

        per_patch = {}
        image = decode_image(paths[0], min_side=224)

        def ceiling(batch):
            x = ceiling_input(model, image, batch)

            def run():
                per_patch[batch] = min(per_patch.get(batch, float("inf")), forward_seconds(model, x, iters=1))
            return run

        runners = {"one_at_a_time": naive, "score_paths": ours(args.batch),
                   "score_paths_small_batch": ours(args.patches),
                   "ceiling_small": ceiling(args.patches), "ceiling_large": ceiling(args.batch)}
        seconds = best_of_trials(runners, args.trials)
    pipelines = {k: seconds[k] for k in ("one_at_a_time", "score_paths", "score_paths_small_batch")}
    result.update(summarise(args.images, args.patches, pipelines, per_patch))
    result["max_abs_score_difference"] = float(np.max(np.abs(
        np.asarray(scores["naive"]) - scores[f"ours_{args.batch}"]["score"].to_numpy())))
    result["load_average_end"] = load_average()
    write_json(args.out, result)
    print(result)
    return result


if __name__ == "__main__":
    main()
