"""Hostile inputs to ``iqalib score``: where the table goes, what sizes memory, what the checkpoint
claims, what a folder holds; and what reaches the command line's top level.

Every input is made here. Each refusal is checked through the command line
(``main`` in process, or a child process where a regression would hang): the
exit status, exactly one ``error:`` line naming the file and what to do, no
traceback, the same exception class with ``--debug``, and, by sha256
snapshots, that no input and no file outside the output folder changed.
ENOSPC and an unwritable folder are simulated by patching the writes (root
ignores file permissions, so chmod cannot make a folder read-only here).
"""
from __future__ import annotations

import errno
import io
import json
import math
import os
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from faults_support import PATCH, cli_error, noise_png, run_cli, scoring_checkpoint
from hostile_support import snapshot
from iqalib import cli
from iqalib.cli import main
from iqalib.engine.checkpoint import FORMAT, load_checkpoint, save_checkpoint
from iqalib.engine.score import MAX_BATCH_SIZE, MAX_PATCHES, MAX_SHORT_SIDE, SCORES_HEADER, load_trained
from iqalib.errors import CheckpointError, ConfigError, OutputError
from iqalib.paths import printable

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: small tensors run faster on one thread


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return scoring_checkpoint(tmp_path_factory.mktemp("ckpt") / "best.pt")


@pytest.fixture
def job(tmp_path, checkpoint) -> dict:
    """Two photos, a CSV listing them, a copy of the checkpoint, an output folder; all inside tmp_path."""
    photos = tmp_path / "photos"
    for i in range(2):
        noise_png(photos / f"p{i}.png", 80, 100, seed=i)
    listing = tmp_path / "list.csv"
    listing.write_text("image\nphotos/p0.png\nphotos/p1.png\n")
    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes(checkpoint.read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    return {"root": tmp_path, "photos": photos, "listing": listing, "checkpoint": ckpt, "out": out}


def score_args(job: dict, *extra: str, inputs=None) -> list[str]:
    inputs = [str(job["photos"])] if inputs is None else inputs
    return ["score", *inputs, "--checkpoint", str(job["checkpoint"]), "--patches", "2", *extra]


# ----------------------------------------------------------------- --out
@pytest.mark.parametrize("target, fragment", [
    ("image", "is the input"), ("checkpoint", "is the checkpoint"), ("listing", "is the input"),
    ("image_link", "is the input"), ("image_hardlink", "is the input")])
def test_out_never_overwrites_an_input(job, capsys, target, fragment):
    image = job["photos"] / "p0.png"
    out = {"image": image, "checkpoint": job["checkpoint"], "listing": job["listing"],
           "image_link": job["out"] / "link.csv", "image_hardlink": job["out"] / "hard.csv"}[target]
    if target == "image_link":
        out.symlink_to(image)
    if target == "image_hardlink":
        os.link(image, out)
    inputs = [str(job["listing"])] if target == "listing" else None
    before = snapshot(job["root"])
    cli_error(capsys, score_args(job, "--out", str(out), inputs=inputs), ConfigError,
              f"--out {out}", fragment, "pass a new name for --out")
    assert snapshot(job["root"]) == before


def test_out_refuses_a_file_that_is_not_an_iqalib_scores_table(job, capsys):
    notes = job["out"] / "results.csv"
    notes.write_text("subject,rating\nanne,5\n")
    before = snapshot(job["root"])
    cli_error(capsys, score_args(job, "--out", str(notes)), ConfigError, f"--out {notes} exists and is not a "
              "scores table written by iqalib score", repr(SCORES_HEADER), "pass a new name for --out or delete it")
    assert snapshot(job["root"]) == before


def test_out_replaces_a_scores_table_written_by_iqalib(job, capsys):
    out = job["out"] / "scores.csv"
    assert main(score_args(job, "--out", str(out))) == 0
    first = out.read_bytes()
    assert first.decode().splitlines()[0] == SCORES_HEADER
    out.write_text(f"{SCORES_HEADER}\nold.png,1.0,\n")  # an earlier table of other images
    inputs_before = snapshot(job["root"], skip=job["out"])
    assert main(score_args(job, "--out", str(out))) == 0
    assert out.read_bytes() == first
    assert snapshot(job["root"], skip=job["out"]) == inputs_before
    assert not [p.name for p in job["out"].iterdir() if p.name.endswith(".tmp")]  # no temporary file left


@pytest.mark.parametrize("case", ["folder", "missing_parent", "parent_is_a_file", "read_only"])
def test_out_that_cannot_take_the_table_is_one_line(job, capsys, case):
    out = {"folder": job["out"], "missing_parent": job["out"] / "nope" / "scores.csv",
           "parent_is_a_file": job["photos"] / "p0.png" / "scores.csv", "read_only": job["out"] / "scores.csv"}[case]
    if case == "read_only":
        out.write_text(f"{SCORES_HEADER}\n")
        out.chmod(0o444)
    fragment = {"folder": "is a folder; pass a file name", "missing_parent": "does not exist; create it",
                "parent_is_a_file": "cannot be used (Not a directory)", "read_only": "is read-only"}[case]
    before = snapshot(job["root"])
    cli_error(capsys, score_args(job, "--out", str(out)), ConfigError, f"--out {out}", fragment)
    assert snapshot(job["root"]) == before


def test_out_in_an_unwritable_folder_is_refused_before_scoring(job, capsys, monkeypatch):
    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(tempfile, "TemporaryFile", refuse)
    monkeypatch.setattr("iqalib.engine.score.load_trained", lambda *a, **k: pytest.fail("scored anyway"))
    out = job["out"] / "scores.csv"
    before = snapshot(job["root"])
    cli_error(capsys, score_args(job, "--out", str(out)), OutputError, "cannot write scores.csv in",
              "Permission denied", "make the folder writable")
    assert snapshot(job["root"]) == before


def test_a_full_disk_keeps_the_previous_table(job, capsys, monkeypatch):
    out = job["out"] / "scores.csv"
    assert main(score_args(job, "--out", str(out))) == 0
    before = snapshot(job["root"])

    def full(fd):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(os, "fsync", full)  # the atomic writer's flush to disk fails as on a full disk
    cli_error(capsys, score_args(job, "--out", str(out)), OutputError, "cannot write scores.csv",
              "No space left on device", "free space", "the previous scores.csv is intact")
    assert snapshot(job["root"]) == before  # the table intact, no temporary file left


# ----------------------------------------------------------------- memory bounded by flags and shapes
@pytest.mark.parametrize("flag, value, fragment", [
    ("--patches", 200_000, f"from 1 to {MAX_PATCHES:,}"),
    ("--short-side", 30_000, f"from 1 to {MAX_SHORT_SIDE:,}"),
    ("--batch-size", 10**6, f"from 1 to {MAX_BATCH_SIZE:,}"),
    ("--batch-size", 0, "must be a positive whole number"),
])
def test_flags_that_size_memory_are_bounded(job, capsys, flag, value, fragment):
    before = snapshot(job["root"])
    cli_error(capsys, score_args(job, flag, str(value)), ConfigError, flag, fragment)
    assert snapshot(job["root"]) == before


def test_an_extreme_aspect_ratio_is_skipped_not_upscaled_to_gigapixels(job, capsys):
    strip = noise_png(job["photos"] / "strip.png", height=1, width=20000)
    out = job["out"] / "scores.csv"
    assert main(score_args(job, "--out", str(out))) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "UserWarning" not in err  # refused before any upscaling
    table = pd.read_csv(out, keep_default_na=False).set_index("image")
    # Upscaled to a 64-pixel short side, 20000x1 would be 1,280,000 x 64 = 82 million pixels.
    reason = table.loc[str(strip), "error"]
    assert "20000x1 would become 1280000x64 pixels" in reason and "over the 64,000,000 limit" in reason
    assert all(math.isfinite(float(table.loc[str(job["photos"] / f"p{i}.png"), "score"])) for i in range(2))


def test_a_long_run_of_crops_is_streamed_in_batches(checkpoint, tmp_path, monkeypatch):
    """--patches above --batch-size: no forward pass sees more than the batch, and the score is the
    same as in one pass over all crops."""
    from iqalib.engine.score import score_paths

    image = noise_png(tmp_path / "a.png", 80, 100)
    model = load_trained(checkpoint)
    whole = score_paths(model, [image], patches=40, batch_size=64, errors=None)["score"][0]
    sizes = []
    forward = model.forward
    monkeypatch.setattr(model, "forward", lambda x: sizes.append(len(x)) or forward(x))
    streamed = score_paths(model, [image, image], patches=40, batch_size=16, errors=None)["score"]
    assert max(sizes) == 16 and sum(sizes) == 80
    np.testing.assert_allclose(streamed, [whole, whole], rtol=1e-5)


# ----------------------------------------------------------------- checkpoint metadata
@pytest.fixture(scope="module")
def good_state(checkpoint) -> dict:
    return load_checkpoint(checkpoint)


def _with(state: dict, path: Path, **changes) -> Path:
    """``state`` with fields replaced; ``config__train__patch_size=...`` reaches nested fields."""
    state = {**state, "config": {k: dict(v) if isinstance(v, dict) else v for k, v in state["config"].items()}}
    state["config"]["model"] = {**state["config"]["model"], "options": dict(state["config"]["model"]["options"])}
    for key, value in changes.items():
        *parents, last = key.split("__")
        node = state
        for part in parents:
            node = node[part]
        node[last] = value
    save_checkpoint(path, {k: v for k, v in state.items() if k != "format"})
    return path


BAD_METADATA = {
    "model name is a list": ({"model_name": ["smart_iqa_lite0"]}, "model_name is a list of 1, expected a model name"),
    "model name is empty": ({"model_name": ""}, "model_name is '', expected a model name"),
    "patch size is text": ({"config__train__patch_size": "224"}, "config.train.patch_size is '224'"),
    "patch size is 20000": ({"config__train__patch_size": 20000},
                            "config.train.patch_size is 20000, expected a whole number of pixels from 32 to 1024"),
    "patch size is true": ({"config__train__patch_size": True}, "config.train.patch_size is True"),
    "dropout is NaN": ({"config__model__options__dropout": float("nan")},
                       "config.model.options.dropout is nan, expected a rate from 0 to 1"),
    "dropout is text": ({"config__model__options__dropout": "0.4"}, "config.model.options.dropout is '0.4'"),
    "dropout is 5": ({"config__model__options__dropout": 5.0}, "config.model.options.dropout is 5.0"),
    "multiscale is text": ({"config__model__options__multiscale": "yes"},
                           "config.model.options.multiscale is 'yes', expected true or false"),
    "options is a list": ({"config__model__options": ["dropout"]},
                          "config.model.options is a list of 1, expected a mapping"),
    "config is text": ({"config": "train: {}"}, "config is 'train: {}', expected a mapping"),
    "round is negative": ({"round": -1}, "round is -1, expected a whole number >= 0"),
    "weights are a list": ({"model": [1, 2]}, "model is a list of 2, expected the model's weights"),
}


@pytest.mark.parametrize("case", sorted(BAD_METADATA))
def test_checkpoint_metadata_is_type_checked(good_state, tmp_path, capsys, case):
    changes, fragment = BAD_METADATA[case]
    path = _with(good_state, tmp_path / "bad.pt", **changes)
    with pytest.raises(CheckpointError, match="expected") as info:
        load_trained(path)
    message = str(info.value)
    assert "\n" not in message and str(path) in message and fragment in message
    assert "pass a best.pt or last.pt written by iqalib train" in message
    photo = noise_png(tmp_path / "p.png")
    before = snapshot(tmp_path)
    cli_error(capsys, ["score", str(photo), "--checkpoint", str(path)], CheckpointError, str(path), fragment)
    assert snapshot(tmp_path) == before


def test_a_crop_size_the_trunk_cannot_take_is_refused(good_state, tmp_path):
    """Swin's patch embedding takes 224-pixel crops only: 64 would fail at the first forward pass."""
    path = _with(good_state, tmp_path / "swin.pt", model_name="smart_iqa_tiny", model={})
    with pytest.raises(CheckpointError, match="config.train.patch_size is 64, but 'smart_iqa_tiny' takes "
                                              "224-pixel crops only") as info:
        load_trained(path)
    assert "\n" not in str(info.value) and str(path) in str(info.value)


def test_the_good_checkpoint_passes_the_same_checks(good_state, tmp_path):
    path = _with(good_state, tmp_path / "same.pt")
    assert load_trained(path).patch_size == PATCH
    assert load_checkpoint(path)["format"] == FORMAT


# ----------------------------------------------------------------- image folders
def _odd_folder(folder: Path) -> dict[str, str]:
    """Every kind of entry a photo folder can hold -> the reason it is not scored ('' when it is)."""
    folder.mkdir(parents=True)
    arr = np.random.default_rng(0).integers(0, 256, (80, 100, 3), dtype=np.uint8)
    expected = {}
    for name, fmt in [("a.gif", "GIF"), ("b.jfif", "JPEG"), ("c.jpe", "JPEG"), ("d.webp", "WEBP"),
                      ("e.tif", "TIFF"), ("f.JPG", "JPEG"), ("g.PnG", "PNG")]:
        Image.fromarray(arr).save(folder / name, format=fmt)
        expected[name] = ""
    (folder / "x.jpg").mkdir()  # a folder named like an image: searched, not "a corrupt image"
    Image.fromarray(arr).save(folder / "x.jpg" / "inside.png")
    expected["x.jpg/inside.png"] = ""
    (folder / "loop.jpg").symlink_to("loop.jpg")
    expected["loop.jpg"] = "is a link loop"
    (folder / "gone.png").symlink_to("missing.png")
    expected["gone.png"] = "broken link (its target is missing)"
    (folder / "sub").mkdir()
    (folder / "sub" / "back").symlink_to("..")  # a folder loop: walked once
    os.mkfifo(folder / "pipe.png")  # opening it would wait forever for a writer
    expected["pipe.png"] = "is not a regular file (a pipe, device or socket)"
    (folder / "empty.png").write_bytes(b"")
    expected["empty.png"] = "file is empty (0 bytes)"
    (folder / "notes.txt").write_text("not a photo\n")
    return expected


@pytest.mark.slow
def test_a_hostile_photo_folder_is_scored_with_a_reason_per_skipped_file(checkpoint, tmp_path):
    folder = tmp_path / "photos"
    expected = _odd_folder(folder)
    out = tmp_path / "scores.csv"
    before = snapshot(folder)
    # A child process with a timeout: a regression that opens the pipe must fail, not hang the suite.
    proc = run_cli(["score", str(folder), "--checkpoint", str(checkpoint), "--patches", "2", "--out", str(out)],
                   timeout=240)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr
    table = pd.read_csv(out, keep_default_na=False)
    rows = {os.path.relpath(p, folder): (s, e) for p, s, e in zip(table["image"], table["score"], table["error"])}
    assert set(rows) == set(expected)  # each image once, though sub/back leads to the folder again
    for name, reason in expected.items():
        score, error = rows[name]
        if reason:
            assert score == "" and reason in error, (name, error)
        else:
            assert error == "" and math.isfinite(float(score)), (name, error)
    lines = proc.stderr.strip().splitlines()
    failed = [n for n, r in expected.items() if r]
    for name in failed:
        assert sum(line.startswith(f"skipped {folder / name}: ") for line in lines) == 1, (name, lines)
    assert any(line.startswith("note: 1 file(s)") and ".txt" in line for line in lines), lines
    assert lines[-1] == f"{len(failed)} of {len(expected)} image(s) could not be scored (see above)"
    assert snapshot(folder) == before


# ----------------------------------------------------------------- the top level
def test_an_unexpected_exception_is_one_line_saying_it_is_a_bug(monkeypatch, capsys):
    def broken(args):
        raise KeyError("first line\nsecond line")

    monkeypatch.setattr(cli, "_models", broken)
    assert main(["models"]) == 3
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Traceback" not in err
    assert err.startswith("error: this is a bug in iqalib (KeyError: ") and "rerun with --debug" in err
    with pytest.raises(KeyError):
        main(["--debug", "models"])


def test_an_os_error_that_escapes_is_one_line(monkeypatch, capsys):
    def full(args):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), "/data/somewhere.bin")

    monkeypatch.setattr(cli, "_models", full)
    assert main(["models"]) == 2
    err = capsys.readouterr().err
    assert err == ("error: /data/somewhere.bin: No space left on device; free space on that disk (or write "
                   "elsewhere) and rerun (rerun with --debug for the traceback)\n")


def test_a_closed_output_pipe_ends_quietly(monkeypatch, capsys):
    def closed(args):
        raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))

    monkeypatch.setattr(cli, "_models", closed)
    assert main(["models"]) == 141
    assert capsys.readouterr().err == ""


# ----------------------------------------------------------------- issue 26 class 4, issue 25: names and tables
def _bytes_name(folder: Path, name: bytes) -> Path:
    """A path whose last part is ``name``, bytes as the operating system takes them (not UTF-8)."""
    return Path(os.fsdecode(os.fsencode(folder) + b"/" + name))


def test_a_name_that_is_not_utf8_is_scored_and_written_with_one_escape(job, capsys):
    """Latin-1 names: scored, and written as \\xHH in the table, on stdout, on stderr and in the card;
    a CSV naming the file so is read back to the same file."""
    noise_png(_bytes_name(job["photos"], b"caf\xe9.png"), 80, 100, seed=5)
    _bytes_name(job["photos"], b"bad\xff.png").write_bytes(b"not a png")
    shown_good, shown_bad = f"{job['photos']}/caf\\xe9.png", f"{job['photos']}/bad\\xff.png"
    out = job["out"] / "scores.csv"
    inputs_before = snapshot(job["root"], skip=job["out"])
    capsys.readouterr()
    assert main(score_args(job, "--out", str(out))) == 1
    err = capsys.readouterr().err
    assert f"skipped {shown_bad}: not a readable image" in err and "Traceback" not in err and "\\udc" not in err
    text = out.read_bytes().decode("utf-8")  # strict: every byte of the table is UTF-8
    table = pd.read_csv(out, keep_default_na=False).set_index("image")
    assert set(table.index) == {shown_good, shown_bad, *(str(job["photos"] / f"p{i}.png") for i in range(2))}
    assert math.isfinite(float(table.loc[shown_good, "score"])) and table.loc[shown_bad, "score"] == ""
    card = json.loads(Path(f"{out}.card.json").read_text(encoding="utf-8"))
    assert card["scoring"]["images"] == 4 and card["scoring"]["failed"] == 1
    assert main(score_args(job)) == 1  # the same table on stdout
    assert capsys.readouterr().out == text
    # The escaped name read back from a CSV of paths is the Latin-1 file: the same score.
    listing = job["root"] / "again.csv"
    listing.write_text(f"image,mos\n{shown_good},61.5\n", encoding="utf-8")
    assert main(score_args(job, inputs=[str(listing)])) == 0
    again = pd.read_csv(io.StringIO(capsys.readouterr().out), keep_default_na=False)
    assert again.to_dict("records") == [{"image": shown_good, "score": float(table.loc[shown_good, "score"]),
                                         "error": "", "mos": 61.5}]
    listing.unlink()
    assert snapshot(job["root"], skip=job["out"]) == inputs_before


def test_an_error_naming_a_file_that_is_not_utf8_uses_the_same_escape(job, capsys):
    missing = _bytes_name(job["root"], b"gone\xe9") / "scores.csv"
    before = snapshot(job["root"])
    capsys.readouterr()
    assert main(score_args(job, "--out", str(missing))) == 2
    err = capsys.readouterr().err
    assert err == (f"error: --out {job['root']}/gone\\xe9/scores.csv: the folder {job['root']}/gone\\xe9 does not "
                   "exist; create it or pass a new name for --out\n")
    with pytest.raises(ConfigError) as info:  # the exception keeps the name as Python holds it
        main(["--debug", *score_args(job, "--out", str(missing))])
    assert printable(info.value) == err[len("error: "):-1]
    assert snapshot(job["root"]) == before


def test_score_on_a_csv_carries_its_other_columns_and_rounds_scores(job, capsys):
    """#25: a CSV's mos (and any other column) follows image,score,error, as written; a column named like
    one of those is carried as input_<name>; scores have 4 decimals; such a table may be overwritten."""
    job["listing"].write_text("image,mos,score,note\nphotos/p0.png,50.10,3,first\nphotos/p1.png,7,,\n")
    out = job["out"] / "scores.csv"
    before = snapshot(job["root"], skip=job["out"])
    for _ in range(2):  # the second run replaces the table the first wrote (its header carries columns)
        assert main(score_args(job, "--out", str(out), inputs=[str(job["listing"])])) == 0
    lines = out.read_text().splitlines()
    assert lines[0] == f"{SCORES_HEADER},mos,input_score,note"
    rows = [line.split(",") for line in lines[1:]]
    assert [(r[0], r[2:]) for r in rows] == [(str(job["photos"] / "p0.png"), ["", "50.10", "3", "first"]),
                                             (str(job["photos"] / "p1.png"), ["", "7", "", ""])]
    assert all(0 < len(r[1].partition(".")[2]) <= 4 for r in rows), rows  # no float32 noise digits
    card = json.loads(Path(f"{out}.card.json").read_text())
    assert card["scoring"]["score_decimals"] == 4
    capsys.readouterr()
    assert main(score_args(job, inputs=[str(job["listing"])])) == 0
    assert capsys.readouterr().out.splitlines() == lines  # stdout: the same table
    assert snapshot(job["root"], skip=job["out"]) == before


def test_out_whose_header_only_looks_like_ours_is_refused(job, capsys):
    notes = job["out"] / "results.csv"
    notes.write_text(f"{SCORES_HEADER}_by_hand,rating\nanne,5\n")
    before = snapshot(job["root"])
    cli_error(capsys, score_args(job, "--out", str(notes)), ConfigError, "is not a scores table written by iqalib")
    assert snapshot(job["root"]) == before
