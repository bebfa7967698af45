"""Attention over backbone stages: SMART-IQA's multi-scale fusion."""
from __future__ import annotations

import torch
from torch import nn


class MultiScaleAttention(nn.Module):
    """Weigh the four stage maps by image-dependent attention and concatenate them.

    A small MLP on the global average of the last (most semantic) stage,
    Linear(C4, 256) -> ReLU -> Dropout -> Linear(256, 4) -> Softmax, gives one
    weight per stage and image. Its linear layers start at N(0, 0.01) with zero
    bias, so the weights start close to uniform (1/4 each).

    ``forward(maps, context=None)`` takes the stage maps already pooled to a
    common grid (7x7) and returns ``(fused, weights)``: ``fused`` is the
    weighted maps concatenated along channels (N, sum(C), 7, 7) and
    ``weights`` is (N, 4), each row summing to 1. A forward hook on this module
    therefore sees the stage weights of every image. ``context`` is the
    global average of the last stage (N, C4); by default the mean of the last
    pooled map, which is the same thing when that stage is already 7x7
    (224x224 input).
    """

    def __init__(self, stage_channels, hidden: int = 256, dropout: float = 0.5):
        super().__init__()
        self.stage_channels = tuple(int(c) for c in stage_channels)
        self.net = nn.Sequential(
            nn.Linear(self.stage_channels[-1], hidden),
            nn.ReLU(inplace=True),
            nn.Dropout(dropout),
            nn.Linear(hidden, len(self.stage_channels)),
            nn.Softmax(dim=1),
        )
        for layer in self.net:
            if isinstance(layer, nn.Linear):
                nn.init.normal_(layer.weight, mean=0.0, std=0.01)
                nn.init.zeros_(layer.bias)

    def forward(self, maps, context: torch.Tensor | None = None):
        if context is None:
            context = maps[-1].mean(dim=(2, 3))
        weights = self.net(context.flatten(1))
        fused = torch.cat([m * weights[:, i, None, None, None].to(m.dtype) for i, m in enumerate(maps)], dim=1)
        return fused, weights
