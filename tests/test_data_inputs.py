"""A user's pictures in every accepted form give the same pixels; ambiguous ones are refused."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from PIL import Image

from iqalib.data.inputs import as_rgb8, is_batch
from iqalib.errors import DataError
from conftest import noise_image


@pytest.fixture
def picture():
    return noise_image(40, 56, seed=3)


def _only(images):
    (name, arr), = as_rgb8(images)
    return name, arr


def test_every_accepted_form_gives_the_same_pixels(picture, tmp_path):
    path = tmp_path / "photo.png"
    Image.fromarray(picture).save(path)
    floats = picture.astype(np.float32) / 255.0
    forms = {
        "path": str(path),
        "Path": path,
        "PIL": Image.fromarray(picture),
        "uint8 HWC": picture,
        "float HWC in [0, 1]": floats,
        "float64 HWC": floats.astype(np.float64),
        "CHW tensor": torch.from_numpy(floats).permute(2, 0, 1),
        "NCHW tensor": torch.from_numpy(floats).permute(2, 0, 1)[None],
    }
    for what, form in forms.items():
        name, arr = _only(form)
        assert arr.dtype == np.uint8 and arr.shape == (40, 56, 3), what
        np.testing.assert_array_equal(arr, picture, err_msg=what)
    assert _only(path)[0] == str(path)
    assert _only(picture)[0] == "image[0]"


def test_lists_and_batches_keep_order_and_names(picture, tmp_path):
    other = noise_image(40, 56, seed=4)
    path = tmp_path / "a.png"
    Image.fromarray(picture).save(path)
    got = as_rgb8([path, other, Image.fromarray(other)])
    assert [n for n, _ in got] == [str(path), "image[1]", "image[2]"]
    np.testing.assert_array_equal(got[0][1], picture)
    np.testing.assert_array_equal(got[2][1], other)
    batch = torch.from_numpy(np.stack([picture, other]).astype(np.float32) / 255).permute(0, 3, 1, 2)
    arrays = [a for _, a in as_rgb8(batch)]
    np.testing.assert_array_equal(arrays[1], other)
    assert is_batch([path]) and is_batch(batch) and not is_batch(batch[0]) and not is_batch(picture)


def test_greyscale_is_replicated_to_three_channels(picture):
    grey = picture[..., 0]
    for form in (grey, grey[..., None], torch.from_numpy(grey.astype(np.float32) / 255)[None]):
        arr = _only(form)[1]
        assert arr.shape == (40, 56, 3)
        np.testing.assert_array_equal(arr[..., 2], grey)


@pytest.mark.parametrize("bad, message", [
    (np.full((8, 8, 3), 2.0), r"floats from 2 to 2, outside \[0, 1\]"),
    (np.full((8, 8, 3), -0.5), r"outside \[0, 1\]"),
    (np.full((8, 8, 3), np.nan), "NaN or infinite"),
    (np.zeros((8, 8, 3), np.uint16), "integer pixels other than uint8 are ambiguous"),
    (np.zeros((8, 8, 3), np.int64), "integer pixels other than uint8"),
    (np.zeros((3, 8, 9), np.uint8), "looks channels-first"),
    (np.zeros((8, 8, 4), np.uint8), r"cannot read a uint8 array of shape \(8, 8, 4\)"),
    (np.zeros((2, 8, 8, 3), np.uint8), r"shape \(2, 8, 8, 3\)"),
    (torch.zeros(8, 8, 3), r"tensors are \(3, H, W\) or \(N, 3, H, W\)"),
    (torch.zeros(3, 8, 8, dtype=torch.uint8), "tensors are float in \\[0, 1\\]"),
    (torch.full((3, 8, 8), 255.0), r"outside \[0, 1\]"),
    ([], "no images given"),
    ([[np.zeros((8, 8, 3), np.uint8)]], "is itself a list"),
    (42, "cannot score a int"),
])
def test_ambiguous_input_is_refused_in_one_line(bad, message):
    with pytest.raises(DataError, match=message) as info:
        as_rgb8(bad)
    assert "\n" not in str(info.value)


def test_a_phone_photo_stored_sideways_is_read_as_displayed(tmp_path):
    stored = noise_image(20, 40, seed=5)  # landscape pixels, tagged "rotate 90 degrees to display"
    image = Image.fromarray(stored)
    exif = image.getexif()
    exif[0x0112] = 6
    path = tmp_path / "sideways.jpg"
    image.save(path, exif=exif, quality=95)
    assert _only(path)[1].shape == (40, 20, 3)
    with Image.open(path) as opened:
        assert _only(opened)[1].shape == (40, 20, 3)


def test_small_pictures_are_upscaled_to_the_minimum_side(picture):
    with pytest.warns(UserWarning, match="smaller than the 80-pixel patch"):
        arr = as_rgb8(picture, min_side=80)[0][1]
    assert min(arr.shape[:2]) == 80
