"""Decoding every kind of image a user can hand us, and the decode-once image store."""
from __future__ import annotations

import os
import pickle
import resource
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from iqalib.data import images as images_module
from iqalib.data.images import DEFAULT_MAX_PIXELS, ImageStore, cache_root, decode_image, resize_image
from iqalib.errors import ConfigError, DataError, ImageError


def noise(height: int, width: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)


def image_error(path: Path, **kwargs) -> ImageError:
    with pytest.raises(ImageError) as info:
        decode_image(path, **kwargs)
    error = info.value
    assert error.path == str(path)
    message = str(error)
    assert message.startswith(f"{path}: ") and "\n" not in message
    return error


# ------------------------------------------------------------------ broken files
def test_missing_file(tmp_path):
    assert image_error(tmp_path / "nope.jpg").reason == "file not found"


def test_zero_byte_file(tmp_path):
    path = tmp_path / "empty.jpg"
    path.write_bytes(b"")
    assert image_error(path).reason == "file is empty (0 bytes); re-copy or remove it"


def test_text_file_named_jpg(tmp_path):
    path = tmp_path / "notes.jpg"
    path.write_text("these are not pixels\n" * 10)
    assert image_error(path).reason == "not a readable image (corrupt, or not an image file)"


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
@pytest.mark.parametrize("keep", [0.3, 0.6, 0.95])
def test_truncated_files(tmp_path, suffix, keep):
    whole = tmp_path / f"whole{suffix}"
    Image.fromarray(noise(64, 80)).save(whole)
    data = whole.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[: int(len(data) * keep)])
    reason = image_error(cut).reason
    assert reason.startswith("cannot be decoded (") and "truncated" in reason


def forged_png(tmp_path: Path, width: int, height: int) -> Path:
    """A small valid PNG whose IHDR chunk (with a correct CRC) claims width x height."""
    path = tmp_path / f"claims_{width}x{height}.png"
    Image.fromarray(noise(8, 8)).save(path)
    data = bytearray(path.read_bytes())
    assert data[12:16] == b"IHDR"
    data[16:24] = struct.pack(">II", width, height)
    data[29:33] = struct.pack(">I", zlib.crc32(bytes(data[12:29])))
    path.write_bytes(bytes(data))
    return path


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def test_decompression_bomb_is_refused_without_allocating(tmp_path):
    path = forged_png(tmp_path, 30000, 30000)
    assert path.stat().st_size < 1000
    before = peak_rss_mib()
    reason = image_error(path).reason
    # Decoding would need 30000*30000*3 bytes = 2,575 MiB; nothing near it was touched.
    assert peak_rss_mib() - before < 256
    assert "header claims 900,000,000 pixels" in reason and "decompression-bomb guard" in reason
    assert "max_pixels" in reason


def test_our_pixel_limit_applies_below_pils(tmp_path):
    path = forged_png(tmp_path, 10000, 7000)
    reason = image_error(path).reason
    assert reason == (f"header claims 10000x7000 pixels, over the {DEFAULT_MAX_PIXELS:,} limit "
                      "(decompression-bomb guard); pass a larger max_pixels if it is genuine")
    assert "over the 100 limit" in image_error(forged_png(tmp_path, 20, 20), max_pixels=100).reason


# ------------------------------------------------------------------ pixel formats
def test_rgb_png_is_exact(tmp_path):
    arr = noise(20, 30)
    Image.fromarray(arr).save(tmp_path / "x.png")
    out = decode_image(tmp_path / "x.png")
    assert out.dtype == np.uint8 and out.flags["C_CONTIGUOUS"]
    np.testing.assert_array_equal(out, arr)


def test_greyscale_becomes_three_equal_channels(tmp_path):
    grey = noise(20, 30)[..., 0]
    Image.fromarray(grey, mode="L").save(tmp_path / "g.png")
    out = decode_image(tmp_path / "g.png")
    assert out.shape == (20, 30, 3)
    for c in range(3):
        np.testing.assert_array_equal(out[..., c], grey)


def test_16bit_greyscale_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(values).save(tmp_path / "deep.png")
    assert Image.open(tmp_path / "deep.png").mode.startswith("I")
    out = decode_image(tmp_path / "deep.png")
    # v * 255 / 65535, rounded: 257 -> 1, 32768 -> 127.5 -> 128.
    np.testing.assert_array_equal(out[0, :, 0], [0, 1, 128, 255])
    assert (out == out[..., :1]).all()


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def test_16bit_rgb_keeps_the_high_byte(tmp_path):
    # PIL cannot write 48-bit PNGs: build one by hand (IHDR: depth 16, colour type 2 = RGB).
    pixels = np.array([[[0, 257, 32768], [65535, 1000, 128]]], dtype=">u2")
    scanlines = b"".join(b"\x00" + row.tobytes() for row in pixels)  # filter byte 0 per row
    path = tmp_path / "rgb48.png"
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 2, 1, 16, 2, 0, 0, 0))
                     + png_chunk(b"IDAT", zlib.compress(scanlines)) + png_chunk(b"IEND", b""))
    # Scaled by 1/256 (the high byte), never clipped at 255.
    np.testing.assert_array_equal(decode_image(path), pixels.astype(np.uint16) >> 8)


def test_rgba_drops_alpha(tmp_path):
    rgba = np.dstack([noise(16, 16), np.random.default_rng(1).integers(0, 256, (16, 16), dtype=np.uint8)])
    Image.fromarray(rgba, mode="RGBA").save(tmp_path / "a.png")
    np.testing.assert_array_equal(decode_image(tmp_path / "a.png"), rgba[..., :3])


def test_palette_png_is_looked_up(tmp_path):
    palette = noise(1, 256, seed=5)[0]  # 256 RGB entries
    index = np.random.default_rng(2).integers(0, 256, (12, 18), dtype=np.uint8)
    img = Image.fromarray(index, mode="P")
    img.putpalette(palette.reshape(-1).tolist())
    img.save(tmp_path / "p.png")
    assert Image.open(tmp_path / "p.png").mode == "P"
    np.testing.assert_array_equal(decode_image(tmp_path / "p.png"), palette[index])


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    # Plain CMYK: white paper (0,0,0,0) and full cyan (255,0,0,0) -> RGB (0,255,255).
    cmyk = np.zeros((16, 32, 4), np.uint8)
    cmyk[:, 16:, 0] = 255
    Image.fromarray(cmyk, mode="CMYK").save(tmp_path / "c.jpg", quality=100)
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    out = decode_image(tmp_path / "c.jpg").astype(int)
    assert out.shape == (16, 32, 3)
    np.testing.assert_allclose(out[4:12, 2:12], 255, atol=3)
    np.testing.assert_allclose(out[4:12, 20:30], np.broadcast_to([0, 255, 255], (8, 10, 3)), atol=3)


def orientation6_jpeg(tmp_path: Path) -> Path:
    """A 40 wide x 20 high JPEG tagged 'rotate 90 degrees clockwise to display'."""
    path = tmp_path / "phone.jpg"
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(noise(20, 40)).save(path, exif=exif, quality=95)
    return path


def test_exif_orientation_is_not_applied_by_default(tmp_path):
    stored = decode_image(orientation6_jpeg(tmp_path))
    assert stored.shape == (20, 40, 3)


def test_exif_orientation_on_request(tmp_path):
    path = orientation6_jpeg(tmp_path)
    stored = decode_image(path)
    upright = decode_image(path, exif_transpose=True)
    assert upright.shape == (40, 20, 3)
    np.testing.assert_array_equal(upright, np.rot90(stored, k=-1))  # clockwise


# ------------------------------------------------------------------ sizes
def test_short_side_keeps_the_aspect_ratio(tmp_path):
    Image.fromarray(noise(768, 1024)).save(tmp_path / "land.png")
    Image.fromarray(noise(1024, 768)).save(tmp_path / "port.png")
    assert decode_image(tmp_path / "land.png", short_side=384).shape == (384, 512, 3)
    assert decode_image(tmp_path / "port.png", short_side=384).shape == (512, 384, 3)


def test_short_side_equal_to_the_image_is_untouched():
    arr = noise(384, 512)
    assert resize_image(arr, short_side=384, min_side=None) is arr


def test_resize_of_a_flat_image_keeps_its_colour():
    flat = np.full((30, 40, 3), (10, 200, 77), np.uint8)
    out = resize_image(flat, short_side=15, min_side=None)
    assert out.shape == (15, 20, 3)
    assert (out == (10, 200, 77)).all()


@pytest.mark.parametrize("side", [1, 10])
def test_tiny_images_are_upscaled_to_the_patch_with_a_warning(tmp_path, side):
    Image.new("RGB", (side, side), (12, 34, 56)).save(tmp_path / "tiny.png")
    with pytest.warns(UserWarning, match=rf"tiny.png: {side}x{side} .*smaller than the 32-pixel patch"):
        out = decode_image(tmp_path / "tiny.png", min_side=32)
    assert out.shape == (32, 32, 3)
    assert (out == (12, 34, 56)).all()


def test_large_enough_images_are_not_upscaled(tmp_path):
    Image.fromarray(noise(40, 50)).save(tmp_path / "ok.png")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert decode_image(tmp_path / "ok.png", min_side=32).shape == (40, 50, 3)


def test_short_side_below_the_patch_still_leaves_room_for_a_patch(tmp_path):
    Image.fromarray(noise(60, 80)).save(tmp_path / "x.png")
    with pytest.warns(UserWarning, match="smaller than the 32-pixel patch"):
        out = decode_image(tmp_path / "x.png", short_side=16, min_side=32)
    assert out.shape == (32, 43, 3)


# ------------------------------------------------------------------ the store
@pytest.fixture
def photo_files(tmp_path) -> list[Path]:
    shapes = [(30, 40), (50, 20), (33, 33), (64, 48)]
    paths = []
    for i, (h, w) in enumerate(shapes):
        path = tmp_path / "photos" / f"p{i}.png"
        path.parent.mkdir(exist_ok=True)
        Image.fromarray(noise(h, w, seed=i)).save(path)
        paths.append(path)
    return paths


def test_from_arrays_round_trip():
    arrays = [noise(5, 7, 1), noise(3, 2, 2), noise(1, 1, 3)]
    store = ImageStore.from_arrays(arrays)
    assert len(store) == 3 and not store.on_disk
    assert store.shapes.tolist() == [[5, 7], [3, 2], [1, 1]]
    assert store.nbytes == (35 + 6 + 1) * 3
    for i, a in enumerate(arrays):
        np.testing.assert_array_equal(store[i], a)
    assert store.valid().all()


def test_from_no_arrays_is_empty():
    store = ImageStore.from_arrays([])
    assert len(store) == 0 and store.nbytes == 0


def test_build_in_memory(photo_files):
    store = ImageStore.build(photo_files, workers=2)
    assert len(store) == 4 and not store.on_disk and store.failed == {}
    for i, path in enumerate(photo_files):
        np.testing.assert_array_equal(store[i], decode_image(path))


def test_build_applies_min_side(photo_files):
    with pytest.warns(UserWarning, match="p1.png: 20x50 is smaller than the 24-pixel patch") as record:
        store = ImageStore.build(photo_files, min_side=24)
    assert len(record) == 1
    assert store.shapes.tolist() == [[30, 40], [60, 24], [33, 33], [64, 48]]


def test_build_applies_short_side(photo_files):
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # short side 24 already fits a 24-pixel patch
        store = ImageStore.build(photo_files, short_side=24, min_side=24)
    assert store.shapes.tolist() == [[24, 32], [60, 24], [24, 24], [32, 24]]


def test_build_with_exif_transpose(tmp_path):
    path = orientation6_jpeg(tmp_path)
    assert ImageStore.build([path]).shapes.tolist() == [[20, 40]]
    assert ImageStore.build([path], exif_transpose=True).shapes.tolist() == [[40, 20]]


@pytest.fixture
def count_decodes(monkeypatch):
    calls = []
    real = images_module.decode_image

    def counting(path, **kwargs):
        calls.append(Path(path))
        return real(path, **kwargs)

    monkeypatch.setattr(images_module, "decode_image", counting)
    return calls


def test_disk_cache_is_reused(photo_files, tmp_path, count_decodes):
    cache = tmp_path / "cache"
    first = ImageStore.build(photo_files, cache=cache)
    assert first.on_disk and len(count_decodes) == 4
    assert first.path.parent == cache
    second = ImageStore.build(photo_files, cache=cache)
    assert second.on_disk and len(count_decodes) == 4  # nothing decoded again
    assert second.path == first.path
    for i, path in enumerate(photo_files):
        np.testing.assert_array_equal(second[i], np.asarray(Image.open(path).convert("RGB")))
    assert not second[0].flags.writeable  # the cache is never written through


def test_pickled_disk_store_reopens_the_cache(photo_files, tmp_path):
    store = ImageStore.build(photo_files, cache=tmp_path / "cache")
    data = pickle.dumps(store)
    assert len(data) < store.nbytes  # the pixels stay in the cache file
    copy = pickle.loads(data)
    assert copy.on_disk and copy.path == store.path
    for i in range(len(store)):
        np.testing.assert_array_equal(copy[i], store[i])


def test_pickled_memory_store_carries_its_pixels(photo_files):
    store = ImageStore.build(photo_files)
    copy = pickle.loads(pickle.dumps(store))
    assert not copy.on_disk
    np.testing.assert_array_equal(copy[3], store[3])


def test_subset_shares_the_pixels_and_stays_on_disk(photo_files, tmp_path):
    store = ImageStore.build(photo_files, cache=tmp_path / "cache")
    part = store.subset(np.array([False, True, False, True]))
    assert len(part) == 2 and part.on_disk
    np.testing.assert_array_equal(part[0], store[1])
    np.testing.assert_array_equal(part[1], store[3])
    assert np.shares_memory(part[1], store[3])
    copy = pickle.loads(pickle.dumps(part))  # as a spawned loader worker gets it
    np.testing.assert_array_equal(copy[1], store[3])
    assert store.subset([2]).shapes.tolist() == [store.shapes[2].tolist()]


def test_cache_key_includes_the_settings(photo_files, tmp_path, count_decodes):
    cache = tmp_path / "cache"
    ImageStore.build(photo_files, cache=cache)
    resized = ImageStore.build(photo_files, cache=cache, short_side=16)
    assert len(count_decodes) == 8
    assert resized.shapes[:, :].min(axis=1).tolist() == [16, 16, 16, 16]


@pytest.mark.parametrize("change", ["content", "mtime"])
def test_cache_is_invalidated_when_a_file_changes(photo_files, tmp_path, count_decodes, change):
    cache = tmp_path / "cache"
    old = ImageStore.build(photo_files, cache=cache)
    if change == "content":
        Image.fromarray(noise(30, 40, seed=99)).save(photo_files[0])
    else:
        stat = photo_files[0].stat()
        os.utime(photo_files[0], ns=(stat.st_atime_ns, stat.st_mtime_ns + 5_000_000_000))
    new = ImageStore.build(photo_files, cache=cache)
    assert len(count_decodes) == 8
    assert new.path != old.path
    np.testing.assert_array_equal(new[0], decode_image(photo_files[0]))


@pytest.mark.parametrize("damage", ["same_size_random_bytes", "truncated", "index_garbled", "index_pipe",
                                    "data_pipe"])
def test_a_cache_that_does_not_match_its_record_is_rebuilt_with_one_line(photo_files, tmp_path, count_decodes,
                                                                        damage):
    cache = tmp_path / "cache"
    first = ImageStore.build(photo_files, cache=cache)
    folder, nbytes = first.path, first.nbytes
    del first
    data, index = folder / "images.u8", folder / "index.json"
    if damage == "same_size_random_bytes":  # the size check alone would trust this
        data.write_bytes(np.random.default_rng(0).integers(0, 256, nbytes, dtype=np.uint8).tobytes())
        why = "does not match its checksum"
    elif damage == "truncated":
        with open(data, "r+b") as f:
            f.truncate(10)
        why = f"holds 10 bytes where its index lists {nbytes}"
    elif damage == "index_garbled":
        index.write_text("{not json")
        why = "unreadable index"
    else:
        target = index if damage == "index_pipe" else data
        target.unlink()
        os.mkfifo(target)  # opening a pipe for reading would wait forever for a writer
        why = f"{target.name} is not a regular file"
    with pytest.warns(UserWarning, match=f"image cache .*{folder.name}: .*{why}.*decoding the images again"):
        again = ImageStore.build(photo_files, cache=cache)
    assert len(count_decodes) == 8
    for i, path in enumerate(photo_files):
        np.testing.assert_array_equal(again[i], decode_image(path))
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the rebuilt cache is trusted again, silently
        third = ImageStore.build(photo_files, cache=cache)
    assert third.on_disk and len(count_decodes) == 8


def test_auto_cache_lives_under_iqalib_cache(photo_files, private_cache):
    store = ImageStore.build(photo_files, cache="auto")
    assert cache_root() == private_cache
    assert store.on_disk and store.path.parent == private_cache / "images"


def test_bad_images_are_all_listed_in_one_error(photo_files, tmp_path):
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    text = tmp_path / "text.jpg"
    text.write_text("hello")
    missing = tmp_path / "gone.png"
    paths = [photo_files[0], empty, photo_files[1], text, missing]
    with pytest.raises(DataError) as info:
        ImageStore.build(paths)
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith("3 image(s) cannot be decoded: ")
    assert f"{empty} (file is empty" in message
    assert f"{text} (not a readable image" in message
    assert f"{missing} (file not found)" in message
    assert "pass on_error='drop'" in message


def test_drop_records_the_failures(photo_files, tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\n broken")
    paths = [photo_files[0], bad, photo_files[2]]
    with pytest.warns(UserWarning, match=r"skipping 1 undecodable image\(s\): .*bad.png"):
        store = ImageStore.build(paths, on_error="drop")
    assert list(store.failed) == [1]
    assert "bad.png" not in store.failed[1] and store.failed[1]  # the reason, not the path
    assert store.valid().tolist() == [True, False, True]
    np.testing.assert_array_equal(store[2], decode_image(photo_files[2]))


def test_drop_failures_survive_the_cache(photo_files, tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_text("nope")
    paths = [bad, photo_files[1]]
    with pytest.warns(UserWarning):
        ImageStore.build(paths, on_error="drop", cache=tmp_path / "cache")
    with pytest.warns(UserWarning, match="skipping 1"):
        again = ImageStore.build(paths, on_error="drop", cache=tmp_path / "cache")
    assert again.on_disk and again.valid().tolist() == [False, True]
    with pytest.raises(DataError, match="1 image"):
        ImageStore.build(paths, cache=tmp_path / "cache")


def test_drop_with_every_image_bad_is_an_error(tmp_path):
    bad = tmp_path / "bad.jpg"
    bad.write_text("nope")
    with pytest.raises(DataError, match=r"1 image\(s\) cannot be decoded"):
        ImageStore.build([bad], on_error="drop")


def test_build_argument_errors(photo_files):
    with pytest.raises(ConfigError, match=r"on_error='skip' is not one of \('raise', 'drop'\)"):
        ImageStore.build(photo_files, on_error="skip")
    with pytest.raises(DataError, match="no images to decode"):
        ImageStore.build([])


# ------------------------------------------------------------------ real images
def test_real_livec_png_is_the_lossless_bmp(shared_datasets):
    images = shared_datasets / "LIVEC" / "ChallengeDB_release" / "Images"
    png = images / "100.png"
    if not png.is_file():
        pytest.skip(f"{png} not present")
    out = decode_image(png)
    np.testing.assert_array_equal(out, np.asarray(Image.open(png).convert("RGB")))
    assert out.shape == (500, 500, 3)
