"""Patches: right shape and pixels, seeded positions, loaders, model input, per-image means."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image
from torchvision.transforms import Normalize

from iqalib.data.images import ImageStore, decode_image
from iqalib.data.patches import PatchDataset, make_loader, mean_per_image, to_model_input
from iqalib.errors import ConfigError

P = 16
SHAPES = [(40, 50), (16, 30), (33, 16), (64, 48)]  # includes images exactly one patch tall/wide
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


def noise(height: int, width: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


@pytest.fixture
def arrays() -> list[np.ndarray]:
    return [noise(h, w, seed=i) for i, (h, w) in enumerate(SHAPES)]


@pytest.fixture
def store(arrays) -> ImageStore:
    return ImageStore.from_arrays(arrays)


def locate(patch_hwc: np.ndarray, image: np.ndarray) -> list[tuple[int, int, bool]]:
    """Every (top, left, flipped) at which ``patch_hwc`` is a crop of ``image``.

    Independent of the dataset's internals: it searches all positions. On noise
    images a crop matches exactly one position.
    """
    windows = sliding_window_view(image, (P, P, 3))[:, :, 0]  # (H-P+1, W-P+1, P, P, 3)
    found = []
    for flipped, target in ((False, patch_hwc), (True, patch_hwc[:, ::-1])):
        hits = np.argwhere((windows == target).all(axis=(2, 3, 4)))
        found += [(int(t), int(l), flipped) for t, l in hits]
    return found


def positions(dataset: PatchDataset, arrays) -> list[tuple[int, int, int, bool]]:
    """(image, top, left, flipped) of every item, found by searching the source images."""
    patches, _, rows = dataset[list(range(len(dataset)))]
    out = []
    for patch, row in zip(patches.numpy(), rows.numpy()):
        image = int(dataset.indices[row])
        (hit,) = locate(patch.transpose(1, 2, 0), arrays[image])
        out.append((image, *hit))
    return out


# ------------------------------------------------------------------ shape and pixels
def test_batch_shape_dtype_and_labels(store):
    scores = np.array([10.0, 20.0, 30.0, 40.0])
    ds = PatchDataset(store, scores, patch_size=P, patches_per_image=3)
    assert len(ds) == 12
    patches, batch_scores, rows = ds[[0, 4, 11]]
    assert patches.shape == (3, 3, P, P) and patches.dtype == torch.uint8
    assert batch_scores.dtype == torch.float32 and batch_scores.tolist() == [10.0, 20.0, 40.0]
    assert rows.dtype == torch.int64 and rows.tolist() == [0, 1, 3]
    patch, score, row = ds[5]
    assert patch.shape == (3, P, P) and float(score) == 20.0 and int(row) == 1


@pytest.mark.parametrize("train", [True, False])
def test_patches_are_exact_crops_inside_the_image(store, arrays, train):
    ds = PatchDataset(store, patch_size=P, patches_per_image=5, train=train, seed=1)
    found = positions(ds, arrays)
    assert [img for img, *_ in found] == [i for i in range(4) for _ in range(5)]
    for img, top, left, flipped in found:
        h, w = SHAPES[img]
        assert 0 <= top <= h - P and 0 <= left <= w - P
    flips = [f for *_, f in found]
    if train:
        assert any(flips) and not all(flips)  # random horizontal flips, both kinds drawn
    else:
        assert not any(flips)


def test_patches_match_direct_slicing_of_decoded_files(tmp_path):
    paths = []
    for i, (h, w) in enumerate(SHAPES):
        paths.append(tmp_path / f"{i}.png")
        Image.fromarray(noise(h, w, seed=10 + i)).save(paths[-1])
    decoded = [decode_image(p) for p in paths]
    ds = PatchDataset(ImageStore.build(paths, cache=tmp_path / "cache"), patch_size=P,
                      patches_per_image=4, train=True, seed=3)
    patches, _, rows = ds[list(range(len(ds)))]
    for (img, top, left, flipped), patch in zip(positions(ds, decoded), patches.numpy()):
        crop = decoded[img][top : top + P, left : left + P]
        expected = crop[:, ::-1] if flipped else crop
        np.testing.assert_array_equal(patch.transpose(1, 2, 0), expected)


def test_no_flip_when_disabled(store, arrays):
    ds = PatchDataset(store, patch_size=P, patches_per_image=10, train=True, flip=False)
    assert not any(f for *_, f in positions(ds, arrays))


def test_indices_select_images(store, arrays):
    ds = PatchDataset(store, np.array([1.5, 2.5]), patch_size=P, patches_per_image=2, indices=[3, 1])
    _, scores, rows = ds[[0, 1, 2, 3]]
    assert rows.tolist() == [0, 0, 1, 1] and scores.tolist() == [1.5, 1.5, 2.5, 2.5]
    assert [img for img, *_ in positions(ds, arrays)] == [3, 3, 1, 1]


# ------------------------------------------------------------------ determinism
def test_train_crops_are_seeded_by_seed_and_epoch(store, arrays):
    a = PatchDataset(store, patch_size=P, patches_per_image=5, train=True, seed=7)
    b = PatchDataset(store, patch_size=P, patches_per_image=5, train=True, seed=7)
    epoch0 = positions(a, arrays)
    assert positions(b, arrays) == epoch0
    a.set_epoch(1)
    epoch1 = positions(a, arrays)
    assert epoch1 != epoch0
    b.set_epoch(1)
    assert positions(b, arrays) == epoch1
    a.set_epoch(0)
    assert positions(a, arrays) == epoch0
    other_seed = PatchDataset(store, patch_size=P, patches_per_image=5, train=True, seed=8)
    assert positions(other_seed, arrays) != epoch0


@pytest.mark.parametrize("test_crops", ["random", "grid"])
def test_test_crops_are_fixed(store, arrays, test_crops):
    a = PatchDataset(store, patch_size=P, patches_per_image=6, train=False, seed=2, test_crops=test_crops)
    b = PatchDataset(store, patch_size=P, patches_per_image=6, train=False, seed=2, test_crops=test_crops)
    first = positions(a, arrays)
    assert positions(b, arrays) == first
    a.set_epoch(5)
    assert positions(a, arrays) == first
    assert len({(img, t, l) for img, t, l, _ in first if img == 0}) == 6  # six different crops


@pytest.mark.parametrize("test_crops", ["random", "grid"])
def test_an_images_test_crops_do_not_depend_on_the_other_images(store, arrays, test_crops):
    settings = dict(patch_size=P, patches_per_image=4, train=False, seed=2, test_crops=test_crops)
    everything = positions(PatchDataset(store, **settings), arrays)
    alone = positions(PatchDataset(store, indices=[3], **settings), arrays)
    assert alone == [spot for spot in everything if spot[0] == 3]


@pytest.mark.parametrize("k", [4, 9, 10, 25])
def test_grid_crops_reach_the_corners(store, arrays, k):
    ds = PatchDataset(store, patch_size=P, patches_per_image=k, train=False, test_crops="grid")
    found = positions(ds, arrays)
    for img, (h, w) in enumerate(SHAPES):
        spots = {(t, l) for i, t, l, _ in found if i == img}
        assert (0, 0) in spots and (h - P, w - P) in spots
        if k in (4, 9, 25):  # a full square grid: all four corners
            assert (0, w - P) in spots and (h - P, 0) in spots


def test_single_grid_crop_is_central(store, arrays):
    ds = PatchDataset(store, patch_size=P, patches_per_image=1, train=False, test_crops="grid")
    for img, top, left, _ in positions(ds, arrays):
        h, w = SHAPES[img]
        # Centred: equal margins, or one pixel more on one side when the slack is odd.
        assert abs(top - (h - P) / 2) <= 0.5 and abs(left - (w - P) / 2) <= 0.5


# ------------------------------------------------------------------ parameter errors
def test_patch_larger_than_an_image(store):
    with pytest.raises(ConfigError) as info:
        PatchDataset(store, patch_size=34)
    message = str(info.value)
    assert message == ("patch_size=34 is larger than 2 image(s) (e.g. image 1: 30x16); "
                       "lower patch_size or decode with min_side=patch_size")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(patch_size=0), "patch_size=0 must be a positive number of pixels"),
        (dict(patches_per_image=0), "patches_per_image=0 must be at least 1"),
        (dict(test_crops="centre"), r"test_crops='centre' is not one of \('random', 'grid'\)"),
        (dict(scores=np.zeros(3)), "3 scores for 4 images; they must match"),
    ],
)
def test_parameter_errors(store, kwargs, message):
    with pytest.raises(ConfigError, match=message):
        PatchDataset(store, **{"patch_size": P, **kwargs})


def test_loader_batch_size_error(store):
    with pytest.raises(ConfigError, match="batch_size=0 must be at least 1"):
        make_loader(PatchDataset(store, patch_size=P), batch_size=0, shuffle=False)


# ------------------------------------------------------------------ loader
def batches(loader):
    return [(p.clone(), s.clone(), r.clone()) for p, s, r in loader]


def test_loader_with_workers_matches_the_main_process(store):
    ds = PatchDataset(store, np.arange(4, dtype=float), patch_size=P, patches_per_image=5, seed=4)
    ds.set_epoch(2)
    in_process = batches(make_loader(ds, batch_size=6, shuffle=True, workers=0, seed=11))
    with_workers = batches(make_loader(ds, batch_size=6, shuffle=True, workers=2, seed=11))
    assert len(in_process) == 4  # 20 patches: 6 + 6 + 6 + 2
    for (p0, s0, r0), (p1, s1, r1) in zip(in_process, with_workers, strict=True):
        assert torch.equal(p0, p1) and torch.equal(s0, s1) and torch.equal(r0, r1)
    # Shuffled: the rows do not come in order, and every patch comes exactly once.
    rows = torch.cat([r for _, _, r in in_process])
    assert rows.tolist() != sorted(rows.tolist())
    assert sorted(rows.tolist()) == [i for i in range(4) for _ in range(5)]


def test_unshuffled_loader_is_in_dataset_order(store):
    ds = PatchDataset(store, patch_size=P, patches_per_image=3, train=False)
    loaded = batches(make_loader(ds, batch_size=5, shuffle=False, drop_last=True))
    assert len(loaded) == 2
    whole, _, _ = ds[list(range(10))]
    assert torch.equal(torch.cat([p for p, _, _ in loaded]), whole)


# ------------------------------------------------------------------ model input
def test_to_model_input_matches_torchvision_normalize(store):
    patches, _, _ = PatchDataset(store, patch_size=P, patches_per_image=2)[[0, 1, 2, 3]]
    expected = Normalize(IMAGENET_MEAN, IMAGENET_STD)(patches.float() / 255.0)
    got = to_model_input(patches, IMAGENET_MEAN, IMAGENET_STD)
    assert got.dtype == torch.float32 and got.shape == (4, 3, P, P)
    # float32 rounding only: the scale and shift may be folded into one multiply-add.
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    last = to_model_input(patches, IMAGENET_MEAN, IMAGENET_STD, channels_last=True)
    assert last.is_contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(last, expected, rtol=1e-5, atol=1e-5)


def test_to_model_input_leaves_float_input_alone():
    patches = torch.full((1, 3, 2, 2), 255.0)
    out = to_model_input(patches, (0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
    assert torch.equal(patches, torch.full((1, 3, 2, 2), 255.0))
    torch.testing.assert_close(out, torch.ones(1, 3, 2, 2))


# ------------------------------------------------------------------ scoring
def test_mean_per_image_is_a_groupby_mean():
    rng = np.random.default_rng(0)
    index = rng.integers(0, 5, 200)
    pred = rng.normal(size=200)
    expected = pd.Series(pred).groupby(index).mean().reindex(range(6)).to_numpy()
    got = mean_per_image(torch.from_numpy(pred).float(), torch.from_numpy(index), 6)
    np.testing.assert_allclose(got[:5], expected[:5], rtol=1e-6)
    assert np.isnan(got[5])  # an image without patches has no score
    np.testing.assert_allclose(mean_per_image(pred, index, 5), expected[:5], rtol=1e-12)


def test_mean_per_image_accepts_a_column_of_predictions():
    pred = torch.tensor([[1.0], [3.0], [10.0]])  # what a model head returns: (N, 1)
    np.testing.assert_allclose(mean_per_image(pred, torch.tensor([0, 0, 1]), 2), [2.0, 10.0])


def test_mean_per_image_length_mismatch():
    with pytest.raises(ConfigError, match="3 predictions for 2 patch indices"):
        mean_per_image(np.zeros(3), np.zeros(2, int), 1)
