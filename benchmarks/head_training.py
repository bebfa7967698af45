"""Frozen-trunk training: head steps on cached trunk features vs. recomputing the trunk every step.

With ``train.freeze_backbone`` only the head learns. The naive way runs the
frozen trunk forward (without gradients) on every training patch of every
epoch; iqalib runs it once per crop (``iqalib.engine.features``) and trains the
head on the cached, pooled stage maps. Both sides do the same head step
(forward, L1 loss, backward, gradient clipping, AdamW), at the same batch
size, on synthetic inputs (speed does not depend on the pixel values).

Reports patches/s of both, the head's achieved GFLOP/s against a large fp32
matmul measured in the same run (the head is compute-bound: two 1x1 convs and
a 3x3 weight-generating conv per patch), and what that means for LIVE-C
(930 training images): one epoch at 10 and at 2 patches per image, and the
livec book profile's ablation (4 configurations x 10 rounds x 6 epochs).
Run: ``python benchmarks/head_training.py [--models ...] [--batch N]``.
"""
from __future__ import annotations

import argparse
import os
import statistics

import torch
import torch.nn.functional as F
from torch.utils.flop_counter import FlopCounterMode

from common import RESULTS, call_times, cpu_info, load_average, matmul_gflops, write_json

from iqalib.models import create_model

LIVEC_TRAIN_IMAGES, LIVEC_VAL_IMAGES = 930, 116
ABLATION_RUNS, ABLATION_EPOCHS, ABLATION_TRAIN_PATCHES, VAL_PATCHES = 40, 6, 2, 10


def build(name: str):
    torch.manual_seed(0)
    model = create_model(name, pretrained=False).freeze_backbone(True).train()
    optimizer = torch.optim.AdamW(model.param_groups(1e-4, 10.0, 1e-4))
    return model, optimizer


def pooled_inputs(model, batch: int) -> list[torch.Tensor]:
    """Random tensors shaped like the cached features of ``batch`` patches."""
    with torch.inference_mode():
        stages = model.forward_features(torch.zeros(1, 3, 224, 224))
    shapes = [p.shape[1:] for p in model.pool_stages(stages)]
    return [torch.randn(batch, *shape) for shape in shapes]


def head_step(model, optimizer, pooled, target) -> None:
    loss = F.l1_loss(model.forward_pooled(pooled), target)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    torch.nn.utils.clip_grad_norm_([p for g in optimizer.param_groups for p in g["params"]], 1.0)
    optimizer.step()


def naive_step(model, optimizer, patches, target) -> None:
    with torch.no_grad():  # the trunk is frozen, but the naive way still runs it every step
        pooled = model.pool_stages(model.forward_features(patches))
    head_step(model, optimizer, list(pooled), target)


def median_seconds(fn, warmup: int, iters: int) -> float:
    return statistics.median(call_times(fn, iters, warmup=warmup))


def head_forward_flops(model, pooled) -> int:
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        model.forward_pooled(pooled)
    return counter.get_total_flops()


def measure(name: str, batch: int, iters: int, naive_iters: int) -> dict:
    model, optimizer = build(name)
    pooled = pooled_inputs(model, batch)
    target = torch.rand(batch) * 100
    patches = torch.randn(batch, 3, 224, 224)
    cached_s = median_seconds(lambda: head_step(model, optimizer, pooled, target), 2, iters)
    naive_s = median_seconds(lambda: naive_step(model, optimizer, patches, target), 1, naive_iters)
    model.eval()
    with torch.inference_mode():
        eval_s = median_seconds(lambda: model.forward_pooled(pooled), 2, iters)
    forward = head_forward_flops(model, pooled)
    # A training step costs about 3 forward passes (forward, and the two products of backward).
    step_gflops = 3 * forward / cached_s / 1e9
    train_rate, naive_rate, eval_rate = batch / cached_s, batch / naive_s, batch / eval_s

    def epoch_s(rate_train, patches_per_image):
        return (LIVEC_TRAIN_IMAGES * patches_per_image / rate_train
                + LIVEC_VAL_IMAGES * VAL_PATCHES / eval_rate)

    return {
        "batch": batch,
        "head_forward_gflops_per_patch": round(forward / batch / 1e9, 4),
        "patches_per_s": {"cached_features": round(train_rate, 1), "trunk_every_step": round(naive_rate, 2)},
        "speedup": round(train_rate / naive_rate, 1),
        "head_eval_patches_per_s": round(eval_rate, 1),
        "head_train_gflops": round(step_gflops, 1),
        "livec_epoch_s": {
            "cached_10_patches": round(epoch_s(train_rate, 10), 1),
            "cached_2_patches": round(epoch_s(train_rate, 2), 1),
            "trunk_every_step_2_patches": round(epoch_s(naive_rate, 2), 1),
        },
        "livec_ablation_minutes": {
            "cached_features": round(ABLATION_RUNS * ABLATION_EPOCHS * epoch_s(train_rate, 2) / 60, 1),
            "trunk_every_step": round(ABLATION_RUNS * ABLATION_EPOCHS * epoch_s(naive_rate, 2) / 60, 1),
        },
    }


def main(argv=None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--models", nargs="+", default=["smart_iqa_lite0", "hyperiqa_lite0"])
    ap.add_argument("--batch", type=int, default=32, help="the livec profile's batch size")
    ap.add_argument("--iters", type=int, default=10)
    ap.add_argument("--naive-iters", type=int, default=3)
    ap.add_argument("--out", default=str(RESULTS / "head_training.json"))
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, os.cpu_count() or 1))
    result = {"benchmark": "head_training", "machine": cpu_info(), "load_average_start": load_average(),
              "matmul_fp32": [matmul_gflops(torch.float32)], "models": {},
              "ablation": {"runs": ABLATION_RUNS, "epochs": ABLATION_EPOCHS,
                           "train_patches_per_image": ABLATION_TRAIN_PATCHES, "val_patches": VAL_PATCHES}}
    for name in args.models:
        result["models"][name] = measure(name, args.batch, args.iters, args.naive_iters)
        print(name, result["models"][name], flush=True)
        write_json(args.out, result)
    result["matmul_fp32"].append(matmul_gflops(torch.float32))
    reference = max(m["gflops"] for m in result["matmul_fp32"])
    for entry in result["models"].values():
        entry["head_fraction_of_matmul"] = round(entry["head_train_gflops"] / reference, 2)
    result["load_average_end"] = load_average()
    write_json(args.out, result)
    return result


if __name__ == "__main__":
    main()
