"""Training losses: each against a slow, loop-by-loop re-derivation, gradients, edge cases, the registry."""
from __future__ import annotations

import itertools
import math

import numpy as np
import pytest
import torch
from scipy import stats

from iqalib.config import from_dict
from iqalib.errors import ConfigError
from iqalib.losses import (DEFAULT_SIGMA, average_ranks, create_loss, list_losses, loss_info, loss_options,
                           soft_ranks)

RNG = np.random.default_rng(7)
PRED = RNG.normal(50, 15, 9)
MOS = np.round(RNG.uniform(0, 100, 9), 0)
MOS[3] = MOS[5]  # one tie: two crops of one image
STD = RNG.uniform(5, 20, 9)


def as_tensor(values, dtype=torch.float64, grad=False):
    return torch.tensor(np.asarray(values, dtype=np.float64), dtype=dtype, requires_grad=grad)


def value(name, pred=PRED, mos=MOS, std=None, **options):
    std = None if std is None else as_tensor(std)
    return float(create_loss(name, **options)(as_tensor(pred), as_tensor(mos), std))


def phi(x):
    return 0.5 * (1 + math.erf(x / math.sqrt(2)))


def pearson(x, y):
    x, y = np.asarray(x, float), np.asarray(y, float)
    xc, yc = x - x.mean(), y - y.mean()
    return float((xc * yc).sum() / (math.sqrt((xc ** 2).sum()) * math.sqrt((yc ** 2).sum()) + 1e-8))


# ----------------------------------------------------------- slow re-derivations
def test_regression_losses_are_the_textbook_formulas():
    errors = PRED - MOS
    assert value("l1") == pytest.approx(np.abs(errors).mean(), rel=1e-12)
    assert value("mse") == pytest.approx((errors ** 2).mean(), rel=1e-12)
    huber = [0.5 * e * e if abs(e) < 1 else abs(e) - 0.5 for e in errors]
    assert value("smooth_l1") == pytest.approx(np.mean(huber), rel=1e-12)


@pytest.mark.parametrize("margin", [1.0, 7.5])
def test_ranking_hinge_matches_a_loop_over_pairs(margin):
    terms = []
    for i, j in itertools.combinations(range(len(PRED)), 2):
        if MOS[i] == MOS[j]:
            continue  # pairs of equal MOS say nothing about order
        better, worse = (i, j) if MOS[i] > MOS[j] else (j, i)
        terms.append(max(0.0, margin - (PRED[better] - PRED[worse])))
    assert len(terms) == math.comb(len(PRED), 2) - 1
    assert value("ranking", margin=margin) == pytest.approx(np.mean(terms), rel=1e-12)


def fidelity_by_loops(pred, mos, std=None, sigma=DEFAULT_SIGMA):
    terms = []
    for i, j in itertools.combinations(range(len(pred)), 2):
        scale = math.sqrt(std[i] ** 2 + std[j] ** 2) if std is not None else math.sqrt(2) * sigma
        p_star, p = phi((mos[i] - mos[j]) / scale), phi((pred[i] - pred[j]) / scale)
        terms.append(1 - math.sqrt(p_star * p + 1e-8) - math.sqrt((1 - p_star) * (1 - p) + 1e-8))
    return np.mean(terms)


def test_fidelity_matches_a_loop_over_pairs_with_a_fixed_scale_and_with_rater_std():
    assert value("fidelity") == pytest.approx(fidelity_by_loops(PRED, MOS), rel=1e-10)
    assert value("fidelity", sigma=3.0) == pytest.approx(fidelity_by_loops(PRED, MOS, sigma=3.0), rel=1e-10)
    assert value("fidelity", std=STD) == pytest.approx(fidelity_by_loops(PRED, MOS, std=STD), rel=1e-10)
    assert value("fidelity", std=STD) != pytest.approx(value("fidelity"), rel=1e-3)


def test_fidelity_is_smallest_at_the_mos_up_to_an_offset():
    at_mos = value("fidelity", pred=MOS + 12.0)
    assert at_mos < 1e-3  # only the eps inside the square roots remains
    assert at_mos < value("fidelity", pred=MOS * 1.5) and at_mos < value("fidelity", pred=PRED)


def test_soft_ranks_tend_to_average_ranks_and_the_soft_srcc_loss_to_one_minus_srcc():
    x = as_tensor(PRED)
    assert torch.allclose(soft_ranks(x, tau=1e-4), as_tensor(stats.rankdata(PRED)), atol=1e-6)
    assert np.allclose(average_ranks(as_tensor(MOS)).numpy(), stats.rankdata(MOS))
    assert value("soft_srcc", tau=1e-4) == pytest.approx(1 - stats.spearmanr(PRED, MOS)[0], abs=1e-6)


def test_soft_srcc_matches_explicit_sigmoid_sums():
    tau = 0.3
    z = (PRED - PRED.mean()) / (PRED.std() + 1e-8)
    ranks = [0.5 + sum(1 / (1 + math.exp(-(z[i] - z[j]) / tau)) for j in range(len(z))) for i in range(len(z))]
    assert value("soft_srcc", tau=tau) == pytest.approx(1 - pearson(ranks, stats.rankdata(MOS)), rel=1e-10)


def test_soft_srcc_and_plcc_ignore_an_increasing_affine_change_of_the_predictions():
    for name in ("soft_srcc", "plcc"):
        assert value(name, pred=3 * PRED - 40) == pytest.approx(value(name), rel=1e-9)


def test_plcc_loss_is_one_minus_pearson():
    assert value("plcc") == pytest.approx(1 - stats.pearsonr(PRED, MOS)[0], rel=1e-7)


def test_l1_rank_is_l1_plus_alpha_times_ranking():
    expected = value("l1") + 0.25 * value("ranking", margin=2.0)
    assert value("l1+rank", alpha=0.25, margin=2.0) == pytest.approx(expected, rel=1e-12)
    assert value("l1+rank", alpha=0.0) == pytest.approx(value("l1"), rel=1e-12)


# ----------------------------------------------------------------- gradients
@pytest.mark.parametrize("name, options", [("mse", {}), ("fidelity", {}), ("fidelity", {"sigma": 4.0}),
                                           ("soft_srcc", {}), ("soft_srcc", {"tau": 0.5}), ("plcc", {})])
def test_smooth_losses_have_the_gradient_of_finite_differences(name, options):
    loss = create_loss(name, **options)
    pred = as_tensor(PRED, grad=True)
    assert torch.autograd.gradcheck(lambda p: loss(p, as_tensor(MOS)), (pred,), eps=1e-6, atol=1e-5)


def test_fidelity_gradient_with_rater_std_matches_finite_differences():
    loss = create_loss("fidelity")
    assert torch.autograd.gradcheck(lambda p: loss(p, as_tensor(MOS), as_tensor(STD)),
                                    (as_tensor(PRED, grad=True),), eps=1e-6, atol=1e-5)


@pytest.mark.parametrize("name", ["l1", "ranking", "l1+rank"])
def test_piecewise_linear_losses_have_the_gradient_of_finite_differences_away_from_kinks(name):
    # Predictions on a fine grid of 0.37 steps never sit on a kink (|p - t| = 0 or a hinge at margin 1).
    pred = as_tensor(np.arange(len(MOS)) * 7.37 + 0.13, grad=True)
    loss = create_loss(name)
    assert torch.autograd.gradcheck(lambda p: loss(p, as_tensor(MOS)), (pred,), eps=1e-6, atol=1e-5)


def test_ranking_gradient_pushes_a_misordered_pair_apart():
    pred = as_tensor([10.0, 20.0], grad=True)
    create_loss("ranking")(pred, as_tensor([80.0, 30.0])).backward()
    assert pred.grad[0] < 0 < pred.grad[1]  # gradient descent raises the better image, lowers the worse


# ----------------------------------------------------------------- edge cases
@pytest.mark.parametrize("name", ["l1", "mse", "smooth_l1", "ranking", "fidelity", "soft_srcc", "plcc",
                                  "l1+rank"])
def test_batch_of_one_and_all_equal_mos_give_finite_losses_and_gradients(name):
    loss = create_loss(name)
    for pred_values, mos_values in (([42.0], [60.0]), ([10.0, 30.0, 20.0], [50.0, 50.0, 50.0]),
                                    ([5.0, 5.0], [20.0, 90.0])):
        pred = as_tensor(pred_values, dtype=torch.float32, grad=True)
        out = loss(pred, as_tensor(mos_values, dtype=torch.float32))
        out.backward()
        assert out.ndim == 0 and torch.isfinite(out) and torch.isfinite(pred.grad).all()
    if loss_info(name).family != "regression" and name != "l1+rank":
        # No pair of different MOS: nothing to order (fidelity still asks for equal predictions).
        expected = 0.0 if name != "fidelity" else value("fidelity", pred=[10.0, 30.0, 20.0], mos=[50.0] * 3)
        assert value(name, pred=[10.0, 30.0, 20.0], mos=[50.0] * 3) == pytest.approx(expected)
        assert value(name, pred=[42.0], mos=[60.0]) == 0.0


def test_batch_of_two_orders_the_pair():
    right, wrong = [30.0, 70.0], [70.0, 30.0]
    mos = [20.0, 90.0]
    for name in ("ranking", "fidelity", "soft_srcc", "plcc"):
        assert value(name, pred=right, mos=mos) < value(name, pred=wrong, mos=mos), name
    assert value("plcc", pred=right, mos=mos) == pytest.approx(0.0, abs=1e-7)
    assert value("ranking", pred=right, mos=mos) == 0.0  # 40 apart, beyond the margin of 1


def test_fidelity_prefers_nothing_for_equal_mos_and_survives_zero_rater_std():
    out = value("fidelity", pred=[10.0, 10.0], mos=[50.0, 50.0], std=[0.0, 0.0])
    assert math.isfinite(out) and out == pytest.approx(1 - 2 * math.sqrt(0.25 + 1e-8))


def test_float32_fidelity_far_apart_predictions_keep_finite_gradients():
    pred = torch.tensor([0.0, 1e4], requires_grad=True)
    out = create_loss("fidelity")(pred, torch.tensor([90.0, 10.0]))
    out.backward()
    assert torch.isfinite(out) and torch.isfinite(pred.grad).all()


# ------------------------------------------------------------------- registry
def test_registry_lists_every_loss_and_their_options():
    assert list_losses() == sorted(["fidelity", "l1", "l1+rank", "mse", "plcc", "ranking", "smooth_l1",
                                    "soft_srcc"])
    assert list_losses("l1*") == ["l1", "l1+rank"]
    assert loss_options("l1+rank") == {"alpha": 1.0, "margin": 1.0}
    assert loss_options("l1") == {}
    assert {loss_info(n).scale for n in list_losses()} == {"mos", "shift", "free"}


def test_unknown_loss_is_a_one_line_config_error_with_a_hint():
    with pytest.raises(ConfigError) as error:
        create_loss("fidellity")
    message = str(error.value)
    assert "\n" not in message
    assert message.startswith("unknown loss 'fidellity'; valid losses: fidelity, l1,")
    assert message.endswith("(did you mean 'fidelity'?)")


@pytest.mark.parametrize("name, options, expected", [
    ("ranking", {"margn": 1.0}, "loss 'ranking' has no option 'margn' (did you mean 'margin'?); "
                                "valid options: margin"),
    ("l1", {"alpha": 1.0}, "loss 'l1' has no option 'alpha'; valid options: none"),
    ("soft_srcc", {"tau": 0}, "loss 'soft_srcc' option tau=0 must be positive"),
    ("l1+rank", {"alpha": -1}, "loss 'l1+rank' option alpha=-1 must be non-negative"),
    ("fidelity", {"sigma": "wide"}, "loss 'fidelity' option sigma='wide' must be a finite number"),
])
def test_bad_loss_options_are_one_line_config_errors(name, options, expected):
    with pytest.raises(ConfigError) as error:
        create_loss(name, **options)
    assert str(error.value) == expected


def test_run_configs_accept_every_registered_loss_and_check_its_options():
    for name in list_losses():
        assert from_dict({"train": {"loss": name}}).train.loss == name
    config = from_dict({"train": {"loss": "ranking", "loss_options": {"margin": 2.0}}})
    assert config.train.loss_options == {"margin": 2.0}
    with pytest.raises(ConfigError, match="did you mean 'ranking'"):
        from_dict({"train": {"loss": "rankng"}})
    with pytest.raises(ConfigError, match="^train.loss_options: loss 'ranking' has no option 'margn'"):
        from_dict({"train": {"loss": "ranking", "loss_options": {"margn": 2.0}}})
