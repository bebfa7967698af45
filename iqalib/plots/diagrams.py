"""Block diagrams of the HyperIQA family, drawn from the model itself (chapters 3 and 4).

:func:`architecture_blocks` runs one crop through an instantiated
:class:`~iqalib.models.hyperiqa.HyperIQA` with forward hooks on its
sub-modules and records what each block really outputs, per image: the trunk
stages, the LDA vectors, the stage attention (SMART-IQA), the hyper network's
input and map, the target layers' generated weights and biases, and the
score. :func:`plot_architecture` draws those blocks, so a change to a layer
size or to which stages the hyper network reads changes the figure; nothing
in it is typed by hand. The symbols in the boxes are those of the chapters'
equations.
"""
from __future__ import annotations

from dataclasses import dataclass

import matplotlib.pyplot as plt
import torch
from matplotlib.patches import FancyArrowPatch, FancyBboxPatch

from iqalib.models.hyperiqa import HyperIQA

TARGET_LAYERS = ("fc1", "fc2", "fc3", "fc4", "fc5")
COLOURS = {"input": "#eeeeee", "trunk": "#c6dbef", "target": "#c7e9c0", "hyper": "#fdd0a2",
           "attention": "#dadaeb", "theta": "#fee6ce"}


@dataclass(frozen=True)
class Block:
    """One box of the diagram: ``key`` (which part), ``title`` (what it is, with its symbol),
    ``shape`` (the tensor per image, as the forward pass produced it) and ``detail`` (a line the
    model's modules give, e.g. the widths of ``conv1``)."""

    key: str
    title: str
    shape: tuple[int, ...]
    detail: str = ""

    @property
    def label(self) -> str:
        lines = [self.title, shape_text(self.shape, sum_of_parts=self.key == "lda")]
        return "\n".join(lines + ([self.detail] if self.detail else []))


def shape_text(shape: tuple[int, ...], sum_of_parts: bool = False) -> str:
    """``(24, 56, 56)`` as ``24×56×56``; a scalar as ``1 number``; the LDA sizes as ``16+16+16+176``."""
    if not shape:
        return "1 number"
    return ("+" if sum_of_parts else "×").join(map(str, shape))


def _record(model: HyperIQA) -> tuple[dict, list]:
    """Forward hooks that keep each sub-module's output (and conv1's input) by name."""
    seen: dict[str, object] = {}

    def keep(name, what="output"):
        def hook(module, args, output):
            seen[name] = args[0] if what == "input" else output
        return hook

    modules = {"backbone": model.backbone, "conv1": model.conv1,
               "fc5_weight": model.fc5_weight_generator, "fc5_bias": model.fc5_bias_generator}
    modules.update({f"lda{k}": branch for k, branch in enumerate(model.lda, 1)})
    modules.update({f"fc{k}_weight": g for k, g in enumerate(model.weight_generators, 1)})
    modules.update({f"fc{k}_bias": g for k, g in enumerate(model.bias_generators, 1)})
    modules.update({f"conv1_{i}": layer for i, layer in enumerate(model.conv1)
                    if isinstance(layer, torch.nn.Conv2d)})
    if model.multiscale_attention is not None:
        net = model.multiscale_attention.net
        modules.update({"attention": model.multiscale_attention, "attention_hidden": net[0],
                        "attention_logits": net[3]})
    handles = [m.register_forward_hook(keep(name)) for name, m in modules.items()]
    handles.append(model.conv1.register_forward_hook(keep("hyper_input", "input")))
    if model.multiscale_attention is not None:
        handles.append(model.multiscale_attention.net.register_forward_hook(
            keep("context", "input")))
    return seen, handles


def _forward(model: HyperIQA) -> dict:
    """One zero crop through ``model`` in eval mode; the recorded tensors, and ``score``."""
    parameter = next(model.parameters())
    x = torch.zeros(1, 3, model.patch_size, model.patch_size, device=parameter.device,
                    dtype=parameter.dtype)
    seen, handles = _record(model)
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            seen["score"] = model(x)
    finally:
        model.train(was_training)
        for handle in handles:
            handle.remove()
    seen["input"] = x
    return seen


def _target_blocks(seen: dict) -> list[Block]:
    """The generated parameters of FC1..FC5 and the target network's layers."""
    blocks = []
    for k, layer in enumerate(TARGET_LAYERS, 1):
        bias = tuple(seen[f"{layer}_bias"].shape[1:])
        fan_out = bias[0]
        # The generator's output holds fan_out x fan_in numbers per image (reshaped in target_weights).
        fan_in = seen[f"{layer}_weight"][0].numel() // fan_out
        blocks.append(Block(f"theta{k}", f"$W_{k}$, $b_{k}$", (fan_out, fan_in),
                            f"+ bias {shape_text(bias)}"))
        activation = "sigmoid" if k < len(TARGET_LAYERS) else "linear"
        blocks.append(Block(layer, f"FC{k}: $h_{k}$", (fan_out,), f"{fan_in}→{fan_out}, {activation}"))
    return blocks


def architecture_blocks(model: HyperIQA) -> list[Block]:
    """The blocks of ``model`` with the shapes one forward pass on a zero crop gives, per image."""
    if not isinstance(model, HyperIQA):
        raise TypeError(f"architecture_blocks needs a HyperIQA-family model, got {type(model).__name__}")
    seen = _forward(model)
    per_image = {name: tuple(value.shape[1:]) for name, value in seen.items() if torch.is_tensor(value)}
    blocks = [Block("input", "crop $x$", per_image["input"])]
    reductions = model.backbone.reductions
    blocks += [Block(f"stage{k}", f"stage {k}: $S_{k}$", tuple(stage.shape[1:]), f"stride {stride}")
               for k, (stage, stride) in enumerate(zip(seen["backbone"], reductions), 1)]
    lda = tuple(per_image[f"lda{k}"][0] for k in range(1, 5))
    blocks.append(Block("lda", "LDA branches $v_1..v_4$", lda))
    blocks.append(Block("target_input", "target input $v$", (sum(lda),)))
    if model.multiscale_attention is not None:
        context, hidden = per_image["context"][0], per_image["attention_hidden"][0]
        blocks.append(Block("attention", "stage attention $a$", tuple(seen["attention"][1].shape[1:]),
                            f"$c$: {context}→{hidden}→{per_image['attention_logits'][0]}, softmax"))
    read = ("$a_s G_s$, 4 stages" if model.multiscale_attention is not None
            else "$G_s$, 4 stages" if model.multiscale else "$G_4$, last stage")
    blocks.append(Block("hyper_input", f"hyper input $G$ ({read})", per_image["hyper_input"]))
    widths = [per_image["hyper_input"][0]] + [per_image[name][0] for name in per_image
                                              if name.startswith("conv1_")]
    blocks.append(Block("hyper", "hyper map $H$ (conv1)", per_image["conv1"],
                        "1×1 convs " + "→".join(map(str, widths))))
    blocks += _target_blocks(seen)
    blocks.append(Block("score", "score $q$", per_image["score"]))
    return blocks


# ------------------------------------------------------------------ drawing

BOX_W, BOX_H = 1.75, 0.95
FC_W = 1.3
X_INPUT, X_STAGES, X_LANE, X_HYPER, X_FC0, FC_STEP = 0.95, 2.95, 5.3, 7.6, 9.6, 1.5
Y_TARGET, Y_THETA, Y_HYPER, Y_ATTENTION = 1.0, 3.1, 5.0, 6.6
GENERATORS = (r"weight generators $\theta(x)$, per image: 3×3 convs on $H$ give $W_1..W_4$;"
              "\n" r"linear layers on the mean of $H$ give $b_1..b_4$, $W_5$, $b_5$")


def _box(ax, block: Block, x: float, y: float, colour: str, width: float = BOX_W) -> dict:
    ax.add_patch(FancyBboxPatch((x - width / 2, y - BOX_H / 2), width, BOX_H,
                                boxstyle="round,pad=0.02,rounding_size=0.08", linewidth=0.8,
                                edgecolor="#555555", facecolor=colour))
    text = ax.text(x, y, block.label, ha="center", va="center", fontsize=7.5)
    text.set_gid(block.key)  # the tests find each block's label by its key
    return {"x": x, "y": y, "w": width}


def _arrow(ax, start: dict, end: dict, side: str = "x", style: str = "-|>", dashed: bool = False):
    """From the edge of ``start`` to the edge of ``end``, leaving sideways (x) or vertically (y)."""
    if side == "x":
        a = (start["x"] + start["w"] / 2, start["y"])
        b = (end["x"] - end["w"] / 2, end["y"])
    else:
        down = end["y"] < start["y"]
        a = (start["x"], start["y"] + (-1 if down else 1) * BOX_H / 2)
        b = (end["x"], end["y"] + (1 if down else -1) * BOX_H / 2)
    ax.add_patch(FancyArrowPatch(a, b, arrowstyle=style, mutation_scale=9, linewidth=0.8,
                                 color="#444444", linestyle="--" if dashed else "-"))


def _place(ax, blocks: dict[str, Block]) -> dict[str, dict]:
    """Draw every block at its place: trunk column, target lane (bottom), hyper lane (top)."""
    at = {"input": _box(ax, blocks["input"], X_INPUT, (Y_TARGET + Y_HYPER) / 2, COLOURS["input"])}
    for k in range(1, 5):
        y = Y_TARGET + (k - 1) * (Y_HYPER - Y_TARGET) / 3
        at[f"stage{k}"] = _box(ax, blocks[f"stage{k}"], X_STAGES, y, COLOURS["trunk"])
    at["lda"] = _box(ax, blocks["lda"], X_LANE, Y_TARGET, COLOURS["target"])
    at["target_input"] = _box(ax, blocks["target_input"], X_HYPER, Y_TARGET, COLOURS["target"])
    at["hyper_input"] = _box(ax, blocks["hyper_input"], X_LANE, Y_HYPER, COLOURS["hyper"], width=2.1)
    at["hyper"] = _box(ax, blocks["hyper"], X_HYPER, Y_HYPER, COLOURS["hyper"], width=2.0)
    if "attention" in blocks:
        at["attention"] = _box(ax, blocks["attention"], X_LANE, Y_ATTENTION, COLOURS["attention"],
                               width=2.1)
    for k, layer in enumerate(TARGET_LAYERS, 1):
        x = X_FC0 + (k - 1) * FC_STEP
        at[layer] = _box(ax, blocks[layer], x, Y_TARGET, COLOURS["target"], FC_W)
        at[f"theta{k}"] = _box(ax, blocks[f"theta{k}"], x, Y_THETA, COLOURS["theta"], FC_W)
    at["score"] = _box(ax, blocks["score"], X_FC0 + len(TARGET_LAYERS) * FC_STEP, Y_TARGET,
                       COLOURS["target"], FC_W)
    return at


def _connect(ax, at: dict[str, dict], model: HyperIQA) -> None:
    _arrow(ax, at["input"], at["stage1"])
    for k in range(1, 4):
        _arrow(ax, at[f"stage{k}"], at[f"stage{k + 1}"], side="y")
    for k in range(1, 5):
        _arrow(ax, at[f"stage{k}"], at["lda"])
    read = range(1, 5) if model.multiscale else [4]
    for k in read:
        _arrow(ax, at[f"stage{k}"], at["hyper_input"])
    if "attention" in at:
        _arrow(ax, at["stage4"], at["attention"])
        _arrow(ax, at["attention"], at["hyper_input"], side="y")
    _arrow(ax, at["lda"], at["target_input"])
    _arrow(ax, at["hyper_input"], at["hyper"])
    _arrow(ax, at["target_input"], at["fc1"])
    # The generators: one line out of H, dropping to the parameters of each target layer.
    bus_end = at["theta5"]["x"]
    ax.plot([at["hyper"]["x"] + at["hyper"]["w"] / 2, bus_end], [Y_HYPER, Y_HYPER], color="#444444",
            linewidth=0.8)
    ax.text((X_HYPER + bus_end) / 2 + 0.6, Y_HYPER + 0.12, GENERATORS, ha="center", va="bottom",
            fontsize=7.5)
    for k, layer in enumerate(TARGET_LAYERS, 1):
        _arrow(ax, {"x": at[f"theta{k}"]["x"], "y": Y_HYPER + BOX_H / 2, "w": 0}, at[f"theta{k}"],
               side="y")
        _arrow(ax, at[f"theta{k}"], at[layer], side="y", dashed=True)
        following = TARGET_LAYERS[k] if k < len(TARGET_LAYERS) else "score"
        _arrow(ax, at[layer], at[following])


def plot_architecture(model: HyperIQA, title: str | None = None):
    """The block diagram of ``model``: trunk, LDA branches and target network (bottom), stage
    attention and hyper network (top), the generated weights between them; shapes per image
    from one forward pass (:func:`architecture_blocks`)."""
    blocks = {block.key: block for block in architecture_blocks(model)}
    top = Y_ATTENTION if "attention" in blocks else Y_HYPER
    fig, ax = plt.subplots()
    at = _place(ax, blocks)
    _connect(ax, at, model)
    right, bottom, top = X_FC0 + len(TARGET_LAYERS) * FC_STEP + FC_W / 2 + 0.1, Y_TARGET - 0.6, top + 0.6
    fig.set_size_inches(15.5, 15.5 * (top - bottom) / right + 0.4)
    ax.set_xlim(0, right)
    ax.set_ylim(bottom, top)
    ax.set_aspect("equal")
    ax.axis("off")
    name = getattr(model, "model_name", type(model).__name__)
    ax.set_title(title or f"{name} on a {model.backbone.name} trunk: what one "
                 f"{model.patch_size}×{model.patch_size} crop becomes (shapes per image)", fontsize=10)
    fig.tight_layout()
    return fig
