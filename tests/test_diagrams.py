"""The architecture diagrams show the shapes the model really produces, and follow its sizes."""
from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import pytest  # noqa: E402
import torch  # noqa: E402

from iqalib.analysis.inside import TARGET_LAYERS, walk_through  # noqa: E402
from iqalib.models import HyperIQA, create_model  # noqa: E402
from iqalib.plots.diagrams import architecture_blocks, plot_architecture, shape_text  # noqa: E402


def per_image(tensor) -> tuple[int, ...]:
    return tuple(tensor.shape[1:])


def expected_shapes(model) -> dict[str, tuple[int, ...]]:
    """Each block's shape from the stage-by-stage walk (iqalib.analysis.inside), not from hooks."""
    steps = walk_through(model.eval(), torch.randn(2, 3, 224, 224))
    shapes = {"input": per_image(steps["input"]), "target_input": per_image(steps["target_input"]),
              "hyper_input": per_image(steps["hyper_input"]), "hyper": per_image(steps["hyper"]),
              "score": per_image(steps["score"]),
              "lda": tuple(per_image(steps[f"lda{k}"])[0] for k in range(1, 5))}
    shapes.update({f"stage{k}": per_image(steps[f"stage{k}"]) for k in range(1, 5)})
    for k, layer in enumerate(TARGET_LAYERS, 1):
        shapes[layer] = per_image(steps[f"{layer}_out"])
        shapes[f"theta{k}"] = per_image(steps[f"{layer}_weight"])
    if "attention_weights" in steps:
        shapes["attention"] = per_image(steps["attention_weights"])
    return shapes


@pytest.mark.parametrize("name", ["hyperiqa_lite0", "smart_iqa_lite0"])
def test_the_diagram_labels_the_shapes_a_forward_pass_produces(name, one_thread):
    torch.manual_seed(0)
    model = create_model(name, pretrained=False)
    expected = expected_shapes(model)
    blocks = {block.key: block for block in architecture_blocks(model)}
    assert {key: block.shape for key, block in blocks.items()} == expected
    assert ("attention" in blocks) == name.startswith("smart")

    figure = plot_architecture(model)
    labels = {text.get_gid(): text.get_text() for text in figure.axes[0].texts if text.get_gid()}
    plt.close(figure)
    assert set(labels) == set(expected)
    for key, shape in expected.items():
        assert shape_text(shape, sum_of_parts=key == "lda") in labels[key].splitlines(), key


def test_changing_a_layer_changes_the_diagram_and_the_model_keeps_its_mode(one_thread):
    torch.manual_seed(0)
    model = HyperIQA("lite0", multiscale=True, attention=False, conv1_widths=(64, 32)).train()
    blocks = {block.key: block for block in architecture_blocks(model)}
    assert model.training  # the forward pass ran in eval mode and the mode came back
    assert blocks["hyper_input"].shape == (24 + 40 + 112 + 320, 7, 7)
    assert blocks["hyper"].detail == "1×1 convs 496→64→32→112"
    assert "attention" not in blocks
    assert blocks["theta1"].shape == (112, 224) and blocks["fc5"].shape == (1,)
    assert blocks["lda"].label.splitlines()[1] == "16+16+16+176"
