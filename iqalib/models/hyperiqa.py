"""The HyperIQA family: HyperIQA (Su et al., CVPR 2020) and SMART-IQA on any four-stage trunk.

One image patch goes through a trunk (:class:`~iqalib.models.backbones.Backbone`)
that yields four stage maps. Two things are read from them:

* the **target-net input**: four local distortion-aware (LDA) branches, one
  per stage, each a 1x1 conv (no bias; none on the last stage), an average
  pooling to a small grid (8x8, 4x4, 2x2, 1x1 at 224x224: the original's
  ``AvgPool2d(7, stride=7)``), flatten and a Linear layer, giving
  16 + 16 + 16 + 176 = 224 numbers;
* the **hyper network**: a 7x7 map (the last stage, or with ``multiscale``
  all four stages pooled to 7x7 and concatenated, weighted by
  :class:`~iqalib.models.attention.MultiScaleAttention` when ``attention``),
  reduced by ``conv1`` (three 1x1 convs with ReLU) to 112 channels. From that
  map, 3x3 convs generate the weights of the target layers FC1..FC4 (in*out/49
  channels each, reshaped to (out, in)) and Linear layers on its global
  average generate their biases and FC5's weight and bias.

The target net 224 -> 112 -> 56 -> 28 -> 14 -> 1 (sigmoid after the first
four layers) then runs with those per-image weights (batched matmul) and
returns the quality score.

The 1x1 LDA convs are applied after pooling rather than before: both are
linear, so the result is identical, and the head can run on pooled stage
maps (:meth:`HyperIQA.pool_stages`), which is what a frozen-trunk feature
cache stores.

Registered models: ``hyperiqa_resnet50`` (faithful to the original),
``smart_iqa_tiny`` / ``_small`` / ``_base`` (the seed's Swin model) and the
``hyperiqa_lite0`` / ``smart_iqa_lite0`` variants on EfficientNet-Lite0.
"""
from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from iqalib.errors import ConfigError
from iqalib.models.attention import MultiScaleAttention
from iqalib.models.backbones import Backbone
from iqalib.models.registry import register_model

LDA_REDUCED_CHANNELS = (16, 32, 64)  # 1x1 conv widths of LDA branches 1..3; branch 4 has none
LDA_GRIDS = (8, 4, 2, 1)  # AvgPool2d(7, stride=7) on 56, 28, 14, 7 pixels
LDA_OUT = (16, 16, 16, 176)  # 16 + 16 + 16 + 176 = 224 = target-net input
TARGET_SIZES = (224, 112, 56, 28, 14)  # FC1..FC4 map TARGET_SIZES[i] -> TARGET_SIZES[i + 1]; FC5: 14 -> 1
HYPER_CHANNELS = 112
FEATURE_SIZE = 7
PATCH_SIZE = 224

HYPERIQA_TRAINING = dict(
    # Su et al.'s train_test_IQA.py / HyerIQASolver.py.
    optimizer="adam",
    trunk_lr=2e-5,
    head_lr_multiplier=10.0,
    lda_with_trunk=True,  # the LDA branches live in the original's ResNet module
    weight_decay=5e-4,
    schedule="hyperiqa_step",  # see hyperiqa_step_lr
    grad_clip=None,
    loss="l1",  # on raw MOS
    batch_size=96,
    train_patches=25,
    test_patches=25,
    patch_size=PATCH_SIZE,
    epochs=16,
    rounds=10,  # 80/20 random splits, median reported
)

SMART_IQA_TRAINING = dict(
    # The seed's SmartIQASolver: AdamW, cosine schedule, clipping.
    optimizer="adamw",
    trunk_lr=5e-7,
    head_lr_multiplier=10.0,
    lda_with_trunk=True,  # the seed's LDA branches also live in its backbone module
    weight_decay=2e-4,
    schedule="cosine",
    eta_min=1e-6,  # the seed's CosineAnnealingLR floor: above the trunk lr, so it raises it
    grad_clip=1.0,
    loss="l1",
    batch_size=32,
    train_patches=20,
    test_patches=20,
    patch_size=PATCH_SIZE,
    epochs=10,
    rounds=1,  # the seed reports KonIQ-10k's official split
)


def hyperiqa_step_lr(epoch: int, trunk_lr: float = 2e-5, head_lr_multiplier: float = 10.0) -> tuple[float, float]:
    """(trunk lr, head lr) of the original HyperIQA schedule for 0-based ``epoch``.

    After epoch t the original sets the hyper-network lr to
    ``trunk_lr / 10 ** (t // 6)`` times the multiplier, and drops the
    multiplier to 1 once t > 8; the trunk keeps ``trunk_lr`` throughout.
    """
    if epoch == 0:
        return trunk_lr, trunk_lr * head_lr_multiplier
    t = epoch - 1
    return trunk_lr, trunk_lr / 10 ** (t // 6) * (head_lr_multiplier if t <= 8 else 1.0)


class LocalDistortionAware(nn.Module):
    """One LDA branch on a stage map already pooled to its grid: 1x1 conv (optional), flatten, Linear."""

    def __init__(self, in_channels: int, reduced_channels: int | None, grid: int, out_features: int):
        super().__init__()
        self.grid = grid
        self.reduce = nn.Conv2d(in_channels, reduced_channels, 1, bias=False) if reduced_channels else None
        width = reduced_channels or in_channels
        self.fc = nn.Linear(width * grid * grid, out_features)
        if self.reduce is not None:
            nn.init.kaiming_normal_(self.reduce.weight)
        nn.init.kaiming_normal_(self.fc.weight)

    def forward(self, pooled: torch.Tensor) -> torch.Tensor:
        x = self.reduce(pooled) if self.reduce is not None else pooled
        return self.fc(x.flatten(1))


class HyperIQA(nn.Module):
    """HyperIQA on a four-stage trunk, with SMART-IQA's switches.

    Arguments: ``backbone`` (a :data:`~iqalib.models.backbones.BACKBONES` name),
    ``pretrained`` (trunk weights: False, True or a path),
    ``multiscale`` (hyper network on all four stages instead of the last),
    ``attention`` (weigh the stages with :class:`MultiScaleAttention`; only
    with ``multiscale``; without it the pooled stages are concatenated as
    they are), ``conv1_widths`` (the two hidden widths of ``conv1``),
    ``dropout`` (after ``conv1`` and after target layers FC1..FC3, in
    training only), ``attention_dropout`` and ``drop_path_rate`` (stochastic
    depth in the trunk; None keeps timm's default).

    ``forward(x)`` takes normalised patches (N, 3, 224, 224), normalised with
    ``model.mean`` / ``model.std``, and returns scores (N,) in float32.
    ``forward_features(x)`` gives the four trunk stages, ``forward_head(stages)``
    the scores from them; ``pool_stages`` / ``forward_pooled`` split the head
    once more so a frozen trunk's output can be cached compactly.

    Training: ``default_train_config()`` gives the defaults of the original
    (HyperIQA) or the seed (SMART-IQA), ``param_groups(...)`` the optimizer
    groups. The original HyperIQA code builds its hyper-network group from a
    ``filter`` iterator that the first optimizer consumes; it re-creates the
    optimizer after every epoch, so from the second epoch on the hyper
    network (and its 10x lr) silently drops out of training. We do not
    reproduce that bug: the head is trained in every epoch.
    """

    def __init__(self, backbone: str, pretrained=False, *, multiscale: bool = False, attention: bool = False,
                 conv1_widths: tuple[int, int] = (1024, 512), dropout: float = 0.0,
                 attention_dropout: float = 0.5, drop_path_rate: float | None = None,
                 train_defaults: dict | None = None):
        super().__init__()
        if attention and not multiscale:
            raise ConfigError("attention=True weighs the four stages and needs multiscale=True; "
                              "set multiscale=True or attention=False")
        self.backbone = Backbone(backbone, pretrained=pretrained, drop_path_rate=drop_path_rate)
        channels = self.backbone.channels
        self.stage_channels = channels
        self.mean, self.std = self.backbone.mean, self.backbone.std
        self.patch_size = PATCH_SIZE
        self.multiscale, self.attention, self.dropout = bool(multiscale), bool(attention), float(dropout)
        self.train_defaults = dict(train_defaults or HYPERIQA_TRAINING)
        self.backbone_frozen = False

        reduced = LDA_REDUCED_CHANNELS + (None,)
        self.lda = nn.ModuleList(
            LocalDistortionAware(c, r, g, o) for c, r, g, o in zip(channels, reduced, LDA_GRIDS, LDA_OUT))

        self.multiscale_attention = (MultiScaleAttention(channels, dropout=attention_dropout)
                                     if self.attention else None)
        hyper_in = sum(channels) if self.multiscale else channels[-1]
        wide, narrow = conv1_widths
        self.conv1 = nn.Sequential(
            nn.Conv2d(hyper_in, wide, 1), nn.ReLU(inplace=True),
            nn.Conv2d(wide, narrow, 1), nn.ReLU(inplace=True),
            nn.Conv2d(narrow, HYPER_CHANNELS, 1), nn.ReLU(inplace=True),
        )
        self.hyper_dropout = nn.Dropout(self.dropout)

        # (in, out) of FC1..FC4; each in*out is a multiple of 7*7, so a 7x7 map of in*out/49 channels holds it.
        pairs = list(zip(TARGET_SIZES[:-1], TARGET_SIZES[1:]))
        self.weight_generators = nn.ModuleList(
            nn.Conv2d(HYPER_CHANNELS, fan_in * fan_out // FEATURE_SIZE ** 2, 3, padding=1) for fan_in, fan_out in pairs)
        self.bias_generators = nn.ModuleList(nn.Linear(HYPER_CHANNELS, fan_out) for _, fan_out in pairs)
        self.fc5_weight_generator = nn.Linear(HYPER_CHANNELS, TARGET_SIZES[-1])
        self.fc5_bias_generator = nn.Linear(HYPER_CHANNELS, 1)
        # The original initialises every generator weight (not conv1) with Kaiming normal.
        for module in [*self.weight_generators, *self.bias_generators,
                       self.fc5_weight_generator, self.fc5_bias_generator]:
            nn.init.kaiming_normal_(module.weight)

    # ------------------------------------------------------------ forward

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.forward_head(self.forward_features(x))

    def forward_features(self, x: torch.Tensor) -> list[torch.Tensor]:
        """The four NCHW trunk stages."""
        return self.backbone(x)

    def forward_head(self, stages) -> torch.Tensor:
        """Scores (N,) from the four trunk stages."""
        return self.forward_pooled(self.pool_stages(stages))

    @staticmethod
    def pool_stages(stages) -> tuple[torch.Tensor, ...]:
        """Everything the head reads from the stages: 8 small maps.

        The first four are the stages pooled to the LDA grids (8, 4, 2, 1),
        the last four the stages pooled to 7x7 (the hyper-network grid). At
        224x224 this is 7x smaller than the stages of ResNet-50 and 5x for
        Lite0, and the same for every head configuration of a trunk.
        """
        if len(stages) != 4:
            raise ValueError(f"expected 4 stage maps, got {len(stages)}")
        lda = [F.adaptive_avg_pool2d(s, g) for s, g in zip(stages, LDA_GRIDS)]
        grid = [F.adaptive_avg_pool2d(s, FEATURE_SIZE) for s in stages]
        return (*lda, *grid)

    def forward_pooled(self, pooled) -> torch.Tensor:
        """Scores (N,) from :meth:`pool_stages` output."""
        lda_maps, grid_maps = pooled[:4], pooled[4:]
        target_input = torch.cat([branch(m) for branch, m in zip(self.lda, lda_maps)], dim=1)
        if not self.multiscale:
            hyper_input = grid_maps[-1]
        elif self.multiscale_attention is not None:
            # lda_maps[-1] is the last stage's global average (1x1 pool).
            hyper_input, _ = self.multiscale_attention(grid_maps, context=lda_maps[-1].flatten(1))
        else:
            hyper_input = torch.cat(list(grid_maps), dim=1)
        hyper = self.hyper_dropout(self.conv1(hyper_input))
        return self.target_net(target_input, self.target_weights(hyper)).float()

    def target_weights(self, hyper: torch.Tensor) -> list[tuple[torch.Tensor, torch.Tensor]]:
        """Per-image (weight (N, out, in), bias (N, out)) of FC1..FC5 from the 112x7x7 hyper map."""
        n = hyper.shape[0]
        summary = hyper.mean(dim=(2, 3))
        layers = []
        for (fan_in, fan_out), w_gen, b_gen in zip(zip(TARGET_SIZES[:-1], TARGET_SIZES[1:]),
                                                   self.weight_generators, self.bias_generators):
            # reshape (not view): the conv output may be channels_last; the original's order is NCHW.
            layers.append((w_gen(hyper).reshape(n, fan_out, fan_in), b_gen(summary)))
        layers.append((self.fc5_weight_generator(summary).reshape(n, 1, TARGET_SIZES[-1]),
                       self.fc5_bias_generator(summary)))
        return layers

    def target_net(self, x: torch.Tensor, layers) -> torch.Tensor:
        """Run the generated target net: sigmoid after FC1..FC4, dropout after FC1..FC3 in training."""
        h = x
        for i, (weight, bias) in enumerate(layers):
            h = torch.bmm(weight, h.unsqueeze(2)).squeeze(2) + bias
            if i < len(layers) - 1:
                h = torch.sigmoid(h)
            if i < len(layers) - 2 and self.dropout:
                h = F.dropout(h, self.dropout, training=self.training)
        return h.squeeze(1)

    # ------------------------------------------------------------ training

    def default_train_config(self) -> dict:
        """The original's (HyperIQA) or the seed's (SMART-IQA) training defaults."""
        return copy.deepcopy(self.train_defaults)

    def head_modules(self) -> list[nn.Module]:
        """Everything but the trunk: LDA, attention, conv1 and the weight generators."""
        return [m for name, m in self.named_children() if name != "backbone"]

    def param_groups(self, trunk_lr: float, head_lr_multiplier: float = 10.0, weight_decay: float = 0.0,
                     lda_with_trunk: bool | None = None) -> list[dict]:
        """Optimizer parameter groups ``head`` (lr x multiplier) and ``trunk`` (lr).

        ``lda_with_trunk`` (default: the family's ``train_defaults``, True for
        both) puts the LDA branches in the trunk group, as both the original
        HyperIQA and the seed do (their LDA branches sit in the backbone
        module): only conv1, attention and the generators get the higher lr.
        Frozen parameters are left out; an empty group is dropped.
        """
        if lda_with_trunk is None:
            lda_with_trunk = self.train_defaults.get("lda_with_trunk", True)
        trunk_modules = [self.backbone, self.lda] if lda_with_trunk else [self.backbone]
        trunk_ids = {id(p) for m in trunk_modules for p in m.parameters()}
        trainable = [p for p in self.parameters() if p.requires_grad]
        groups = [
            dict(name="head", params=[p for p in trainable if id(p) not in trunk_ids],
                 lr=trunk_lr * head_lr_multiplier, weight_decay=weight_decay),
            dict(name="trunk", params=[p for p in trainable if id(p) in trunk_ids],
                 lr=trunk_lr, weight_decay=weight_decay),
        ]
        return [g for g in groups if g["params"]]

    def freeze_backbone(self, frozen: bool = True) -> "HyperIQA":
        """Stop training the trunk: no gradients, and it stays in eval mode (BatchNorm, drop path)."""
        self.backbone_frozen = bool(frozen)
        self.backbone.requires_grad_(not frozen)
        self.train(self.training)
        return self

    def train(self, mode: bool = True) -> "HyperIQA":
        super().train(mode)
        if self.backbone_frozen:
            self.backbone.eval()
        return self


# ---------------------------------------------------------------- registered models

def _build(name, backbone, pretrained, family: str, *, multiscale, attention, drop_path_rate, dropout,
           attention_dropout) -> HyperIQA:
    if attention is None:
        attention = bool(multiscale)
    options = dict(multiscale=multiscale, attention=attention, drop_path_rate=drop_path_rate,
                   dropout=dropout, attention_dropout=attention_dropout)
    original = family == "hyperiqa"
    model = HyperIQA(backbone, pretrained, conv1_widths=(1024, 512) if original else (512, 256),
                     train_defaults=HYPERIQA_TRAINING if original else SMART_IQA_TRAINING, **options)
    # What create_model needs to rebuild this model (e.g. from a checkpoint).
    model.model_name, model.model_options = name, options
    return model


@register_model
def hyperiqa_resnet50(pretrained=False, *, multiscale: bool = False, attention: bool | None = None,
                      drop_path_rate: float = 0.0, dropout: float = 0.0, attention_dropout: float = 0.5):
    """HyperIQA as published: ResNet-50, hyper network on layer4, no dropout."""
    return _build("hyperiqa_resnet50", "resnet50", pretrained, "hyperiqa",
                  multiscale=multiscale, attention=attention, drop_path_rate=drop_path_rate,
                  dropout=dropout, attention_dropout=attention_dropout)


@register_model
def hyperiqa_lite0(pretrained=False, *, multiscale: bool = False, attention: bool | None = None,
                   drop_path_rate: float = 0.0, dropout: float = 0.0, attention_dropout: float = 0.5):
    """HyperIQA's head on EfficientNet-Lite0 (offline ImageNet weights)."""
    return _build("hyperiqa_lite0", "lite0", pretrained, "hyperiqa",
                  multiscale=multiscale, attention=attention, drop_path_rate=drop_path_rate,
                  dropout=dropout, attention_dropout=attention_dropout)


@register_model
def smart_iqa_tiny(pretrained=False, *, multiscale: bool = True, attention: bool | None = None,
                   drop_path_rate: float = 0.3, dropout: float = 0.4, attention_dropout: float = 0.5):
    """SMART-IQA on Swin-T: four stages, stage attention, dropout 0.4, stochastic depth 0.3."""
    return _build("smart_iqa_tiny", "swin_tiny", pretrained, "smart_iqa",
                  multiscale=multiscale, attention=attention, drop_path_rate=drop_path_rate,
                  dropout=dropout, attention_dropout=attention_dropout)


@register_model
def smart_iqa_small(pretrained=False, *, multiscale: bool = True, attention: bool | None = None,
                    drop_path_rate: float = 0.3, dropout: float = 0.4, attention_dropout: float = 0.5):
    """SMART-IQA on Swin-S."""
    return _build("smart_iqa_small", "swin_small", pretrained, "smart_iqa",
                  multiscale=multiscale, attention=attention, drop_path_rate=drop_path_rate,
                  dropout=dropout, attention_dropout=attention_dropout)


@register_model
def smart_iqa_base(pretrained=False, *, multiscale: bool = True, attention: bool | None = None,
                   drop_path_rate: float = 0.3, dropout: float = 0.4, attention_dropout: float = 0.5):
    """SMART-IQA on Swin-B (the seed's main model)."""
    return _build("smart_iqa_base", "swin_base", pretrained, "smart_iqa",
                  multiscale=multiscale, attention=attention, drop_path_rate=drop_path_rate,
                  dropout=dropout, attention_dropout=attention_dropout)


@register_model
def smart_iqa_lite0(pretrained=False, *, multiscale: bool = True, attention: bool | None = None,
                    drop_path_rate: float = 0.0, dropout: float = 0.4, attention_dropout: float = 0.5):
    """SMART-IQA's head on EfficientNet-Lite0 (offline ImageNet weights; no stochastic depth)."""
    return _build("smart_iqa_lite0", "lite0", pretrained, "smart_iqa",
                  multiscale=multiscale, attention=attention, drop_path_rate=drop_path_rate,
                  dropout=dropout, attention_dropout=attention_dropout)
