"""What a user may hand to a metric, and how it becomes 8-bit RGB pixels.

One set of rules for :func:`iqalib.create_metric`'s callable and
:func:`iqalib.predict` (pyiqa's conventions where it has them):

* a path (``str`` or :class:`~pathlib.Path`), or a list/tuple of paths or images;
* a PIL image;
* a NumPy array laid out (H, W, 3) or (H, W) (greyscale): ``uint8`` as it is,
  or floating point in [0, 1];
* a torch tensor laid out (3, H, W) or (N, 3, H, W) (one channel for greyscale),
  floating point in [0, 1], as pyiqa takes them.

A photo is scored **as displayed**: an EXIF orientation tag (phones store
portraits sideways) is applied to files and PIL images. Data sets are loaded
as they define themselves (see :mod:`iqalib.data.images`); this module is for
a user's pictures. Anything ambiguous (floats outside [0, 1], other integer
types, a channel count or layout that is neither) is refused in one line that
says what to pass instead: a silent guess would give a wrong score.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np

from iqalib.data.images import decode_image, resize_image
from iqalib.errors import DataError

ORIENTATION_RULE = "EXIF orientation applied: the picture is scored as it is displayed"
_PYIQA = "pass (H, W, 3) uint8 or float in [0, 1], or a (3, H, W)/(N, 3, H, W) float tensor in [0, 1]"


def is_batch(images) -> bool:
    """Whether ``images`` holds several pictures (a list/tuple, or a 4-D tensor)."""
    if isinstance(images, (list, tuple)):
        return True
    return _is_tensor(images) and images.ndim == 4


def as_rgb8(images, *, min_side: int | None = None) -> list[tuple[str, np.ndarray]]:
    """``[(name, (H, W, 3) uint8 array)]`` for every picture in ``images`` (see the module's rules).

    ``name`` is the path for files and ``"image[i]"`` otherwise, for messages and tables.
    ``min_side`` upscales a picture whose short side is smaller, as data sets are.
    """
    if isinstance(images, (list, tuple)):
        if not images:
            raise DataError("no images given: pass a path, an image or a non-empty list of them")
        out = []
        for i, item in enumerate(images):
            if isinstance(item, (list, tuple)):
                raise DataError(f"image[{i}] is itself a list; pass a flat list of paths or images")
            if _is_tensor(item) and item.ndim == 4:
                raise DataError(f"image[{i}] is a 4-D batch; pass one batch tensor, or a list of (3, H, W) tensors")
            (name, arr), = as_rgb8(item, min_side=min_side)
            out.append((name if isinstance(item, (str, Path)) else f"image[{i}]", arr))
        return out
    if isinstance(images, (str, Path)):
        return [(str(images), decode_image(images, min_side=min_side, exif_transpose=True))]
    if _is_pil(images):
        return [("image[0]", _resized(_from_pil(images), min_side))]
    if _is_tensor(images):
        return [(f"image[{i}]", _resized(a, min_side)) for i, a in enumerate(_from_tensor(images))]
    if isinstance(images, np.ndarray):
        return [("image[0]", _resized(_from_array(images), min_side))]
    raise DataError(f"cannot score a {type(images).__name__}; pass a path, a PIL image, a NumPy array "
                    "or a torch tensor (or a list of them)")


def _is_tensor(obj) -> bool:
    return type(obj).__module__.startswith("torch") and hasattr(obj, "detach")


def _is_pil(obj) -> bool:
    return type(obj).__module__.startswith("PIL.") and hasattr(obj, "convert")


def _from_pil(image) -> np.ndarray:
    from PIL import ImageOps  # lazy: keeps import iqalib fast

    return np.asarray(ImageOps.exif_transpose(image).convert("RGB"), dtype=np.uint8)


def _unit_floats_to_uint8(values: np.ndarray, what: str) -> np.ndarray:
    if not np.isfinite(values).all():
        raise DataError(f"{what} holds NaN or infinite values; pass finite pixel values in [0, 1]")
    if values.size == 0:
        raise DataError(f"{what} holds no pixels")
    low, high = float(values.min()), float(values.max())
    if low < 0.0 or high > 1.0:
        raise DataError(f"{what} holds floats from {low:g} to {high:g}, outside [0, 1]: scale it to [0, 1] "
                        "(divide 0-255 values by 255) or pass uint8")
    return np.rint(values * 255.0).astype(np.uint8)


def _from_array(arr: np.ndarray) -> np.ndarray:
    what = f"a {arr.dtype} array of shape {tuple(arr.shape)}"
    if arr.ndim == 2:
        arr = arr[..., None]
    if arr.ndim != 3 or arr.shape[2] not in (1, 3):
        hint = (" (it looks channels-first: NumPy arrays are read as (H, W, 3); transpose it, or pass a "
                "torch tensor)" if arr.ndim == 3 and arr.shape[0] in (1, 3) else "")
        raise DataError(f"cannot read {what} as a picture{hint}; {_PYIQA}")
    if arr.dtype == np.uint8:
        pixels = arr
    elif np.issubdtype(arr.dtype, np.floating):
        pixels = _unit_floats_to_uint8(arr.astype(np.float64), what)
    else:
        raise DataError(f"cannot read {what}: integer pixels other than uint8 are ambiguous (16-bit? 0-255?); "
                        "convert to uint8 or to float in [0, 1]")
    return np.ascontiguousarray(np.repeat(pixels, 3, axis=2) if pixels.shape[2] == 1 else pixels)


def _from_tensor(tensor) -> list[np.ndarray]:
    what = f"a {str(tensor.dtype).replace('torch.', '')} tensor of shape {tuple(tensor.shape)}"
    if tensor.ndim not in (3, 4) or tensor.shape[-3] not in (1, 3):
        raise DataError(f"cannot read {what} as pictures; tensors are (3, H, W) or (N, 3, H, W) (pyiqa's "
                        f"layout); {_PYIQA}")
    if not tensor.is_floating_point():
        raise DataError(f"cannot read {what}: tensors are float in [0, 1] (pyiqa's convention); "
                        "divide 0-255 values by 255")
    batch = tensor.detach().to("cpu").float().numpy()
    batch = batch[None] if batch.ndim == 3 else batch
    pixels = _unit_floats_to_uint8(batch.astype(np.float64), what)
    pixels = np.repeat(pixels, 3, axis=1) if pixels.shape[1] == 1 else pixels
    return [np.ascontiguousarray(p.transpose(1, 2, 0)) for p in pixels]


def _resized(arr: np.ndarray, min_side: int | None) -> np.ndarray:
    if min_side is None or min(arr.shape[:2]) >= min_side:
        return arr
    return resize_image(arr, short_side=None, min_side=min_side)
