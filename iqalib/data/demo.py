"""The embedded demo set: scikit-image's photographs, distorted and scored.

Nothing is downloaded. Twelve photographs that scikit-image ships inside its
wheel (eight in colour, four greyscale ones repeated into RGB) are
centre-cropped to 3:4 and resized to 288x384 (height x width, LANCZOS), so a
224x224 patch fits with room. Each reference gets six distortion types at
four levels, plus itself as the pristine image: 12 x (6 x 4 + 1) = 300
images.

==============  ====================================================  =====================
distortion      what it does (uint8 RGB in, uint8 RGB out)            levels 1..4
==============  ====================================================  =====================
gaussian_blur   Gaussian filter, sigma in pixels                      1, 2, 3.5, 6
gaussian_noise  additive N(0, sigma^2) per pixel and channel          8, 15, 25, 40
jpeg            JPEG round trip in memory (PIL), quality              30, 15, 8, 4
contrast        x -> m + c (x - m), m the image mean                  0.6, 0.4, 0.25, 0.1
darken          x -> g x                                              0.7, 0.5, 0.35, 0.2
colour_cast     red gain 1 + a, blue gain 1 - a (white balance off)   0.3, 0.45, 0.6, 0.8
==============  ====================================================  =====================

A colour cast stands in for a saturation change: a greyscale reference has
no saturation to change, while every reference can take a cast.

The scoring rule (:data:`DEMO_VERSION` 1), stated exactly:

1. fidelity ``q = 100 * clip(SSIM(reference, distorted), 0, 1)``, the SSIM of
   Wang et al. (2004) on the RGB channels (each channel separately, then averaged):
   Gaussian window sigma 1.5 truncated at 3.5 sigma, population covariances,
   K1 = 0.01, K2 = 0.03, data range 255, a 5-pixel border dropped, as
   ``skimage.metrics.structural_similarity(..., channel_axis=-1,
   gaussian_weights=True, sigma=1.5, use_sample_covariance=False,
   data_range=255)`` computes it. SSIM reads chroma shifts through the
   per-channel means, so a colour cast lowers it. A pristine image has q = 100.
2. ratings: 24 simulated raters each give ``clip(q + e, 0, 100)`` with
   ``e ~ N(0, 12^2)``; ``mos`` is their mean and ``std`` their sample standard
   deviation (ddof = 1).

All randomness (the noise distortion and the raters) comes from generators
seeded by ``(seed, reference, distortion, level)``, so the same seed gives
byte-identical images and an identical table, and a different seed gives new
noise and new ratings. What the rule guarantees: the pristine image has the
highest fidelity of its reference (SSIM is 1 only for identical images), and
in this set the fidelity falls with the level within every type for every
reference. The MOS carries rater noise (about 12 / sqrt(24) = 2.4 points),
so it keeps that order on average over references, not always per image.
The levels are chosen so that the scores spread over the whole scale: every
fifth of 0-100 holds some images.

The set is built once into ``$IQALIB_CACHE/demo-seed<seed>/`` (``IQALIB_CACHE``
defaults to ``~/.cache/iqalib``): PNG images under ``images/`` (lossless, so
the JPEG artefacts stay as made), ``manifest.json`` and ``scores.csv`` with
the columns image, mos, std, group (the reference, so that splits by group
never share content), distortion ("pristine" at level 0), level, reference
and fidelity (the noise-free q). The
build goes to a temporary sibling folder that is renamed into place only
when complete, so an interrupted build is never mistaken for a finished one.
"""
from __future__ import annotations

import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
import uuid
from concurrent.futures import ProcessPoolExecutor
from multiprocessing import get_context
from pathlib import Path
from typing import Sequence

import numpy as np
import pandas as pd
from PIL import Image
from scipy import ndimage

from iqalib import metrics
from iqalib.data.images import cache_root
from iqalib.data.splits import split_table
from iqalib.data.table import IQATable, make_table, read_csv_table
from iqalib.errors import ConfigError, DataError

# Bump whenever images or scores would change for the same seed: a cached
# build with another version is rebuilt.
DEMO_VERSION = 1

# name -> scikit-image loader: photographs that ship inside the scikit-image
# wheel (no pooch, no network), eight in colour and four greyscale. The order
# fixes the seeds.
REFERENCES: dict[str, str] = {
    "astronaut": "astronaut",
    "coffee": "coffee",
    "chelsea": "chelsea",
    "rocket": "rocket",
    "motorcycle": "stereo_motorcycle",
    "immunohistochemistry": "immunohistochemistry",
    "hubble_deep_field": "hubble_deep_field",
    "retina": "retina",
    "camera": "camera",
    "coins": "coins",
    "moon": "moon",
    "grass": "grass",
}

# distortion -> parameter at levels 1..4 (strength grows with the level).
DISTORTIONS: dict[str, tuple[float, ...]] = {
    "gaussian_blur": (1.0, 2.0, 3.5, 6.0),
    "gaussian_noise": (8.0, 15.0, 25.0, 40.0),
    "jpeg": (30, 15, 8, 4),
    "contrast": (0.6, 0.4, 0.25, 0.1),
    "darken": (0.7, 0.5, 0.35, 0.2),
    "colour_cast": (0.3, 0.45, 0.6, 0.8),
}
PRISTINE = "pristine"

DEFAULT_SIZE = (288, 384)  # height, width
MOS_RANGE = (0.0, 100.0)
RATERS = 24
RATER_SD = 12.0

# SSIM constants of Wang et al. (2004) with skimage's Gaussian-window variant.
_SSIM_SIGMA = 1.5
_SSIM_TRUNCATE = 3.5
_SSIM_BORDER = int(_SSIM_TRUNCATE * _SSIM_SIGMA + 0.5)
_SSIM_C1 = (0.01 * 255) ** 2
_SSIM_C2 = (0.03 * 255) ** 2
# Below this the SSIM window (11 px) hardly fits once the border is dropped.
_MIN_SIDE = 32
# Stream ids that keep the noise distortion and the raters independent.
_NOISE_STREAM, _RATER_STREAM = 0, 1

MANIFEST = "manifest.json"
SCORES = "scores.csv"
IMAGES = "images"
COLUMNS = ("image", "mos", "std", "group", "distortion", "level", "reference", "fidelity")
CITATION = (
    "Synthetic demo set (iqalib): scikit-image sample photographs (van der Walt et al., "
    "PeerJ 2:e453, 2014), distorted and scored by SSIM (Wang et al., IEEE TIP 13(4), 2004) "
    "with simulated raters; not a human study"
)


# ---------------------------------------------------------------- images


def reference_image(name: str, size: tuple[int, int] = DEFAULT_SIZE) -> np.ndarray:
    """Reference ``name`` as uint8 RGB of ``size`` (height, width): centre crop, LANCZOS."""
    if name not in REFERENCES:
        raise ConfigError(f"demo reference {name!r} is unknown; choose from {list(REFERENCES)}")
    loader = REFERENCES[name]
    import skimage  # lazy: scikit-image loads only when the demo set is built
    import skimage.data  # lazy: scikit-image loads only when the demo set is built

    try:
        image = getattr(skimage.data, loader)()
    except (AttributeError, ModuleNotFoundError, OSError) as exc:
        raise DataError(
            f"scikit-image {skimage.__version__} cannot load its sample image {loader!r} "
            f"offline ({type(exc).__name__}); install a scikit-image release that ships it"
        ) from None
    if isinstance(image, tuple):  # stereo_motorcycle: (left, right, disparity)
        image = image[0]
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    height, width = size
    h, w = image.shape[:2]
    # The largest centred window with the target aspect ratio.
    crop_h, crop_w = min(h, round(w * height / width)), min(w, round(h * width / height))
    top, left = (h - crop_h) // 2, (w - crop_w) // 2
    crop = np.ascontiguousarray(image[top : top + crop_h, left : left + crop_w, :3])
    resized = Image.fromarray(crop).resize((width, height), Image.Resampling.LANCZOS)
    return np.asarray(resized, dtype=np.uint8)


def _to_uint8(x: np.ndarray) -> np.ndarray:
    return np.clip(np.rint(x), 0, 255).astype(np.uint8)


def distort(
    image: np.ndarray, distortion: str, level: int, rng: np.random.Generator | None = None
) -> np.ndarray:
    """Apply ``distortion`` at ``level`` (1 = mildest) to uint8 RGB ``image``.

    Only ``gaussian_noise`` draws from ``rng``; the other types are deterministic.
    """
    if distortion not in DISTORTIONS:
        raise ConfigError(
            f"demo distortion {distortion!r} is unknown; choose from {list(DISTORTIONS)}"
        )
    levels = DISTORTIONS[distortion]
    if not 1 <= level <= len(levels):
        raise ConfigError(f"demo level {level} is out of range 1..{len(levels)}")
    p = levels[level - 1]
    x = image.astype(np.float32)
    if distortion == "gaussian_blur":
        return _to_uint8(ndimage.gaussian_filter(x, sigma=(p, p, 0), mode="reflect"))
    if distortion == "gaussian_noise":
        if rng is None:
            raise ConfigError("the gaussian_noise distortion needs a random generator (rng)")
        return _to_uint8(x + rng.normal(0.0, p, size=x.shape).astype(np.float32))
    if distortion == "jpeg":
        buffer = io.BytesIO()
        Image.fromarray(image).save(buffer, format="JPEG", quality=int(p))
        buffer.seek(0)
        return np.asarray(Image.open(buffer).convert("RGB"), dtype=np.uint8)
    if distortion == "contrast":
        mean = x.mean()
        return _to_uint8(mean + p * (x - mean))
    if distortion == "darken":
        return _to_uint8(p * x)
    # colour_cast
    gains = np.array([1.0 + p, 1.0, 1.0 - p], dtype=np.float32)
    return _to_uint8(x * gains)


class _SSIMReference:
    """Local means and variances of a reference, reused for all its distortions."""

    def __init__(self, reference: np.ndarray):
        self.x = reference.astype(np.float32)
        self.mu = self._filter(self.x)
        self.var = self._filter(self.x * self.x) - self.mu * self.mu

    @staticmethod
    def _filter(a: np.ndarray) -> np.ndarray:
        return ndimage.gaussian_filter(
            a, sigma=(_SSIM_SIGMA, _SSIM_SIGMA, 0), truncate=_SSIM_TRUNCATE, mode="reflect"
        )

    def ssim(self, distorted: np.ndarray) -> float:
        y = distorted.astype(np.float32)
        mu_y = self._filter(y)
        var_y = self._filter(y * y) - mu_y * mu_y
        cov = self._filter(self.x * y) - self.mu * mu_y
        s = ((2 * self.mu * mu_y + _SSIM_C1) * (2 * cov + _SSIM_C2)) / (
            (self.mu**2 + mu_y**2 + _SSIM_C1) * (self.var + var_y + _SSIM_C2)
        )
        b = _SSIM_BORDER
        return float(s[b:-b, b:-b].astype(np.float64).mean())


def ssim(reference: np.ndarray, distorted: np.ndarray) -> float:
    """Mean SSIM over the RGB channels (the rule's settings; see the module docstring)."""
    return _SSIMReference(reference).ssim(distorted)


def simulate_ratings(
    fidelity: float, rng: np.random.Generator, raters: int = RATERS, sd: float = RATER_SD
) -> tuple[float, float]:
    """(MOS, std) of ``raters`` ratings ``clip(fidelity + N(0, sd^2), 0, 100)``."""
    ratings = np.clip(fidelity + rng.normal(0.0, sd, size=raters), *MOS_RANGE)
    return float(ratings.mean()), float(ratings.std(ddof=1))


# ---------------------------------------------------------------- build


def _spec(seed: int, references: Sequence[str] | None, size: Sequence[int]) -> dict:
    if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
        raise ConfigError(f"demo seed={seed!r} must be a non-negative integer")
    refs = list(REFERENCES) if references is None else list(references)
    unknown = [r for r in refs if r not in REFERENCES]
    if unknown or not refs or len(set(refs)) != len(refs):
        raise ConfigError(
            f"demo references {refs!r} must be distinct names from {list(REFERENCES)}"
        )
    size = [int(s) for s in size]
    if len(size) != 2 or min(size) < _MIN_SIDE:
        raise ConfigError(f"demo size={size!r} must be (height, width), each >= {_MIN_SIDE}")
    return {
        "demo_version": DEMO_VERSION,
        "seed": int(seed),
        "references": refs,
        "size": size,
        "distortions": {k: list(v) for k, v in DISTORTIONS.items()},
        "raters": RATERS,
        "rater_sd": RATER_SD,
        "count": len(refs) * (1 + sum(len(v) for v in DISTORTIONS.values())),
    }


def default_root(
    seed: int = 0, *, references: Sequence[str] | None = None, size: Sequence[int] = DEFAULT_SIZE
) -> Path:
    """Where :func:`build_demo` caches a set: ``$IQALIB_CACHE/demo-seed<seed>``.

    A reduced set (other references or size) gets a folder of its own, tagged
    by a hash of its parameters, so it never evicts the default one.
    """
    spec = _spec(seed, references, size)
    name = f"demo-seed{spec['seed']}"
    if spec["references"] != list(REFERENCES) or spec["size"] != list(DEFAULT_SIZE):
        params = json.dumps([spec["references"], spec["size"]]).encode()
        name += "-" + hashlib.sha1(params).hexdigest()[:8]
    return cache_root() / name


def _read_manifest(root: Path) -> dict | None:
    try:
        return json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _is_complete(root: Path, spec: dict) -> bool:
    """A finished build of exactly ``spec``: manifest matches, table and all images there."""
    if _read_manifest(root) != spec or not (root / SCORES).is_file():
        return False
    return sum(1 for _ in (root / IMAGES).glob("*.png")) == spec["count"]


def _is_replaceable(root: Path) -> bool:
    """Only a folder holding nothing but what a build writes may be replaced."""
    return root.is_dir() and {p.name for p in root.iterdir()} <= {MANIFEST, SCORES, IMAGES}


def _image_name(reference: str, distortion: str, level: int) -> str:
    stem = reference if distortion == PRISTINE else f"{reference}_{distortion}{level}"
    return f"{IMAGES}/{stem}.png"


def _build_reference(reference: str, spec: dict, out: str) -> list[dict]:
    """Write one reference's images under ``out``; return their table rows."""
    ref_id = list(REFERENCES).index(reference)  # seeds follow the global order
    image = reference_image(reference, tuple(spec["size"]))
    scorer = _SSIMReference(image)
    jobs = [(PRISTINE, 0)]
    jobs += [(d, lvl) for d, levels in DISTORTIONS.items() for lvl in range(1, len(levels) + 1)]
    rows = []
    for distortion, level in jobs:
        dist_id = -1 if distortion == PRISTINE else list(DISTORTIONS).index(distortion)
        key = [spec["seed"], ref_id, dist_id + 1, level]
        if distortion == PRISTINE:
            picture, q = image, 100.0
        else:
            noise = np.random.default_rng(key + [_NOISE_STREAM])
            picture = distort(image, distortion, level, noise)
            q = 100.0 * min(1.0, max(0.0, scorer.ssim(picture)))
        mos, std = simulate_ratings(q, np.random.default_rng(key + [_RATER_STREAM]))
        name = _image_name(reference, distortion, level)
        # compress_level=1: lossless all the same, and three times faster to write.
        Image.fromarray(picture).save(Path(out) / name, format="PNG", compress_level=1)
        rows.append(
            dict(image=name, mos=mos, std=std, group=reference, distortion=distortion,
                 level=level, reference=reference, fidelity=q)
        )
    return rows


def _pool_context():
    """fork on Linux: instant start, and safe here because the workers run only
    numpy, scipy and PIL code (no OpenMP, no threads). spawn elsewhere, where
    fork is missing or unsafe (macOS)."""
    return get_context("fork" if sys.platform.startswith("linux") else "spawn")


def _generate(folder: Path, spec: dict, workers: int) -> None:
    (folder / IMAGES).mkdir()
    refs = spec["references"]
    workers = min(workers, len(refs), os.cpu_count() or 1)
    if workers > 1:
        with ProcessPoolExecutor(workers, mp_context=_pool_context()) as pool:
            n = len(refs)
            parts = list(pool.map(_build_reference, refs, [spec] * n, [str(folder)] * n))
    else:
        parts = [_build_reference(r, spec, str(folder)) for r in refs]
    frame = pd.DataFrame([row for part in parts for row in part], columns=list(COLUMNS))
    frame.to_csv(folder / SCORES, index=False, float_format="%.6f")
    # The manifest goes last: its presence marks the folder complete.
    (folder / MANIFEST).write_text(json.dumps(spec, indent=1) + "\n", encoding="utf-8")


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would send CTRL_C_EVENT there
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # alive but not ours (EPERM), or unknown: keep its folder
        return True
    return True


def _scratch_prefix(root: Path, kind: str, pid: int | None = None) -> str:
    """Name prefix of the hidden sibling folders a build works in ("building", "old")."""
    return f".{root.name}.{kind}-{os.getpid() if pid is None else pid}-"


def _remove_stale_scratch(root: Path) -> None:
    """Delete scratch folders that killed builds left next to ``root``."""
    for kind in ("building", "old"):
        for leftover in root.parent.glob(f".{root.name}.{kind}-*"):
            pid = leftover.name[len(f".{root.name}.{kind}-") :].split("-", 1)[0]
            if pid.isdigit() and not _pid_alive(int(pid)):
                shutil.rmtree(leftover, ignore_errors=True)


def build_demo(
    root: Path | None = None,
    *,
    seed: int = 0,
    force: bool = False,
    references: Sequence[str] | None = None,
    size: Sequence[int] = DEFAULT_SIZE,
    workers: int = 2,
) -> Path:
    """Build the demo set into ``root`` (or reuse a complete build there); return ``root``.

    ``root`` defaults to :func:`default_root`. ``references`` and ``size``
    make reduced sets (for tests); ``force`` rebuilds even a complete set.
    ``workers`` > 1 builds references in that many processes.
    """
    spec = _spec(seed, references, size)
    if root is None:
        root = default_root(seed, references=references, size=size)
    root = Path(root).expanduser()
    if not force and _is_complete(root, spec):
        return root
    if root.exists() and not _is_replaceable(root):
        raise DataError(
            f"{root}: exists and holds files a demo build does not write; "
            "pass an empty or new folder as root"
        )
    root.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_scratch(root)
    building = Path(tempfile.mkdtemp(prefix=_scratch_prefix(root, "building"), dir=root.parent))
    try:
        _generate(building, spec, workers)
        old = None
        if root.exists():
            old = root.with_name(_scratch_prefix(root, "old") + uuid.uuid4().hex[:8])
            try:
                root.rename(old)
            except FileNotFoundError:  # another process moved it first
                old = None
        try:
            building.rename(root)
        except OSError:
            # Another process finished the same build between our checks.
            if not _is_complete(root, spec):
                raise DataError(
                    f"{root}: could not move the finished demo build into place; "
                    "check the folder's permissions"
                ) from None
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(building, ignore_errors=True)
    return root


def load_demo(
    root: Path | None = None,
    *,
    seed: int = 0,
    references: Sequence[str] | None = None,
    size: Sequence[int] = DEFAULT_SIZE,
) -> IQATable:
    """The demo set as an :class:`IQATable`, built first if needed.

    ``group`` is the reference, so splits by group never share content. The
    extra columns (distortion, level, reference, fidelity) stay in
    ``table.frame`` after the contract columns.
    """
    root = build_demo(root, seed=seed, references=references, size=size)
    source = root / SCORES
    return make_table(
        read_csv_table(source),
        name="demo",
        root=root,
        source=source,
        mos_range=MOS_RANGE,
        synthetic=True,
        citation=CITATION,
        meta={"seed": seed, "demo_version": DEMO_VERSION},
    )


# ------------------------------------------------------------ what the labels allow


def label_ceilings(
    table: IQATable,
    *,
    fractions: Sequence[float] = (0.8, 0.1, 0.1),
    split_seed: int = 0,
    rounds: int = 1,
    draws: int = 200,
    seed: int = 0,
) -> pd.DataFrame:
    """What the demo's labels allow on each round's test split: two ceilings for a model's test SRCC.

    Round ``r`` takes the test split of :func:`iqalib.data.splits.split_table`
    with seed ``split_seed + r`` (the heads' splits). Columns:

    * ``noise_ceiling``: the expected SRCC between the noise-free fidelity
      ``q`` and a MOS from a fresh panel of the rule's raters (``RATERS``
      ratings ``clip(q + N(0, RATER_SD^2), 0, 100)`` per image), the mean over
      ``draws`` panels: a model that knew ``q`` exactly would score this
      against the MOS. It measures the rater noise alone.
    * ``observed``: the same SRCC with the table's own MOS.
    * ``distortion_oracle``: the SRCC of a predictor that knows each test
      image's distortion and level but not its content: it predicts the
      training split's mean MOS of that distortion and level. SSIM, and so
      the score, depends on the content (blur barely changes a smooth
      photograph), so a model that learns distortions from a few training
      photographs meets this bound long before the noise ceiling.
    * ``n``: test images.
    """
    rows = []
    for r in range(rounds):
        parts = split_table(table, seed=split_seed + r, fractions=tuple(fractions))
        test, train = parts["test"].frame, parts["train"].frame
        fidelity = test["fidelity"].to_numpy(np.float64)
        rng = np.random.default_rng([seed, r])
        panels = np.clip(fidelity[None, :, None] + rng.normal(0.0, RATER_SD, (draws, len(test), RATERS)),
                         *MOS_RANGE).mean(axis=2)
        cell_means = train.groupby(["distortion", "level"])["mos"].mean()
        known = [cell_means.get((d, lv), train["mos"].mean()) for d, lv in zip(test["distortion"], test["level"])]
        rows.append({"round": r, "n": len(test),
                     "noise_ceiling": float(np.mean([metrics.srcc(fidelity, mos) for mos in panels])),
                     "observed": metrics.srcc(fidelity, test["mos"]),
                     "distortion_oracle": metrics.srcc(np.asarray(known), test["mos"])})
    return pd.DataFrame(rows).set_index("round")
