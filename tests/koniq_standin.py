"""A stand-in KonIQ-10k folder: the real tables' formats, real image sizes, generated pictures.

KonIQ-10k's images (2 GB) are not on the machines that build and test this
project; its official table is (``../shared/datasets/koniq10k``). The stand-in
gives the loader and the book exactly what a real copy gives, at a few dozen
images:

* ``koniq10k_distributions_sets.csv``: ``image_name, c1..c5, c_total, MOS, SD,
  set`` with MOS on 0-100, SD on the 1-5 rating scale, ``set`` the official
  ``training`` / ``validation`` / ``test``;
* ``koniq10k_scores_and_distributions.csv``: the same images with ``MOS`` on the
  1-5 scale and ``MOS_zscore`` on 0-100 (headers quoted, as in the release);
* ``1024x768/`` (the originals) and ``512x384/`` (their halves), JPEG.

Names are the first images of each set in the real table when it is present,
else made-up KonIQ-like names. Each picture is smooth random content degraded
by blur and noise; its MOS falls with the degradation, so a model can learn
something and the correlations are not pure chance.
"""
from __future__ import annotations

import csv
from pathlib import Path

import numpy as np
import pandas as pd
from PIL import Image, ImageFilter

SETS = {"training": 24, "validation": 6, "test": 6}
SIZES = {"1024x768": (1024, 768), "512x384": (512, 384)}
SETS_TABLE = "koniq10k_distributions_sets.csv"
SCORES_TABLE = "koniq10k_scores_and_distributions.csv"


def real_table(shared_datasets: Path | None) -> pd.DataFrame | None:
    """The official KonIQ-10k table under ``shared_datasets/koniq10k``, or None where absent."""
    if shared_datasets is None:
        return None
    path = Path(shared_datasets) / "koniq10k" / SETS_TABLE
    return pd.read_csv(path) if path.is_file() else None


def image_names(counts: dict[str, int], real: pd.DataFrame | None) -> dict[str, list[str]]:
    """``counts[set]`` names per official set: the real table's first ones, else made up (``100000001.jpg``)."""
    if real is not None:
        return {s: list(real.loc[real["set"] == s, "image_name"].astype(str).head(n)) for s, n in counts.items()}
    names, start = {}, 100_000_000
    for s, n in counts.items():
        names[s] = [f"{start + i}.jpg" for i in range(n)]
        start += n
    return names


def picture(rng: np.random.Generator, quality: float, size=(1024, 768)) -> Image.Image:
    """Smooth random content (blobs and a gradient), blurred and noised more the lower ``quality`` (0..1)."""
    width, height = size
    coarse = rng.uniform(0, 255, (12, 16, 3)).astype(np.uint8)
    base = np.asarray(Image.fromarray(coarse).resize((width, height), Image.BICUBIC), np.float32)
    ramp = np.linspace(-40, 40, width, dtype=np.float32)[None, :, None]
    edges = (rng.uniform(0, 1, (48, 64)) > 0.7).astype(np.uint8) * 255  # sharp detail that blur destroys
    detail = np.asarray(Image.fromarray(edges).resize((width, height), Image.NEAREST), np.float32)[..., None]
    image = Image.fromarray(np.clip(0.75 * base + 0.25 * detail + ramp, 0, 255).astype(np.uint8))
    image = image.filter(ImageFilter.GaussianBlur(radius=6.0 * (1.0 - quality)))
    noisy = np.asarray(image, np.float32) + rng.normal(0, 30.0 * (1.0 - quality), (height, width, 3))
    return Image.fromarray(np.clip(noisy, 0, 255).astype(np.uint8))


def rating_distribution(rng: np.random.Generator, mean: float) -> np.ndarray:
    """Shares of the ratings 1..5 around ``mean`` (1-5), as the tables' c1..c5."""
    weights = np.exp(-0.5 * ((np.arange(1, 6) - mean) / 0.6) ** 2) + rng.uniform(0, 0.02, 5)
    return weights / weights.sum()


def build_koniq_standin(root: Path, *, counts: dict[str, int] | None = None, shared_datasets: Path | None = None,
                        seed: int = 0, jpeg_quality: int = 90) -> dict:
    """Write the stand-in under ``root`` (created); returns ``{"root", "names", "real_names", "frame"}``."""
    root = Path(root)
    counts = dict(counts or SETS)
    real = real_table(shared_datasets)
    names = image_names(counts, real)
    rng = np.random.default_rng(seed)
    for folder in SIZES:
        (root / folder).mkdir(parents=True, exist_ok=True)
    rows = []
    for set_name, listed in names.items():
        for name in listed:
            quality = float(rng.uniform(0, 1))
            original = picture(rng, quality, SIZES["1024x768"])
            original.save(root / "1024x768" / name, quality=jpeg_quality)
            original.resize(SIZES["512x384"], Image.BICUBIC).save(root / "512x384" / name, quality=jpeg_quality)
            shares = rating_distribution(rng, 1.6 + 2.8 * quality + rng.normal(0, 0.15))
            mean = float(shares @ np.arange(1, 6))
            sd = float(np.sqrt(shares @ (np.arange(1, 6) - mean) ** 2))
            rows.append({"image_name": name, **{f"c{k + 1}": float(shares[k]) for k in range(5)},
                         "c_total": int(rng.integers(100, 130)), "mos_1to5": mean, "SD": sd, "set": set_name})
    frame = pd.DataFrame(rows)
    # KonIQ's 0-100 MOS is a rescaling of the 1-5 mean (over z-scores); a linear one will do here.
    frame["mos_0to100"] = (frame["mos_1to5"] - 1.0) / 4.0 * 100.0
    columns = ["image_name", "c1", "c2", "c3", "c4", "c5", "c_total"]
    sets = frame[columns].assign(MOS=frame["mos_0to100"], SD=frame["SD"], set=frame["set"])
    sets.to_csv(root / SETS_TABLE, index=False)
    scores = frame[columns].assign(MOS=frame["mos_1to5"], SD=frame["SD"], MOS_zscore=frame["mos_0to100"])
    scores.to_csv(root / SCORES_TABLE, index=False, quoting=csv.QUOTE_NONNUMERIC)
    return {"root": root, "names": names, "real_names": real is not None, "frame": frame}


# ------------------------------------------------------------ the koniq profile, rehearsed
REPO_ROOT = Path(__file__).resolve().parents[1]
PROFILE = "koniq_rehearsal"
# The rehearsal shrinks the models' widths, not their paths: every SMART-IQA Swin model of the
# profile becomes smart_iqa_tiny (the same SMART-IQA class on the same Swin trunk code; small and
# base differ only in width and depth), HyperIQA keeps its ResNet-50. With Swin-S and Swin-B
# fine-tuned on the CPU the rehearsal took 23 minutes; chapter 10 (inference only, random weights,
# no hub file) still measures every model of the profile.
SWIN_STAND_IN = {"smart_iqa_small": "smart_iqa_tiny", "smart_iqa_base": "smart_iqa_tiny"}
MODEL_KEYS = ("model", "models", "smart_model", "baseline_model", "train_run")
KEEP_MODEL_LISTS = ("10_model_size",)  # chapter 10 builds each model once and times a few batches
HUB_BACKBONES = ("resnet50", "swin_tiny")  # the trunks that pretrained: true reads: ResNet-50 and Swin-T
# Budget keys of the book's sections and their rehearsal values; every other key stays as in koniq.yaml.
# The loss study keeps L1 (its reference, read back from chapter 4) and one loss of each other
# kind the engine treats differently (pairwise hinge, pairwise probability): every loss's own
# arithmetic is tested in tests/test_losses.py, so the rest would add full Swin-B runs, not paths.
SHRUNK = {"rounds": 1, "epochs": 1, "batch_size": 4, "train_patches": 2, "test_patches": 2, "repeats": 1,
          "n_boot": 100, "max_images": 6, "losses": ["l1", "ranking", "fidelity"]}


def rehearsal_profile(*, data_root: Path, out_dir: str = f"runs/book/{PROFILE}", device: str = "cpu",
                      shared_datasets: Path | None = None, budget: dict | None = None) -> dict:
    """``params/koniq.yaml`` with its budget and Swin widths shrunk, pointed at a stand-in, as a YAML-ready dict.

    Sections are kept as the profile has them (whatever chapters it lists);
    ``budget`` overrides :data:`SHRUNK`. Every model named in a section
    (:data:`MODEL_KEYS`) goes through :data:`SWIN_STAND_IN`, lists deduplicated
    in order, except chapter 10's list (:data:`KEEP_MODEL_LISTS`). The LR sweep
    keeps its two smallest rates; the cross-data-set test reads the real LIVE-C
    images where present.
    """
    import yaml

    shrunk = {**SHRUNK, **(budget or {})}
    profile = yaml.safe_load((REPO_ROOT / "params" / "koniq.yaml").read_text())
    profile["common"] = {**profile["common"], "profile": PROFILE, "data_root": str(data_root),
                         "out_dir": out_dir, "device": device}
    for stem, section in profile.items():
        recipe = (section or {}).get("recipe")
        if recipe:  # the training recipe: common's, and the keys a chapter varies
            recipe.update({key: shrunk[key] for key in set(recipe) & set(shrunk)})
        if stem == "common" or not section:
            continue
        for key in set(section) & set(shrunk):
            section[key] = shrunk[key]
        for key in set(section) & set(MODEL_KEYS):
            section[key] = stand_in_models(section[key], keep_lists=stem in KEEP_MODEL_LISTS)
        if "trunk_lrs" in section:
            section["trunk_lrs"] = sorted(section["trunk_lrs"])[:2]
        if "results_dir" in section:  # the benchmarks' results live in the repository
            section["results_dir"] = str(REPO_ROOT / section["results_dir"])
        if "test_sets" in section:
            livec = Path(shared_datasets or "/nonexistent") / "LIVEC" / "ChallengeDB_release"
            section["test_sets"] = {name: (str(livec) if name == "livec" and livec.is_dir() else str(root))
                                    for name, root in section["test_sets"].items()}
    return profile


def stand_in_models(value, *, keep_lists: bool = False):
    """A model name (or a list of them) with :data:`SWIN_STAND_IN` applied; a list keeps its
    first occurrences, in order (``[tiny, small, base]`` -> ``[tiny]``), or, with ``keep_lists``, stays."""
    if isinstance(value, str):
        return SWIN_STAND_IN.get(value, value)
    if keep_lists or not isinstance(value, list):
        return value
    return list(dict.fromkeys(SWIN_STAND_IN.get(name, name) for name in value))


def save_random_hub_weights(folder: Path, backbones=HUB_BACKBONES, seed: int = 0,
                            half: bool = True) -> dict[str, Path]:
    """``<folder>/<timm name>.safetensors`` of a random-init timm classifier per hub trunk.

    The files stand in for the hub's ImageNet weights in the weights folder
    (``$IQALIB_WEIGHTS``): ``pretrained: true`` then takes the path a GPU box
    without hub access takes, with the same file format, and never the network.
    ``half``: floating tensors in fp16 (108 MB for ResNet-50 and Swin-T instead
    of 216); loading copies them into the fp32 trunk, as it would a hub file in fp16.
    """
    import timm
    import torch
    from safetensors.torch import save_file

    from iqalib.models.backbones import BACKBONES

    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    files = {}
    for i, backbone in enumerate(backbones):
        timm_name = BACKBONES[backbone].timm_name
        path = folder / f"{timm_name}.safetensors"
        if not path.is_file():
            torch.manual_seed(seed + i)
            state = timm.create_model(timm_name).state_dict()
            save_file({k: (v.half() if half and v.is_floating_point() else v).contiguous()
                       for k, v in state.items()}, str(path))
        files[backbone] = path
    return files


# ------------------------------------------------------------ the rehearsal's disk
# fit writes last.pt (model, AdamW's two moments and the best epoch's weights: four times best.pt)
# and best.pt (118 MB for SMART-IQA-Tiny) for every run: about 6 GB over the rehearsal's 11
# trainings. Only smart_iqa_tiny's best.pt is read again (chapters 7 and 8, and the heat-map test),
# so the rehearsal's kernels serialise every other checkpoint with the same torch.save to
# os.devnull: the payload is built and pickled as for a real file, nothing lands on disk. This
# is an IPython start-up file of the rehearsal's own IPYTHONDIR: the library is not changed, and
# nothing outside the rehearsal sees it. (Writing and resuming last.pt is tested on small models
# in tests/test_engine.py and tests/test_faults.py.)
KEEP_CHECKPOINTS = ("smart_iqa_tiny",)
DIVERTED_LOG = "diverted-checkpoints.txt"
_DIET = '''\
# Written by tests/koniq_standin.py (install_checkpoint_diet): checkpoints that no later chapter
# reads are serialised to os.devnull instead of a file.
import importlib as _importlib
import os as _os
from pathlib import Path as _Path

import torch as _torch

from iqalib.engine.checkpoint import FORMAT as _FORMAT

_fit = _importlib.import_module("iqalib.engine.fit")  # the module (iqalib.engine.fit is also the function)

_KEEP, _LOG, _save = {keep!r}, _Path({log!r}), _fit.save_checkpoint


def _rehearsal_save_checkpoint(path, state):
    path = _Path(path)
    if path.name == "best.pt" and path.parent.parent.name in _KEEP:
        return _save(path, state)
    with open(_os.devnull, "wb") as sink:
        _torch.save({{"format": _FORMAT, **state}}, sink)
    with _LOG.open("a") as log:
        log.write(f"{{path.resolve()}}\\n")


_fit.save_checkpoint = _rehearsal_save_checkpoint
'''


def install_checkpoint_diet(work: Path, keep=KEEP_CHECKPOINTS) -> Path:
    """An IPython folder under ``work`` whose start-up file diverts the checkpoints of every run
    not in ``keep`` (their ``best.pt``; every ``last.pt``) to os.devnull, logging each path to
    ``work/diverted-checkpoints.txt``. Set ``$IPYTHONDIR`` to the returned folder."""
    folder = Path(work) / "ipython"
    startup = folder / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    (startup / "00-rehearsal-checkpoints.py").write_text(
        _DIET.format(keep=tuple(keep), log=str(Path(work).resolve() / DIVERTED_LOG)))
    return folder


def folder_bytes(*folders: Path) -> int:
    """Apparent size of every file under ``folders`` (what ``du -sb`` adds up)."""
    import os

    total = 0
    for folder in folders:
        for parent, _, names in os.walk(folder):
            for name in names:
                try:
                    total += os.lstat(os.path.join(parent, name)).st_size
                except OSError:  # written and renamed or deleted between the listing and the stat
                    pass
    return total


class PeakDisk:
    """The largest :func:`folder_bytes` of ``folders`` seen, sampled every ``seconds`` in a thread."""

    def __init__(self, *folders: Path, seconds: float = 0.5):
        import threading

        self.folders, self.seconds, self.peak = folders, seconds, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._poll, daemon=True)

    def _poll(self) -> None:
        while True:
            self.peak = max(self.peak, folder_bytes(*self.folders))
            if self._stop.wait(self.seconds):
                return

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, folder_bytes(*self.folders))


def rehearsal_root(dest: Path, profile: dict) -> Path:
    """A book folder under ``dest``: the repository's notebooks and ``params/<PROFILE>.yaml``."""
    import shutil

    import yaml

    dest = Path(dest)
    shutil.copytree(REPO_ROOT / "notebooks", dest / "notebooks", dirs_exist_ok=True)
    shutil.copy(REPO_ROOT / "jupytext.toml", dest / "jupytext.toml")
    (dest / "params").mkdir(parents=True, exist_ok=True)
    (dest / "params" / f"{PROFILE}.yaml").write_text(yaml.safe_dump(profile, sort_keys=False))
    return dest


def rehearse(work: Path, *, device: str = "cpu", counts: dict[str, int] | None = None,
             shared_datasets: Path | None = None, budget: dict | None = None, notebooks=None,
             standin: dict | None = None, keep_checkpoints=KEEP_CHECKPOINTS, log=print) -> dict:
    """Build the stand-in, the hub weights and the derived profile under ``work``; execute every chapter
    (or the stems ``notebooks``, in the book's order). ``standin``: one that
    :func:`build_koniq_standin` already wrote, used instead of a new one.
    ``keep_checkpoints``: the runs whose best.pt is written to disk
    (:func:`install_checkpoint_diet`); None writes every checkpoint, as ``make book`` does.

    Sets ``IQALIB_WEIGHTS``, ``IQALIB_CACHE`` (both under ``work``),
    ``HF_HUB_OFFLINE=1`` and ``IPYTHONDIR`` in this process's environment,
    which the notebook kernels inherit (callers restore it). Returns the
    folders, each chapter's wall time in seconds and ``peak_bytes``, the most
    that ``work`` and the stand-in held at once (sampled every half second).
    """
    import os
    import re
    import time

    from iqalib.book import run_book

    work = Path(work)
    work.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    standin = standin or build_koniq_standin(work / "koniq10k", counts=counts, shared_datasets=shared_datasets)
    disk = PeakDisk(work, standin["root"]).__enter__()
    save_random_hub_weights(work / "weights")
    os.environ.update(IQALIB_WEIGHTS=str(work / "weights"), IQALIB_CACHE=str(work / "cache"),
                      HF_HUB_OFFLINE="1")
    if keep_checkpoints is not None:
        os.environ["IPYTHONDIR"] = str(install_checkpoint_diet(work, keep_checkpoints))
    profile = rehearsal_profile(data_root=standin["root"], device=device, shared_datasets=shared_datasets,
                                budget=budget)
    root = rehearsal_root(work / "book", profile)
    prepared = time.perf_counter() - started
    log(f"stand-in, weights and profile ready in {prepared:.0f} s")
    seconds = {}

    def record(line: str) -> None:
        found = re.match(r"executed (\S+) \(.*\) in (\d+) s", line)
        if found:
            seconds[found.group(1)] = int(found.group(2))
        log(line)

    try:
        run_book(PROFILE, notebooks=notebooks, build=False, root=root, log=record)
    finally:
        disk.__exit__(None, None, None)
    log(f"peak disk of the rehearsal: {disk.peak / 1e6:.0f} MB")
    return {"root": root, "standin": standin, "profile": profile, "out_dir": root / profile["common"]["out_dir"],
            "prepare_seconds": prepared, "seconds": seconds, "total_seconds": time.perf_counter() - started,
            "peak_bytes": disk.peak, "diverted_log": work / DIVERTED_LOG}


def main(argv=None) -> int:
    """``python tests/koniq_standin.py --work DIR [--device cuda] [--images N]``: the rehearsal, logged."""
    import argparse
    import json

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--work", required=True, type=Path, help="an empty folder for everything it writes")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--train-images", type=int, default=SETS["training"])
    ap.add_argument("--batch-size", type=int, default=SHRUNK["batch_size"])
    ap.add_argument("--train-patches", type=int, default=SHRUNK["train_patches"])
    ap.add_argument("--shared-datasets", type=Path, default=REPO_ROOT.parent / "shared" / "datasets")
    ap.add_argument("--only", nargs="+", help="notebook stems to execute (default: every chapter)")
    ap.add_argument("--all-checkpoints", action="store_true",
                    help=f"write every checkpoint (default: only {', '.join(KEEP_CHECKPOINTS)}'s best.pt)")
    args = ap.parse_args(argv)
    counts = {**SETS, "training": args.train_images}
    budget = {"batch_size": args.batch_size, "train_patches": args.train_patches}
    result = rehearse(args.work, device=args.device, counts=counts, shared_datasets=args.shared_datasets,
                      budget=budget, notebooks=args.only, log=lambda line: print(line, flush=True),
                      keep_checkpoints=None if args.all_checkpoints else KEEP_CHECKPOINTS)
    summary = {"device": args.device, "counts": counts, "budget": budget,
               "prepare_seconds": round(result["prepare_seconds"], 1), "seconds": result["seconds"],
               "total_seconds": round(result["total_seconds"], 1), "peak_bytes": result["peak_bytes"]}
    (args.work / "rehearsal.json").write_text(json.dumps(summary, indent=2) + "\n")
    print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
