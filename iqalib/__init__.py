"""iqalib: HyperIQA and SMART-IQA for blind image quality assessment.

Public API (imported lazily so that ``import iqalib`` stays fast):

- ``load_dataset(name, root=None, **options)``: a validated table of rated images
- ``split_table(table, seed=..., fractions=...)``: train / val / test
- ``create_model(name, pretrained=False, **options)``, ``list_models()``
- ``evaluate_scores(pred, mos)``: SRCC, KRCC, PLCC (+ logistic), RMSE
- ``fit(config)``: train all rounds of a run configuration (dict, YAML or RunConfig)
- ``load_trained(checkpoint)``, ``predict(model_or_checkpoint, images)``: score photos
- ``create_metric(name_or_checkpoint=None, device="auto")``: a pyiqa-like scoring callable;
  no argument gives iqalib's ready model (smart_iqa_lite0 trained on LIVE-C's 627 JPEGs)
"""
from __future__ import annotations

import importlib

from iqalib.version import __version__  # noqa: F401  (defined there for provenance)

_EXPORTS = {
    "load_dataset": "iqalib.data.datasets",
    "list_datasets": "iqalib.data.datasets",
    "split_table": "iqalib.data.splits",
    "create_model": "iqalib.models",
    "list_models": "iqalib.models",
    "evaluate_scores": "iqalib.metrics",
    "fit": "iqalib.engine",
    "predict": "iqalib.engine",
    "load_trained": "iqalib.engine",
    "create_metric": "iqalib.engine.metric",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module 'iqalib' has no attribute {name!r}")
