"""Shared by the benchmark scripts: what machine this is, a matmul reference, JSON output."""
from __future__ import annotations

import json
import os
import statistics
import time
from pathlib import Path

import torch

from iqalib.analysis.performance import machine_block

RESULTS = Path(__file__).resolve().parent / "results"


def cpu_info() -> dict:
    """This machine's block, as chapter 10 records it too (:func:`iqalib.analysis.performance.machine_block`)."""
    return machine_block()


def bf16_native(info: dict) -> bool:
    return info["flags"]["avx512_bf16"] or info["flags"]["amx_bf16"]


def load_average() -> list[float]:
    return [round(v, 2) for v in os.getloadavg()]


# ---------------------------------------------------------------- matmul reference

def matmul_gflops(dtype: torch.dtype, max_size: int = 4096, reps: int = 3, budget_s: float = 2.0) -> dict:
    """GFLOP/s of a square matmul (2 n^3 FLOPs), median of ``reps``.

    The size doubles from 256 while one product is predicted to take under
    ``budget_s``, up to ``max_size``: without hardware bf16 a 4096 bf16
    product would take minutes.
    """
    size, rate = 256, None
    while True:
        a, b = torch.randn(size, size, dtype=dtype), torch.randn(size, size, dtype=dtype)
        a @ b  # first call: thread pool and kernel selection
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            a @ b
            times.append(time.perf_counter() - start)
        rate = 2 * size ** 3 / statistics.median(times) / 1e9
        predicted_next = 2 * (2 * size) ** 3 / (rate * 1e9)
        if size >= max_size or predicted_next > budget_s:
            return {"size": size, "gflops": round(rate, 2)}
        size *= 2


def call_times(call, repeats: int, warmup: int = 1) -> list[float]:
    """Seconds of each of ``repeats`` calls of ``call()``, after ``warmup`` untimed calls (kernel selection, caches)."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        times.append(time.perf_counter() - start)
    return times


def write_json(path: str | Path, result: dict) -> None:
    """Write ``result``; scripts call it after every measured item, so an interrupted run keeps them."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2) + "\n")
