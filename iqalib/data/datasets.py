"""One loader per data set, registered by name, each reading the official layout.

``load_dataset(name, root, **options)`` returns a validated
:class:`~iqalib.data.table.IQATable`. ``iqalib datasets`` prints the layouts
expected on disk (the ``layout`` text of each registration).
"""
from __future__ import annotations

import inspect
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np
import pandas as pd

from iqalib.data.table import IQATable, make_table, read_csv_table
from iqalib.errors import ConfigError, DataError, did_you_mean
from iqalib.paths import shown

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp",
                    ".JPG", ".JPEG", ".PNG", ".BMP")


@dataclass(frozen=True)
class DatasetInfo:
    name: str
    loader: Callable[..., IQATable]
    title: str
    layout: str
    citation: str
    split: str
    folder: str  # conventional folder name below $IQALIB_DATA
    scores: str  # the scores' scale and which direction is better, as `iqalib datasets` prints it


DATASETS: dict[str, DatasetInfo] = {}


def register_dataset(name: str, *, title: str, layout: str, citation: str, split: str, folder: str, scores: str):
    def wrap(fn):
        DATASETS[name] = DatasetInfo(name, fn, title, inspect.cleandoc(layout), citation, split, folder, scores)
        return fn

    return wrap


def list_datasets() -> list[str]:
    return sorted(DATASETS)


def data_root() -> Path:
    """Where data sets live by default (``$IQALIB_DATA``, else ``./data``)."""
    return Path(os.environ.get("IQALIB_DATA", "data"))


def load_dataset(name: str, /, root: str | Path | None = None, **options) -> IQATable:
    """Load data set ``name`` from ``root`` (default ``$IQALIB_DATA/<folder>``).

    Options are the loader's keyword arguments (``iqalib datasets`` lists
    them); an unknown option is an error, never silently ignored. ``name`` is
    positional-only so that a loader may take a ``name`` option (``csv`` does).
    """
    if name not in DATASETS:
        raise ConfigError(f"unknown data set {shown(name)}; choose one of {sorted(DATASETS)}"
                          f"{did_you_mean(name, DATASETS)}")
    info = DATASETS[name]
    params = inspect.signature(info.loader).parameters
    unknown = sorted(set(options) - set(params) - {"root"})
    if unknown:
        valid = [p for p in params if p != "root"]
        hints = "".join(did_you_mean(o, valid) for o in unknown)
        raise ConfigError(f"unknown option(s) {shown(unknown)} for data set {name!r}{hints}; valid: {valid}")
    if root is None and "root" in params and params["root"].default is inspect.Parameter.empty:
        root = data_root() / info.folder
    builds_its_own = params.get("root") is not None and params["root"].default is not inspect.Parameter.empty
    if root is not None:
        root = Path(root).expanduser()
        if not root.is_dir() and not builds_its_own:
            raise DataError(
                f"{root}: data set folder not found for {name!r}; set data.root=FOLDER (in the run "
                f"configuration or as an override; root=FOLDER in Python, --root for iqalib evaluate); "
                f"expected layout: see `iqalib datasets {name}`"
            )
        options["root"] = root
    return info.loader(**options)


def find_image(folder: Path, name: str) -> str:
    """``name`` relative to ``folder``, or the same stem with another image extension.

    Some copies re-encode images losslessly under another extension (the LIVE-C
    copy here stores the official ``.bmp`` files as ``.png``). Returns the
    listed name when nothing matches, so validation reports it as missing.
    """
    if (folder / name).is_file():
        return name
    stem = Path(name).with_suffix("")
    for ext in IMAGE_EXTENSIONS:
        candidate = stem.with_suffix(ext)
        if (folder / candidate).is_file():
            return candidate.as_posix()
    return name


# --------------------------------------------------------------------- LIVE-C
@register_dataset(
    "livec",
    title="LIVE In the Wild Image Quality Challenge (LIVE-C)",
    layout="""
        ChallengeDB_release/
          Data/AllImages_release.mat   image names (1,169; the first 7, t1..t7, are training examples)
          Data/AllMOS_release.mat      MOS, 0-100
          Data/AllStdDev_release.mat   rating standard deviations
          Images/*.bmp|*.JPG           1,162 rated images, 500x500 (a .bmp may be stored as .png)
          Images/trainingImages/t1..t7
    """,
    citation="D. Ghadiyaram and A. C. Bovik, Massive Online Crowdsourced Study of Subjective "
    "and Objective Picture Quality, IEEE TIP 25(1), 2016.",
    split="no official split: seeded random splits of images",
    folder="ChallengeDB_release",
    scores="MOS 0-100, higher is better (a better-looking photo has a higher MOS)",
)
def load_livec(root: Path, *, keep_training_examples: bool = False, subset: str = "all",
               check_files: bool = True, on_error: str = "raise") -> IQATable:
    """LIVE-C from its release folder; drops t1..t7 by convention (1,162 images).

    ``subset``: ``"all"``; ``"embedded"``, the 627 original JPEGs that ship with iqalib
    (data set ``livec_jpeg``); ``"held_out"``, the other 535 (BMP in the release), the
    untouched test set of anything trained on the embedded ones.
    """
    if subset not in LIVEC_SUBSETS:
        raise ConfigError(f"subset={shown(subset)} for livec; choose one of {list(LIVEC_SUBSETS)}"
                          f"{did_you_mean(str(subset), LIVEC_SUBSETS)}")
    from scipy.io import loadmat  # lazy: keeps import iqalib fast

    data = root / "Data"
    names = _mat_vector(loadmat, data / "AllImages_release.mat", "AllImages_release")
    mos = _mat_vector(loadmat, data / "AllMOS_release.mat", "AllMOS_release")
    std = _mat_vector(loadmat, data / "AllStdDev_release.mat", "AllStdDev_release")
    if not (len(names) == len(mos) == len(std)):
        raise DataError(f"{data}: {len(names)} names, {len(mos)} MOS, {len(std)} std; the .mat files disagree")
    names = [str(np.asarray(n).ravel()[0]) for n in names]
    images = root / "Images"
    frame = pd.DataFrame({"image": names, "mos": mos.astype(float), "std": std.astype(float)})
    training = frame["image"].str.match(r"^t[1-7]\.")
    if not keep_training_examples:
        frame = frame[~training]
    frame["image"] = [
        f"Images/trainingImages/{find_image(images / 'trainingImages', n)}" if t
        else f"Images/{find_image(images, n)}"
        for n, t in zip(frame["image"], training[frame.index])
    ]
    if subset != "all":  # the release lists the originals as .JPG and the rest as .bmp
        original = pd.Series([n.lower().endswith(".jpg") for n in names], index=training.index)[frame.index]
        frame = frame[original if subset == "embedded" else ~original]
    return make_table(frame, name="livec", root=root, source=data / "AllMOS_release.mat",
                      mos_range=(0.0, 100.0), check_files=check_files, on_error=on_error,
                      citation=DATASETS["livec"].citation)


LIVEC_SUBSETS = ("all", "embedded", "held_out")
EMBEDDED_LIVEC = Path(__file__).resolve().parent / "livec_jpeg"  # see iqalib.data.livec_jpeg


@register_dataset(
    "livec_jpeg",
    title="LIVE-C's 627 original phone JPEGs (real photographs, embedded in iqalib)",
    layout="""
        ships inside iqalib (iqalib/data/livec_jpeg/), nothing to download:
          Images/*.JPG   627 of LIVE-C's rated images, the phones' JPEG files byte for byte
          scores.csv     image,mos,std  (MOS 0-100, higher is better)
          NOTICE.txt     the University of Texas at Austin notice, in full
          SHA256SUMS     checksums of every file
    """,
    citation="D. Ghadiyaram and A. C. Bovik, Massive Online Crowdsourced Study of Subjective "
    "and Objective Picture Quality, IEEE TIP 25(1), 2016.",
    split="no official split: seeded random splits of images (each image is its own photograph)",
    folder="livec_jpeg",
    scores="LIVE-C's MOS 0-100, higher is better",
)
def load_livec_jpeg(root: Path = EMBEDDED_LIVEC, *, check_files: bool = True,
                    on_error: str = "raise") -> IQATable:
    """The embedded LIVE-C originals; ``root`` may name another copy of the folder."""
    source = root / "scores.csv"
    return make_table(read_csv_table(source), name="livec_jpeg", root=root, source=source,
                      mos_range=(0.0, 100.0), check_files=check_files, on_error=on_error,
                      citation=DATASETS["livec_jpeg"].citation)


def _mat_vector(loadmat, path: Path, key: str) -> np.ndarray:
    if not path.is_file():
        raise DataError(f"{path}: not found; is root the ChallengeDB_release folder?")
    try:
        content = loadmat(path)
    except Exception as exc:  # scipy raises several unrelated types for bad files
        raise DataError(f"{path}: cannot be read as a MATLAB file ({type(exc).__name__}); re-download it") from None
    if key not in content:
        raise DataError(f"{path}: has no variable {key!r}; found {[k for k in content if not k.startswith('__')]}")
    return np.asarray(content[key]).ravel()


# ----------------------------------------------------------------- KonIQ-10k
KONIQ_SPLITS = {"training": "train", "validation": "val", "test": "test"}


@register_dataset(
    "koniq10k",
    title="KonIQ-10k",
    layout="""
        koniq10k/
          koniq10k_distributions_sets.csv      official scores + split (MOS 0-100, set column)
            or koniq10k_scores_and_distributions.csv   (MOS 1-5, MOS_zscore 0-100)
          512x384/*.jpg                        10,073 images (preferred), or
          1024x768/*.jpg                       the originals, resized on decode to 512x384
    """,
    citation="V. Hosu, H. Lin, T. Sziranyi, D. Saupe, KonIQ-10k: An Ecologically Valid "
    "Database for Deep Learning of Blind Image Quality Assessment, IEEE TIP 29, 2020.",
    split="official: training 7,058 / validation 1,000 / test 2,015 (distributions_sets table)",
    folder="koniq10k",
    scores="MOS 0-100 (label_scale 0-100, the default) or 1-5 (label_scale 1-5), higher is better",
)
def load_koniq10k(root: Path, *, images: str = "auto", label_scale: str = "0-100",
                  check_files: bool = True, on_error: str = "raise") -> IQATable:
    """KonIQ-10k. ``label_scale``: ``"0-100"`` (the rescaled MOS used by most
    papers, HyperIQA included) or ``"1-5"`` (the raw rating mean, recomputed
    from the rating distribution c1..c5 where the table lacks it).

    ``std`` is the tables' SD, which is on the 1-5 rating scale: it is kept for
    ``label_scale="1-5"`` and set to NaN for 0-100, where no exact conversion exists.
    """
    if label_scale not in ("0-100", "1-5"):
        raise ConfigError(f"label_scale={label_scale!r} must be '0-100' or '1-5'")
    if images not in ("auto", "512x384", "1024x768"):
        raise ConfigError(f"images={images!r} must be 'auto', '512x384' or '1024x768'")
    sets = root / "koniq10k_distributions_sets.csv"
    scores = root / "koniq10k_scores_and_distributions.csv"
    source = sets if sets.is_file() else scores
    if not source.is_file():
        raise DataError(f"{root}: neither {sets.name} nor {scores.name} found; see `iqalib datasets koniq10k`")
    raw = read_csv_table(source)
    needed = {"image_name", "c1", "c2", "c3", "c4", "c5", "MOS", "SD"}
    if source == scores:
        needed |= {"MOS_zscore"}
    missing = sorted(needed - set(raw.columns))
    if missing:
        raise DataError(f"{source}: missing column(s) {missing}; is this the official KonIQ-10k table?")
    dist = raw[["c1", "c2", "c3", "c4", "c5"]].to_numpy(dtype=float)
    mos_1to5 = dist @ np.arange(1, 6) / np.maximum(dist.sum(axis=1), 1e-12)
    if label_scale == "1-5":
        mos, std, mos_range = (raw["MOS"] if source == scores else mos_1to5), raw["SD"], (1.0, 5.0)
    else:
        mos = raw["MOS_zscore"] if source == scores else raw["MOS"]
        std, mos_range = np.nan, (0.0, 100.0)
    if images == "auto":
        images = "512x384" if (root / "512x384").is_dir() or not (root / "1024x768").is_dir() else "1024x768"
    frame = pd.DataFrame({
        "image": images + "/" + raw["image_name"].astype(str),
        "mos": mos,
        "std": std,
        "split": raw["set"].map(KONIQ_SPLITS) if "set" in raw else None,
    })
    if "set" in raw and frame["split"].isna().any():
        bad = sorted(set(raw["set"][frame["split"].isna()].astype(str)))
        raise DataError(f"{source}: unknown set value(s) {bad}; expected {sorted(KONIQ_SPLITS)}")
    # 1024x768 originals are decoded to 512x384, keeping the aspect ratio.
    short_side = 384 if images == "1024x768" else None
    return make_table(frame, name="koniq10k", root=root, source=source, mos_range=mos_range,
                      check_files=check_files, on_error=on_error, short_side=short_side,
                      citation=DATASETS["koniq10k"].citation)


# ----------------------------------------------------------------------- SPAQ
SPAQ_TABLE = "MOS and Image attribute scores"


@register_dataset(
    "spaq",
    title="SPAQ (smartphone photography)",
    layout=f"""
        SPAQ/
          Annotations/{SPAQ_TABLE}.xlsx   official table (or its CSV export, here or at the top)
          TestImage/*.jpg                 11,125 photos (resized on decode: short side 512)
    """,
    citation="Y. Fang, H. Zhu, Y. Zeng, K. Ma, Z. Wang, Perceptual Quality Assessment of "
    "Smartphone Photography, CVPR 2020.",
    split="no official split: seeded random splits of images",
    folder="SPAQ",
    scores="MOS 0-100, higher is better",
)
def load_spaq(root: Path, *, short_side: int | None = 512, images_dir: str = "TestImage",
              check_files: bool = True, on_error: str = "raise") -> IQATable:
    """SPAQ; the photos are large, so the short side is resized (512 by default, as in SPAQ's own baselines)."""
    if short_side is not None and short_side <= 0:
        raise ConfigError(f"short_side={short_side} must be positive or None")
    candidates = [root / "Annotations" / f"{SPAQ_TABLE}.xlsx", root / f"{SPAQ_TABLE}.xlsx",
                  root / "Annotations" / f"{SPAQ_TABLE}.csv", root / f"{SPAQ_TABLE}.csv"]
    source = next((c for c in candidates if c.is_file()), None)
    if source is None:
        raise DataError(f"{root}: no '{SPAQ_TABLE}.xlsx' or '.csv' found; see `iqalib datasets spaq`")
    if source.suffix == ".xlsx":
        try:
            raw = pd.read_excel(source)
        except Exception as exc:
            raise DataError(f"{source}: cannot be read as Excel ({type(exc).__name__}); export it to CSV") from None
    else:
        # The official CSV export starts with a UTF-8 byte-order mark.
        raw = read_csv_table(source, encoding="utf-8-sig")
    raw.columns = [str(c).strip() for c in raw.columns]
    if not {"Image name", "MOS"} <= set(raw.columns):
        raise DataError(f"{source}: missing 'Image name' or 'MOS' column; found {list(raw.columns)}")
    frame = pd.DataFrame({"image": images_dir + "/" + raw["Image name"].astype(str).str.strip(),
                          "mos": raw["MOS"]})
    return make_table(frame, name="spaq", root=root, source=source, mos_range=(0.0, 100.0),
                      check_files=check_files, on_error=on_error, short_side=short_side,
                      citation=DATASETS["spaq"].citation)


# ------------------------------------------------------------------ KADID-10k
@register_dataset(
    "kadid10k",
    title="KADID-10k (synthetic distortions of 81 references)",
    layout="""
        kadid10k/
          dmos.csv          dist_img,ref_img,dmos,var (scores 1-5, higher is better)
          images/*.png      10,125 distorted + 81 reference images, 512x384
    """,
    citation="H. Lin, V. Hosu, D. Saupe, KADID-10k: A Large-scale Artificially Distorted IQA "
    "Database, QoMEX 2019.",
    split="no official split: seeded random splits of reference images (no content leak)",
    folder="kadid10k",
    scores="DMOS 1-5, higher is better (despite the name: 5 is imperceptible distortion)",
)
def load_kadid10k(root: Path, *, check_files: bool = True, on_error: str = "raise") -> IQATable:
    """KADID-10k; ``group`` is the reference image, so splits never share content."""
    source = root / "dmos.csv"
    raw = read_csv_table(source)
    missing = sorted({"dist_img", "ref_img", "dmos", "var"} - set(raw.columns))
    if missing:
        raise DataError(f"{source}: missing column(s) {missing}; expected dist_img,ref_img,dmos,var")
    var = pd.to_numeric(raw["var"], errors="coerce")
    frame = pd.DataFrame({"image": "images/" + raw["dist_img"].astype(str), "mos": raw["dmos"],
                          "std": np.sqrt(var.clip(lower=0)).where(~(var < 0), -1.0),
                          "group": raw["ref_img"].astype(str)})
    return make_table(frame, name="kadid10k", root=root, source=source, mos_range=(1.0, 5.0),
                      check_files=check_files, on_error=on_error,
                      citation=DATASETS["kadid10k"].citation)


# ------------------------------------------------------------------ any CSV
@register_dataset(
    "csv",
    title="Your own folder of images with a CSV",
    layout="""
        ROOT/
          scores.csv        image,mos[,std][,split][,group]  (image: path relative to ROOT;
                            split: train/val/test; group: content id for leak-free splits)
          ...images...
    """,
    citation="",
    split="the table's split column if present, else seeded random splits (by group if given)",
    folder="custom",
    scores="your mos column, on the scale mos_range declares (default: its min..max); a trained model "
    "predicts on that scale in the same direction (from a DMOS where lower is better, a lower prediction is better)",
)
def load_csv(root: Path, *, table: str = "scores.csv", mos_range: tuple[float, float] | None = None,
             name: str = "csv", check_files: bool = True, on_error: str = "raise") -> IQATable:
    """A user's folder. ``mos_range`` declares the scale; default: the observed min..max."""
    source = Path(table) if Path(table).is_absolute() else root / table
    raw = read_csv_table(source)
    if mos_range is None:
        values = pd.to_numeric(raw["mos"], errors="coerce") if "mos" in raw else pd.Series(dtype=float)
        finite = values[np.isfinite(values)]
        mos_range = (float(finite.min()), float(finite.max())) if len(finite) else (0.0, 1.0)
    else:
        given = mos_range
        try:  # "0-100" or [0, "high"] from a YAML override must not end in a bare ValueError
            if isinstance(mos_range, (str, bytes)):
                raise TypeError
            mos_range = tuple(float(v) for v in mos_range)
        except (TypeError, ValueError):
            raise ConfigError(f"mos_range={given!r} must be two numbers [low, high], e.g. [0, 100]") from None
        if len(mos_range) != 2 or not mos_range[0] < mos_range[1]:
            raise ConfigError(f"mos_range={mos_range} must be two numbers, low < high")
    return make_table(raw, name=name, root=root, source=source, mos_range=mos_range,
                      check_files=check_files, on_error=on_error)


# ---------------------------------------------------------------------- demo
@register_dataset(
    "demo",
    title="Embedded demo set (SYNTHETIC: distorted scikit-image photographs)",
    layout="""
        built on first use under $IQALIB_CACHE/demo-seed<seed>/ (no download):
          scores.csv        image,mos,std,group,distortion,level,reference,fidelity
          images/*.png      references and their distorted versions
    """,
    citation="Synthetic scores from a full-reference rule (see iqalib.data.demo); "
    "photographs from scikit-image's data module.",
    split="seeded random splits of reference contents (no content leak)",
    folder="demo",
    scores="synthetic MOS 0-100, higher is better",
)
def load_demo_dataset(root: Path | None = None, *, seed: int = 0) -> IQATable:
    """The synthetic demo set, built (once, cached) from scikit-image's photographs."""
    from iqalib.data.demo import load_demo  # lazy: keeps import iqalib fast

    return load_demo(root, seed=seed)
