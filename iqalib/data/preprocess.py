"""How an image becomes test crops: iqalib's rule, or the original HyperIQA code's.

``iqalib`` (the default) keeps the aspect ratio (an optional ``--short-side``
resize) and cuts seeded crops (:class:`~iqalib.data.patches.PatchDataset`).

``original_hyperiqa`` reproduces the official code (its KonIQ-10k loader and
``demo.py``; the SMART-IQA seed does the same): ``Resize((512, 384))``, which
torchvision reads as 512 high by 384 wide, so a landscape KonIQ photo
(1024x768) is squeezed into portrait; then random 224x224 crops
(``RandomCrop``), whose predictions are averaged (the demo uses 10, the test
loop 25). Here the crops are drawn from a generator seeded per image size, so
a score is reproducible, where the original's are not. Normalisation is the
model's own (``model.mean``/``model.std``): for the ResNet-50 and Swin trunks
that is ImageNet's mean and std, exactly the original's ``Normalize``.

A model carries its preprocessing as ``model.preprocess`` (default
``iqalib``; :func:`set_preprocess` checks the name), read by
:func:`iqalib.engine.score.score_arrays` when it cuts crops, so
``iqalib score --preprocess original_hyperiqa`` and ``predict`` follow it.
"""
from __future__ import annotations

import numpy as np
import torch
from PIL import Image

from iqalib.errors import ConfigError

PREPROCESSING = {
    "iqalib": "aspect ratio kept (resized only by --short-side), seeded test crops of the model's patch size",
    "original_hyperiqa": "resized to 512 high x 384 wide (torchvision Resize((512, 384)), bilinear, aspect ratio "
                         "not kept) as the original HyperIQA code does, then random crops (seeded per image size) "
                         "of the model's patch size",
}
ORIGINAL_SIZE = (512, 384)  # (height, width), as torchvision's Resize((512, 384)) reads it


def preprocess_of(model) -> str:
    """The preprocessing ``model`` scores with (``iqalib`` unless set)."""
    return getattr(model, "preprocess", "iqalib")


def set_preprocess(model, name: str):
    """Make ``model`` score with preprocessing ``name`` (a :data:`PREPROCESSING` key); returns the model."""
    if name not in PREPROCESSING:
        raise ConfigError(f"unknown preprocessing {name!r}; choose one of {', '.join(PREPROCESSING)}")
    model.preprocess = name
    return model


def describe_preprocess(name: str) -> str:
    return PREPROCESSING[name]


def check_preprocess(name: str, *, short_side: int | None = None) -> None:
    """Refuse settings the preprocessing cannot honour (one line)."""
    if name not in PREPROCESSING:
        raise ConfigError(f"unknown preprocessing {name!r}; choose one of {', '.join(PREPROCESSING)}")
    if name == "original_hyperiqa" and short_side is not None:
        raise ConfigError("--short-side does not apply to --preprocess original_hyperiqa, which resizes every "
                          f"image to {ORIGINAL_SIZE[0]}x{ORIGINAL_SIZE[1]} (height x width); drop one of the two")


def original_hyperiqa_resize(arr: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 -> (512, 384, 3) uint8: PIL bilinear, as torchvision's ``Resize((512, 384))`` on a PIL image."""
    height, width = ORIGINAL_SIZE
    return np.asarray(Image.fromarray(arr).resize((width, height), Image.BILINEAR), dtype=np.uint8)


class OriginalHyperIQACrops:
    """The test crops of one image under ``original_hyperiqa``; ``__getitems__`` as a PatchDataset's."""

    def __init__(self, arr: np.ndarray, patches: int, patch_size: int = 224, seed: int = 0):
        height, width = ORIGINAL_SIZE
        if patch_size > width:
            raise ConfigError(f"patch size {patch_size} does not fit the {height}x{width} image of the original "
                              "preprocessing; use --preprocess iqalib")
        self.image = original_hyperiqa_resize(arr)
        self.patch_size = patch_size
        # As RandomCrop: every top-left corner with the crop inside the image is equally likely.
        rng = np.random.default_rng([seed, 0x4A1E, *arr.shape[:2]])
        self.corners = np.stack([rng.integers(0, height - patch_size + 1, patches),
                                 rng.integers(0, width - patch_size + 1, patches)], axis=1)

    def __len__(self) -> int:
        return len(self.corners)

    def __getitems__(self, items):
        p = self.patch_size
        crops = np.stack([self.image[top : top + p, left : left + p] for top, left in self.corners[list(items)]])
        return (torch.from_numpy(np.ascontiguousarray(crops.transpose(0, 3, 1, 2))),)


def original_hyperiqa_crops(arr: np.ndarray, patches: int, patch_size: int = 224,
                            seed: int = 0) -> OriginalHyperIQACrops:
    """The original code's test crops of one decoded image (see the module docstring)."""
    return OriginalHyperIQACrops(arr, patches, patch_size, seed)
