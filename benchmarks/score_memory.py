"""Peak memory of ``iqalib score`` over few vs. many images: is it bounded?

``score_paths`` streams: a small thread pool decodes at most ``prefetch`` (8)
images ahead, crops of several images share a batch of 64, and only one float
per image is kept. Peak memory should therefore not depend on how many images
are scored. This script generates N photo-like JPEGs (512x384, smooth content
plus noise, like a KonIQ image) in a temporary folder, runs the real command
line, ``python -m iqalib.cli score FOLDER --checkpoint CKPT``, in a subprocess
per N, and reads the child's peak resident set size from ``wait4`` (Linux
``ru_maxrss``, the kernel's high-water mark, so no sampling can miss a peak).

The checkpoint is an untrained ``smart_iqa_lite0`` (``pretrained=False``,
random weights): memory and speed do not depend on the weights. The default
``--patches 4`` (the CLI's default is 25) keeps a 2,000-image run to minutes on
a small CPU; the crop count changes the time per image, not the memory, since
crops go through fixed 64-crop batches.

Writes ``benchmarks/results/score_memory.json``: per N the wall time, images/s
(whole command, start-up included), peak RSS and, sampled from ``/proc`` every
0.25 s, the RSS early vs. late in the run and the high-water mark at each
quarter of it (flat: bounded; a leak keeps climbing); the marginal images/s
between the two sizes (start-up cancelled out) and the growth of the peak.
The peak itself is mostly the model's activations for one 64-crop batch of
224-pixel crops, and varies by about 100 MiB from run to run.
Run: ``python benchmarks/score_memory.py [--images 100 2000] [--patches 4] [--size 512x384]``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

HERE = Path(__file__).resolve().parent


def make_images(folder: Path, n: int, size: tuple[int, int] = (512, 384), seed: int = 0) -> Path:
    """``n`` JPEGs of ``size`` (width, height): a random smooth field plus fine noise (~30-60 KB each)."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    width, height = size
    for i in range(n):
        coarse = rng.integers(0, 256, (6, 8, 3), dtype=np.uint8)
        smooth = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), np.int16)
        noisy = np.clip(smooth + rng.integers(-12, 13, (height, width, 3)), 0, 255).astype(np.uint8)
        Image.fromarray(noisy).save(folder / f"img{i:05d}.jpg", quality=90)
    return folder


def make_checkpoint(path: Path, patch_size: int = 224, model_name: str = "smart_iqa_lite0") -> Path:
    """An iqalib checkpoint of an untrained model (seed 0) that scores ``patch_size`` crops."""
    import torch

    from iqalib.engine.card import untrained_card
    from iqalib.engine.checkpoint import save_checkpoint
    from iqalib.models import create_model

    torch.manual_seed(0)
    model = create_model(model_name, pretrained=False)
    save_checkpoint(path, {"model_name": model_name, "model": model.state_dict(), "epoch": 0, "round": 0,
                           "config": {"model": {"name": model_name, "options": {}}, "train": {"patch_size": patch_size}},
                           "card": untrained_card(model_name, patch_size=patch_size, seed=0, model=model)})
    return Path(path)


def measure(folder: Path, checkpoint: Path, *, patches: int, threads: int | None = None,
            sample_every: float = 0.25) -> dict:
    """Run ``iqalib score`` on ``folder`` in a child process; its wall time, peak RSS and RSS over time."""
    out = folder.parent / f"{folder.name}-scores.csv"
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    if threads:
        env["OMP_NUM_THREADS"] = str(threads)
    command = [sys.executable, "-m", "iqalib.cli", "score", str(folder), "--checkpoint", str(checkpoint),
               "--patches", str(patches), "--out", str(out)]
    start = time.perf_counter()
    proc = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    samples: list[tuple[float, float, float]] = []  # (seconds, VmRSS MiB, VmHWM MiB)
    sampler = threading.Thread(target=_sample, args=(proc.pid, start, samples, sample_every), daemon=True)
    sampler.start()
    _, status, usage = os.wait4(proc.pid, 0)  # this child's own rusage, not all children's
    wall = time.perf_counter() - start
    sampler.join()
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode(errors="replace")
    proc.stderr.close()
    if proc.returncode != 0:
        raise RuntimeError(f"iqalib score exited {proc.returncode}: {err[-2000:]}")
    n = sum(1 for _ in folder.iterdir())
    scored = sum(1 for _ in out.open()) - 1
    assert scored == n, (scored, n)
    return {"images": n, "wall_s": round(wall, 2), "images_per_s": round(n / wall, 2),
            "peak_rss_mib": round(usage.ru_maxrss / 1024, 1),  # Linux reports KiB
            "omp_threads": threads or "default", **_trajectory(samples)}


def _sample(pid: int, start: float, samples: list, every: float) -> None:
    """Poll the child's VmRSS and VmHWM until it exits (Linux /proc; silently nothing elsewhere)."""
    status = Path(f"/proc/{pid}/status")
    while True:
        try:
            fields = dict(line.split(":", 1) for line in status.read_text().splitlines() if ":" in line)
            rss, hwm = (int(fields[k].split()[0]) / 1024 for k in ("VmRSS", "VmHWM"))
        except (OSError, KeyError, ValueError):
            return  # exited (or reaped: its /proc entry is gone)
        if rss == 0:
            return  # a zombie waiting to be reaped
        samples.append((time.perf_counter() - start, rss, hwm))
        time.sleep(every)


def _trajectory(samples: list) -> dict:
    """Is memory flat over the run? RSS early vs. late in the scoring, and the high-water mark over time.

    A leak shows as late RSS well above early RSS and a high-water mark that keeps
    climbing; a bounded pipeline keeps both flat after start-up.
    """
    if len(samples) < 10:
        return {}
    # Skip start-up (imports, model build): take the part of the run after 20% of its samples.
    steady = samples[len(samples) // 5:]
    fifth = max(1, len(steady) // 5)
    median = lambda values: float(np.median(values))  # noqa: E731
    return {
        "rss_mib_median_early": round(median([r for _, r, _ in steady[:fifth]]), 1),
        "rss_mib_median_late": round(median([r for _, r, _ in steady[-fifth:]]), 1),
        "hwm_mib_at_quarters_of_the_run": [round(samples[min(len(samples) - 1, int(q * len(samples)))][2], 1)
                                           for q in (0.25, 0.5, 0.75, 1.0)],
        "samples": len(samples),
    }


def machine() -> dict:
    """The shared description (benchmarks/common.py) plus this process's niceness and the load."""
    sys.path.insert(0, str(HERE))
    try:
        from common import cpu_info, load_average
    finally:
        sys.path.remove(str(HERE))
    info = cpu_info()
    info.pop("threads", None)  # the scoring child's threads are recorded per run instead
    return {**info, "load_average": load_average(), "nice": os.nice(0)}


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", type=int, nargs="+", default=[100, 2000])
    ap.add_argument("--patches", type=int, default=4)
    ap.add_argument("--size", default="512x384", help="WIDTHxHEIGHT of the generated JPEGs")
    ap.add_argument("--threads", type=int, default=None, help="OMP_NUM_THREADS of the scoring process")
    ap.add_argument("--out", default=str(HERE / "results" / "score_memory.json"))
    args = ap.parse_args(argv)
    width, height = map(int, args.size.lower().split("x"))
    runs = []
    with tempfile.TemporaryDirectory(prefix="iqalib-score-memory-") as tmp:
        tmp = Path(tmp)
        checkpoint = make_checkpoint(tmp / "untrained.pt")
        for n in args.images:
            t0 = time.perf_counter()
            folder = make_images(tmp / f"images{n}", n, (width, height))
            print(f"{n} images generated in {time.perf_counter() - t0:.0f} s; scoring ...", flush=True)
            runs.append(measure(folder, checkpoint, patches=args.patches, threads=args.threads))
            print(json.dumps(runs[-1]), flush=True)
    few, many = runs[0], runs[-1]
    result = {
        "benchmark": "score_memory", "command": "python -m iqalib.cli score FOLDER --checkpoint CKPT "
        f"--patches {args.patches}", "model": "smart_iqa_lite0 (untrained)", "image_size": f"{width}x{height}",
        "patch_size": 224, "patches_per_image": args.patches, "machine": machine(), "runs": runs,
        "peak_rss_growth_mib": round(many["peak_rss_mib"] - few["peak_rss_mib"], 1),
        "marginal_images_per_s": round((many["images"] - few["images"]) / max(many["wall_s"] - few["wall_s"], 1e-9),
                                       2) if len(runs) > 1 else None,
        "decoded_size_of_all_images_mib": round(many["images"] * width * height * 3 / 2**20, 1),
        "note": "peak RSS is the child's ru_maxrss (kernel high-water mark); images/s includes start-up "
                "(imports, model build); the marginal rate between the two sizes does not",
    }
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps({k: result[k] for k in ("peak_rss_growth_mib", "marginal_images_per_s")}))
    print(f"wrote {args.out}")
    return result


if __name__ == "__main__":
    main()
