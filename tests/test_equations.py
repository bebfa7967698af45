"""The book's equations of the model (chapters 3 and 4), written out in plain torch, give ``model(x)``.

Each step uses the model's parameters but none of its sub-modules' forward
methods (only the trunk is taken as given), with the sizes as the chapters
state them, so a change to the code that the equations do not describe fails
here.
"""
from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from iqalib.models import create_model

LDA_GRIDS = (8, 4, 2, 1)  # g_k
SIZES = (224, 112, 56, 28, 14, 1)  # n_0 .. n_5


def linear(layer, z):
    return z @ layer.weight.T + layer.bias


def attention_weights(model, stages):
    """e = M2(ReLU(M1 c)) on the context c = P_1(S_4); a_s = exp(e_s) / sum_k exp(e_k)."""
    m1, m2 = model.multiscale_attention.net[0], model.multiscale_attention.net[3]
    context = F.adaptive_avg_pool2d(stages[3], 1).flatten(1)
    logits = linear(m2, torch.clamp(linear(m1, context), min=0))
    return torch.exp(logits) / torch.exp(logits).sum(dim=1, keepdim=True)


def score_by_the_equations(model, x):
    stages = model.backbone(x)  # S_1 .. S_4
    v = []
    for branch, stage, grid in zip(model.lda, stages, LDA_GRIDS):
        pooled = F.adaptive_avg_pool2d(stage, grid)  # P_{g_k}(S_k)
        if branch.reduce is not None:
            pooled = F.conv2d(pooled, branch.reduce.weight)  # R_k, no bias
        v.append(linear(branch.fc, pooled.flatten(1)))  # L_k(vec(.))
    h = torch.cat(v, dim=1)
    assert h.shape[1] == SIZES[0]

    grids = [F.adaptive_avg_pool2d(s, 7) for s in stages]  # G_s = P_7(S_s)
    if model.multiscale_attention is not None:
        a = attention_weights(model, stages)
        torch.testing.assert_close(a.sum(dim=1), torch.ones(len(x)))
        hyper = torch.cat([a[:, s, None, None, None] * grids[s] for s in range(4)], dim=1)
    else:
        hyper = grids[3]  # G = P_7(S_4)
    for conv in [m for m in model.conv1 if isinstance(m, torch.nn.Conv2d)]:  # K_1, K_2, K_3
        hyper = torch.clamp(F.conv2d(hyper, conv.weight, conv.bias), min=0)
    assert hyper.shape[1:] == (112, 7, 7)
    mean = hyper.mean(dim=(2, 3))  # H bar

    for l in range(1, 5):
        u, b = model.weight_generators[l - 1], model.bias_generators[l - 1]
        weight = F.conv2d(hyper, u.weight, u.bias, padding=1).reshape(len(x), SIZES[l], SIZES[l - 1])
        h = 1 / (1 + torch.exp(-(torch.einsum("noi,ni->no", weight, h) + linear(b, mean))))
    w5 = linear(model.fc5_weight_generator, mean).reshape(len(x), 1, SIZES[4])
    return (torch.einsum("noi,ni->no", w5, h) + linear(model.fc5_bias_generator, mean)).squeeze(1)


@pytest.mark.parametrize("name", ["hyperiqa_lite0", "smart_iqa_lite0"])
def test_the_chapters_equations_give_the_models_score(name, one_thread):
    torch.manual_seed(0)
    model = create_model(name, pretrained=False).eval()
    x = torch.randn(2, 3, 224, 224)
    with torch.no_grad():
        torch.testing.assert_close(score_by_the_equations(model, x), model(x), rtol=1e-5, atol=1e-5)


def test_attention_weights_are_the_softmax_of_the_logits_and_sum_to_one(one_thread):
    torch.manual_seed(0)
    model = create_model("smart_iqa_lite0", pretrained=False).eval()
    # Logits far from the near-uniform start, so the softmax is tested where it is not flat.
    torch.nn.init.normal_(model.multiscale_attention.net[3].weight, std=1.0)
    seen = []
    handle = model.multiscale_attention.register_forward_hook(lambda m, args, out: seen.append(out[1]))
    x = torch.randn(3, 3, 224, 224)
    with torch.no_grad():
        model(x)
        by_hand = attention_weights(model, model.backbone(x))
    handle.remove()
    torch.testing.assert_close(seen[0], by_hand)
    torch.testing.assert_close(seen[0].sum(dim=1), torch.ones(3))
    assert float(seen[0].max() - seen[0].min()) > 0.05  # not the uniform 1/4 of the start
