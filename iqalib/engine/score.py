"""Scoring users' images with a trained model.

:func:`score_paths` streams images: a small thread pool decodes a bounded
number ahead, test crops of several images share a batch, and each image's
score is the mean over its crops. Memory stays bounded by the prefetch depth
and the batch, whatever the number of images. A file that cannot be decoded
is reported and skipped; the others are scored.
"""
from __future__ import annotations

import sys
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pandas as pd
import torch

from iqalib.data.datasets import IMAGE_EXTENSIONS
from iqalib.data.images import ImageStore, decode_image
from iqalib.data.patches import PatchDataset, to_model_input
from iqalib.data.table import read_csv_table
from iqalib.engine.checkpoint import WEIGHTS_KEYS, load_checkpoint
from iqalib.errors import CheckpointError, ConfigError, DataError, ImageError


def load_trained(checkpoint: str | Path, device: str | torch.device = "cpu"):
    """The model saved in ``checkpoint`` (``best.pt`` or ``last.pt``), in eval mode."""
    from iqalib.models import create_model

    state = load_checkpoint(checkpoint, keys=WEIGHTS_KEYS)
    config = state.get("config") if isinstance(state.get("config"), dict) else {}
    options = (config.get("model") or {}).get("options") or {}
    try:
        model = create_model(state["model_name"], pretrained=False, **options)
    except ConfigError as exc:  # a name or option this version does not know: say which file
        raise CheckpointError(f"{checkpoint}: {exc}; was it written by another iqalib version?") from None
    try:
        model.load_state_dict(state["model"])
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = " ".join(str(exc).split())[:200] or type(exc).__name__  # torch's first line says little
        raise CheckpointError(f"{checkpoint}: weights do not fit {state['model_name']!r} ({first}); "
                              "pass a checkpoint written by iqalib train for this model") from None
    # Score with the crops the model was trained on (score_paths and predict read this).
    patch_size = (config.get("train") or {}).get("patch_size")
    if patch_size:
        model.patch_size = int(patch_size)
    return model.to(device).eval()


def expand_paths(inputs: Iterable[str | Path]) -> list[Path]:
    """Files as given, folders searched recursively for images, CSVs read for an ``image`` column."""
    out: list[Path] = []
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            out.extend(sorted(f for f in p.rglob("*") if f.suffix in IMAGE_EXTENSIONS
                              or f.suffix.lower() in IMAGE_EXTENSIONS))
        elif p.suffix.lower() == ".csv":
            frame = read_csv_table(p)  # a bad CSV is a one-line DataError, not a pandas traceback
            if frame.empty or not len(frame.columns):
                raise DataError(f"{p}: lists no images; give one path per row (column 'image')")
            column = "image" if "image" in frame else frame.columns[0]
            out.extend(p.parent / str(v) if not Path(str(v)).is_absolute() else Path(str(v))
                       for v in frame[column])
        else:
            out.append(p)
    if not out:
        raise DataError(f"no images found in {list(map(str, inputs))}; pass files, folders or a CSV")
    return out


def _decoded(paths: list[Path], patch_size: int, short_side, prefetch: int) -> Iterator:
    """(index, array or ImageError) in order, decoding at most ``prefetch`` ahead."""
    def one(p):
        try:
            return decode_image(p, short_side=short_side, min_side=patch_size)
        except ImageError as exc:
            return exc

    with ThreadPoolExecutor(max_workers=2) as pool:
        pending: deque = deque()
        it = iter(enumerate(paths))
        for i, p in it:
            pending.append((i, pool.submit(one, p)))
            if len(pending) >= prefetch:
                break
        while pending:
            i, fut = pending.popleft()
            nxt = next(it, None)
            if nxt is not None:
                pending.append((nxt[0], pool.submit(one, nxt[1])))
            yield i, fut.result()


def _crops(arr: np.ndarray, patches: int, patch_size: int, seed: int) -> torch.Tensor:
    store = ImageStore.from_arrays([arr])
    ds = PatchDataset(store, patch_size=patch_size, patches_per_image=patches, train=False, seed=seed)
    return ds.__getitems__(list(range(patches)))[0]


def score_arrays(model, arrays: Iterable[tuple[int, np.ndarray]], *, patches: int = 25,
                 patch_size: int = 224, batch_size: int = 64, device="cpu", seed: int = 0):
    """Yield (index, score) for (index, image array) pairs, batching crops across images."""
    buf, owners = [], []

    def flush():
        x = to_model_input(torch.cat(buf), model.mean, model.std, device=device)
        with torch.inference_mode():
            pred = model(x).float().cpu().numpy()
        results, start = [], 0
        for idx, n in owners:
            results.append((idx, float(pred[start : start + n].mean())))
            start += n
        buf.clear()
        owners.clear()
        return results

    queued = 0
    for idx, arr in arrays:
        crops = _crops(arr, patches, patch_size, seed)
        buf.append(crops)
        owners.append((idx, len(crops)))
        queued += len(crops)
        if queued >= batch_size:
            yield from flush()
            queued = 0
    if buf:
        yield from flush()


def _check_counts(**values) -> None:
    """Counts a user passes (``--patches``, ``--short-side``) must be positive; None means unset."""
    for name, value in values.items():
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            flag = f"--{name.replace('_', '-')}"
            raise ConfigError(f"{name}={value!r} must be a positive whole number ({flag} on the command line)")


def score_paths(model, paths: list[Path], *, patches: int = 25, patch_size: int | None = None,
                batch_size: int = 64, short_side: int | None = None, device="cpu", seed: int = 0,
                prefetch: int = 8, errors="stderr") -> pd.DataFrame:
    """Score every path; undecodable files are reported on ``errors`` (a text stream, default stderr;
    None: silent) and get NaN with the reason.

    ``patch_size`` defaults to the model's (the training crop size for a model
    from :func:`load_trained`).
    """
    patch_size = patch_size or getattr(model, "patch_size", 224)
    _check_counts(patches=patches, batch_size=batch_size, prefetch=prefetch, short_side=short_side)
    # Looked up per call, not bound at import: redirected stderr (tests, notebooks) must see it.
    errors = sys.stderr if errors == "stderr" else errors
    failed: dict[int, str] = {}

    def good():
        for i, item in _decoded(paths, patch_size, short_side, prefetch):
            if isinstance(item, ImageError):
                failed[i] = item.reason
                if errors is not None:
                    print(f"skipped {item}", file=errors)
                continue
            yield i, item

    was_training = model.training
    model.eval()  # no dropout: a score must not depend on the call
    try:
        scores = dict(score_arrays(model, good(), patches=patches, patch_size=patch_size,
                                   batch_size=batch_size, device=device, seed=seed))
    finally:
        model.train(was_training)
    return pd.DataFrame({
        "image": [str(p) for p in paths],
        "score": [scores.get(i, np.nan) for i in range(len(paths))],
        "error": [failed.get(i, "") for i in range(len(paths))],
    })


def predict(model, image, *, patches: int = 25, patch_size: int | None = None, seed: int = 0) -> float:
    """Quality score of one image (a path, a PIL image or an (H, W, 3) uint8 array).

    Crops as :func:`score_paths` does, so both give an image the same score;
    ``patch_size`` defaults to the model's.
    """
    patch_size = patch_size or getattr(model, "patch_size", 224)
    if isinstance(image, (str, Path)):
        arr = decode_image(image, min_side=patch_size)
    else:
        from PIL import Image as PILImage

        arr = np.asarray(image.convert("RGB") if isinstance(image, PILImage.Image) else image, np.uint8)
        if arr.ndim != 3 or arr.shape[2] != 3:
            raise DataError(f"image array has shape {arr.shape}; expected (H, W, 3) uint8 RGB")
        from iqalib.data.images import resize_image

        arr = resize_image(arr, short_side=None, min_side=patch_size)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        (_, score), = score_arrays(model, [(0, arr)], patches=patches, patch_size=patch_size,
                                   device=device, seed=seed)
    finally:
        model.train(was_training)
    return score


def evaluate_split(checkpoint: str | Path, *, split: str = "test", dataset: str | None = None,
                   root: str | Path | None = None) -> dict:
    """Metrics of a trained round on a split of its own data (or of ``dataset``), on the CPU.

    Round r of a run split its data with ``split_seed + r`` and cropped with
    ``seed + r`` (see :func:`iqalib.engine.fit.fit_round`); the same are used here.
    """
    import dataclasses

    from iqalib import metrics
    from iqalib.config import from_dict
    from iqalib.data.splits import split_table
    from iqalib.engine.fit import PatchSource, predict_images, prepare_data, resolved_train

    state = load_checkpoint(checkpoint, keys=(*WEIGHTS_KEYS, "config"))
    if not isinstance(state["config"], dict) or not isinstance(state["config"].get("data"), dict):
        raise CheckpointError(f"{checkpoint}: records no run configuration to evaluate with; "
                              "pass a best.pt or last.pt written by iqalib train")
    data_cfg = dict(state["config"]["data"])
    if dataset:
        data_cfg.update(name=dataset, root=None if root is None else str(root), options={})
    config = from_dict({**state["config"], "data": data_cfg})
    data = prepare_data(config)
    model = load_trained(checkpoint)
    round_index = int(state.get("round", 0))
    tc = dataclasses.replace(resolved_train(config, model), seed=config.train.seed + round_index)
    part = data.table if split == "all" else split_table(
        data.table, seed=config.data.split_seed + round_index, fractions=tuple(config.data.fractions),
        official=config.data.official_split)[split]
    source = PatchSource(model, data.store, data.indices(part), part.mos, tc, train=False,
                         device=torch.device("cpu"), dtype=None)
    scores = metrics.evaluate_scores(predict_images(source), part.mos)
    return {"data": data.table.label, "split": split, **scores}
