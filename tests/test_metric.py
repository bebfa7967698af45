"""create_metric and predict: every input kind scores the same picture the same (issue 25).

The bugs this guards: an (H, W, 3) float image in [0, 1] scored 14.9 where the same picture
as uint8 scored 88.8 (floats truncated to 0/1 bytes); ``predict("best.pt", img)`` raised
AttributeError; ``predict(model, [p, p])`` raised ValueError; an untrained head scored
without a word.
"""
from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
from PIL import Image

import iqalib
from iqalib.engine.checkpoint import load_checkpoint, save_checkpoint
from iqalib.engine.ready import READY_FILE, READY_NAME
from iqalib.errors import CheckpointError, ConfigError, DataError
from iqalib.models import create_model


def smooth_picture(height: int = 240, width: int = 300, seed: int = 0) -> np.ndarray:
    """An (H, W, 3) uint8 picture with structure at several scales (not only noise)."""
    rng = np.random.default_rng(seed)
    y, x = np.mgrid[0:height, 0:width] / max(height, width)
    base = np.stack([np.sin(7 * x + c) * np.cos(5 * y - c) for c in range(3)], axis=2)
    noisy = 127.5 + 90 * base + rng.normal(0, 12, (height, width, 3))
    return np.clip(np.rint(noisy), 0, 255).astype(np.uint8)


@pytest.fixture(scope="module")
def metric():
    return iqalib.create_metric(device="cpu")


def test_the_ready_metric_says_what_it_scores(metric):
    assert metric.name == READY_NAME and metric.checkpoint == READY_FILE
    assert metric.scale == (0.0, 100.0) and metric.higher_is_better is True
    assert metric.crops == 4  # the crops it was validated with, from its card
    assert metric.description.startswith(f"iqalib's ready model {READY_NAME} (LIVE-C 627 JPEGs")
    assert metric.card["ready"]["held_out"]["images"] == 535


def test_every_input_kind_gives_the_same_score(metric, tmp_path):
    pixels = smooth_picture()
    png = tmp_path / "picture.png"
    Image.fromarray(pixels).save(png)
    reference = metric(pixels)
    assert isinstance(reference, float) and np.isfinite(reference)
    chw = torch.from_numpy(pixels).permute(2, 0, 1).float() / 255
    forms = {
        "str path": metric(str(png)), "Path": metric(png), "PIL": metric(Image.open(png)),
        "float HWC in [0, 1]": metric(pixels.astype(np.float32) / 255),
        "CHW tensor": metric(chw),
    }
    for kind, score in forms.items():
        assert isinstance(score, float), kind
        assert score == pytest.approx(reference, abs=1e-4), kind
    batch = metric(torch.stack([chw, chw]))  # (N, 3, H, W): one score per picture
    several = metric([png, pixels, chw])
    assert isinstance(batch, list) and len(batch) == 2 and isinstance(several, list) and len(several) == 3
    np.testing.assert_allclose([*batch, *several], reference, atol=1e-4)


def test_a_different_picture_scores_differently(metric):
    """The agreement above is not a constant output: a blurred copy scores otherwise."""
    pixels = smooth_picture()
    blurred = np.asarray(Image.fromarray(pixels).resize((30, 24)).resize((300, 240), Image.BILINEAR))
    assert abs(metric(pixels) - metric(blurred)) > 0.5


def test_ambiguous_input_is_refused_in_one_line(metric):
    pixels = smooth_picture(64, 64).astype(np.float32)  # 0-255 values as floats: the 14.9 bug's input
    with pytest.raises(DataError, match=r"outside \[0, 1\]") as info:
        metric(pixels)
    assert "\n" not in str(info.value)
    with pytest.raises(DataError, match="channels-first"):
        metric(np.zeros((3, 64, 64), np.uint8))


def test_create_metric_refuses_a_bare_architecture_and_unknown_names():
    with pytest.raises(ConfigError, match="never trained") as info:
        iqalib.create_metric("smart_iqa_lite0", device="cpu")
    assert READY_NAME in str(info.value)
    with pytest.raises(ConfigError, match="neither a checkpoint file nor a metric"):
        iqalib.create_metric("no_such_metric", device="cpu")


def test_predict_takes_a_checkpoint_path_and_lists(metric, tmp_path):
    pixels = smooth_picture()
    one = iqalib.predict(str(READY_FILE), pixels, patches=metric.crops)
    assert one == pytest.approx(metric(pixels), abs=1e-4)
    two = iqalib.predict(metric.model, [pixels, pixels])
    assert isinstance(two, list) and two == pytest.approx([one, one], abs=1e-4)


def test_predict_warns_once_when_the_head_was_never_trained():
    model = create_model("smart_iqa_lite0", pretrained=False)
    pixels = smooth_picture(96, 96)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        iqalib.predict(model, pixels, patches=1, patch_size=64)
        iqalib.predict(model, pixels, patches=1, patch_size=64)
    untrained = [w for w in caught if "head was never trained" in str(w.message)]
    assert len(untrained) == 1


def test_a_head_only_checkpoint_must_fit_its_head_and_trunk(tmp_path):
    state = load_checkpoint(READY_FILE)
    head = state["model"]
    cases = {
        "lacks": {**state, "model": {k: v for k, v in head.items() if not k.startswith("lda.")}},
        "does not have": {**state, "model": {**head, "backbone.trunk.conv_stem.weight": torch.zeros(1)}},
        "installed ones differ": {**state, "trunk_source": {**state["trunk_source"], "sha256": "0" * 64}},
    }
    for fragment, bad in cases.items():
        path = tmp_path / f"{fragment.replace(' ', '_')}.pt"
        save_checkpoint(path, {k: v for k, v in bad.items() if k != "format"})
        with pytest.raises(CheckpointError, match=fragment) as info:
            iqalib.load_trained(path)
        assert str(path) in str(info.value) and "\n" not in str(info.value)
