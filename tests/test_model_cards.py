"""Model cards: in every checkpoint iqalib writes or imports, printed by ``iqalib models --card``,
and beside every score table (``<out>.card.json``); and ``score --preprocess original_hyperiqa``.
"""
from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image

from faults_support import PATCH, cli_error, noise_png, scoring_checkpoint, tiny_config, write_tiny_set
from iqalib.cli import main
from iqalib.data.inputs import ORIENTATION_RULE
from iqalib.data.preprocess import ORIGINAL_SIZE, OriginalHyperIQACrops, original_hyperiqa_resize
from iqalib.engine.card import (SCORE_CARD_KIND, read_card, score_card_path, split_sha256, validate_card)
from faults_support import save_untrained_checkpoint
from iqalib.engine.checkpoint import load_checkpoint, save_checkpoint
from iqalib.engine.fit import fit
from iqalib.engine.provenance import code_identity
from iqalib.errors import CheckpointError, ConfigError

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: small tensors run faster on one thread


@pytest.fixture(scope="module")
def trained(tmp_path_factory) -> dict:
    """Two epochs on 16 noise images (frozen offline Lite0 trunk): its round folder and results."""
    root = tmp_path_factory.mktemp("cards")
    config = tiny_config(write_tiny_set(root / "data"), root / "runs", "cards", epochs=2)
    result = fit(config)["round_results"][0]
    return {"round": root / "runs" / "cards" / "round_0", "result": result, "config": config}


def sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def test_best_pt_says_which_epoch_was_selected_on_validation(trained):
    card = read_card(trained["round"] / "best.pt")
    result = trained["result"]
    assert card["model"] == "smart_iqa_lite0" and card["protocol"] == (
        f"epoch {result['best_epoch']} selected on validation")
    assert card["selection"] == {"epoch": result["best_epoch"], "epochs": 2, "metric": "val_srcc",
                                 "value": pytest.approx(result["val_srcc"])}
    assert "offline" in card["trunk"]["pretraining"] and card["trunk"]["timm"] == "tf_efficientnet_lite0"
    training = card["training"]
    assert training["dataset"] == "csv" and training["mos_range"] == [0.0, 100.0]
    assert training["split"]["sizes"] == result["split_sizes"]
    assert "seed 0" in training["split"]["method"]
    test_images = pd.read_csv(trained["round"] / "predictions.csv")["image"]
    assert training["split"]["sha256"]["test"] == split_sha256(test_images)
    assert training["split"]["sha256"]["test"] == split_sha256(reversed(list(test_images)))  # order-free
    assert len({*training["split"]["sha256"].values()}) == 3
    prep = card["preprocessing"]
    assert (prep["preprocess"], prep["patch_size"], prep["test_crops"]) == ("iqalib", PATCH, 1)
    assert prep["resize"].startswith("none") and prep["normalisation"]["mean"] == [0.5, 0.5, 0.5]
    assert card["score"] == {"range": [0.0, 100.0], "direction": "higher is better", "scale": "MOS of csv (0 to 100)"}
    assert card["precision"] == "float32" and card["iqalib"] == code_identity()


def test_last_pt_says_it_is_the_last_epoch(trained):
    card = read_card(trained["round"] / "last.pt")
    assert card["protocol"].startswith("epoch 2 of 2, the last finished")
    best = read_card(trained["round"] / "best.pt")
    assert {k: v for k, v in card.items() if k not in ("protocol", "selection")} == \
        {k: v for k, v in best.items() if k not in ("protocol", "selection")}


def test_models_card_prints_the_card_it_reads(trained, capsys):
    capsys.readouterr()
    assert main(["models", "--card", str(trained["round"] / "best.pt")]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == load_checkpoint(trained["round"] / "best.pt")["card"]
    assert validate_card(printed) == printed


def test_an_untrained_checkpoint_says_so(tmp_path):
    card = read_card(save_untrained_checkpoint(tmp_path / "u.pt", patch_size=PATCH, seed=3))
    assert card["protocol"] == "untrained (random initialisation, seed 3)" and card["score"]["range"] is None


def test_a_checkpoint_without_a_card_is_named(tmp_path, capsys):
    state = load_checkpoint(scoring_checkpoint(tmp_path / "u.pt"))
    save_checkpoint(tmp_path / "old.pt", {k: v for k, v in state.items() if k not in ("format", "card")})
    cli_error(capsys, ["models", "--card", str(tmp_path / "old.pt")], CheckpointError,
              "has no model card (written before iqalib recorded cards)")


@pytest.mark.parametrize("damage, fragment", [
    (lambda c: c.pop("score"), "the model card lacks 'score'"),
    (lambda c: c.__setitem__("protocol", 3), "the model card's 'protocol' is int, expected str"),
    (lambda c: c["score"].__setitem__("direction", "lower is better"), "score direction is 'lower is better'"),
    (lambda c: c["score"].__setitem__("range", [100, 0]), "score range is [100, 0]"),
    (lambda c: c["preprocessing"].__setitem__("patch_size", "224"), "patch size is '224'"),
], ids=["no score", "protocol a number", "lower is better", "reversed range", "patch size text"])
def test_a_damaged_card_is_refused_in_one_line(tmp_path, capsys, damage, fragment):
    state = load_checkpoint(scoring_checkpoint(tmp_path / "u.pt"))
    card = state["card"]
    card["score"]["range"] = [0.0, 100.0]
    damage(card)
    save_checkpoint(tmp_path / "bad.pt", {**{k: v for k, v in state.items() if k != "format"}, "card": card})
    cli_error(capsys, ["models", "--card", str(tmp_path / "bad.pt")], CheckpointError, fragment)


# ---------------------------------------------------------------- score tables

def test_score_writes_the_card_beside_the_table(tmp_path, capsys):
    checkpoint = scoring_checkpoint(tmp_path / "model.pt")
    images = [noise_png(tmp_path / f"img{i}.png", seed=i) for i in range(2)]
    out = tmp_path / "scores.csv"
    args = ["score", *map(str, images), "--checkpoint", str(checkpoint), "--patches", "3", "--out", str(out)]
    assert main(args) == 0
    sidecar = json.loads(score_card_path(out).read_text())
    assert sidecar["kind"] == SCORE_CARD_KIND and sidecar["checkpoint"]["sha256"] == sha256(checkpoint)
    assert sidecar["model_card"]["protocol"].startswith("untrained")
    assert sidecar["scoring"] | {"preprocess_rule": None} == {
        "preprocess": "iqalib", "preprocess_rule": None, "patches": 3, "patch_size": PATCH, "short_side": None,
        "crop_seed": 0, "images": 2, "failed": 0, "score_direction": "higher is better",
        "orientation": ORIENTATION_RULE, "score_decimals": 4}
    assert main(args) == 0  # its own card is replaced, like its own table


def test_a_foreign_file_where_the_card_goes_is_kept(tmp_path, capsys):
    checkpoint = scoring_checkpoint(tmp_path / "model.pt")
    out = tmp_path / "scores.csv"
    score_card_path(out).write_text("my notes\n")
    cli_error(capsys, ["score", str(noise_png(tmp_path / "a.png")), "--checkpoint", str(checkpoint),
                       "--out", str(out)], ConfigError, "scores.csv.card.json exists and is not a score card")
    assert score_card_path(out).read_text() == "my notes\n" and not out.exists()


# ---------------------------------------------------------------- original preprocessing

@pytest.fixture(scope="module")
def koniq_sized(tmp_path_factory) -> dict:
    """A 1024x768 (KonIQ-sized, landscape) image and an untrained Lite0 model scoring 224-pixel crops."""
    folder = tmp_path_factory.mktemp("koniq")
    image = noise_png(folder / "photo.png", 768, 1024, seed=5)
    return {"image": image, "checkpoint": save_untrained_checkpoint(folder / "model.pt", patch_size=224)}


def test_the_original_resize_is_torchvisions(koniq_sized):
    transforms = pytest.importorskip("torchvision.transforms")
    pil = Image.open(koniq_sized["image"]).convert("RGB")
    ours = original_hyperiqa_resize(np.asarray(pil))
    theirs = np.asarray(transforms.Resize((512, 384))(pil))
    assert ours.shape == (*ORIGINAL_SIZE, 3) == (512, 384, 3)  # 512 high, 384 wide: portrait
    assert np.array_equal(ours, theirs)


def test_score_with_the_original_preprocessing(koniq_sized, tmp_path, capsys):
    """The score is the mean over crops made as the original code makes them (torchvision
    Resize((512, 384)), crops, ToTensor, Normalize), and the card says which preprocessing it used."""
    transforms = pytest.importorskip("torchvision.transforms")
    from iqalib.engine.score import load_trained

    out = tmp_path / "scores.csv"
    args = ["score", str(koniq_sized["image"]), "--checkpoint", str(koniq_sized["checkpoint"]), "--patches", "10"]
    assert main([*args, "--preprocess", "original_hyperiqa", "--out", str(out)]) == 0
    score = pd.read_csv(out)["score"].iloc[0]
    assert json.loads(score_card_path(out).read_text())["scoring"]["preprocess"] == "original_hyperiqa"

    model = load_trained(koniq_sized["checkpoint"])
    pil = Image.open(koniq_sized["image"]).convert("RGB")
    resized = transforms.Resize((512, 384))(pil)
    to_input = transforms.Compose([transforms.ToTensor(), transforms.Normalize(model.mean, model.std)])
    corners = OriginalHyperIQACrops(np.asarray(pil), 10, 224, seed=0).corners
    assert len({tuple(c) for c in corners}) == 10  # ten different random crops
    assert (corners[:, 0] <= 512 - 224).all() and (corners[:, 1] <= 384 - 224).all()
    crops = torch.stack([to_input(resized.crop((left, top, left + 224, top + 224))) for top, left in corners])
    with torch.no_grad():
        expected = model(crops).mean().item()
    assert abs(score - expected) < 0.5e-4 + 1e-5  # the table rounds to 4 decimals (SCORE_DECIMALS)

    assert main([*args, "--out", str(tmp_path / "kept.csv")]) == 0  # iqalib's own preprocessing differs
    assert abs(pd.read_csv(tmp_path / "kept.csv")["score"].iloc[0] - score) > 1e-6
    assert json.loads(score_card_path(tmp_path / "kept.csv").read_text())["scoring"]["preprocess"] == "iqalib"


def test_short_side_does_not_combine_with_the_original_preprocessing(koniq_sized, capsys):
    cli_error(capsys, ["score", str(koniq_sized["image"]), "--checkpoint", str(koniq_sized["checkpoint"]),
                       "--preprocess", "original_hyperiqa", "--short-side", "384"], ConfigError,
              "--short-side does not apply to --preprocess original_hyperiqa")
