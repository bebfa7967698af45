"""Untrusted or damaged checkpoint files: ``iqalib.load_trained``, ``iqalib score --checkpoint``,
``iqalib evaluate``, ``iqalib train --resume`` and ``model.pretrained=PATH``.

``load_checkpoint``'s own refusals (pickled objects, truncated and foreign
files, another model's name) and ``load_trained`` on weights of another
architecture are unit-tested in tests/test_engine.py. Here every entry point
a user has is fed each bad file, and the pickle payload proves it never ran:
unpickled, it would create a file.
"""
from __future__ import annotations

from pathlib import Path

import pytest
import torch

import iqalib
from faults_support import cli_error, noise_png, scoring_checkpoint, tiny_config, write_yaml
from iqalib.engine.checkpoint import FORMAT, load_checkpoint, save_checkpoint
from iqalib.config import load_config
from iqalib.errors import CheckpointError, ConfigError


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: small tensors run faster on one thread


class Payload:
    """Unpickling this calls ``open(marker, "w")``: the marker file appearing means code ran."""

    def __init__(self, marker: Path):
        self.marker = str(marker)

    def __reduce__(self):
        return (open, (self.marker, "w"))


def payload_checkpoint(path: Path, marker: Path, model_name: str = "smart_iqa_lite0") -> Path:
    """A checkpoint that looks right (marker, model name, weights) but carries the payload."""
    good = load_checkpoint(scoring_checkpoint(path.with_name("clean.pt"), model_name))
    torch.save({**good, "format": FORMAT, "extra": Payload(marker)}, path)
    return path


def test_the_payload_is_live(tmp_path):
    """Control: loaded without weights_only, the same file does create its marker."""
    marker = tmp_path / "control-ran"
    path = payload_checkpoint(tmp_path / "control.pt", marker)
    assert not marker.exists()
    torch.load(path, weights_only=False)
    assert marker.exists()


def bad_files(folder: Path) -> dict[str, tuple[Path, str]]:
    """name -> (file, a fragment of the one-line message it must produce)."""
    folder.mkdir(parents=True, exist_ok=True)
    good = scoring_checkpoint(folder / "good.pt")
    files = {}
    (folder / "notes.pt").write_text("these are not weights\n")
    files["text"] = (folder / "notes.pt", "not a checkpoint")
    (folder / "random.pt").write_bytes(bytes(range(256)) * 40)
    files["random bytes"] = (folder / "random.pt", "not a")
    files["image"] = (noise_png(folder / "photo.png", 8, 8).rename(folder / "photo.pt"), "not a")
    torch.save({"w": torch.ones(2)}, folder / "state_dict.pt")
    files["plain state dict"] = (folder / "state_dict.pt", "not an iqalib checkpoint (no 'iqalib-checkpoint-1' "
                                 "marker); for plain weights use model.pretrained=PATH")
    (folder / "truncated.pt").write_bytes(good.read_bytes()[: good.stat().st_size // 2])
    files["truncated"] = (folder / "truncated.pt", "not a readable checkpoint, truncated or corrupt")
    files["pickle payload"] = (payload_checkpoint(folder / "evil.pt", folder / "PAYLOAD-RAN"),
                               "refused, it contains pickled code or objects, not only weights "
                               "(it asks for io.open; loaded with weights_only=True)")
    state = load_checkpoint(good)
    save_checkpoint(folder / "unknown_model.pt", {**{k: v for k, v in state.items() if k != "format"},
                                                  "model_name": "smart_iqa_huge"})
    files["unknown model"] = (folder / "unknown_model.pt", "unknown model 'smart_iqa_huge'; valid models: ")
    save_checkpoint(folder / "relabelled.pt", {**{k: v for k, v in state.items() if k != "format"},
                                               "model_name": "hyperiqa_lite0"})
    files["another model's weights"] = (folder / "relabelled.pt", "weights do not fit 'hyperiqa_lite0'")
    save_checkpoint(folder / "no_weights.pt", {"model_name": "smart_iqa_lite0"})
    files["no weights"] = (folder / "no_weights.pt", "incomplete checkpoint, it lacks ['model']")
    files["missing"] = (folder / "missing.pt", "checkpoint not found; pass a best.pt or last.pt")
    return files


BAD = ["text", "random bytes", "image", "plain state dict", "truncated", "pickle payload", "unknown model",
       "another model's weights", "no weights", "missing"]


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return bad_files(tmp_path_factory.mktemp("bad"))


@pytest.fixture(autouse=True)
def payload_never_runs(files):
    yield
    assert not (files["pickle payload"][0].parent / "PAYLOAD-RAN").exists()


@pytest.mark.parametrize("kind", BAD)
def test_load_trained_refuses_with_one_line_naming_the_file(files, kind):
    path, fragment = files[kind]
    with pytest.raises(CheckpointError) as info:
        iqalib.load_trained(path)
    message = str(info.value)
    assert "\n" not in message and message.startswith(f"{path}: ") and fragment in message, message


@pytest.mark.parametrize("kind", BAD)
def test_score_refuses_with_one_line_and_exit_2(files, kind, tmp_path, capsys):
    path, fragment = files[kind]
    photo = noise_png(tmp_path / "photo.png", 70, 80)
    cli_error(capsys, ["score", str(photo), "--checkpoint", str(path)], CheckpointError, f"{path}: ", fragment)


@pytest.mark.parametrize("kind", ["truncated", "pickle payload", "plain state dict", "missing"])
def test_evaluate_refuses_with_one_line_and_exit_2(files, kind, capsys):
    path, fragment = files[kind]
    cli_error(capsys, ["evaluate", str(path)], CheckpointError, f"{path}: ", fragment)


def test_evaluate_needs_the_run_configuration(files, capsys):
    good = files["truncated"][0].with_name("good.pt")  # weights and patch size, but no data section
    cli_error(capsys, ["evaluate", str(good)], CheckpointError,
              f"{good}: records no run configuration to evaluate with")


def test_pretrained_weights_file_with_a_payload_is_refused(files, tmp_path, capsys):
    evil = tmp_path / "trunk.pth"
    torch.save({"conv_stem.weight": torch.zeros(1), "x": Payload(tmp_path / "TRUNK-PAYLOAD-RAN")}, evil)
    with pytest.raises(CheckpointError, match=r"trunk\.pth: cannot read weights: refused, it contains pickled "
                                              r"code or objects \(it asks for io\.open; loaded with weights_only"):
        iqalib.create_model("smart_iqa_lite0", pretrained=evil)
    garbage = tmp_path / "garbage.pth"
    garbage.write_text("hello")
    with pytest.raises(CheckpointError, match=r"garbage\.pth: cannot read weights \(.*\); expected a PyTorch or "
                                              r"safetensors state dict: re-download it, or pass pretrained=False"):
        iqalib.create_model("smart_iqa_lite0", pretrained=garbage)
    assert not (tmp_path / "TRUNK-PAYLOAD-RAN").exists()


# ----------------------------------------------------------------- --resume
def resume_error(capsys, tiny_set, tmp_path, last_pt: Path, *fragments: str, **config) -> str:
    """``iqalib train run.yaml --resume`` where round_0/last.pt is ``last_pt``.

    A readable ``last_pt`` gets this run's configuration stored in it, so that the checkpoint's own
    check speaks (a differing stored configuration is refused earlier, by name: see below)."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    settings = tiny_config(tiny_set, tmp_path / "runs")
    settings["model"].update(config)
    cfg = write_yaml(tmp_path / "run.yaml", settings)
    last = tmp_path / "runs" / "run" / "round_0" / "last.pt"
    last.parent.mkdir(parents=True)
    try:
        state = load_checkpoint(last_pt)
    except CheckpointError:
        last.write_bytes(last_pt.read_bytes())
    else:
        save_checkpoint(last, {**{k: v for k, v in state.items() if k != "format"},
                               "config": load_config(cfg).to_dict()})
    before = last.read_bytes()
    line = cli_error(capsys, ["train", str(cfg), "--resume"], CheckpointError, f"{last}: ", *fragments,
                     f"cannot resume: delete {last} to restart this round from scratch")
    assert last.read_bytes() == before  # refused, not overwritten
    assert not (last.parent / "results.json").exists()
    return line


@pytest.mark.parametrize("kind", ["truncated", "pickle payload", "plain state dict", "text"])
def test_resume_refuses_a_bad_last_pt_and_keeps_it(files, kind, tiny_set, tmp_path, capsys):
    path, fragment = files[kind]
    resume_error(capsys, tiny_set, tmp_path, path, fragment)


def test_resume_refuses_another_models_last_pt(files, tiny_set, tmp_path, capsys):
    other = tmp_path / "other.pt"
    state = load_checkpoint(files["truncated"][0].with_name("good.pt"))
    save_checkpoint(other, {**{k: v for k, v in state.items() if k != "format"}, "model_name": "hyperiqa_lite0"})
    resume_error(capsys, tiny_set, tmp_path, other, "holds a 'hyperiqa_lite0' model, not 'smart_iqa_lite0'")


def test_resume_refuses_a_last_pt_of_another_configuration(tiny_set, tmp_path, capsys):
    """Same model name, other options (no attention): the state does not fit; say so, keep the file."""
    first = tmp_path / "first"
    iqalib.fit(tiny_config(tiny_set, first, "first"))
    last = first / "first" / "round_0" / "last.pt"
    resume_error(capsys, tiny_set, tmp_path / "second", last,
                 "was written by a different model or training configuration", options={"attention": False})


def test_resume_names_the_keys_of_a_differing_stored_configuration(tiny_set, tmp_path, capsys):
    """The stored configuration says no attention, the run asks for it: refused by key, file kept."""
    first = tmp_path / "first"
    without = tiny_config(tiny_set, first, "first")
    without["model"]["options"] = {"attention": False}
    iqalib.fit(without)
    cfg = write_yaml(tmp_path / "run.yaml", tiny_config(tiny_set, first, "first"))
    last = first / "first" / "round_0" / "last.pt"
    before = last.read_bytes()
    cli_error(capsys, ["train", str(cfg), "--resume"], ConfigError, f"cannot resume {first / 'first'}",
              "its configuration differs in model.options.attention")
    assert last.read_bytes() == before


def test_resume_refuses_an_incomplete_last_pt(files, tiny_set, tmp_path, capsys):
    resume_error(capsys, tiny_set, tmp_path, files["truncated"][0].with_name("good.pt"),
                 "incomplete checkpoint, it lacks ['optimizer', 'scheduler', 'rng', 'history',")
