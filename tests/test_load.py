"""``iqalib score`` over many images keeps its memory bounded.

A small, honest version of benchmarks/score_memory.py (which measures 100 vs.
2,000 photos of 512x384 and writes benchmarks/results/score_memory.json): the
real command line in a child process, 40 vs. 400 JPEGs of 384x288, two 64-pixel
crops each, and the child's peak resident set size from ``wait4`` (the
kernel's high-water mark). No timing is asserted.

The bound: 48 MiB of growth from 40 to 400 images. Streaming needs none: the
decode queue (8 images), the 64-crop batch and the model are the same size in
both runs, and the per-image bookkeeping (a path, one score, a row of the
output table) is well under 1 MiB for 400 images. What remains is noise
between two runs of the same code, measured here (2 cores, torch 2.14 CPU,
one thread) at -6 to +23 MiB over four pairs of runs. Keeping every decoded
image instead, the mistake this guards against, would add
360 x 384 x 288 x 3 bytes = 114 MiB, more than twice the bound.
"""
from __future__ import annotations

import importlib.util

import pytest

from faults_support import REPO_ROOT

GROWTH_BOUND_MIB = 48
SIZE = (384, 288)


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("score_memory", REPO_ROOT / "benchmarks" / "score_memory.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.slow
def test_score_peak_memory_does_not_grow_with_the_number_of_images(bench, tmp_path):
    checkpoint = bench.make_checkpoint(tmp_path / "untrained.pt", patch_size=64)
    # Two crops per image: both runs fill whole 64-crop batches, so the model's activations
    # (most of the peak) are the same size in both and only the number of images differs.
    few = bench.measure(bench.make_images(tmp_path / "few", 40, SIZE), checkpoint, patches=2, threads=1)
    many = bench.measure(bench.make_images(tmp_path / "many", 400, SIZE, seed=1), checkpoint, patches=2,
                         threads=1)
    assert few["images"] == 40 and many["images"] == 400  # every image was scored
    growth = many["peak_rss_mib"] - few["peak_rss_mib"]
    keeping_every_image = (400 - 40) * SIZE[0] * SIZE[1] * 3 / 2**20
    assert keeping_every_image > 2 * GROWTH_BOUND_MIB  # the bound would catch that leak
    assert growth < GROWTH_BOUND_MIB, (few, many)
