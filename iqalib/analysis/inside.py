"""The HyperIQA family opened up: one patch through the model, one stage at a time.

:func:`walk_through` runs a patch through a
:class:`~iqalib.models.hyperiqa.HyperIQA` by calling its own sub-modules in
order (trunk, pooling, the four LDA branches, stage attention, ``conv1``, the
weight and bias generators, the target network) and returns every
intermediate tensor by name, so a chapter can show each step and check that
the last one equals ``model(x)``. :func:`parameter_parts` counts parameters
per part of the model; :func:`weights_sentence` says, from the numbers, how
image-specific the generated weights are.
"""
from __future__ import annotations

from collections import OrderedDict
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from iqalib.analysis.attention import load_round_model
from iqalib.data.datasets import load_dataset
from iqalib.data.images import decode_image
from iqalib.errors import DataError, IQAError
from iqalib.models import create_model
from iqalib.models.hyperiqa import TARGET_SIZES, HyperIQA

TARGET_LAYERS = ("fc1", "fc2", "fc3", "fc4", "fc5")
# What each step is, for the table of shapes (keys of walk_through's result).
STEP_NOTES = {
    "input": "normalised 224x224 patch",
    "stage": "trunk stage {k} (stride {stride})",
    "lda_pooled": "stage {k} average-pooled to the LDA grid",
    "lda": "LDA branch {k}: 1x1 conv (branches 1-3), flatten, Linear",
    "target_input": "the four LDA vectors concatenated: the target network's input",
    "grid": "stage {k} average-pooled to 7x7",
    "context": "attention context: the global average of stage 4",
    "attention_hidden": "attention MLP: Linear + ReLU",
    "attention_logits": "attention MLP: Linear to one logit per stage",
    "attention_weights": "softmax: one weight per stage, summing to 1",
    "hyper_input": "what the hyper network reads",
    "hyper": "conv1 (three 1x1 convs + ReLU): the hyper network's 112x7x7 map",
    "hyper_summary": "its global average (the bias generators' input)",
    "weight": "generated weight of {layer} (out x in), per image",
    "bias": "generated bias of {layer}, per image",
    "activation": "{layer} output{after}",
    "score": "the quality score",
}


def _check_model(model) -> HyperIQA:
    if not isinstance(model, HyperIQA):
        raise TypeError(f"walk_through needs a HyperIQA-family model, got {type(model).__name__}")
    return model


@torch.no_grad()
def walk_through(model: HyperIQA, x: torch.Tensor) -> "OrderedDict[str, torch.Tensor]":
    """Every intermediate tensor of ``model`` on patches ``x`` (N, 3, 224, 224), by name, in order.

    The model must be in eval mode (dropout off), as when it scores. Names:
    ``input``; ``stage1..4`` (trunk); ``lda_pooled1..4`` and ``lda1..4`` (the
    LDA branches) and ``target_input`` (their concatenation, 224 numbers);
    ``grid1..4`` (stages pooled to 7x7); for stage attention ``context``,
    ``attention_hidden``, ``attention_logits``, ``attention_weights``;
    ``hyper_input``, ``hyper`` (N, 112, 7, 7), ``hyper_summary``;
    ``fc1_weight``/``fc1_bias`` ... ``fc5_weight``/``fc5_bias``;
    ``fc1_out`` ... ``fc5_out`` and ``score`` (N,).
    """
    model = _check_model(model)
    if model.training:
        raise ValueError("walk_through needs model.eval(): dropout would make the steps random")
    steps: OrderedDict[str, torch.Tensor] = OrderedDict(input=x)
    stages = model.backbone(x)
    for k, stage in enumerate(stages, 1):
        steps[f"stage{k}"] = stage
    pooled = model.pool_stages(stages)
    lda_maps, grid_maps = pooled[:4], pooled[4:]
    for k, (branch, pooled_map) in enumerate(zip(model.lda, lda_maps), 1):
        steps[f"lda_pooled{k}"] = pooled_map
        steps[f"lda{k}"] = branch(pooled_map)
    steps["target_input"] = torch.cat([steps[f"lda{k}"] for k in range(1, 5)], dim=1)
    for k, grid in enumerate(grid_maps, 1):
        steps[f"grid{k}"] = grid

    if not model.multiscale:
        hyper_input = grid_maps[-1]
    elif model.multiscale_attention is not None:
        # MultiScaleAttention.forward, step by step: Linear, ReLU, (Dropout: off), Linear, Softmax.
        linear1, relu, _dropout, linear2, softmax = model.multiscale_attention.net
        steps["context"] = lda_maps[-1].flatten(1)
        steps["attention_hidden"] = relu(linear1(steps["context"]))
        steps["attention_logits"] = linear2(steps["attention_hidden"])
        weights = steps["attention_weights"] = softmax(steps["attention_logits"])
        hyper_input = torch.cat([m * weights[:, i, None, None, None] for i, m in enumerate(grid_maps)], dim=1)
    else:
        hyper_input = torch.cat(list(grid_maps), dim=1)
    steps["hyper_input"] = hyper_input
    hyper = steps["hyper"] = model.conv1(hyper_input)
    summary = steps["hyper_summary"] = hyper.mean(dim=(2, 3))

    n = x.shape[0]
    pairs = list(zip(TARGET_SIZES[:-1], TARGET_SIZES[1:]))
    for layer, (fan_in, fan_out), w_gen, b_gen in zip(TARGET_LAYERS, pairs, model.weight_generators,
                                                       model.bias_generators):
        steps[f"{layer}_weight"] = w_gen(hyper).reshape(n, fan_out, fan_in)
        steps[f"{layer}_bias"] = b_gen(summary)
    steps["fc5_weight"] = model.fc5_weight_generator(summary).reshape(n, 1, TARGET_SIZES[-1])
    steps["fc5_bias"] = model.fc5_bias_generator(summary)

    h = steps["target_input"]
    for i, layer in enumerate(TARGET_LAYERS):
        h = torch.bmm(steps[f"{layer}_weight"], h.unsqueeze(2)).squeeze(2) + steps[f"{layer}_bias"]
        if i < len(TARGET_LAYERS) - 1:
            h = torch.sigmoid(h)
        steps[f"{layer}_out"] = h
    steps["score"] = h.squeeze(1).float()
    return steps


def _step_note(name: str, model: HyperIQA) -> str:
    digits = "".join(c for c in name if c.isdigit())
    k = int(digits[-1]) if digits and name[-1].isdigit() else None
    if name.startswith("fc"):
        layer, part = name.split("_", 1)
        if part == "out":
            after = " after the sigmoid" if layer != "fc5" else ""
            return STEP_NOTES["activation"].format(layer=layer.upper(), after=after)
        return STEP_NOTES[part].format(layer=layer.upper())
    for prefix in ("lda_pooled", "stage", "lda", "grid"):
        if name.startswith(prefix) and k is not None:
            return STEP_NOTES[prefix].format(k=k, stride=model.backbone.reductions[k - 1])
    return STEP_NOTES.get(name, "")


def steps_table(steps, model: HyperIQA) -> pd.DataFrame:
    """One row per step of :func:`walk_through`: name, shape, numbers per image, what it is."""
    rows = [{"step": name, "shape": "x".join(map(str, t.shape[1:])), "numbers": int(t[0].numel()),
             "what": _step_note(name, model)} for name, t in steps.items()]
    return pd.DataFrame(rows).set_index("step")


def generated_layers_table(steps) -> pd.DataFrame:
    """Shapes and statistics of the generated FC1..FC5 weights and biases (first image)."""
    rows = []
    for layer in TARGET_LAYERS:
        w, b = steps[f"{layer}_weight"][0], steps[f"{layer}_bias"][0]
        rows.append({"layer": layer.upper(), "weight": "x".join(map(str, w.shape)), "bias": len(b),
                     "weight_mean": float(w.mean()), "weight_std": float(w.std()),
                     "bias_mean": float(b.mean())})
    return pd.DataFrame(rows).set_index("layer")


# ------------------------------------------------------------------ parameters per part

PARTS = ("trunk", "lda", "attention", "hyper_network")


def parameter_parts(model: HyperIQA) -> dict[str, int]:
    """Parameters per part: ``trunk``, ``lda`` (the four branches), ``attention`` (0 without),
    ``hyper_network`` (conv1 and the weight and bias generators) and ``total``.

    Every parameter belongs to exactly one part; a ValueError says so if a
    module was added to the model that no part names.
    """
    model = _check_model(model)
    groups = {"trunk": [model.backbone], "lda": [model.lda],
              "attention": [model.multiscale_attention] if model.multiscale_attention is not None else [],
              "hyper_network": [model.conv1, model.weight_generators, model.bias_generators,
                                model.fc5_weight_generator, model.fc5_bias_generator]}
    counts = {part: sum(p.numel() for m in modules for p in m.parameters()) for part, modules in groups.items()}
    total = sum(p.numel() for p in model.parameters())
    if sum(counts.values()) != total:
        raise ValueError(f"the parts hold {sum(counts.values())} of {total} parameters; "
                         "a module of the model belongs to no part")
    return {**counts, "total": total}


def parameter_table(names) -> pd.DataFrame:
    """:func:`parameter_parts` for each registered model name (built on the meta device: no weights)."""
    rows = []
    for name in names:
        with torch.device("meta"):
            model = create_model(name, pretrained=False)
        rows.append({"model": name, **parameter_parts(model)})
    table = pd.DataFrame(rows).set_index("model")
    table["head_share"] = 1 - table["trunk"] / table["total"]
    return table


# ------------------------------------------------------------------ images and weights

def center_patch(image: np.ndarray, size: int = 224) -> torch.Tensor:
    """The central ``size`` x ``size`` crop of an (H, W, 3) uint8 image as a (1, 3, size, size) uint8 tensor."""
    h, w = image.shape[:2]
    if min(h, w) < size:
        raise DataError(f"the image is {w}x{h}, smaller than a {size}-pixel patch")
    top, left = (h - size) // 2, (w - size) // 2
    crop = np.ascontiguousarray(image[top:top + size, left:left + size].transpose(2, 0, 1))
    return torch.from_numpy(crop)[None]


def example_images(candidates, *, count: int = 2) -> tuple[pd.DataFrame, list[np.ndarray], list[str]]:
    """The lowest- and highest-MOS images (``count`` = 2; more: evenly spread by MOS rank) of the first
    data set in ``candidates`` that loads.

    ``candidates`` is a list of ``(name, root)`` (root None: the default
    place). Returns the chosen rows (with ``data`` and ``path``), the decoded
    images and, per data set skipped, a line saying why (so a machine without
    the real data still gets the demo images).
    """
    skipped = []
    for name, root in candidates:
        try:
            table = load_dataset(name, root)
            order = np.argsort(table.mos, kind="stable")
            rows = order[np.round(np.linspace(0, len(order) - 1, count)).astype(int)]
            images = [decode_image(table.paths[i], short_side=table.short_side) for i in rows]
        except IQAError as exc:
            skipped.append(f"{name}: {exc}")
            continue
        chosen = table.frame.iloc[rows][["image", "mos"]].reset_index(drop=True)
        chosen.insert(0, "data", table.label)
        chosen["path"] = [str(table.paths[i]) for i in rows]
        return chosen, images, skipped
    raise DataError("no data set could be loaded for the example images: " + "; ".join(skipped))


def relative_difference(w_a: torch.Tensor, w_b: torch.Tensor) -> float:
    """mean |w_a - w_b| over the mean of mean |w_a| and mean |w_b|: how much two generated matrices differ."""
    scale = 0.5 * (float(w_a.abs().mean()) + float(w_b.abs().mean()))
    return float((w_a - w_b).abs().mean()) / scale if scale > 0 else float("nan")


def weights_sentence(rows: dict, layer: str = "FC1") -> str:
    """A sentence on how image-specific the generated weights are, per model state.

    ``rows`` maps a state ("the random head", "the trained head") to the two
    images' weight matrices ``(w_a, w_b)``; the difference is measured by
    :func:`relative_difference`.
    """
    differences = {state: relative_difference(w_a, w_b) for state, (w_a, w_b) in rows.items()}
    parts = [f"by {100 * d:.1f}% with {state}" for state, d in differences.items()]
    sentence = (f"The two images' generated {layer} weight matrices differ {' and '.join(parts)} "
                "(mean absolute difference over mean absolute weight)")
    values = list(differences.values())
    if len(values) == 2 and all(np.isfinite(values)) and values[0] > 0:
        ratio = values[1] / values[0]
        if ratio > 1.25:
            sentence += f": training made the target network {ratio:.1f}x more specific to the image"
        elif ratio < 0.8:
            sentence += f": training made the generated weights {1 / ratio:.1f}x less image-specific"
        else:
            sentence += ": training left them about as image-specific as they started"
    return sentence + "."


def finished_round_model(out_dir, run_name: str, round_index: int = 0):
    """The selected model of round ``round_index`` of ``out_dir/run_name``, or None when no such run finished."""
    if out_dir is None or not (Path(out_dir) / run_name / f"round_{round_index}" / "best.pt").is_file():
        return None
    return load_round_model(Path(out_dir) / run_name, round_index, device="cpu")
