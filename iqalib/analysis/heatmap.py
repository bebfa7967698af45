"""Where in an image the model looks: an attention-weighted feature-energy map.

Chosen map (what the notebook shows): **stage feature energy weighted by the
stage's attention weight**. A grid of ``patch_size`` crops with stride
``stride`` covers the whole image (the last row and column touch the
bottom and right edges). For each crop, each trunk stage's map is reduced to
its energy, the L2 norm over channels at every position; each stage's energy
is divided by its mean over all crops of the image, so that the four stages
are on one scale while the differences between places in the image remain;
each is upsampled (bilinear) to the crop, multiplied by that crop's
attention weight for the stage, and the four are summed. Overlapping crops
are averaged. A bright place is where strongly-attended stages respond
strongly; this is a picture of the features the hyper network reads, not a
causal attribution of the score.

The same pass also gives a **patch-wise quality map**: each crop's predicted
score, averaged where crops overlap (``HeatMap.quality``).

Models without stage attention use fixed weights: uniform for multi-scale
concatenation, all weight on the last stage for the single-scale head (the
stages the hyper network actually reads).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from iqalib.analysis.attention import attention_hook
from iqalib.data.images import decode_image
from iqalib.data.patches import to_model_input
from iqalib.errors import DataError


@dataclass
class HeatMap:
    """Maps over one image, all (H, W) like ``image``."""

    image: np.ndarray  # (H, W, 3) uint8, as the model saw it
    attention_energy: np.ndarray  # attention-weighted stage energy, averaged over overlapping crops
    quality: np.ndarray  # crop scores, averaged over overlapping crops
    boxes: np.ndarray  # (n_crops, 4): top, left, bottom, right
    crop_scores: np.ndarray  # (n_crops,)
    crop_weights: np.ndarray  # (n_crops, 4) stage weights per crop

    @property
    def score(self) -> float:
        """Mean crop score: the image's prediction on this grid of crops."""
        return float(self.crop_scores.mean())


def crop_grid(height: int, width: int, patch_size: int = 224, stride: int = 112) -> np.ndarray:
    """(n, 2) top-left corners of ``patch_size`` crops, ``stride`` apart, covering the whole image."""
    if height < patch_size or width < patch_size:
        raise DataError(f"image of {width}x{height} is smaller than the {patch_size}-pixel patch; "
                        "decode it with min_side=patch_size")
    if stride <= 0:
        raise DataError(f"stride={stride} must be a positive number of pixels")

    def starts(size):
        count = int(np.ceil((size - patch_size) / stride)) + 1
        return np.unique(np.linspace(0, size - patch_size, count).round().astype(np.int64))

    tops, lefts = starts(height), starts(width)
    return np.stack(np.meshgrid(tops, lefts, indexing="ij"), axis=-1).reshape(-1, 2)


def _fixed_weights(model, n: int) -> torch.Tensor:
    stages = len(model.stage_channels)
    if getattr(model, "multiscale", False):
        return torch.full((n, stages), 1.0 / stages)
    weights = torch.zeros(n, stages)
    weights[:, -1] = 1.0
    return weights


def attention_heatmap(model, image, *, patch_size: int = 224, stride: int = 112, short_side: int | None = None,
                      batch_size: int = 16) -> HeatMap:
    """Attention-weighted stage-energy map and patch-wise quality map of one image.

    ``image`` is a path (decoded with the data set's ``short_side`` rule) or an
    (H, W, 3) uint8 array. See the module docstring for the exact recipe.
    """
    if isinstance(image, (str, Path)):
        image = decode_image(image, short_side=short_side, min_side=patch_size)
    image = np.asarray(image, dtype=np.uint8)
    if image.ndim != 3 or image.shape[2] != 3:
        raise DataError(f"image has shape {image.shape}; expected (H, W, 3) uint8 RGB")
    height, width = image.shape[:2]
    corners = crop_grid(height, width, patch_size, stride)
    device = next(model.parameters()).device
    was_training = model.training
    model.eval()
    energies, scores, weights = [], [], []
    try:
        with torch.inference_mode():
            for start in range(0, len(corners), batch_size):
                batch = corners[start : start + batch_size]
                crops = np.stack([image[t : t + patch_size, l : l + patch_size] for t, l in batch])
                x = to_model_input(torch.from_numpy(crops).permute(0, 3, 1, 2), model.mean, model.std,
                                   device=device)
                stages = model.forward_features(x)
                if getattr(model, "multiscale_attention", None) is not None:
                    with attention_hook(model) as seen:
                        scores.append(model.forward_head(stages).float().cpu())
                    weights.append(seen[-1])
                else:
                    scores.append(model.forward_head(stages).float().cpu())
                    weights.append(_fixed_weights(model, len(batch)))
                # (N, stages, P, P): each stage's channel L2 norm, upsampled to the crop.
                energies.append(torch.stack([
                    F.interpolate(s.float().norm(dim=1, keepdim=True), size=(patch_size, patch_size),
                                  mode="bilinear", align_corners=False)[:, 0]
                    for s in stages], dim=1).cpu())
    finally:
        model.train(was_training)
    energy = torch.cat(energies).double()
    crop_weights = torch.cat(weights).double()
    crop_scores = torch.cat(scores).double()
    stage_mean = energy.mean(dim=(0, 2, 3), keepdim=True).clamp_min(torch.finfo(torch.float64).tiny)
    weighted = ((energy / stage_mean) * crop_weights[:, :, None, None]).sum(dim=1).numpy()

    attention_sum = np.zeros((height, width))
    quality_sum = np.zeros((height, width))
    coverage = np.zeros((height, width))
    for (top, left), crop_map, score in zip(corners, weighted, crop_scores.numpy()):
        window = (slice(top, top + patch_size), slice(left, left + patch_size))
        attention_sum[window] += crop_map
        quality_sum[window] += score
        coverage[window] += 1
    boxes = np.concatenate([corners, corners + patch_size], axis=1)
    return HeatMap(image=image, attention_energy=attention_sum / coverage, quality=quality_sum / coverage,
                   boxes=boxes, crop_scores=crop_scores.numpy(), crop_weights=crop_weights.numpy())


def attention_heatmaps(model, selected, table, **options) -> dict[str, HeatMap]:
    """:func:`attention_heatmap` of each row of ``selected`` (``role``, ``image`` below ``table.root``), by role."""
    key = "role" if "role" in selected else "image"
    return {str(row[key]): attention_heatmap(model, table.root / row["image"], short_side=table.short_side,
                                             **options)
            for _, row in selected.iterrows()}
