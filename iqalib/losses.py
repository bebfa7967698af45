"""Training losses by name, in the style of timm: ``register_loss``, ``create_loss``, ``list_losses``.

A loss scores a batch of predictions ``pred`` (N,) against the MOS
``target`` (N,) and returns a scalar tensor. Each patch of a batch carries
its image's MOS, so a batch may hold several crops of one image (equal MOS).

============  ===============================================================  ===============
name          what it is                                                       predictions
============  ===============================================================  ===============
l1            mean absolute error (HyperIQA's and the seed's loss)             MOS scale
mse           mean squared error (the seed's "L2")                             MOS scale
smooth_l1     Huber loss with beta = 1 MOS unit                                MOS scale
ranking       pairwise hinge: mean over the pairs whose MOS differ of          free
              ``max(0, margin - sign(t_i - t_j) (p_i - p_j))``
fidelity      pairwise fidelity (Tsai et al. 2007) with Thurstone              MOS up to a shift
              probabilities, see :func:`fidelity_loss`
soft_srcc     1 - Pearson(soft ranks of the predictions, ranks of the MOS),    free
              see :func:`soft_srcc_loss`
plcc          1 - Pearson(predictions, MOS) over the batch                     free
l1+rank       ``l1 + alpha * ranking`` (the seed solver's combined option)     MOS scale
============  ===============================================================  ===============

"predictions" says what anchors the scale of the scores a loss trains: the
regression losses pull them onto the MOS, fidelity fixes their spread (its
probabilities use a scale in MOS units) but not their offset, and the
ranking, soft-SRCC and PLCC losses are blind to any increasing (ranking:
shift; soft SRCC and PLCC: affine) change of the scores. For those, RMSE
against the MOS means nothing; compare them by SRCC and by PLCC after the
4-parameter logistic mapping (:func:`iqalib.metrics.plcc_logistic`).

The options of each loss are the keyword-only parameters of its function
(``create_loss("ranking", margin=2.0)``); from a run configuration they are
``train.loss_options``. ``std`` (the raters' standard deviation per patch) is
used by ``fidelity`` when given; the training engine does not pass it (its
batches carry MOS only), so there a fixed scale ``sigma`` is used. Under
``torchrun`` each process computes the loss on its share of the batch, so the
pairwise losses compare pairs within that share.
"""
from __future__ import annotations

import fnmatch
import inspect
import math
from dataclasses import dataclass, field
from typing import Callable, Mapping

import torch
import torch.nn.functional as F

from iqalib.errors import ConfigError, did_you_mean
from iqalib.paths import shown

# Below these sizes a correlation is undefined: the loss is 0 (with a graph, so backward works).
_EPS = 1e-8
DEFAULT_MARGIN = 1.0  # ranking hinge margin, in MOS units (every book data set is on a 0-100 scale)
DEFAULT_SIGMA = 10.0  # fidelity's Thurstone scale of one image, in MOS units, when none is given
DEFAULT_TAU = 0.1  # soft-rank temperature, in batch standard deviations of the predictions
DEFAULT_ALPHA = 1.0  # weight of the ranking term in l1+rank


@dataclass(frozen=True)
class LossInfo:
    """A registered loss: its function, what anchors its predictions, and a one-line description."""

    name: str
    function: Callable[..., torch.Tensor]
    scale: str  # "mos" (on the MOS scale), "shift" (MOS scale up to an offset) or "free"
    description: str
    family: str  # "regression", "rank" (pairwise or rank-based), "correlation" or "hybrid"
    takes_std: bool = False  # the function accepts the raters' standard deviations


@dataclass(frozen=True)
class Loss:
    """A loss with its options bound: ``loss(pred, target, std=None)`` -> scalar tensor."""

    info: LossInfo
    options: dict = field(default_factory=dict)

    @property
    def name(self) -> str:
        return self.info.name

    def __call__(self, pred: torch.Tensor, target: torch.Tensor, std: torch.Tensor | None = None):
        if std is not None and self.info.takes_std:
            return self.info.function(pred, target, std, **self.options)
        return self.info.function(pred, target, **self.options)

    def __repr__(self) -> str:
        options = ", ".join(f"{k}={v!r}" for k, v in self.options.items())
        return f"Loss({self.name!r}{', ' + options if options else ''})"


_REGISTRY: dict[str, LossInfo] = {}


def register_loss(name: str, *, scale: str, family: str, description: str = ""):
    """Decorator: register ``function(pred, target[, std], *, options...)`` under ``name``."""
    if scale not in ("mos", "shift", "free"):
        raise ValueError(f"scale={scale!r} must be 'mos', 'shift' or 'free'")

    def decorator(function):
        if name in _REGISTRY and _REGISTRY[name].function is not function:
            raise ValueError(f"loss {name!r} is registered twice")
        doc = (function.__doc__ or "").strip().splitlines()
        takes_std = "std" in inspect.signature(function).parameters
        _REGISTRY[name] = LossInfo(name, function, scale, description or (doc[0] if doc else ""), family,
                                   takes_std)
        return function

    return decorator


def list_losses(pattern: str | None = None) -> list[str]:
    """Registered loss names, sorted; ``pattern`` filters with shell wildcards (``"l1*"``)."""
    names = sorted(_REGISTRY)
    return [n for n in names if fnmatch.fnmatchcase(n, pattern)] if pattern else names


def loss_info(name: str) -> LossInfo:
    """The registry entry of ``name``, or a one-line ConfigError naming the valid losses."""
    if name not in _REGISTRY:
        raise ConfigError(f"unknown loss {shown(name)}; valid losses: {', '.join(list_losses())}"
                          f"{did_you_mean(name, list_losses())}")
    return _REGISTRY[name]


def loss_options(name: str) -> dict[str, object]:
    """The options ``name`` accepts, with their defaults."""
    return {p.name: p.default for p in inspect.signature(loss_info(name).function).parameters.values()
            if p.kind is p.KEYWORD_ONLY}


def create_loss(name: str, /, **options) -> Loss:
    """The loss ``name`` with ``options`` bound; unknown names and options are one-line ConfigErrors."""
    return build_loss(name, options)


def build_loss(name: str, options: Mapping | None = None, where: str = "") -> Loss:
    """:func:`create_loss` from a mapping of options, as a run configuration holds them; ``where``
    (e.g. ``"train.loss_options"``) is named at the start of an error about the options."""
    prefix = f"{where}: " if where else ""
    info = loss_info(name)
    options = dict(options or {})
    valid = loss_options(name)
    unknown = sorted(set(options) - set(valid), key=str)
    if unknown:
        hints = "".join(did_you_mean(o, valid) for o in unknown[:3])
        accepted = ", ".join(valid) if valid else "none"
        raise ConfigError(f"{prefix}loss {name!r} has no option {', '.join(map(shown, unknown[:3]))}{hints}; "
                          f"valid options: {accepted}")
    for key, value in options.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
            raise ConfigError(f"{prefix}loss {name!r} option {key}={shown(value)} must be a finite number")
        least = "non-negative" if key == "alpha" else "positive"  # alpha = 0 is plain L1
        if value < 0 or (value == 0 and least == "positive"):
            raise ConfigError(f"{prefix}loss {name!r} option {key}={shown(value)} must be {least}")
    return Loss(info, {k: float(v) for k, v in options.items()})


# ---------------------------------------------------------------- helpers

def _zero(pred: torch.Tensor) -> torch.Tensor:
    """A zero loss that still belongs to ``pred``'s graph (backward gives zero gradients)."""
    return pred.sum() * 0.0


def _pairs(n: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices (i, j) of every pair i < j."""
    return torch.triu_indices(n, n, offset=1, device=device).unbind(0)


def _pearson(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Pearson correlation of two vectors; ``_EPS`` keeps it finite for a constant ``x``."""
    xc, yc = x - x.mean(), y - y.mean()
    return (xc * yc).sum() / (xc.norm() * yc.norm() + _EPS)


def _standard_normal_cdf(x: torch.Tensor) -> torch.Tensor:
    return 0.5 * (1.0 + torch.erf(x / math.sqrt(2.0)))


def average_ranks(values: torch.Tensor) -> torch.Tensor:
    """Ranks 1..N with ties sharing their average rank (as ``scipy.stats.rankdata``); not differentiable."""
    below = (values[None, :] < values[:, None]).sum(dim=1)
    equal = (values[None, :] == values[:, None]).sum(dim=1)
    return (below + (equal + 1) / 2.0).to(values.dtype)


def soft_ranks(values: torch.Tensor, tau: float = DEFAULT_TAU) -> torch.Tensor:
    """Pairwise-sigmoid soft ranks of the batch-standardised ``values``.

    ``r_i = 1/2 + sum_j sigmoid((z_i - z_j) / tau)`` with ``z`` the values
    minus their mean over their standard deviation: the j = i term adds 1/2,
    so as ``tau -> 0`` ``r`` tends to the average ranks (1..N, ties halved).
    Standardising makes ``tau`` a fraction of the batch's spread, whatever
    the scale of the scores.
    """
    z = (values - values.mean()) / (values.std(correction=0) + _EPS)
    return 0.5 + torch.sigmoid((z[:, None] - z[None, :]) / tau).sum(dim=1)


# ---------------------------------------------------------------- losses

@register_loss("l1", scale="mos", family="regression", description="mean absolute error")
def l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean absolute error."""
    return F.l1_loss(pred, target)


@register_loss("mse", scale="mos", family="regression", description="mean squared error (L2)")
def mse_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Mean squared error."""
    return F.mse_loss(pred, target)


@register_loss("smooth_l1", scale="mos", family="regression",
               description="Huber loss, quadratic within 1 MOS unit")
def smooth_l1_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Huber loss (torch's smooth L1, beta = 1)."""
    return F.smooth_l1_loss(pred, target)


@register_loss("ranking", scale="free", family="rank",
               description="pairwise hinge on the order of every pair whose MOS differ")
def ranking_hinge_loss(pred: torch.Tensor, target: torch.Tensor, *,
                       margin: float = DEFAULT_MARGIN) -> torch.Tensor:
    """Mean over pairs with t_i != t_j of ``max(0, margin - sign(t_i - t_j) (p_i - p_j))``; 0 without such pairs."""
    i, j = _pairs(len(pred), pred.device)
    sign = torch.sign(target[i] - target[j])
    keep = sign != 0
    if not keep.any():
        return _zero(pred)
    return F.relu(margin - sign[keep] * (pred[i] - pred[j])[keep]).mean()


@register_loss("fidelity", scale="shift", family="rank",
               description="pairwise fidelity loss on Thurstone preference probabilities")
def fidelity_loss(pred: torch.Tensor, target: torch.Tensor, std: torch.Tensor | None = None, *,
                  sigma: float = DEFAULT_SIGMA) -> torch.Tensor:
    """Fidelity loss (Tsai et al., 2007) over every pair i < j of the batch.

    Thurstone's case: a rater perceives image i with quality ~ N(t_i, s_i^2),
    so the share of raters preferring i to j is ``p* = Phi((t_i - t_j) / s_ij)``
    with ``s_ij = sqrt(s_i^2 + s_j^2)``. Where the raters' standard
    deviations ``std`` are given, ``s_i = std_i`` (as the seed does); otherwise
    every image gets the same ``s_i = sigma`` (MOS units), ``s_ij = sqrt(2) sigma``.
    The model's probability uses the same scale, ``p = Phi((p_i - p_j) / s_ij)``,
    so the loss is smallest when the predictions equal the MOS up to an offset.
    Loss per pair: ``1 - sqrt(p* p + eps) - sqrt((1 - p*)(1 - p) + eps)`` with
    eps = 1e-8 (keeps the gradient finite at p = 0 or 1); pairs with equal MOS
    count with p* = 1/2. Mean over pairs; 0 for a batch of one.
    """
    if len(pred) < 2:
        return _zero(pred)
    i, j = _pairs(len(pred), pred.device)
    if std is None:
        scale = torch.full_like(target[i], math.sqrt(2.0) * sigma)
    else:
        std = std.to(target)
        scale = torch.sqrt(std[i] ** 2 + std[j] ** 2).clamp_min(1e-6)
    p_star = _standard_normal_cdf((target[i] - target[j]) / scale)
    p = _standard_normal_cdf((pred[i] - pred[j]) / scale)
    fidelity = torch.sqrt(p_star * p + _EPS) + torch.sqrt((1 - p_star) * (1 - p) + _EPS)
    return (1.0 - fidelity).mean()


@register_loss("soft_srcc", scale="free", family="rank",
               description="1 - Pearson(soft ranks of the predictions, ranks of the MOS)")
def soft_srcc_loss(pred: torch.Tensor, target: torch.Tensor, *, tau: float = DEFAULT_TAU) -> torch.Tensor:
    """Differentiable SRCC: ``1 - Pearson(soft_ranks(pred, tau), average_ranks(target))``.

    Soft ranks: :func:`soft_ranks` (pairwise sigmoids of the batch-standardised
    predictions, temperature ``tau`` = 0.1 batch standard deviations by
    default). The MOS ranks are exact (ties averaged). 0 when fewer than two
    patches or all MOS are equal (no order to learn).
    """
    if len(pred) < 2 or bool((target == target[0]).all()):
        return _zero(pred)
    return 1.0 - _pearson(soft_ranks(pred, tau), average_ranks(target.detach()))


@register_loss("plcc", scale="free", family="correlation", description="1 - Pearson(predictions, MOS)")
def plcc_loss(pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """``1 - Pearson(pred, target)`` over the batch; 0 when fewer than two patches or all MOS are equal."""
    if len(pred) < 2 or bool((target == target[0]).all()):
        return _zero(pred)
    return 1.0 - _pearson(pred, target)


@register_loss("l1+rank", scale="mos", family="hybrid",
               description="L1 plus alpha times the pairwise ranking hinge")
def l1_rank_loss(pred: torch.Tensor, target: torch.Tensor, *, alpha: float = DEFAULT_ALPHA,
                 margin: float = DEFAULT_MARGIN) -> torch.Tensor:
    """``l1(pred, target) + alpha * ranking(pred, target, margin)``."""
    return F.l1_loss(pred, target) + alpha * ranking_hinge_loss(pred, target, margin=margin)
