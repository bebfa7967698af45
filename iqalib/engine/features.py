"""Frozen-trunk feature cache.

With ``freeze_backbone: true`` only the head learns, so the trunk's output
for a fixed crop never changes. :func:`feature_bank` runs the trunk once over
``K`` fixed crops of every image and keeps the head's inputs, already pooled
by the model's parameter-free ``pool_stages`` (the head applies its 1x1
convolutions after pooling, so nothing is lost). Every head on the same
trunk reads the same pooled maps, so one bank serves the whole ablation. Epochs, rounds and head
configurations sharing a trunk then cost only head passes. Banks are also
saved under ``$IQALIB_CACHE/features`` keyed by everything they depend on.
The trunk pass runs in the run's precision (``train.precision``; ``auto``:
bf16 autocast on CUDA and on CPUs where it is faster, see
:mod:`iqalib.engine.precision`); the bank itself is stored in fp32.
"""
from __future__ import annotations

import contextlib
import hashlib
import json
import os
import stat
import sys
import time
import warnings
from dataclasses import dataclass

import torch

from iqalib.data.images import cache_root
from iqalib.data.patches import PatchDataset, make_loader, to_model_input
from iqalib.engine import provenance
from iqalib.files import atomic_write_bytes
from iqalib.engine.precision import autocast_dtype
from iqalib.errors import OutputError


LONG_PASS_SECONDS = 20.0  # a trunk pass estimated longer than this says so first, in one line


@dataclass
class FeatureBank:
    features: list[torch.Tensor]  # each (n_images * patches_per_image, ...)
    patches_per_image: int
    backbone_state: dict


def _bank_key(model, data, tc, k: int, dtype=None) -> str:
    weights = hashlib.sha1()
    for name, tensor in model.backbone.state_dict().items():
        weights.update(name.encode())
        weights.update(tensor.detach().cpu().contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    fingerprint = {
        "backbone": model.backbone.name, "weights": weights.hexdigest(), "k": k, "patch": tc.patch_size,
        "seed": tc.seed, "crops": tc.test_crops, "autocast": str(dtype),
        "images": list(map(str, data.table.paths)), "shapes": data.store.shapes.tolist(),
        "contents": _contents(data.table.paths),  # an image edited in place (same name, same size) counts
    }
    return hashlib.sha1(json.dumps(fingerprint, sort_keys=True).encode()).hexdigest()[:20]


def _contents(paths) -> str:
    """One hash of the images' sha256 (memoised by path, size and mtime in the provenance module)."""
    h = hashlib.sha256()
    for path in paths:
        try:
            h.update(provenance.image_sha256(path).encode())
        except OSError:  # an image that is gone was dropped from the store: its name and shape count
            h.update(b"absent")
    return h.hexdigest()


def _features_sha256(features: list[torch.Tensor]) -> str:
    h = hashlib.sha256()
    for tensor in features:
        h.update(str(tuple(tensor.shape)).encode())
        h.update(tensor.contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return h.hexdigest()


def _read_bank(path, rows: int) -> tuple[list[torch.Tensor] | None, str | None]:
    """(features, None) from the cache file ``path``, or (None, why it is not used): a file that is not
    regular (a pipe would block the read), unreadable, without the rows the table needs, or whose
    tensors no longer match the checksum saved with them is recomputed, never trusted."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return None, "is not a regular file"
        saved = torch.load(path, map_location="cpu", weights_only=True)
        features = saved["features"]
        if not (isinstance(features, list) and features and all(isinstance(t, torch.Tensor) for t in features)):
            return None, "holds no feature tensors"
    except FileNotFoundError:
        return None, None
    except Exception as exc:  # a damaged file trips the unpickler anywhere
        return None, f"is unreadable ({type(exc).__name__})"
    if any(t.ndim == 0 or len(t) != rows for t in features):
        return None, f"holds {[len(t) if t.ndim else 0 for t in features]} rows where the table needs {rows}"
    if saved.get("sha256") != _features_sha256(features):
        return None, "does not match its checksum (edited, damaged, or written by an older iqalib)"
    return features, None


def feature_bank(model, data, tc, *, device, use_disk: bool = True) -> FeatureBank:
    """Pooled trunk features of ``max(train_patches, test_patches)`` fixed crops per image."""
    k = max(tc.train_patches, tc.test_patches)
    device = torch.device(device)
    dtype = autocast_dtype(device, tc.precision)
    path = cache_root() / "features" / f"{_bank_key(model, data, tc, k, dtype)}.pt"
    backbone_state = {n: t.detach().cpu().clone() for n, t in model.backbone.state_dict().items()}
    dataset = PatchDataset(data.store, patch_size=tc.patch_size, patches_per_image=k,
                           train=False, seed=tc.seed, test_crops=tc.test_crops)
    if use_disk:
        features, why = _read_bank(path, len(dataset))
        if features is not None:
            return FeatureBank(features, k, backbone_state)
        if why is not None:
            warnings.warn(f"feature cache {path}: {why}; computing the trunk features again", stacklevel=2)
    loader = make_loader(dataset, batch_size=tc.batch_size, shuffle=False, workers=tc.workers)
    model.eval()
    chunks: list[list[torch.Tensor]] = []
    progress = None
    if tc.progress:
        from tqdm import tqdm  # lazy: keeps import iqalib fast

        progress = tqdm(total=len(dataset), desc="trunk features", unit="patch", leave=False)
    autocast = (torch.autocast(device_type=device.type, dtype=dtype) if dtype is not None
                else contextlib.nullcontext())
    with torch.inference_mode():
        for patches, _, _ in loader:
            x = to_model_input(patches, model.mean, model.std, device=device,
                               channels_last=tc.channels_last)
            with autocast:
                pooled = model.pool_stages(model.forward_features(x))
            chunks.append([p.float().cpu() for p in pooled])
            if len(chunks) == 1:  # the first batch warms up; the second, timed, gives the rate
                started = time.perf_counter()
            elif len(chunks) == 2:
                rate = len(patches) / max(time.perf_counter() - started, 1e-9)
                _announce(len(dataset), k, rate, chunks[0], path if use_disk else None)
            if progress is not None:
                progress.update(len(patches))
    if progress is not None:
        progress.close()
    features = [torch.cat(parts) for parts in zip(*chunks)]
    if use_disk:
        try:
            saved = {"features": features, "sha256": _features_sha256(features)}
            atomic_write_bytes(path, lambda f: torch.save(saved, f))
        except OutputError as exc:  # the bank is in memory: a full cache disk costs only the cache
            warnings.warn(f"feature cache not saved: {exc}", stacklevel=2)
    return FeatureBank(features, k, backbone_state)


def _announce(n_crops: int, k: int, crops_per_second: float, first: list[torch.Tensor], path) -> None:
    """One line on stderr before a long trunk pass: its crops, its time estimated from the second
    batch's rate, and where its cache goes and how large it will be; nothing for a short pass."""
    seconds = n_crops / crops_per_second
    if seconds < LONG_PASS_SECONDS:
        return
    size = sum(t[0].numel() for t in first) * 4 * n_crops  # fp32 bank
    eta = f"{seconds / 60:.0f} minutes" if seconds >= 90 else f"{seconds:.0f} s"
    where = f"cache at {path} ({size / 1e9:.2g} GB)" if path else f"kept in memory ({size / 1e9:.2g} GB)"
    print(f"computing trunk features once: {n_crops} crops ({k} per image), about {eta}; {where}",
          file=sys.stderr, flush=True)
