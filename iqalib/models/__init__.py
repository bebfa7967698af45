"""Models: the HyperIQA family by name (``create_model``), trunks, attention, complexity."""
import iqalib.numerics  # noqa: F401  (flushes subnormals before torch starts its worker threads)
from iqalib.models.attention import MultiScaleAttention
from iqalib.models.backbones import BACKBONES, Backbone, lite0_classifier, lite0_imagenet_state_dict
from iqalib.models.hyperiqa import HyperIQA, hyperiqa_step_lr
from iqalib.models.registry import (complexity_table, create_model, list_models, model_complexity,
                                    model_options, model_trunk, register_model)

__all__ = [
    "BACKBONES",
    "Backbone",
    "HyperIQA",
    "MultiScaleAttention",
    "complexity_table",
    "create_model",
    "hyperiqa_step_lr",
    "list_models",
    "lite0_classifier",
    "lite0_imagenet_state_dict",
    "model_complexity",
    "model_options",
    "model_trunk",
    "register_model",
]
