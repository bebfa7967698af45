"""Decode each image once into 8-bit RGB and keep it: the image store.

The original HyperIQA code opens and decodes the whole JPEG again for every
224x224 patch. Here every image is decoded (and resized where the data set's
convention says so) exactly once; patches are then sliced out of the uint8
array. :class:`ImageStore` holds the decoded images either in memory or in a
memory-mapped file under the cache folder, so a data set larger than RAM, or a
second run over the same data, costs no second decode.

Conventions (documented once, applied everywhere):

* Every image becomes 8-bit RGB: greyscale, palette, CMYK and 16-bit inputs
  are converted; 16-bit samples are scaled (not clipped) to 8 bits; an alpha
  channel is dropped, as PIL's ``convert("RGB")`` in the original code does.
* EXIF orientation is **not** applied: the stored pixels are used as they are,
  as in the original code and the published data sets' own tooling, so scores
  stay comparable with the literature. Pass ``exif_transpose=True`` to apply it
  for your own photos.
* ``short_side`` rescales so the shorter side has that many pixels, keeping
  the aspect ratio (KonIQ 1024x768 -> 512x384). The original KonIQ code used
  ``Resize((512, 384))``, which is (height, width) in torchvision and so turned
  landscape images into portrait ones; we do not reproduce that.
* Images whose short side is below ``min_side`` (the patch size) are upscaled
  to it, with a warning, so a patch always fits.
* Memory is bounded after decoding too: an image whose resize (a 1x20000
  strip upscaled to a 224-pixel short side, or a large ``short_side``) would
  exceed ``max_pixels`` is refused with its reason, like a decompression bomb.
* Only regular files are opened: a folder, a pipe or a device named like an
  image, a broken link or a link loop is refused with its reason, never read.
"""
from __future__ import annotations

import errno
import hashlib
import json
import os
import re
import shutil
import stat
import warnings
import zlib
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from iqalib.errors import ConfigError, DataError, ImageError

# Far above any IQA data set (SPAQ originals are ~4000x3000 = 12 MP) yet small
# enough that a forged header cannot make us allocate gigabytes.
DEFAULT_MAX_PIXELS = 64_000_000
# Bump when decoding conventions or the cache's index change: it invalidates the on-disk caches.
STORE_FORMAT = 2
_CHECKSUM_BLOCK = 1 << 24


def cache_root() -> Path:
    """Folder for caches (``$IQALIB_CACHE``, default ``~/.cache/iqalib``)."""
    return Path(os.environ.get("IQALIB_CACHE", Path.home() / ".cache" / "iqalib"))


def _to_rgb8(img: Image.Image, path) -> np.ndarray:
    """Convert any PIL mode to an (H, W, 3) uint8 array."""
    mode = img.mode
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit greyscale (PIL may load it as 32-bit "I"): scale, don't clip.
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if arr.max(initial=0) > 255 or mode.startswith("I;16") else 255.0
        grey = np.clip(np.rint(arr * (255.0 / top)), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=2)
    if mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        lo, hi = float(arr.min(initial=0)), float(arr.max(initial=1))
        scale = 255.0 if hi <= 1.0 and lo >= 0.0 else 255.0 / max(hi - lo, 1e-12)
        grey = np.clip(np.rint((arr - (0 if scale == 255.0 else lo)) * scale), 0, 255)
        return np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2)
    if mode != "RGB":
        img = img.convert("RGB")
    arr = np.asarray(img, dtype=np.uint8)
    if arr.ndim != 3 or arr.shape[2] != 3:
        raise ImageError(path, f"decoded to shape {arr.shape}, expected an RGB image")
    return arr


def decode_image(
    path: str | Path,
    *,
    short_side: int | None = None,
    min_side: int | None = None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
    exif_transpose: bool = False,
) -> np.ndarray:
    """Decode ``path`` to an (H, W, 3) uint8 array following the conventions above.

    Raises :class:`ImageError` (one line, naming the file) for missing, empty,
    truncated, non-image or oversized files.
    """
    path = Path(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        why = "broken link (its target is missing)" if path.is_symlink() else "file not found"
        raise ImageError(path, why) from None
    except OSError as exc:  # a link loop, a name too long, a file used as a folder, no permission
        raise ImageError(path, _unreadable(exc)) from None
    if stat.S_ISDIR(info.st_mode):
        raise ImageError(path, "is a folder, not an image file")
    if not stat.S_ISREG(info.st_mode):
        # Opening a pipe would wait forever for a writer; a device is no image.
        raise ImageError(path, "is not a regular file (a pipe, device or socket); pass image files")
    size = info.st_size
    if size == 0:
        raise ImageError(path, "file is empty (0 bytes); re-copy or remove it")
    try:
        with Image.open(path) as img:
            w, h = img.size
            if w * h > max_pixels:
                raise ImageError(
                    path,
                    f"header claims {w}x{h} pixels, over the {max_pixels:,} limit "
                    "(decompression-bomb guard); pass a larger max_pixels if it is genuine",
                )
            img.load()
            if exif_transpose:
                img = ImageOps.exif_transpose(img)
            arr = _to_rgb8(img, path)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(path, "not a readable image (corrupt, or not an image file)") from None
    except Image.DecompressionBombError as exc:
        # PIL refuses before we see the size when a header claims more than twice
        # its own limit: report it in the same words as our own guard.
        raise ImageError(path, _pil_bomb_reason(exc, max_pixels)) from None
    except PermissionError as exc:
        raise ImageError(path, _unreadable(exc)) from None
    except (OSError, SyntaxError, ValueError) as exc:
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ImageError(path, f"cannot be decoded ({reason}); the file is probably truncated or corrupt") from None
    except MemoryError:
        raise
    except Exception as exc:  # a crafted file can trip a PIL plug-in anywhere (struct.error, IndexError, ...)
        raise ImageError(path, f"cannot be decoded ({type(exc).__name__} in the image reader); "
                               "the file is probably corrupt") from None
    return resize_image(arr, short_side=short_side, min_side=min_side, path=path, max_pixels=max_pixels)


def _unreadable(exc: OSError) -> str:
    """Why a file cannot be read, and what to do, for an OSError from stat or open."""
    reason = exc.strerror or type(exc).__name__
    if exc.errno == errno.ELOOP:
        return f"is a link loop ({reason}); fix or remove the link"
    if exc.errno in (errno.EACCES, errno.EPERM):
        return f"cannot be read ({reason}); make it readable (chmod) or remove it"
    return f"cannot be read ({reason})"


def _pil_bomb_reason(exc: Exception, max_pixels: int) -> str:
    pixels = re.search(r"\((\d+) pixels\)", str(exc))
    claimed = f"{int(pixels.group(1)):,} pixels" if pixels else "too many pixels"
    return (
        f"header claims {claimed}, over PIL's limit of {2 * (Image.MAX_IMAGE_PIXELS or 0):,} "
        "(decompression-bomb guard); if it is genuine, raise PIL.Image.MAX_IMAGE_PIXELS "
        f"and max_pixels (now {max_pixels:,})"
    )


def resize_image(
    arr: np.ndarray, *, short_side: int | None, min_side: int | None, path=None,
    max_pixels: int = DEFAULT_MAX_PIXELS,
) -> np.ndarray:
    """Apply the short-side convention and the minimum-size guarantee.

    Raises :class:`ImageError` when the result would hold more than ``max_pixels``
    (an extreme aspect ratio upscaled to the patch size): refused before allocating.
    """
    h, w = arr.shape[:2]
    target = short_side
    # Compare the patch with the size after the short-side convention, not before:
    # a short_side below min_side must not leave an image too small for a patch.
    short = min(h, w) if target is None else target
    upscale = min_side is not None and short < min_side
    if upscale:
        target = min_side
    if target is None or min(h, w) == target:
        return arr
    scale = target / min(h, w)
    new_w, new_h = max(target, round(w * scale)), max(target, round(h * scale))
    if h <= w:
        new_h = target
    else:
        new_w = target
    if new_w * new_h > max_pixels:  # before the warning: a refused image is not upscaled
        raise ImageError(
            path or "image",
            f"{w}x{h} would become {new_w}x{new_h} pixels when its short side is resized to {target}, "
            f"over the {max_pixels:,} limit; crop it to a less extreme aspect ratio or use a smaller short side",
        )
    if upscale:
        size = f"{w}x{h}" if short_side is None else f"{w}x{h} at short side {short_side}"
        warnings.warn(
            f"{path or 'image'}: {size} is smaller than the {min_side}-pixel patch; "
            f"upscaling its short side to {min_side}",
            stacklevel=3,
        )
    out = Image.fromarray(arr).resize((new_w, new_h), Image.BILINEAR)
    return np.asarray(out, dtype=np.uint8)


@dataclass
class _Layout:
    offsets: np.ndarray  # (N,) int64 start of each image in the flat buffer
    shapes: np.ndarray  # (N, 2) int64 (H, W)

    @property
    def nbytes(self) -> int:
        return int((self.shapes[:, 0] * self.shapes[:, 1] * 3).sum())


class ImageStore:
    """Decoded uint8 RGB images, indexed like the table they came from.

    ``store[i]`` is an (H, W, 3) uint8 view. ``failed`` maps the index of each
    image that could not be decoded to its one-line reason (only non-empty
    when built with ``on_error="drop"``; those entries hold a 1x1 black image
    and must be dropped by the caller, see :meth:`valid`).
    """

    def __init__(self, buffer: np.ndarray, layout: _Layout, failed: dict[int, str] | None = None,
                 path: Path | None = None):
        self._buffer = buffer
        self._layout = layout
        self.failed = dict(failed or {})
        self.path = path

    def __len__(self) -> int:
        return len(self._layout.offsets)

    def __getitem__(self, i: int) -> np.ndarray:
        h, w = self._layout.shapes[i]
        start = self._layout.offsets[i]
        return self._buffer[start : start + h * w * 3].reshape(h, w, 3)

    @property
    def shapes(self) -> np.ndarray:
        """(N, 2) array of (height, width)."""
        return self._layout.shapes

    @property
    def nbytes(self) -> int:
        return self._layout.nbytes

    @property
    def on_disk(self) -> bool:
        return isinstance(self._buffer, np.memmap)

    def __getstate__(self) -> dict:
        state = self.__dict__.copy()
        if self.on_disk and self.path is not None:
            # DataLoader workers started by spawn/forkserver get the store pickled:
            # send the cache's location, not gigabytes of pixels.
            state["_buffer"] = None
        return state

    def __setstate__(self, state: dict) -> None:
        self.__dict__.update(state)
        if self._buffer is None:
            # The whole file: a subset's layout addresses only part of it.
            self._buffer = np.memmap(self.path / "images.u8", dtype=np.uint8, mode="r")

    def valid(self) -> np.ndarray:
        """Boolean mask of images that decoded."""
        mask = np.ones(len(self), dtype=bool)
        mask[list(self.failed)] = False
        return mask

    def subset(self, keep) -> "ImageStore":
        """The selected images (boolean mask or indices), sharing this store's pixels.

        No copy: a memory-mapped store stays on disk.
        """
        idx = np.flatnonzero(keep) if np.asarray(keep).dtype == bool else np.asarray(keep, np.int64)
        position = {int(old): new for new, old in enumerate(idx)}
        failed = {position[i]: why for i, why in self.failed.items() if i in position}
        layout = _Layout(self._layout.offsets[idx], self._layout.shapes[idx])
        return ImageStore(self._buffer, layout, failed, path=self.path)

    @classmethod
    def from_arrays(cls, arrays: Sequence[np.ndarray], *, copy: bool = True) -> "ImageStore":
        """Pack already-decoded (H, W, 3) uint8 arrays (for tests and small sets).

        ``copy=False`` with a single contiguous uint8 array shares its memory (scoring
        one image at a time needs no second copy of it).
        """
        shapes = np.array([a.shape[:2] for a in arrays], dtype=np.int64).reshape(-1, 2)
        sizes = shapes[:, 0] * shapes[:, 1] * 3
        offsets = np.zeros(len(sizes), dtype=np.int64)
        offsets[1:] = np.cumsum(sizes)[:-1]
        if not copy and len(arrays) == 1 and arrays[0].dtype == np.uint8 and arrays[0].flags.c_contiguous:
            return cls(arrays[0].reshape(-1), _Layout(offsets, shapes))
        buffer = np.empty(int(sizes.sum()), dtype=np.uint8)
        for a, off, n in zip(arrays, offsets, sizes):
            buffer[off : off + n] = np.ascontiguousarray(a, dtype=np.uint8).reshape(-1)
        return cls(buffer, _Layout(offsets, shapes))

    @classmethod
    def build(
        cls,
        paths: Sequence[str | Path],
        *,
        short_side: int | None = None,
        min_side: int | None = None,
        cache: str | Path | None = None,
        workers: int | None = None,
        on_error: str = "raise",
        max_pixels: int = DEFAULT_MAX_PIXELS,
        exif_transpose: bool = False,
        progress: bool = False,
    ) -> "ImageStore":
        """Decode every path once.

        ``cache=None`` keeps the images in memory; ``cache="auto"`` or a folder
        stores them in a memory-mapped file keyed by the paths, their sizes and
        modification times and the decoding settings, reused by later runs.
        Undecodable images are all listed in one :class:`DataError`, or, with
        ``on_error="drop"``, recorded in ``failed`` with a warning. The other
        arguments are :func:`decode_image`'s.
        """
        if on_error not in ("raise", "drop"):
            raise ConfigError(f"on_error={on_error!r} is not one of ('raise', 'drop')")
        paths = [Path(p) for p in paths]
        if not paths:
            raise DataError("no images to decode; the table is empty")
        settings = dict(short_side=short_side, min_side=min_side, max_pixels=max_pixels,
                        exif_transpose=exif_transpose)
        folder = None
        if cache is not None:
            base = cache_root() / "images" if cache == "auto" else Path(cache)
            folder = base / _cache_key(paths, settings)
            store = cls._open_cached(folder, say_why=True)
            if store is not None:
                return _report_failures(store, paths, on_error)
        arrays, failed = _decode_all(paths, settings, workers, progress)
        store = cls.from_arrays(arrays)
        store.failed = failed
        if folder is not None:
            store = cls._write_cache(store, folder)
        return _report_failures(store, paths, on_error)

    @classmethod
    def _open_cached(cls, folder: Path, *, say_why: bool = False) -> "ImageStore | None":
        """The cached store in ``folder``, or None (with a one-line warning why, when ``say_why``
        and a cache was there) when it is absent, not made of regular files, or does not match
        the shapes and checksum its index records: a damaged cache is rebuilt, never trusted."""
        why = _cache_problem(folder)
        if why is None:
            try:
                meta = json.loads((folder / "index.json").read_text())
                layout = _Layout(np.asarray(meta["offsets"], np.int64),
                                 np.asarray(meta["shapes"], np.int64).reshape(-1, 2))
                data = folder / "images.u8"
                if meta.get("format") != STORE_FORMAT:
                    why = "was written by another version of iqalib"
                elif data.stat().st_size != layout.nbytes or meta.get("nbytes") != layout.nbytes:
                    why = f"holds {data.stat().st_size} bytes where its index lists {layout.nbytes}"
                elif _checksum(data) != meta.get("crc32"):
                    why = "does not match its checksum (edited or damaged)"
                else:
                    buffer = np.memmap(data, dtype=np.uint8, mode="r", shape=(layout.nbytes,))
                    failed = {int(k): v for k, v in meta.get("failed", {}).items()}
                    return cls(buffer, layout, failed, path=folder)
            except (ValueError, KeyError, TypeError, OSError) as exc:
                why = f"has an unreadable index ({type(exc).__name__})"
        if say_why and why != _ABSENT:
            warnings.warn(f"image cache {folder}: {why}; decoding the images again", stacklevel=3)
        return None

    @classmethod
    def _write_cache(cls, store: "ImageStore", folder: Path) -> "ImageStore":
        tmp = folder.with_name(folder.name + f".tmp{os.getpid()}")
        try:
            tmp.mkdir(parents=True, exist_ok=True)
            store._buffer.tofile(tmp / "images.u8")
            meta = {
                "format": STORE_FORMAT,
                "nbytes": store._layout.nbytes,
                "crc32": _checksum(tmp / "images.u8"),
                "offsets": store._layout.offsets.tolist(),
                "shapes": store._layout.shapes.tolist(),
                "failed": {str(k): v for k, v in store.failed.items()},
            }
            (tmp / "index.json").write_text(json.dumps(meta))
        except OSError as exc:
            # A full disk or a read-only cache folder costs the cache, not the run: the
            # images are already decoded in memory.
            shutil.rmtree(tmp, ignore_errors=True)
            warnings.warn(f"cannot write the image cache in {folder.parent} ({exc.strerror or exc}); "
                          "keeping the images in memory: free space there or point data.image_cache "
                          "elsewhere (null: memory only)", stacklevel=3)
            return store
        if folder.exists() and cls._open_cached(folder) is None:
            # A damaged cache (a killed run, a full disk) is replaced, not kept forever.
            shutil.rmtree(folder, ignore_errors=True)
        try:
            os.replace(tmp, folder)  # atomic: readers see all or nothing
        except OSError:
            # Another process finished the same cache first: use theirs.
            shutil.rmtree(tmp, ignore_errors=True)
        cached = cls._open_cached(folder)
        return cached if cached is not None else store


_ABSENT = "absent"


def _cache_problem(folder: Path) -> str | None:
    """Why ``folder`` cannot be a cache (None when its two files are regular files)."""
    found = []
    for name in ("index.json", "images.u8"):
        try:
            mode = os.stat(folder / name).st_mode
        except OSError:
            continue
        if not stat.S_ISREG(mode):  # a pipe would block the read forever; a device is no cache
            return f"{name} is not a regular file"
        found.append(name)
    if len(found) < 2:
        return _ABSENT if not found else f"lacks {({'index.json', 'images.u8'} - set(found)).pop()}"
    return None


def _checksum(path: Path) -> int:
    """CRC-32 of a file (about 1 GB/s): catches a cache whose bytes changed since it was written."""
    crc = 0
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(_CHECKSUM_BLOCK), b""):
            crc = zlib.crc32(block, crc)
    return crc


def _cache_key(paths: Sequence[Path], settings: dict) -> str:
    h = hashlib.sha1()
    h.update(json.dumps({"format": STORE_FORMAT, **settings}, sort_keys=True).encode())
    for p in paths:
        try:
            st = p.stat()
            stamp = f"{st.st_size}:{st.st_mtime_ns}"
        except OSError:
            stamp = "missing"
        h.update(f"{p.resolve()}|{stamp}\n".encode())
    return h.hexdigest()[:20]


def _decode_all(paths, settings, workers, progress) -> tuple[list[np.ndarray], dict[int, str]]:
    workers = workers or min(4, os.cpu_count() or 1)
    failed: dict[int, str] = {}

    def one(i: int):
        try:
            return decode_image(paths[i], **settings)
        except ImageError as exc:
            failed[i] = exc.reason
            return np.zeros((1, 1, 3), np.uint8)

    # PIL releases the GIL while decoding, so threads scale across cores
    # without pickling arrays between processes.
    with ThreadPoolExecutor(max_workers=workers) as pool:
        results: Iterable = pool.map(one, range(len(paths)))
        if progress:
            from tqdm import tqdm  # lazy: keeps import iqalib fast

            results = tqdm(results, total=len(paths), desc="decoding images", unit="img")
        arrays = list(results)
    return arrays, failed


def _report_failures(store: ImageStore, paths: Sequence[Path], on_error: str) -> ImageStore:
    if not store.failed:
        return store
    items = sorted(store.failed.items())
    listed = "; ".join(f"{paths[i]} ({why})" for i, why in items[:10])
    more = f" and {len(items) - 10} more" if len(items) > 10 else ""
    if on_error == "raise" or len(items) == len(store):
        raise DataError(
            f"{len(items)} image(s) cannot be decoded: {listed}{more}; "
            "replace or remove them, or pass on_error='drop' (data.on_error=drop in a run config) "
            "to skip them"
        )
    warnings.warn(f"skipping {len(items)} undecodable image(s): {listed}{more}", stacklevel=3)
    return store
