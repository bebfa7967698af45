"""Data-parallel training under ``torchrun``: the few collective helpers fit.py needs.

``torchrun --nproc_per_node=N -m iqalib.cli train CONFIG`` starts N copies of
the same command with ``RANK``, ``LOCAL_RANK`` and ``WORLD_SIZE`` set. Each
copy (a *rank*) trains on its own shard of the round's training images with
``train.batch_size / N`` patches per step; DistributedDataParallel averages
the gradients, so one step of N ranks is one step of the global batch
``train.batch_size``. Validation and test images are shared out too and their
scores gathered, so every image is scored once and every rank computes the
same metrics (and so selects the same epoch). Rank 0 alone writes files.

Without ``torchrun`` (``WORLD_SIZE`` unset or 1) every helper here is a no-op
that returns what one process needs: the single-process code path and its
results are unchanged.
"""
from __future__ import annotations

import atexit
import contextlib
import dataclasses
import math
import os
import random
import warnings

import numpy as np
import torch
import torch.distributed as dist

from iqalib.errors import ConfigError

# Rank r draws its shuffles and dropout from seed + RANK_SEED_STRIDE * r. Not
# seed + r: round r already trains with seed + r, so rank 1 of round 0 would
# repeat rank 0 of round 1.
RANK_SEED_STRIDE = 1_000_003


# ------------------------------------------------------------ who am I
def world_size() -> int:
    """Number of processes training together (1 without torchrun)."""
    if dist.is_available() and dist.is_initialized():
        return dist.get_world_size()
    return int(os.environ.get("WORLD_SIZE", "1"))


def rank() -> int:
    if dist.is_available() and dist.is_initialized():
        return dist.get_rank()
    return int(os.environ.get("RANK", "0"))


def local_rank() -> int:
    """This process's index on its own machine (its GPU under torchrun)."""
    return int(os.environ.get("LOCAL_RANK", "0"))


def is_distributed() -> bool:
    return world_size() > 1


def is_main() -> bool:
    """The one process that writes files and prints (rank 0)."""
    return rank() == 0


# ------------------------------------------------------------ set-up
def process_device(device: torch.device) -> torch.device:
    """Under torchrun, ``cuda`` means this process's GPU: ``cuda:LOCAL_RANK``."""
    if device.type != "cuda" or device.index is not None or not is_distributed():
        return device
    count = torch.cuda.device_count()
    # A scheduler that gives each process one GPU shows it as cuda:0.
    index = 0 if count == 1 else local_rank()
    if index >= count:
        raise ConfigError(f"LOCAL_RANK={local_rank()} but only {count} GPU(s) are visible; "
                          f"start torchrun with --nproc_per_node={count} or fewer")
    return torch.device("cuda", index)


def init_from_env(device: torch.device) -> None:
    """Join the process group torchrun set up (``nccl`` on CUDA, ``gloo`` on CPU); idempotent."""
    if not is_distributed() or dist.is_initialized():
        return
    if "MASTER_ADDR" not in os.environ:  # torchrun always sets it; a stray WORLD_SIZE does not
        raise ConfigError(f"WORLD_SIZE={world_size()} is set but no MASTER_ADDR: start multi-process "
                          "training with torchrun (or unset WORLD_SIZE for one process)")
    if device.type == "cuda":
        torch.cuda.set_device(device)
        dist.init_process_group("nccl", device_id=device)
    else:
        dist.init_process_group("gloo")
    atexit.register(_shutdown)


def _shutdown() -> None:
    if dist.is_initialized():
        dist.destroy_process_group()


def per_rank_train_config(tc):
    """``tc`` with this rank's share of the global batch: ``batch_size / world_size``."""
    n = world_size()
    if n == 1:
        return tc
    if tc.batch_size % n:
        raise ConfigError(f"train.batch_size={tc.batch_size} is the global batch and must divide evenly "
                          f"over the {n} processes of torchrun; set train.batch_size to a multiple of {n}")
    return dataclasses.replace(tc, batch_size=tc.batch_size // n)


def rank_seed(seed: int) -> int:
    """A seed of this rank's own (rank 0 keeps ``seed``, so one process is unchanged)."""
    return seed + RANK_SEED_STRIDE * rank()


def seed_rank_for_epoch(seed: int, epoch: int) -> None:
    """Give each rank its own dropout stream for ``epoch`` (no-op in one process).

    Derived from (seed, rank, epoch) rather than carried over, so a resumed
    run draws what the uninterrupted run drew (last.pt holds rank 0's RNGs only).
    """
    if is_distributed():
        stream = rank_seed(seed) * 10_007 + epoch
        random.seed(stream)
        np.random.seed(stream % 2**32)
        torch.manual_seed(stream)


# ------------------------------------------------------------ sharding
def shard_images(n_images: int, epoch: int, seed: int, *, rank_index: int | None = None,
                 n_ranks: int | None = None) -> np.ndarray | None:
    """This rank's training images (positions ``0..n_images-1``) for ``epoch``; None in one process.

    One permutation per (seed, epoch), the same on every rank, dealt out in
    turn. Every rank gets ``ceil(n / world)`` images so all ranks take the same
    number of steps (DDP's all-reduce needs every rank at every step): when
    ``world`` does not divide ``n``, the first ``world - n % world`` images of
    the permutation are dealt twice, as torch's DistributedSampler does.
    """
    r = rank() if rank_index is None else rank_index
    w = world_size() if n_ranks is None else n_ranks
    if w == 1:
        return None
    order = np.random.default_rng([seed, epoch, 0x5AAD]).permutation(n_images)
    padded = np.resize(order, math.ceil(n_images / w) * w)  # np.resize repeats from the start
    return padded[r::w]


def eval_shard(n_images: int, *, rank_index: int | None = None, n_ranks: int | None = None) -> np.ndarray | None:
    """This rank's contiguous slice of images to score; None in one process (score them all)."""
    r = rank() if rank_index is None else rank_index
    w = world_size() if n_ranks is None else n_ranks
    if w == 1:
        return None
    return np.array_split(np.arange(n_images), w)[r]


def assemble(positions: list[np.ndarray], values: list[np.ndarray], n_images: int) -> np.ndarray:
    """Put every rank's ``values`` back at their ``positions``; each image must come exactly once."""
    out = np.full(n_images, np.nan)
    seen = np.zeros(n_images, np.int64)
    for pos, val in zip(positions, values):
        pos = np.asarray(pos, np.int64)
        out[pos] = val
        np.add.at(seen, pos, 1)
    if not (seen == 1).all():
        raise RuntimeError(f"gathered scores cover {int((seen > 0).sum())} of {n_images} images "
                           f"({int((seen > 1).sum())} more than once); the shards are inconsistent")
    return out


def gather_image_scores(scores: np.ndarray, images: np.ndarray | None) -> np.ndarray:
    """All images' scores on every rank, from each rank's ``scores[images]``.

    ``scores`` has one entry per image of the split (only this rank's
    ``images`` filled in); in one process ``images`` is None and ``scores``
    comes back unchanged.
    """
    if images is None:
        return scores
    positions = all_gather_arrays(np.asarray(images, np.int64))
    values = all_gather_arrays(np.asarray(scores, np.float64)[images])
    return assemble(positions, values, len(scores))


# ------------------------------------------------------------ collectives
def _comm_device() -> torch.device:
    # NCCL moves only CUDA tensors; gloo only CPU ones.
    if dist.get_backend() == "nccl":
        return torch.device("cuda", torch.cuda.current_device())
    return torch.device("cpu")


def all_gather_arrays(array: np.ndarray) -> list[np.ndarray]:
    """Every rank's ``array`` (lengths may differ along the first axis), in rank order."""
    if not is_distributed():
        return [array]
    device = _comm_device()
    local = torch.as_tensor(np.ascontiguousarray(array)).to(device)
    length = torch.tensor([local.shape[0]], device=device)
    lengths = [torch.zeros_like(length) for _ in range(world_size())]
    dist.all_gather(lengths, length)
    longest = int(max(n.item() for n in lengths))
    # all_gather moves equal shapes: pad to the longest, trim after.
    padded = local.new_zeros((longest, *local.shape[1:]))
    padded[: local.shape[0]] = local
    pieces = [torch.zeros_like(padded) for _ in range(world_size())]
    dist.all_gather(pieces, padded)
    return [p[: int(n.item())].cpu().numpy() for p, n in zip(pieces, lengths)]


def sum_over_ranks(*numbers: float) -> tuple[float, ...]:
    """Each number summed over all ranks (unchanged in one process)."""
    if not is_distributed():
        return numbers
    values = torch.tensor(numbers, dtype=torch.float64, device=_comm_device())
    dist.all_reduce(values)
    return tuple(values.cpu().tolist())


def broadcast_buffers(model: torch.nn.Module) -> None:
    """Copy rank 0's buffers (BatchNorm running statistics) to every rank.

    DDP syncs them at the start of each training forward, but the last step's
    update stays local; scoring and checkpoints need one model on all ranks.
    """
    if not is_distributed():
        return
    device = _comm_device()
    for buffer in model.buffers():
        moved = buffer.detach().to(device)
        dist.broadcast(moved, src=0)
        buffer.copy_(moved)


def barrier() -> None:
    if is_distributed():
        dist.barrier()


@contextlib.contextmanager
def local_main_first():
    """Local rank 0 runs the block first (e.g. fills a disk cache), then the others (which read it)."""
    first = local_rank() == 0
    if not first:
        barrier()
    try:
        yield
    finally:
        if first:
            barrier()


# ------------------------------------------------------------ DDP
class _PooledHead(torch.nn.Module):
    """The head of a frozen-trunk model as a module whose forward takes pooled features."""

    def __init__(self, model: torch.nn.Module):
        super().__init__()
        self.model = model

    def forward(self, pooled):
        return self.model.forward_pooled(pooled)


class _HeadDDP(torch.nn.parallel.DistributedDataParallel):
    """DDP over :class:`_PooledHead`; FeatureSource calls ``forward_pooled``."""

    def forward_pooled(self, pooled):
        return self(pooled)


def wrap_for_training(model: torch.nn.Module, *, pooled: bool) -> torch.nn.Module:
    """``model`` inside DistributedDataParallel under torchrun; ``model`` itself in one process.

    ``pooled``: training runs the head on cached trunk features
    (``forward_pooled``); DDP then covers the head, the only part with gradients.
    """
    if not is_distributed():
        return model
    device = next(model.parameters()).device
    ids = [device.index] if device.type == "cuda" else None
    # The gradient of a 1x1 convolution's (O, I, 1, 1) weight comes with strides (I, 1, I, I):
    # the same memory layout as the weight's (I, 1, 1, 1), but DDP compares the strides literally.
    warnings.filterwarnings("ignore", message="Grad strides do not match bucket view strides")
    if pooled:
        return _HeadDDP(_PooledHead(model), device_ids=ids)
    return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
