"""A pyiqa-like entry: :func:`create_metric` returns a callable that scores pictures.

::

    import iqalib
    metric = iqalib.create_metric()          # iqalib's ready model (ships with iqalib)
    metric("photo.jpg")                      # a float: LIVE-C MOS, 0-100, higher is better
    metric(["a.jpg", "b.png"])               # a list of floats, in order
    metric(torch.rand(2, 3, 384, 512))       # pyiqa's convention: float in [0, 1], (N, 3, H, W)
    metric.scale, metric.higher_is_better, metric.crops

The callable takes what :mod:`iqalib.data.inputs` describes (paths, PIL images, (H, W, 3)
uint8 or [0, 1] float arrays, (3, H, W)/(N, 3, H, W) [0, 1] float tensors, lists of them);
anything ambiguous is refused in one line. It crops as ``iqalib score`` does, with as many
crops as the model was validated with, so the same picture scores the same in every form.

``create_metric("smart_iqa_lite0")`` (a bare architecture name) is **refused**: such a model's
head has never been trained and its numbers mean nothing. Train one (``iqalib train``) and
pass its ``best.pt``, or take the ready model (no argument).
"""
from __future__ import annotations

from pathlib import Path

import torch

from iqalib.engine.fit import resolve_device
from iqalib.engine.ready import READY_NAME, describe, ready_checkpoint
from iqalib.engine.score import default_crops, load_trained, predict
from iqalib.errors import ConfigError
from iqalib.models import list_models
from iqalib.paths import shown


class Metric:
    """A trained model as a scoring function (see the module); build it with :func:`create_metric`.

    Attributes: ``name`` (the ready model's name or the checkpoint's path), ``scale`` ((lower,
    upper) of the score, None when the card does not say), ``higher_is_better``, ``crops`` (test
    crops per picture), ``description`` (one line: which model, trained on what), ``card``,
    ``model`` and ``device``.
    """

    higher_is_better = True  # every iqalib model predicts a MOS (card: "higher is better")

    def __init__(self, model, name: str, checkpoint: Path, crops: int | None = None):
        self.model, self.name, self.checkpoint = model, name, checkpoint
        self.card = getattr(model, "card", None)
        self.crops = default_crops(model) if crops is None else crops  # predict checks it
        rng = ((self.card or {}).get("score") or {}).get("range")
        self.scale = (float(rng[0]), float(rng[1])) if rng else None
        self.description = describe(self.card, checkpoint)
        self.device = next(model.parameters()).device

    def __call__(self, images, *, seed: int = 0):
        """Score of one picture (a float), or of several (a list of floats, in order)."""
        return predict(self.model, images, patches=self.crops, seed=seed)

    def __repr__(self) -> str:
        return f"Metric({self.description}; {self.crops} crops, device {self.device})"


def create_metric(name_or_checkpoint: str | Path | None = None, *, device: str | torch.device = "auto",
                  crops: int | None = None) -> Metric:
    """A :class:`Metric`: None (or ``"smart_iqa_lite0-livec_jpeg"``) is iqalib's ready model; a path is
    a checkpoint written by ``iqalib train`` or ``import-weights``.

    ``device``: ``"auto"`` (CUDA when present, else the CPU), ``"cpu"``, ``"cuda"``, ...;
    ``crops``: test crops per picture (default: as many as the model was validated with).
    A bare model name is refused (its head was never trained), as is anything else, in one line.
    """
    device = resolve_device(device) if isinstance(device, str) else device
    if name_or_checkpoint is None or name_or_checkpoint == READY_NAME:
        path = ready_checkpoint()
        return Metric(load_trained(path, device=device), READY_NAME, path, crops)
    if not isinstance(name_or_checkpoint, (str, Path)):
        raise ConfigError(f"create_metric takes a checkpoint path or None, not a {type(name_or_checkpoint).__name__}")
    path = Path(name_or_checkpoint)
    if str(name_or_checkpoint) in list_models():
        raise ConfigError(f"{shown(str(name_or_checkpoint))} is a model architecture whose head was never trained: "
                          "its scores would mean nothing; pass a checkpoint trained with iqalib train (best.pt), "
                          f"or no argument for iqalib's ready model {READY_NAME}")
    if not path.exists() and path.suffix.lower() not in (".pt", ".pth", ".ckpt"):
        raise ConfigError(f"{shown(str(name_or_checkpoint))} is neither a checkpoint file nor a metric iqalib ships "
                          f"(only {READY_NAME}); pass the path of a best.pt, or no argument for the ready model")
    return Metric(load_trained(path, device=device), str(path), path, crops)
