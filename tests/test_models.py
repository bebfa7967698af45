"""The HyperIQA family: registry, shapes, hand-derived sizes, attention, weights, complexity."""
from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from iqalib.errors import CheckpointError, ConfigError, DownloadError
from iqalib.models import (HyperIQA, create_model, hyperiqa_step_lr, list_models, lite0_classifier, model_trunk,
                           model_complexity, model_options)
from iqalib.models.backbones import _source_key

ALL_MODELS = ["hyperiqa_lite0", "hyperiqa_resnet50", "smart_iqa_base", "smart_iqa_lite0",
              "smart_iqa_small", "smart_iqa_tiny"]
# Swin-S and Swin-B take seconds each to build and run: `make test-all` covers them (marker slow).
MODEL_CASES = [pytest.param(n, marks=pytest.mark.slow) if n in ("smart_iqa_base", "smart_iqa_small") else n
               for n in ALL_MODELS]

# Parameter counts of the torchvision/timm ImageNet classifiers, as published.
CLASSIFIER_PARAMS = {
    "resnet50": 25_557_032,
    "swin_tiny": 28_288_354,
    "swin_small": 49_606_258,
    "swin_base": 87_768_224,
    "lite0": 4_652_008,
}


def trunk_params_by_hand(backbone: str) -> int:
    """The classifier's count minus the parts ``features_only`` drops."""
    total = CLASSIFIER_PARAMS[backbone]
    if backbone == "resnet50":
        return total - (2048 * 1000 + 1000)  # fc
    if backbone.startswith("swin"):
        c4 = 768 if backbone != "swin_base" else 1024
        return total - (c4 * 1000 + 1000) - 2 * c4  # head.fc, final LayerNorm
    return total - (1280 * 1000 + 1000) - 320 * 1280 - 2 * 1280  # classifier, conv_head, bn2


def head_params_by_hand(c1, c2, c3, c4, conv1_widths, multiscale, attention) -> int:
    """The head's parameters, layer by layer, from the HyperIQA / SMART-IQA layer list."""
    lda = (c1 * 16 + (16 * 8 * 8) * 16 + 16     # 1x1 conv (no bias) to 16, pool to 8x8, Linear to 16
           + c2 * 32 + (32 * 4 * 4) * 16 + 16   # 1x1 conv to 32, pool to 4x4, Linear to 16
           + c3 * 64 + (64 * 2 * 2) * 16 + 16   # 1x1 conv to 64, pool to 2x2, Linear to 16
           + c4 * 176 + 176)                    # global pool, Linear(C4, 176)
    att = (c4 * 256 + 256 + 256 * 4 + 4) if attention else 0
    hyper_in = c1 + c2 + c3 + c4 if multiscale else c4
    wide, narrow = conv1_widths
    conv1 = (hyper_in * wide + wide) + (wide * narrow + narrow) + (narrow * 112 + 112)
    # FC_i weights: 3x3 conv 112 -> in*out/49 channels (with bias).
    weight_convs = sum(112 * (i * o // 49) * 9 + i * o // 49 for i, o in [(224, 112), (112, 56), (56, 28), (28, 14)])
    # FC1..FC4 biases, FC5 weight (14) and bias (1): Linear(112, n) on the pooled hyper map.
    linears = sum(112 * n + n for n in [112, 56, 28, 14, 14, 1])
    return lda + att + conv1 + weight_convs + linears


SIZES = {
    "hyperiqa_resnet50": ("resnet50", (256, 512, 1024, 2048), (1024, 512), False, False),
    "hyperiqa_lite0": ("lite0", (24, 40, 112, 320), (1024, 512), False, False),
    "smart_iqa_tiny": ("swin_tiny", (96, 192, 384, 768), (512, 256), True, True),
    "smart_iqa_small": ("swin_small", (96, 192, 384, 768), (512, 256), True, True),
    "smart_iqa_base": ("swin_base", (128, 256, 512, 1024), (512, 256), True, True),
    "smart_iqa_lite0": ("lite0", (24, 40, 112, 320), (512, 256), True, True),
}


@pytest.fixture(scope="module")
def built():
    """Each registered model, built once (random weights, eval mode)."""
    cache = {}

    def get(name):
        if name not in cache:
            torch.manual_seed(0)
            cache[name] = create_model(name, pretrained=False).eval()
        return cache[name]

    return get


@pytest.fixture(scope="module")
def patches():
    torch.manual_seed(1)
    return torch.randn(2, 3, 224, 224)


def n_params(module) -> int:
    return sum(p.numel() for p in module.parameters())


# ---------------------------------------------------------------- registry

def test_registry_lists_every_model_and_filters_by_pattern():
    assert list_models() == ALL_MODELS
    assert list_models("smart_iqa_*") == ["smart_iqa_base", "smart_iqa_lite0", "smart_iqa_small", "smart_iqa_tiny"]
    assert set(model_options("smart_iqa_tiny")) == {"multiscale", "attention", "drop_path_rate", "dropout",
                                                    "attention_dropout"}


def test_unknown_model_or_option_is_one_line_config_error():
    with pytest.raises(ConfigError) as error:
        create_model("hyperiqa_resnet18")
    message = str(error.value)
    assert "hyperiqa_resnet18" in message and "\n" not in message
    assert all(name in message for name in ALL_MODELS)
    with pytest.raises(ConfigError, match="no option 'multi_scale'.*multiscale"):
        create_model("smart_iqa_lite0", multi_scale=False)
    with pytest.raises(ConfigError, match="multiscale=True"):
        create_model("smart_iqa_lite0", multiscale=False, attention=True)


# ---------------------------------------------------------------- every model

@pytest.mark.parametrize("name", MODEL_CASES)
def test_every_model_builds_and_scores_a_batch(built, patches, name):
    model = built(name)
    with torch.no_grad():
        scores = model(patches)
        stages = model.forward_features(patches)
        from_stages = model.forward_head(stages)
    assert scores.shape == (2,) and scores.dtype == torch.float32
    assert torch.isfinite(scores).all()
    assert [tuple(s.shape[1:]) for s in stages] == [
        (c, 224 // r, 224 // r) for c, r in zip(model.stage_channels, (4, 8, 16, 32))]
    torch.testing.assert_close(from_stages, scores, rtol=0, atol=0)
    assert model.model_name == name and model.patch_size == 224
    assert len(model.mean) == len(model.std) == 3


@pytest.mark.parametrize("name", MODEL_CASES)
def test_parameter_count_equals_the_hand_derivation(built, name):
    backbone, channels, conv1_widths, multiscale, attention = SIZES[name]
    model = built(name)
    head = head_params_by_hand(*channels, conv1_widths, multiscale, attention)
    assert n_params(model.backbone) == trunk_params_by_hand(backbone)
    assert n_params(model) - n_params(model.backbone) == head
    assert n_params(model) == trunk_params_by_hand(backbone) + head
    # model_trunk tells it without building the weights (the probe chapters pair heads with it).
    assert model_trunk(name) == model.backbone.name == backbone


def test_hyperiqa_resnet50_sizes_spelled_out(built):
    model = built("hyperiqa_resnet50")
    # LDA 475,360 + conv1 2,680,432 + weight convs 686,120 + bias/FC5 linears 25,425.
    assert n_params(model) - n_params(model.backbone) == 475_360 + 2_680_432 + 686_120 + 25_425 == 3_867_337
    assert n_params(model) == 23_508_032 + 3_867_337  # about 27.4M, as the paper reports
    assert model.conv1[0].in_channels == 2048 and model.multiscale_attention is None


def test_ablation_switches_change_conv1_input():
    with torch.device("meta"):  # structure only: no weights allocated
        full = create_model("smart_iqa_base")
        no_attention = create_model("smart_iqa_base", attention=False)
        last_stage = create_model("smart_iqa_base", multiscale=False)
    assert full.conv1[0].in_channels == 128 + 256 + 512 + 1024 == 1920
    assert full.multiscale_attention is not None
    assert no_attention.conv1[0].in_channels == 1920 and no_attention.multiscale_attention is None
    assert last_stage.conv1[0].in_channels == 1024 and last_stage.multiscale_attention is None
    assert last_stage.model_options["attention"] is False


@pytest.mark.slow
def test_switched_variants_score_a_batch(patches):
    torch.manual_seed(0)
    for options in (dict(attention=False), dict(multiscale=False)):
        model = create_model("smart_iqa_lite0", **options).eval()
        with torch.no_grad():
            scores = model(patches)
        assert scores.shape == (2,) and torch.isfinite(scores).all()


# ---------------------------------------------------------------- faithful to the original

def original_hyperiqa_head(model: HyperIQA, stages):
    """The original code's order of operations, with this model's weights.

    LDA: 1x1 conv on the full map, then AvgPool2d(7, stride=7); hyper
    network on layer4; target layers run as grouped 1x1 convolutions.
    """
    n = stages[0].shape[0]
    vec = []
    for branch, stage in zip(model.lda, stages):
        x = branch.reduce(stage) if branch.reduce is not None else stage
        vec.append(branch.fc(F.avg_pool2d(x, 7, stride=7).view(n, -1)))
    vec = torch.cat(vec, 1).view(n, 224, 1, 1)
    hyper = model.conv1(stages[3])
    pooled = F.adaptive_avg_pool2d(hyper, 1).view(n, 112)
    sizes = [224, 112, 56, 28, 14]
    params = []
    for k, (w_conv, b_fc) in enumerate(zip(model.weight_generators, model.bias_generators)):
        params.append((w_conv(hyper).view(n, sizes[k + 1], sizes[k], 1, 1), b_fc(pooled).view(n, sizes[k + 1])))
    params.append((model.fc5_weight_generator(pooled).view(n, 1, 14, 1, 1), model.fc5_bias_generator(pooled).view(n, 1)))
    q = vec
    for k, (w, b) in enumerate(params):
        q = F.conv2d(q.view(1, n * q.shape[1], 1, 1), w.reshape(n * w.shape[1], w.shape[2], 1, 1),
                     b.reshape(-1), groups=n).view(n, w.shape[1], 1, 1)
        if k < 4:
            q = torch.sigmoid(q)
    return q.view(n)


def test_hyperiqa_head_matches_the_original_formulation(built):
    model = built("hyperiqa_resnet50")
    torch.manual_seed(2)
    stages = [torch.randn(3, c, s, s).relu() for c, s in zip((256, 512, 1024, 2048), (56, 28, 14, 7))]
    with torch.no_grad():
        torch.testing.assert_close(model.forward_head(stages), original_hyperiqa_head(model, stages),
                                   rtol=1e-4, atol=1e-5)


def test_dropout_only_in_the_seed_head_and_only_in_training(built):
    torch.manual_seed(3)
    for name, has_dropout in (("hyperiqa_lite0", False), ("smart_iqa_lite0", True)):
        model = built(name)
        stages = [torch.randn(2, c, s, s) for c, s in zip(model.stage_channels, (56, 28, 14, 7))]
        with torch.no_grad():
            evaluated = model.forward_head(stages)
            model.train()
            trained = model.forward_head(stages)
            model.eval()
        assert (not torch.equal(evaluated, trained)) == has_dropout


# ---------------------------------------------------------------- attention

def test_attention_weights_sum_to_one_and_a_hook_reads_them(built, patches):
    model = built("smart_iqa_tiny")
    seen = []
    handle = model.multiscale_attention.register_forward_hook(lambda module, args, out: seen.append(out[1]))
    try:
        with torch.no_grad():
            stages = model.forward_features(patches)
            model(patches)
    finally:
        handle.remove()
    (weights,) = seen
    assert weights.shape == (2, 4)
    torch.testing.assert_close(weights.sum(dim=1), torch.ones(2))
    # The same weights by hand: MLP on the global average of the last stage, then softmax.
    net = model.multiscale_attention.net
    context = stages[3].mean(dim=(2, 3))
    logits = net[3](torch.relu(net[0](context)))
    torch.testing.assert_close(weights, torch.softmax(logits, dim=1))


def test_attention_starts_near_uniform():
    torch.manual_seed(0)
    from iqalib.models import MultiScaleAttention

    attention = MultiScaleAttention((8, 8, 8, 8))
    for layer in (attention.net[0], attention.net[3]):
        assert torch.count_nonzero(layer.bias) == 0
        # N(0, 0.01): the sample std of >= 1,024 weights is within 10 standard errors (~2e-4 each).
        assert abs(layer.weight.std().item() - 0.01) < 0.002
    maps = [torch.rand(5, 8, 7, 7) for _ in range(4)]
    fused, weights = attention.eval()(maps)
    assert fused.shape == (5, 32, 7, 7)
    torch.testing.assert_close(fused[:, 8:16], maps[1] * weights[:, 1, None, None, None])


# ---------------------------------------------------------------- precision and layout

@pytest.mark.slow
def test_channels_last_and_bf16_autocast(built, patches):
    for name in ("smart_iqa_tiny", "hyperiqa_lite0"):  # NHWC trunk (Swin) and NCHW trunk
        model = built(name)
        with torch.no_grad():
            reference = model(patches)
            model.to(memory_format=torch.channels_last)
            try:
                channels_last = model(patches.contiguous(memory_format=torch.channels_last))
                # One patch: CPUs without bf16 units (like CI's) emulate it slowly.
                with torch.autocast("cpu", dtype=torch.bfloat16):
                    low = model(patches[:1].contiguous(memory_format=torch.channels_last))
            finally:
                model.to(memory_format=torch.contiguous_format)
        torch.testing.assert_close(channels_last, reference, rtol=1e-4, atol=1e-5)
        assert low.shape == (1,) and low.dtype == torch.float32 and torch.isfinite(low).all()


# ---------------------------------------------------------------- training helpers

def test_param_groups_follow_the_original(built):
    model = built("hyperiqa_resnet50")
    groups = {g["name"]: g for g in model.param_groups(2e-5, 10, 5e-4)}
    assert groups["head"]["lr"] == pytest.approx(2e-4) and groups["trunk"]["lr"] == 2e-5
    head_ids = {id(p) for p in groups["head"]["params"]}
    trunk_ids = {id(p) for p in groups["trunk"]["params"]}
    assert head_ids.isdisjoint(trunk_ids)
    assert head_ids | trunk_ids == {id(p) for p in model.parameters()}
    # LDA trains at the trunk lr, as in the original; the hyper network at 10x.
    assert {id(p) for p in model.lda.parameters()} <= trunk_ids
    assert {id(p) for p in model.conv1.parameters()} <= head_ids
    assert {id(p) for p in model.weight_generators.parameters()} <= head_ids
    split = {g["name"]: g for g in model.param_groups(1e-5, 10, 0.0, lda_with_trunk=False)}
    assert {id(p) for p in model.lda.parameters()} <= {id(p) for p in split["head"]["params"]}
    defaults = model.default_train_config()
    assert (defaults["optimizer"], defaults["trunk_lr"], defaults["weight_decay"], defaults["batch_size"],
            defaults["train_patches"]) == ("adam", 2e-5, 5e-4, 96, 25)
    seed = built("smart_iqa_lite0").default_train_config()
    assert (seed["optimizer"], seed["trunk_lr"], seed["weight_decay"], seed["grad_clip"], seed["epochs"]) == (
        "adamw", 5e-7, 2e-4, 1.0, 10)


def test_frozen_backbone_is_left_out_and_stays_in_eval():
    torch.manual_seed(0)
    model = create_model("smart_iqa_lite0").freeze_backbone()
    model.train()
    assert not model.backbone.training and model.conv1.training
    groups = {g["name"]: g for g in model.param_groups(1e-4, 10)}
    trainable = sum(p.numel() for g in groups.values() for p in g["params"])
    assert trainable == n_params(model) - n_params(model.backbone)
    assert all(not p.requires_grad for p in model.backbone.parameters())


def test_original_step_schedule():
    # Epoch 0 and epochs 1-6: 10x; 7-9: 10x of lr/10; 10-12: lr/10; 13-15: lr/100 (trunk fixed).
    expected_head = [2e-4] * 7 + [2e-5] * 3 + [2e-6] * 3 + [2e-7] * 3
    for epoch, head in enumerate(expected_head):
        trunk_lr, head_lr = hyperiqa_step_lr(epoch, 2e-5, 10)
        assert trunk_lr == 2e-5 and head_lr == pytest.approx(head)


# ---------------------------------------------------------------- weights

def classify(model, image: np.ndarray) -> int:
    """timm's evaluation transform: bicubic resize to 224 / 0.875, centre crop 224, normalise."""
    cfg = model.pretrained_cfg
    x = torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255
    scale = round(224 / cfg["crop_pct"]) / min(x.shape[-2:])
    x = F.interpolate(x, size=[round(s * scale) for s in x.shape[-2:]], mode="bicubic", antialias=True)
    top, left = (x.shape[-2] - 224) // 2, (x.shape[-1] - 224) // 2
    x = x[..., top:top + 224, left:left + 224]
    x = (x - torch.tensor(cfg["mean"]).view(3, 1, 1)) / torch.tensor(cfg["std"]).view(3, 1, 1)
    with torch.no_grad():
        return int(model(x).argmax())


def test_offline_lite0_weights_classify_known_photos():
    from skimage import data

    classifier = lite0_classifier()
    assert classifier.pretrained_cfg["mean"] == (0.5, 0.5, 0.5)
    assert classify(classifier, data.chelsea()) in {281, 282, 285}  # tabby, tiger cat, Egyptian cat
    assert classify(classifier, data.coffee()) in {967, 968}  # espresso, cup
    # The trunk of a pretrained lite0 model carries the same weights.
    trunk = create_model("hyperiqa_lite0", pretrained=True).backbone.trunk.state_dict()
    full = classifier.state_dict()
    assert all(torch.equal(value, full[key]) for key, value in trunk.items())


class NotATensor:
    """An arbitrary pickled object, which a weights-only load must refuse."""


def test_pretrained_path_loads_a_classifier_or_trunk_state_dict(tmp_path):
    import timm

    torch.manual_seed(4)
    classifier = timm.create_model("tf_efficientnet_lite0")
    torch.save(classifier.state_dict(), tmp_path / "classifier.pth")
    model = create_model("smart_iqa_lite0", pretrained=tmp_path / "classifier.pth")
    loaded = model.backbone.trunk.state_dict()
    assert all(torch.equal(value, classifier.state_dict()[key]) for key, value in loaded.items())

    torch.save({"state_dict": loaded}, tmp_path / "trunk.pth")
    again = create_model("hyperiqa_lite0", pretrained=str(tmp_path / "trunk.pth"))
    assert all(torch.equal(value, loaded[key]) for key, value in again.backbone.trunk.state_dict().items())

    with pytest.raises(CheckpointError, match="missing.pth: no such weights file") as error:
        create_model("hyperiqa_lite0", pretrained=tmp_path / "missing.pth")
    assert "pretrained=/path/to/weights.pth" in str(error.value)
    torch.save({"weights": torch.zeros(1), "code": NotATensor()}, tmp_path / "pickled.pth")
    with pytest.raises(CheckpointError, match="pickled.pth: cannot read weights"):
        create_model("hyperiqa_lite0", pretrained=tmp_path / "pickled.pth")  # weights_only refuses objects
    torch.save({"fc.weight": torch.zeros(3, 3)}, tmp_path / "other.pth")
    with pytest.raises(CheckpointError, match="other.pth: does not fit") as error:
        create_model("hyperiqa_lite0", pretrained=tmp_path / "other.pth")
    assert "\n" not in str(error.value)


def test_swin_classifier_names_map_onto_the_trunk():
    """timm's feature wrapper renames Swin's layers.0 to layers_0; a hub state dict must still load."""
    import timm

    with torch.device("meta"):
        full = timm.create_model("swin_tiny_patch4_window7_224").state_dict()
        trunk = timm.create_model("swin_tiny_patch4_window7_224", features_only=True).state_dict()
    names = {key: _source_key(key, full) for key in trunk}
    assert None not in names.values()
    assert names["layers_0.blocks.0.norm1.weight"] == "layers.0.blocks.0.norm1.weight"
    assert all(full[name].shape == trunk[key].shape for key, name in names.items())


def test_failed_hub_download_names_the_path_option(monkeypatch):
    import timm.models._builder as builder

    def offline(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(builder, "load_pretrained", offline)  # no network is attempted
    with pytest.raises(DownloadError) as error:
        create_model("smart_iqa_tiny", pretrained=True)
    message = str(error.value)
    assert "\n" not in message
    assert "swin_tiny_patch4_window7_224" in message and "pretrained=/path/to/weights.pth" in message


# ---------------------------------------------------------------- complexity

def test_flops_of_a_layer_by_hand():
    conv = torch.nn.Conv2d(3, 4, 1)
    result = model_complexity(conv, input_size=8)
    assert result == dict(params=3 * 4 + 4, trainable=16, flops=2 * 3 * 4 * 8 * 8)


def test_hyperiqa_flops_are_trunk_plus_head_by_hand(built):
    model = built("hyperiqa_resnet50")
    total = model_complexity("hyperiqa_resnet50")
    trunk = model_complexity(model.backbone)
    pixels = 49  # the 7x7 hyper-network grid
    head = 2 * (
        (16 * 256 * 64 + 32 * 512 * 16 + 64 * 1024 * 4)             # LDA 1x1 convs on the pooled grids
        + (1024 * 16 + 512 * 16 + 256 * 16 + 2048 * 176)            # LDA linears
        + pixels * (2048 * 1024 + 1024 * 512 + 512 * 112)           # conv1
        + pixels * 9 * 112 * (512 + 128 + 32 + 8)                   # FC1..FC4 weight convs
        + 112 * (112 + 56 + 28 + 14 + 14 + 1)                       # bias and FC5 linears
        + (224 * 112 + 112 * 56 + 56 * 28 + 28 * 14 + 14 * 1))      # the target net itself
    assert total["params"] == n_params(model)
    assert total["flops"] == trunk["flops"] + head
