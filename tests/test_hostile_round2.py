"""Hostile inputs, second round (issue 26): each class of failure fixed at the mechanism it shares.

Every input is made here. A refusal is checked through the command line where one exists
(:func:`faults_support.cli_error`: the exit status, exactly one ``error:`` line with its
fragments, the same exception class with ``--debug``), and by sha256 snapshots that no input
and no file outside the output folder changed.
"""
from __future__ import annotations

import math
import os
from collections import OrderedDict
from pathlib import Path

import pandas as pd
import pytest
import torch

from faults_support import cli_error, noise_png, scoring_checkpoint
from hostile_support import snapshot
from iqalib.cli import main
from iqalib.engine.checkpoint import load_checkpoint, save_checkpoint
from iqalib.errors import CheckpointError
from iqalib.models.official import iqalib_official_name, model_layout

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: small tensors run faster on one thread


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> Path:
    return scoring_checkpoint(tmp_path_factory.mktemp("ckpt") / "best.pt")


@pytest.fixture
def job(tmp_path, checkpoint) -> dict:
    """Two photos, a copy of the checkpoint, an output folder; all inside tmp_path."""
    photos = tmp_path / "photos"
    for i in range(2):
        noise_png(photos / f"p{i}.png", 80, 100, seed=i)
    ckpt = tmp_path / "best.pt"
    ckpt.write_bytes(checkpoint.read_bytes())
    out = tmp_path / "out"
    out.mkdir()
    return {"root": tmp_path, "photos": photos, "checkpoint": ckpt, "out": out}


def score_args(job: dict, *extra: str, inputs=None) -> list[str]:
    inputs = [str(job["photos"])] if inputs is None else inputs
    return ["score", *inputs, "--checkpoint", str(job["checkpoint"]), "--patches", "2", *extra]


def hyperiqa_official() -> OrderedDict:
    """HyperIQA's official state dict layout, every tensor a broadcast zero (a few bytes on disk)."""
    expected = model_layout("hyperiqa_resnet50").state_dict()
    return OrderedDict((iqalib_official_name("hyperiqa", k), torch.zeros((), dtype=v.dtype).expand(v.shape))
                       for k, v in expected.items())


# ------------------------------------------------------------ 3. non-finite numbers
def test_import_weights_refuses_non_finite_tensors_naming_the_first(tmp_path, capsys):
    state = hyperiqa_official()
    floats = [k for k, v in state.items() if v.is_floating_point()]
    state[floats[3]] = torch.full(state[floats[3]].shape, math.nan)
    state[floats[7]] = torch.full(state[floats[7]].shape, math.inf)
    source = tmp_path / "koniq_pretrained.pkl"
    torch.save(state, source)
    out = tmp_path / "out" / "best.pt"
    out.parent.mkdir()
    before = snapshot(tmp_path)
    cli_error(capsys, ["import-weights", "hyperiqa", str(source), "--out", str(out)], CheckpointError,
              f"{source}: refused", "NaN or Inf", repr(floats[3]), "intact copy")
    assert snapshot(tmp_path) == before


def test_non_finite_scores_are_errors_of_their_images_never_scores(job, capsys):
    state = load_checkpoint(job["checkpoint"])
    state["model"] = {k: torch.full_like(v, math.nan) if v.is_floating_point() else v
                      for k, v in state["model"].items()}
    save_checkpoint(job["checkpoint"], {k: v for k, v in state.items() if k != "format"})
    out = job["out"] / "scores.csv"
    before = snapshot(job["root"], skip=job["out"])
    assert main(score_args(job, "--out", str(out))) == 1
    err = capsys.readouterr().err
    table = pd.read_csv(out, keep_default_na=False)
    assert list(table["score"]) == ["", ""]
    assert all(e.startswith("the model gave a non-finite score (nan)") for e in table["error"])
    assert "2 of 2 image(s) could not be scored" in err
    assert snapshot(job["root"], skip=job["out"]) == before


# ------------------------------------------------------------ 6. one image under two names
def test_one_image_under_two_names_is_refused_naming_the_rows(tmp_path):
    from iqalib.data.datasets import load_dataset
    from iqalib.errors import DataError

    root = tmp_path / "set"
    for i in range(4):
        noise_png(root / f"im0{i}.png", 70, 80, seed=i)
    (root / "alias.png").symlink_to("im01.png")
    table = root / "scores.csv"
    table.write_text("image,mos\nim00.png,10\nim03.png,20\n./im03.png,80\nim01.png,30\n.//alias.png,40\n"
                     "im02.png,50\n")
    before = snapshot(tmp_path)
    with pytest.raises(DataError) as info:
        load_dataset("csv", root, table="scores.csv", mos_range=[0, 100])
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{table}: ")
    assert ("4 row(s) name one image more than once, compared as resolved paths (row 1 = row 2; row 3 = row 4): "
            "row 1 (im03.png), row 2 (./im03.png), row 3 (im01.png), row 4 (.//alias.png)") in message
    assert snapshot(tmp_path) == before


# ------------------------------------------------------------ 7. one validation for a configuration
@pytest.mark.parametrize("options, fragment", [
    ({"multiscale": "no"}, "model.options.multiscale='no' must be true or false"),
    ({"attention": "False"}, "model.options.attention='False' must be true or false"),
    ({"dropout": 1.0}, "model.options.dropout=1.0 must be below 1"),  # the config's own range check
    ({"dropout": "0.1"}, "model.options.dropout='0.1' must be a rate from 0 to 1 (1 excluded)"),
])
def test_training_refuses_model_options_a_checkpoint_would_refuse(tmp_path, capsys, options, fragment):
    from faults_support import tiny_config, write_tiny_set, write_yaml
    from iqalib.errors import ConfigError
    from iqalib.engine.checkpoint import validate_checkpoint

    data = write_tiny_set(tmp_path / "set", n=4)
    config = tiny_config(data, tmp_path / "runs")
    config["model"]["options"] = options
    cfg = write_yaml(tmp_path / "run.yaml", config)
    before = snapshot(tmp_path)
    cli_error(capsys, ["train", str(cfg)], ConfigError, fragment)
    assert snapshot(tmp_path) == before and not (tmp_path / "runs").exists()
    # a checkpoint holding these options is refused by the same rule, echoing the value as written
    key, value = next(iter(options.items()))
    with pytest.raises(CheckpointError, match=f"config.model.options.{key} is {value!r}, expected "):
        validate_checkpoint(Path("best.pt"), {"model_name": "smart_iqa_lite0",
                                              "config": {"model": {"options": options}}})


# ------------------------------------------------------------ 10. a checkpoint that carries code
class _Payload:
    """Unpickling this calls ``os.system(command)``: torch names that global 'posix.system ... is blocked'."""

    def __init__(self, command: str):
        self.command = command

    def __reduce__(self):
        return os.system, (self.command,)


@pytest.mark.parametrize("command", ["score", "import-weights"])
def test_a_file_that_carries_code_is_refused_as_code_not_as_damage(job, capsys, command):
    witness = job["root"] / "ran"
    evil = job["root"] / "evil.pt"
    torch.save({"format": "iqalib-checkpoint-1", "model_name": "smart_iqa_lite0",
                "model": _Payload(f"touch {witness}")}, evil)
    args = (["score", str(job["photos"]), "--checkpoint", str(evil)] if command == "score"
            else ["import-weights", "hyperiqa", str(evil), "--out", str(job["out"] / "best.pt")])
    before = snapshot(job["root"])
    line = cli_error(capsys, args, CheckpointError, f"{evil}: refused, it contains pickled code or objects",
                     "it asks for posix.system", "weights_only=True")
    assert "re-download" not in line and "truncated" not in line
    assert not witness.exists() and snapshot(job["root"]) == before


def test_pickled_code_knows_the_wordings_of_a_blocked_global():
    from iqalib.errors import pickled_code

    assert pickled_code("Trying to load unsupported GLOBAL posix.system whose module posix is blocked.") == "posix.system"
    assert pickled_code("Unsupported global: GLOBAL builtins.eval was not an allowed global by default.") == "builtins.eval"
    assert pickled_code("Can only build Tensor, Parameter, OrderedDict or types allowlisted via ...") == "objects"
    assert pickled_code("Weights only load failed. WeightsUnpickler error: Unsupported operand 149") is None


# ------------------------------------------------------------ 1. caches trusted without checking
@pytest.fixture(scope="module")
def lite0():
    from iqalib.models import create_model

    torch.manual_seed(0)
    return create_model("hyperiqa_lite0", pretrained=False)


def _bank_data(folder: Path):
    """Three PNGs on disk and the decoded store :func:`feature_bank` reads, as the training loop holds them."""
    import types

    import numpy as np
    from PIL import Image
    from iqalib.data.images import ImageStore

    paths = [noise_png(folder / f"img{i}.png", 80, 96, seed=i) for i in range(3)]
    store = ImageStore.from_arrays([np.asarray(Image.open(p).convert("RGB")) for p in paths])
    return types.SimpleNamespace(table=types.SimpleNamespace(paths=paths), store=store)


def _bank(lite0, data):
    from iqalib.config import TrainConfig
    from iqalib.engine.features import feature_bank

    tc = TrainConfig(train_patches=2, test_patches=1, batch_size=6, patch_size=64, precision="fp32", progress=False)
    return feature_bank(lite0, data, tc, device="cpu")


class _Alarm:
    """Fail, rather than hang the suite, when a block does not finish within ``seconds``."""

    def __init__(self, seconds: int):
        self.seconds = seconds

    def __enter__(self):
        import signal

        def fail(*_):
            raise TimeoutError(f"still running after {self.seconds} s: a read blocked")

        self.previous = signal.signal(signal.SIGALRM, fail)
        signal.alarm(self.seconds)

    def __exit__(self, *exc):
        import signal

        signal.alarm(0)
        signal.signal(signal.SIGALRM, self.previous)


def test_an_image_edited_in_place_gets_new_features(lite0, one_thread, private_cache, tmp_path):
    from PIL import Image

    data = _bank_data(tmp_path / "set")
    first = _bank(lite0, data)
    image = data.table.paths[1]
    info = os.stat(image)
    flipped = Image.open(image).transpose(Image.FLIP_LEFT_RIGHT)  # same size, same shape, other pixels
    flipped.save(image)
    os.utime(image, ns=(info.st_atime_ns, info.st_mtime_ns + 10**9))  # a coarse clock still sees the edit
    assert os.stat(image).st_size == info.st_size  # the old key (names and shapes) would match
    import numpy as np
    from iqalib.data.images import ImageStore

    data.store = ImageStore.from_arrays([np.asarray(Image.open(p).convert("RGB")) for p in data.table.paths])
    second = _bank(lite0, data)
    assert len(list((private_cache / "features").glob("*.pt"))) == 2  # another key, not the old bank
    assert not all(torch.equal(a, b) for a, b in zip(first.features, second.features))


@pytest.mark.parametrize("damage, why", [
    ("rows", "rows where the table needs 6; computing the trunk features again"),
    ("values", "does not match its checksum"),
    ("pipe", "is not a regular file"),
    ("junk", "is unreadable"),
])
def test_a_feature_cache_that_does_not_hold_what_it_says_is_rebuilt_with_one_line(lite0, one_thread, private_cache,
                                                                                  tmp_path, damage, why):
    from iqalib.engine.features import _features_sha256

    data = _bank_data(tmp_path / "set")
    good = _bank(lite0, data)
    (path,) = (private_cache / "features").glob("*.pt")
    saved = torch.load(path, weights_only=True)
    path.unlink()
    if damage == "rows":  # fewer rows than the table, with a checksum that matches them
        features = [t[:4] for t in saved["features"]]
        torch.save({"features": features, "sha256": _features_sha256(features)}, path)
    elif damage == "values":
        saved["features"][0][0] += 1.0
        torch.save(saved, path)
    elif damage == "pipe":
        os.mkfifo(path)
    else:
        path.write_bytes(b"PK\x03\x04 not a bank")
    with _Alarm(60), pytest.warns(UserWarning, match=f"feature cache {path}: .*{why}") as caught:
        bank = _bank(lite0, data)
    assert len([w for w in caught if "feature cache" in str(w.message)]) == 1
    assert all(torch.equal(a, b) for a, b in zip(good.features, bank.features))
    assert path.is_file() and not path.is_symlink()  # rewritten as a regular, verified file
    assert all(torch.equal(a, b) for a, b in zip(good.features, torch.load(path, weights_only=True)["features"]))


def test_a_precision_cache_that_is_a_pipe_is_not_read(private_cache, monkeypatch):
    from iqalib.engine import precision

    monkeypatch.setattr(precision, "_memo", {})
    monkeypatch.setattr(precision, "probe_matmul", lambda: {"size": 256, "fp32_gflops": 9.0, "bf16_gflops": 1.0,
                                                            "seconds": 0.1, "threads": 1,
                                                            "version": precision.PROBE_VERSION})
    path = precision.cache_path()
    path.parent.mkdir(parents=True)
    os.mkfifo(path)
    with _Alarm(60):
        entry = precision.cpu_probe()
    assert entry["source"] == "measured" and entry["decision"] == "fp32"


# ------------------------------------------------------------ 8. a killed book run
def test_a_chapter_killed_midway_never_has_its_own_name(tmp_path, monkeypatch):
    """Papermill writes as it goes; a run that dies there (here: interrupted after the first cells were
    written, as SIGKILL would leave it) keeps no notebook under the chapter's name."""
    import papermill

    from iqalib.book import EXECUTED, execute_notebook

    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "99_tiny.py").write_text('# %% tags=["parameters"]\nx = 1\n\n# %%\ny = 2\n')
    final = tmp_path / EXECUTED / "99_tiny.ipynb"
    final.parent.mkdir(parents=True)
    final.write_text("{}")  # an earlier run's chapter: redone now, so not done until this run completes

    def dies_midway(notebook, output, **kwargs):
        Path(output).write_text('{"cells": [], "half": "executed"}')
        raise KeyboardInterrupt  # what the process sees of its end, as near as a test can get

    monkeypatch.setattr(papermill, "execute_notebook", dies_midway)
    with pytest.raises(KeyboardInterrupt):
        execute_notebook("99_tiny", {"x": 7}, root=tmp_path)
    assert not final.exists()
    assert [p.name for p in final.parent.iterdir()] == ["99_tiny.running.ipynb"]


@pytest.mark.book
def test_a_chapter_runs_under_a_temporary_name_until_complete(tmp_path):
    from iqalib.book import EXECUTED, NotebookFailed, execute_notebook

    (tmp_path / "notebooks").mkdir()
    (tmp_path / "notebooks" / "99_tiny.py").write_text(
        '# %% tags=["parameters"]\nx = 1\n\n# %%\nimport os\n'
        'assert not os.path.exists("book/executed/99_tiny.ipynb")\n'
        'assert os.path.exists("book/executed/99_tiny.running.ipynb")\n\n'
        '# %%\nraise ValueError(f"midway x={x}")\n')
    with pytest.raises(NotebookFailed, match="notebook 99_tiny failed in cell 3 .*ValueError: midway x=7"):
        execute_notebook("99_tiny", {"x": 7}, root=tmp_path)
    assert sorted(p.name for p in (tmp_path / EXECUTED).iterdir()) == ["99_tiny.failed.ipynb"]
    (tmp_path / "notebooks" / "99_tiny.py").write_text(
        (tmp_path / "notebooks" / "99_tiny.py").read_text().replace('raise ValueError(f"midway x={x}")', "z = x"))
    assert execute_notebook("99_tiny", {"x": 7}, root=tmp_path) == tmp_path / EXECUTED / "99_tiny.ipynb"
    assert sorted(p.name for p in (tmp_path / EXECUTED).iterdir()) == ["99_tiny.ipynb"]
