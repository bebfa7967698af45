"""The model opened up: the stage-by-stage walk equals model(x); parameters per part add up."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from iqalib.analysis.inside import (PARTS, TARGET_LAYERS, center_patch, parameter_parts, parameter_table,
                                    relative_difference, steps_table, walk_through, weights_sentence)
from iqalib.models import create_model, list_models
from iqalib.models.hyperiqa import TARGET_SIZES


def by_hand(steps, i):
    """The target network of image i, written out as loops over rows (no batched matmul)."""
    h = steps["target_input"][i].double()
    for k, layer in enumerate(TARGET_LAYERS):
        w, b = steps[f"{layer}_weight"][i].double(), steps[f"{layer}_bias"][i].double()
        h = torch.stack([(w[row] * h).sum() + b[row] for row in range(w.shape[0])])
        if k < len(TARGET_LAYERS) - 1:
            h = 1 / (1 + torch.exp(-h))
    return float(h[0])


@pytest.fixture(scope="module")
def patches():
    torch.manual_seed(0)
    return torch.randn(2, 3, 224, 224)


@pytest.mark.parametrize("name", ["hyperiqa_lite0", "smart_iqa_lite0"])
def test_stage_by_stage_walk_equals_the_model(name, patches, one_thread):
    torch.manual_seed(1)
    model = create_model(name, pretrained=False).eval()
    steps = walk_through(model, patches)
    with torch.no_grad():
        expected = model(patches)
    torch.testing.assert_close(steps["score"], expected, rtol=1e-5, atol=1e-6)
    assert steps["target_input"].shape == (2, 224)
    assert steps["hyper"].shape == (2, 112, 7, 7)
    for layer, (fan_in, fan_out) in zip(TARGET_LAYERS, zip(TARGET_SIZES, (*TARGET_SIZES[1:], 1))):
        assert steps[f"{layer}_weight"].shape == (2, fan_out, fan_in)
        assert steps[f"{layer}_bias"].shape == (2, fan_out)
    for i in range(2):
        assert by_hand(steps, i) == pytest.approx(float(expected[i]), rel=1e-4, abs=1e-5)
    # The generated layers are the model's own: model.target_weights gives the same tensors.
    with torch.no_grad():
        generated = model.target_weights(steps["hyper"])
    for layer, (weight, bias) in zip(TARGET_LAYERS, generated):
        assert torch.equal(steps[f"{layer}_weight"], weight) and torch.equal(steps[f"{layer}_bias"], bias)
    if model.multiscale_attention is not None:
        weights = steps["attention_weights"]
        assert weights.shape == (2, 4) and torch.allclose(weights.sum(dim=1), torch.ones(2))
        assert steps["hyper_input"].shape == (2, sum(model.stage_channels), 7, 7)
    else:
        assert "attention_weights" not in steps
    table = steps_table(steps, model)
    assert table.loc["target_input", "numbers"] == 224 and table.loc["hyper", "shape"] == "112x7x7"


@pytest.mark.parametrize("name", ["smart_iqa_tiny", "hyperiqa_resnet50"])
def test_walk_equals_the_model_on_other_trunks(name, one_thread):
    torch.manual_seed(2)
    model = create_model(name, pretrained=False).eval()
    x = torch.randn(1, 3, 224, 224)
    steps = walk_through(model, x)
    with torch.no_grad():
        torch.testing.assert_close(steps["score"], model(x), rtol=1e-4, atol=1e-5)
    assert [tuple(steps[f"stage{k}"].shape[1:]) for k in range(1, 5)] == [
        (c, 224 // r, 224 // r) for c, r in zip(model.stage_channels, (4, 8, 16, 32))]


def test_walk_refuses_training_mode_and_other_models():
    model = create_model("hyperiqa_lite0", pretrained=False)
    with pytest.raises(ValueError, match="model.eval()"):
        walk_through(model.train(), torch.zeros(1, 3, 224, 224))
    with pytest.raises(TypeError, match="HyperIQA-family"):
        walk_through(torch.nn.Linear(2, 2), torch.zeros(1, 2))


def test_parameter_parts_sum_to_the_total_for_every_registered_model():
    table = parameter_table(list_models())
    assert list(table.index) == list_models()
    assert (table[list(PARTS)].sum(axis=1) == table["total"]).all()
    assert (table.loc[[n for n in list_models() if n.startswith("hyperiqa")], "attention"] == 0).all()
    assert (table.loc[[n for n in list_models() if n.startswith("smart_iqa")], "attention"] > 0).all()
    model = create_model("smart_iqa_lite0", pretrained=False)
    parts = parameter_parts(model)
    assert parts["total"] == sum(p.numel() for p in model.parameters())
    # The attention MLP: Linear(320, 256) + Linear(256, 4).
    assert parts["attention"] == 320 * 256 + 256 + 256 * 4 + 4


def test_center_patch_and_weight_differences():
    image = np.arange(300 * 400 * 3, dtype=np.uint32).reshape(300, 400, 3).astype(np.uint8)
    patch = center_patch(image)
    assert patch.shape == (1, 3, 224, 224)
    assert torch.equal(patch[0, :, 0, 0], torch.from_numpy(image[38, 88].copy()))
    w = torch.ones(3, 4)
    assert relative_difference(w, w) == 0.0
    assert relative_difference(w, 3 * w) == pytest.approx(1.0)  # |1 - 3| / ((1 + 3) / 2)
    sentence = weights_sentence({"the random head": (w, 1.1 * w), "the trained head": (w, 3 * w)})
    assert "by 9.5% with the random head and by 100.0% with the trained head" in sentence
    assert "10.5x more specific" in sentence
