"""SMART-IQA-Base on a GPU: training step and evaluation pass at KonIQ-10k scale, against the card's matmul.

Random weights, synthetic 512x384 images (KonIQ-10k's size) decoded once into
an ImageStore, 224x224 crops through the engine's own PatchDataset and loader,
normalised on the device. Two views of each measurement, side by side:

* ``step``: the model alone on a batch already on the GPU (the ceiling), its
  FLOPs counted over a real forward (a step taken as three forwards), so achieved TFLOP/s can be
  set against a large bf16 matmul measured in the same run (target: at least
  40% of it on the training step);
* ``pipeline``: the same step fed by the loader (what an epoch sees).

It reports patches/s and the projected time of one KonIQ-10k epoch (7,058
images x 20 patches) and of the test pass (2,015 x 20). Default setting: bf16
autocast, ``channels_last`` and ``torch.compile``; ``--no-compile`` and
``--precision fp32`` give the comparison points, and ``--device cpu`` with a
small model checks the script itself on a machine without a GPU.
Run: ``python benchmarks/gpu_step.py [--model smart_iqa_base] [--batch 64] [--out PATH]``.
"""
from __future__ import annotations

import argparse
import contextlib
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from common import RESULTS, write_json

from iqalib.data.images import ImageStore
from iqalib.data.patches import PatchDataset, make_loader, to_model_input
from iqalib.models import create_model

KONIQ_TRAIN, KONIQ_TEST, PATCHES_PER_IMAGE = 7_058, 2_015, 20


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def matmul_tflops(device: torch.device, dtype: torch.dtype, size: int, reps: int = 10) -> float:
    a = torch.randn(size, size, device=device, dtype=dtype)
    b = torch.randn(size, size, device=device, dtype=dtype)
    for _ in range(3):
        a @ b
    synchronize(device)
    start = time.perf_counter()
    for _ in range(reps):
        a @ b
    synchronize(device)
    return 2 * size ** 3 * reps / (time.perf_counter() - start) / 1e12


def synthetic_store(n: int, seed: int = 0) -> ImageStore:
    """``n`` 384x512 RGB images: smooth colour fields plus noise."""
    rng = np.random.default_rng(seed)
    images = []
    for _ in range(n):
        low = rng.integers(0, 256, size=(12, 16, 3)).astype(np.float32)
        big = np.kron(low, np.ones((32, 32, 1), np.float32)) + rng.normal(0, 12, size=(384, 512, 3))
        images.append(np.clip(big, 0, 255).astype(np.uint8))
    return ImageStore.from_arrays(images)


def timed(fn, device, warmup: int, iters: int) -> float:
    for _ in range(warmup):
        fn()
    synchronize(device)
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def _sig(value: float, digits: int = 3) -> float:
    """``value`` to ``digits`` significant digits (a rate of 0.177 stays 0.177, one of 1234.5 becomes 1230)."""
    return float(f"{value:.{digits}g}")


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="smart_iqa_base")
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--precision", choices=("bf16", "fp32"), default="bf16")
    ap.add_argument("--no-compile", action="store_true")
    ap.add_argument("--no-channels-last", action="store_true")
    ap.add_argument("--warmup", type=int, default=5, help="untimed steps (the first compiles)")
    ap.add_argument("--iters", type=int, default=20)
    ap.add_argument("--images", type=int, default=256, help="synthetic 512x384 images in the store")
    ap.add_argument("--workers", type=int, default=8)
    ap.add_argument("--matmul-size", type=int, default=8192)
    ap.add_argument("--out", default=str(RESULTS / "gpu_step.json"))
    args = ap.parse_args(argv)

    device = torch.device(args.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit("gpu_step.py: no CUDA device is visible; run it on a GPU machine or pass --device cpu")
    dtype = torch.bfloat16 if args.precision == "bf16" else None
    channels_last, compiled = not args.no_channels_last, not args.no_compile
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    torch.backends.cudnn.benchmark = True

    def amp():
        return torch.autocast(device.type, dtype=dtype) if dtype else contextlib.nullcontext()

    torch.manual_seed(0)
    model = create_model(args.model, pretrained=False).to(device)
    if channels_last:
        model = model.to(memory_format=torch.channels_last)
    optimizer = torch.optim.AdamW(model.param_groups(5e-7, 10.0, 2e-4), fused=device.type == "cuda")
    runner = torch.compile(model) if compiled else model

    x = torch.randn(args.batch, 3, 224, 224, device=device)
    if channels_last:
        x = x.to(memory_format=torch.channels_last)
    y = torch.rand(args.batch, device=device) * 100

    def train_step(inputs, target):
        with amp():
            pred = runner(inputs)
        loss = F.l1_loss(pred.float(), target)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        optimizer.step()

    def eval_step(inputs):
        with torch.inference_mode(), amp():
            return runner(inputs)

    # FLOPs of a forward pass, counted on the eager model (the same maths as the compiled one). A
    # training step is taken as 3 forwards (forward, and backward's two products per layer):
    # FlopCounterMode overcounts depthwise-conv backward (EfficientNet) by an order of magnitude.
    model.eval()
    with FlopCounterMode(display=False) as counter, torch.no_grad(), amp():
        model(x)
    forward_flops = counter.get_total_flops()
    step_flops = 3 * forward_flops

    matmul = matmul_tflops(device, torch.bfloat16 if dtype else torch.float32, args.matmul_size)
    model.train()
    compile_start = time.perf_counter()
    train_step(x, y)
    synchronize(device)
    first_step_s = time.perf_counter() - compile_start
    step_s = timed(lambda: train_step(x, y), device, args.warmup, args.iters)
    model.eval()
    eval_s = timed(lambda: eval_step(x), device, args.warmup, args.iters)

    # The same step fed by the engine's loader: crops sliced from the store, uint8 to the device.
    store = synthetic_store(args.images)
    dataset = PatchDataset(store, np.zeros(len(store), np.float32), patch_size=224,
                           patches_per_image=PATCHES_PER_IMAGE, train=True, seed=0)
    loader = make_loader(dataset, batch_size=args.batch, shuffle=True, workers=args.workers,
                         pin_memory=device.type == "cuda", seed=0)
    model.train()
    batches, patches, wait = 0, 0, 0.0
    synchronize(device)
    start = time.perf_counter()
    iterator = iter(loader)
    while batches < args.warmup + args.iters:
        t0 = time.perf_counter()
        try:
            crops, _, _ = next(iterator)
        except StopIteration:
            iterator = iter(loader)
            continue
        if batches == args.warmup:
            synchronize(device)
            start, patches, wait = time.perf_counter(), 0, 0.0
        wait += time.perf_counter() - t0
        inputs = to_model_input(crops, model.mean, model.std, device=device, channels_last=channels_last)
        train_step(inputs, y[: len(crops)])
        patches += len(crops)
        batches += 1
    synchronize(device)
    pipeline_s = time.perf_counter() - start

    train_rate, eval_rate, pipeline_rate = args.batch / step_s, args.batch / eval_s, patches / pipeline_s
    achieved = step_flops / step_s / 1e12
    result = {
        "benchmark": "gpu_step",
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
        "torch": torch.__version__, "model": args.model, "batch": args.batch,
        "setting": {"precision": args.precision, "channels_last": channels_last, "compile": compiled},
        "matmul_tflops": round(matmul, 1), "matmul_size": args.matmul_size,
        "first_step_s_including_compile": round(first_step_s, 1),
        # Rates to 3 significant digits: rounded to 0.1, a slow (CPU, loaded) rate of 0.177 would be
        # stored as 0.2 and disagree by 13% with the projection computed from it.
        "step": {"train_patches_per_s": _sig(train_rate), "eval_patches_per_s": _sig(eval_rate),
                 "train_tflops": round(achieved, 1), "eval_tflops": round(forward_flops / eval_s / 1e12, 1),
                 "train_fraction_of_matmul": round(achieved / matmul, 3),
                 "gflops_per_patch_step": round(step_flops / args.batch / 1e9, 2)},
        "pipeline": {"train_patches_per_s": _sig(pipeline_rate),
                     "loader_wait_fraction": round(wait / pipeline_s, 4), "workers": args.workers},
        "projection": {
            "koniq_epoch_minutes": round(KONIQ_TRAIN * PATCHES_PER_IMAGE / min(train_rate, pipeline_rate) / 60, 2),
            "koniq_test_pass_minutes": round(KONIQ_TEST * PATCHES_PER_IMAGE / eval_rate / 60, 2),
        },
        "peak_memory_gib": (round(torch.cuda.max_memory_allocated(device) / 2**30, 2)
                            if device.type == "cuda" else None),
    }
    write_json(args.out, result)
    print(result)
    return result


if __name__ == "__main__":
    main()
