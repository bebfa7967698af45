"""Bad images end to end: what ``iqalib score`` and training do with each kind a user can hand us.

Every file is generated here; nothing is committed. The decoder's own cases
(one ``ImageError`` per broken kind, the pixel conversions of 16-bit, CMYK,
palette, RGBA and greyscale files, EXIF, tiny images, the decompression-bomb
guard) are tested in tests/test_data_images.py; this module checks the paths
users take: scoring skips a broken file with its reason and scores the rest,
and training stops before writing anything unless ``data.on_error=drop``.
"""
from __future__ import annotations

import math
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from faults_support import PATCH, noise_png, scoring_checkpoint, tiny_config, write_tiny_set
from iqalib.cli import main
from iqalib.data import images as images_module
from iqalib.data.images import ImageStore, decode_image
from iqalib.engine import fit, load_trained, predict, score_paths
from iqalib.errors import ConfigError, DataError


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: small tensors run faster on one thread


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return scoring_checkpoint(tmp_path_factory.mktemp("ckpt") / "best.pt")


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def bomb_png(path: Path, width: int = 30000, height: int = 30000) -> Path:
    """A PNG of a few dozen bytes whose header claims width x height (a correct CRC, one tiny IDAT)."""
    path.write_bytes(b"\x89PNG\r\n\x1a\n"
                     + png_chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
                     + png_chunk(b"IDAT", zlib.compress(b"\x00" * 16)) + png_chunk(b"IEND", b""))
    return path


def truncated(path: Path, suffix: str) -> Path:
    whole = noise_png(path.with_name(f"whole{suffix}"), 80, 100)  # PIL picks the format by suffix
    data = whole.read_bytes()
    whole.unlink()
    path.write_bytes(data[: len(data) // 2])
    return path


# Each broken kind and the reason a user reads for it.
BROKEN = {
    "zero.jpg": (lambda p: p.write_bytes(b"") or p, "file is empty (0 bytes); re-copy or remove it"),
    "cut.jpg": (lambda p: truncated(p, ".jpg"), "the file is probably truncated or corrupt"),
    "cut.png": (lambda p: truncated(p, ".png"), "the file is probably truncated or corrupt"),
    "notes.jpg": (lambda p: p.write_text("not pixels\n" * 20) or p,
                  "not a readable image (corrupt, or not an image file)"),
    "bomb.png": (bomb_png, "header claims 900,000,000 pixels"),
}


@pytest.fixture
def broken_folder(tmp_path) -> Path:
    folder = tmp_path / "photos"
    folder.mkdir()
    for name, (make, _) in BROKEN.items():
        make(folder / name)
    noise_png(folder / "good.png", 80, 100)
    return folder


def test_the_bomb_is_tiny_on_disk_and_refused_before_decoding(tmp_path):
    path = bomb_png(tmp_path / "bomb.png")
    assert path.stat().st_size < 100
    # What a decoder would allocate: 30000 x 30000 x 3 bytes = 2.5 GiB.
    assert struct.unpack(">II", path.read_bytes()[16:24]) == (30000, 30000)
    with pytest.raises(DataError) as info:
        ImageStore.build([path])  # the training path: every bad image listed in one DataError
    message = str(info.value)
    assert "\n" not in message and str(path) in message
    assert "decompression-bomb guard" in message and "max_pixels" in message


def test_score_skips_each_broken_file_with_its_reason_and_scores_the_rest(checkpoint, broken_folder, capsys):
    out = broken_folder.parent / "scores.csv"
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # nothing but the per-file lines and the summary
        code = main(["score", str(broken_folder), "--checkpoint", str(checkpoint), "--patches", "2",
                     "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 1  # some images could not be scored
    assert "Traceback" not in captured.err
    table = pd.read_csv(out, keep_default_na=False).set_index("image")
    assert len(table) == len(BROKEN) + 1
    good = table.loc[str(broken_folder / "good.png")]
    assert good["error"] == "" and math.isfinite(float(good["score"]))
    lines = captured.err.strip().splitlines()
    for name, (_, reason) in BROKEN.items():
        row = table.loc[str(broken_folder / name)]
        assert row["score"] == "" and reason in row["error"], (name, row["error"])
        # One stderr line per file: "skipped PATH: REASON".
        assert sum(line.startswith(f"skipped {broken_folder / name}: ") and reason in line
                   for line in lines) == 1, (name, lines)
    assert lines[-1] == f"{len(BROKEN)} of {len(BROKEN) + 1} image(s) could not be scored (see above)"


def cmyk_jpeg(path: Path) -> Path:
    cmyk = np.zeros((80, 90, 4), np.uint8)
    cmyk[:, 45:, 0] = 255
    Image.fromarray(cmyk, mode="CMYK").save(path, quality=95)
    return path


def deep_grey_png(path: Path) -> Path:
    Image.fromarray(np.linspace(0, 65535, 80 * 90).astype(np.uint16).reshape(80, 90)).save(path)
    return path


def deep_rgb_png(path: Path) -> Path:
    pixels = np.random.default_rng(3).integers(0, 65536, (80, 90, 3)).astype(">u2")
    scanlines = b"".join(b"\x00" + row.tobytes() for row in pixels)
    path.write_bytes(b"\x89PNG\r\n\x1a\n" + png_chunk(b"IHDR", struct.pack(">IIBBBBB", 90, 80, 16, 2, 0, 0, 0))
                     + png_chunk(b"IDAT", zlib.compress(scanlines)) + png_chunk(b"IEND", b""))
    return path


def palette_png(path: Path) -> Path:
    img = Image.fromarray(np.random.default_rng(4).integers(0, 256, (80, 90), dtype=np.uint8), mode="P")
    img.putpalette(np.random.default_rng(5).integers(0, 256, 768).tolist())
    img.save(path)
    return path


def rgba_png(path: Path) -> Path:
    Image.fromarray(np.random.default_rng(6).integers(0, 256, (80, 90, 4), dtype=np.uint8), mode="RGBA").save(path)
    return path


def grey_jpeg(path: Path) -> Path:
    Image.fromarray(np.random.default_rng(7).integers(0, 256, (80, 90), dtype=np.uint8), mode="L").save(path)
    return path


def exif_rotated_jpeg(path: Path) -> Path:
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display"
    Image.fromarray(np.random.default_rng(8).integers(0, 256, (80, 120, 3), dtype=np.uint8)).save(
        path, exif=exif, quality=95)
    return path


# Each format and the modes PIL opens it in (a 48-bit PNG is read as 8-bit RGB by PIL itself).
ODD_FORMATS = {"cmyk.jpg": (cmyk_jpeg, {"CMYK"}), "deep_grey.png": (deep_grey_png, {"I;16", "I"}),
               "deep_rgb.png": (deep_rgb_png, {"RGB"}), "palette.png": (palette_png, {"P"}),
               "rgba.png": (rgba_png, {"RGBA"}), "grey.jpg": (grey_jpeg, {"L"}),
               "rotated.jpg": (exif_rotated_jpeg, {"RGB"})}


def test_odd_but_valid_formats_are_scored_not_skipped(checkpoint, tmp_path):
    paths = []
    for name, (make, modes) in ODD_FORMATS.items():
        path = make(tmp_path / name)
        with Image.open(path) as img:
            assert img.mode in modes, (name, img.mode)
        paths.append(path)
    model = load_trained(checkpoint)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # 80x90 and up: no upscaling warning either
        table = score_paths(model, paths, patches=2, errors=None)
    assert (table["error"] == "").all(), table
    assert np.isfinite(table["score"]).all()


def test_exif_orientation_is_kept_for_data_sets_and_applied_to_users_photos(checkpoint, tmp_path):
    """images.py decides for data sets: stored pixels as they are (comparable with the published
    data sets); a user's photo is scored as displayed (iqalib.data.inputs, issue 25)."""
    doc = " ".join(images_module.__doc__.split())
    assert "EXIF orientation is **not** applied" in doc and "exif_transpose=True" in doc
    path = exif_rotated_jpeg(tmp_path / "rotated.jpg")
    stored = decode_image(path)
    assert stored.shape == (80, 120, 3)  # landscape as stored, although it displays as portrait
    model = load_trained(checkpoint)
    displayed = np.ascontiguousarray(np.rot90(stored, -1))
    # A path gets the score of its pixels as displayed, in predict and in score_paths alike.
    with pytest.warns(UserWarning, match="untrained checkpoint's card"):  # said once per model
        as_displayed = predict(model, displayed, patches=2)
    assert predict(model, path, patches=2) == as_displayed
    assert predict(model, path, patches=2) != predict(model, stored, patches=2)
    table = score_paths(model, [path], patches=2, errors=None)
    assert table["score"].item() == pytest.approx(predict(model, path, patches=2), abs=1e-5)


@pytest.mark.parametrize("side", [1, 10])
def test_tiny_images_are_upscaled_for_scoring_with_a_warning_naming_them(checkpoint, tmp_path, side):
    path = tmp_path / f"tiny{side}.png"
    Image.new("RGB", (side, side), (90, 120, 30)).save(path)
    model = load_trained(checkpoint)
    with pytest.warns(UserWarning, match=rf"tiny{side}.png: {side}x{side} is smaller than the {PATCH}-pixel "
                                         rf"patch; upscaling its short side to {PATCH}"):
        table = score_paths(model, [path], patches=2, errors=None)
    assert table["error"].item() == "" and np.isfinite(table["score"].item())


# ------------------------------------------------------------------ training
@pytest.fixture
def tiny_set(tmp_path) -> Path:
    return write_tiny_set(tmp_path / "set")


def add_rows(root: Path, rows: dict[str, float]) -> None:
    table = pd.read_csv(root / "scores.csv")
    extra = pd.DataFrame({"image": list(rows), "mos": list(rows.values())})
    pd.concat([table, extra]).to_csv(root / "scores.csv", index=False)


def test_training_stops_on_a_corrupt_image_before_writing_anything(tiny_set, tmp_path):
    truncated(tiny_set / "images" / "cut.jpg", ".jpg")
    add_rows(tiny_set, {"images/cut.jpg": 50.0})
    out = tmp_path / "runs"
    with pytest.raises(DataError) as info:
        fit(tiny_config(tiny_set, out))
    message = str(info.value)
    assert "\n" not in message
    assert message.startswith(f"1 image(s) cannot be decoded: {tiny_set / 'images' / 'cut.jpg'} (cannot be decoded")
    assert "data.on_error=drop" in message
    assert not out.exists()  # no run folder, no checkpoint: nothing to clean up or to mistake for a result


def test_training_skips_a_corrupt_image_where_the_user_allowed_it(tiny_set, tmp_path):
    (tiny_set / "images" / "notes.jpg").write_text("not pixels")
    add_rows(tiny_set, {"images/notes.jpg": 50.0})
    with pytest.warns(UserWarning, match=r"skipping 1 undecodable image\(s\): .*notes\.jpg \(not a readable image"):
        result = fit(tiny_config(tiny_set, tmp_path / "runs", on_error="drop"))
    sizes = result["round_results"][0]["split_sizes"]
    assert sum(sizes.values()) == 16  # the 16 good images, the bad one left out
    predictions = pd.read_csv(tmp_path / "runs" / "run" / "round_0" / "predictions.csv")
    assert "images/notes.jpg" not in set(predictions["image"])


@pytest.mark.parametrize("side", [1, 10])
def test_images_smaller_than_the_patch_stop_training_unless_dropped(tiny_set, tmp_path, side):
    Image.new("RGB", (side, side), (1, 2, 3)).save(tiny_set / "images" / "tiny.png")
    add_rows(tiny_set, {"images/tiny.png": 50.0})
    with pytest.raises(ConfigError) as info:
        fit(tiny_config(tiny_set, tmp_path / "runs"))
    message = str(info.value)
    assert "\n" not in message and not (tmp_path / "runs").exists()
    assert (f"train.patch_size={PATCH} is larger than 1 of 17 image(s) "
            f"(e.g. {tiny_set / 'images' / 'tiny.png'}: {side}x{side})") in message
    assert f"lower train.patch_size (at most {side} fits all) or set data.on_error=drop" in message
    with pytest.warns(UserWarning, match=r"larger than 1 of 17 image\(s\).*skipping them \(data.on_error=drop\)"):
        result = fit(tiny_config(tiny_set, tmp_path / "runs", on_error="drop"))
    assert sum(result["round_results"][0]["split_sizes"].values()) == 16
