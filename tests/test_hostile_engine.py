"""The training engine against a hostile user (issue 11): signals, ``--jobs`` workers under their
parent's lock, diverging models, a last batch of one, and book runs made by other code. The run
folder's own rules (two processes on one folder, finished runs, --force, resumes with another
configuration, a read-only folder) are tests/test_runfolder.py's.

Signals go to real ``python -m iqalib.cli train`` processes on the tiny noise set of
tests/faults_support.py; a test waits for a condition (a file appears, an epoch is saved),
never for a fixed time. In-process tests cover what a real process cannot hit on purpose
(a signal in the middle of a write).
"""
from __future__ import annotations

import importlib
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pandas as pd
import pytest
import torch

from faults_support import (REPO_ROOT, WAIT, leftovers, saved_epoch, start_train, stop, tiny_config, wait_for,
                            write_yaml)
from iqalib.cli import main
from iqalib.config import from_dict
from iqalib.engine import fit, provenance
from iqalib.engine.checkpoint import load_checkpoint
from iqalib.engine.provenance import fingerprint
from iqalib.engine.runlock import LOCK_NAME
from iqalib.errors import ConfigError
from iqalib.experiments import run_or_load
from iqalib.files import atomic_write_bytes
from iqalib.signals import Terminated, signals_as_interrupts

# iqalib.engine exports the function ``fit``, which hides the module of that name.
fit_module = importlib.import_module("iqalib.engine.fit")
TrainingDiverged = fit_module.TrainingDiverged

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: small tensors run faster on one thread


# ================================================================ SIGTERM
@pytest.mark.subprocess
def test_sigterm_saves_exits_143_with_the_resume_command_leaves_no_temporary_file_and_resume_finishes(
        tiny_set, tmp_path):
    epochs = 15
    cfg = write_yaml(tmp_path / "run.yaml", tiny_config(tiny_set, tmp_path / "runs", epochs=epochs))
    run = tmp_path / "runs" / "run"
    last = run / "round_0" / "last.pt"
    proc = start_train(str(cfg))
    wait_for(last.exists, proc, "the first last.pt")
    err = stop(proc, signal.SIGTERM)
    assert proc.returncode == 143, err  # 128 + SIGTERM, as before, now with its message
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    match = re.fullmatch(rf"interrupted: training stopped by SIGTERM; in {re.escape(str(run))}: "
                         rf"round_0/last\.pt holds epoch (\d+); "
                         rf"resume with: iqalib train {re.escape(str(cfg))} --resume", lines[0])
    assert match, lines[0]
    saved = load_checkpoint(last, model_name="smart_iqa_lite0")
    assert saved["epoch"] + 1 == int(match.group(1)) < epochs  # the message tells the truth
    assert leftovers(run) == []  # no .last.pt.*.tmp, no lock
    assert not (run / "summary.json").exists()

    assert main(["train", str(cfg), "--resume"]) == 0  # the command the message gave
    history = pd.read_csv(run / "round_0" / "history.csv")
    assert history["epoch"].tolist() == list(range(1, epochs + 1))
    assert leftovers(run) == []


def test_sigterm_before_any_epoch_says_nothing_was_saved_and_how_to_start_again(tiny_set, tmp_path, capsys,
                                                                                monkeypatch):
    fit_module_data = fit_module.prepare_data

    def terminated_while_decoding(config):
        os.kill(os.getpid(), signal.SIGTERM)  # what a scheduler sends, here during decoding
        return fit_module_data(config)

    monkeypatch.setattr(fit_module, "prepare_data", terminated_while_decoding)
    cfg = write_yaml(tmp_path / "run.yaml", tiny_config(tiny_set, tmp_path / "runs"))
    assert main(["train", str(cfg)]) == 143
    err = capsys.readouterr().err.strip()
    run = tmp_path / "runs" / "run"
    assert err == (f"interrupted: training stopped by SIGTERM; no epoch had finished, nothing to resume in {run}; "
                   f"start it again with: iqalib train {cfg}")
    assert signal.getsignal(signal.SIGTERM) == signal.SIG_DFL  # the default action is back
    assert not run.exists() or leftovers(run) == []


def test_sigterm_during_a_write_in_training_completes_the_file_then_stops(tmp_path):
    path = tmp_path / "last.pt"

    def write(f):
        f.write(b"first half ")
        os.kill(os.getpid(), signal.SIGTERM)  # arrives in the middle of the write
        time.sleep(0.05)  # the handler runs here, and only records it
        f.write(b"second half")

    with signals_as_interrupts(), pytest.raises(Terminated):
        atomic_write_bytes(path, write)
    assert path.read_bytes() == b"first half second half"
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_a_second_sigterm_during_a_write_rolls_it_back_and_keeps_the_previous_file(tmp_path):
    path = tmp_path / "last.pt"
    path.write_bytes(b"previous")

    def write(f):
        f.write(b"new")
        os.kill(os.getpid(), signal.SIGTERM)
        time.sleep(0.05)
        os.kill(os.getpid(), signal.SIGTERM)  # the scheduler insists
        time.sleep(0.05)
        f.write(b" never written")

    with signals_as_interrupts(), pytest.raises(Terminated):
        atomic_write_bytes(path, write)
    assert path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


@pytest.fixture
def sighup_default():
    """SIGHUP's default action for the test, whatever the shell gave pytest (nohup ignores it)."""
    previous = signal.signal(signal.SIGHUP, signal.SIG_DFL)
    yield
    signal.signal(signal.SIGHUP, previous)


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this system")
def test_a_closed_terminal_sighup_stops_training_like_sigterm(sighup_default):
    terminate = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated) as info, signals_as_interrupts():
        os.kill(os.getpid(), signal.SIGHUP)
        time.sleep(5)  # the handler raises at once; never slept through
    assert info.value.signum == signal.SIGHUP and str(info.value) == "stopped by SIGHUP"
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_DFL and signal.getsignal(signal.SIGTERM) == terminate


@pytest.mark.skipif(not hasattr(signal, "SIGHUP"), reason="no SIGHUP on this system")
def test_under_nohup_a_closed_terminal_does_not_stop_training(sighup_default):
    """``nohup iqalib train ...`` ignores SIGHUP; training keeps that choice and goes on."""
    signal.signal(signal.SIGHUP, signal.SIG_IGN)
    with signals_as_interrupts():
        assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGHUP)
        time.sleep(0.2)  # an ignored signal is dropped: nothing is raised
    assert signal.getsignal(signal.SIGHUP) == signal.SIG_IGN


@pytest.mark.parametrize("exception", [KeyboardInterrupt, SystemExit, MemoryError])
def test_any_exception_during_a_write_deletes_the_temporary_file(tmp_path, exception):
    path = tmp_path / "results.json"
    path.write_bytes(b"previous")

    def write(f):
        f.write(b"half")
        raise exception

    with pytest.raises(exception):
        atomic_write_bytes(path, write)
    assert path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["results.json"]


@pytest.mark.subprocess
def test_sigterm_outside_training_still_ends_the_process_but_only_after_the_write(tmp_path):
    """Where SIGTERM keeps its default action (any command but train), a write still completes first."""
    path = tmp_path / "scores.csv"
    code = ("import os, signal, sys\n"
            "from iqalib.files import atomic_write_bytes\n"
            "def write(f):\n"
            "    f.write(b'a,b\\n')\n"
            "    os.kill(os.getpid(), signal.SIGTERM)\n"
            "    f.write(b'1,2\\n')\n"
            f"atomic_write_bytes({str(path)!r}, write)\n"
            "print('not reached')\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, capture_output=True, text=True,
                          timeout=WAIT)
    assert done.returncode == -signal.SIGTERM and "not reached" not in done.stdout
    assert path.read_bytes() == b"a,b\n1,2\n"
    assert [p.name for p in tmp_path.iterdir()] == ["scores.csv"]


# ========================================================= --jobs
@pytest.mark.subprocess
def test_jobs_workers_train_under_their_parents_lock_and_sigterm_reaches_them(tiny_set, tmp_path):
    cfg = write_yaml(tmp_path / "run.yaml", tiny_config(tiny_set, tmp_path / "runs", rounds=2, epochs=10_000,
                                                        schedule="constant"))
    run = tmp_path / "runs" / "run"
    parent = start_train(str(cfg), "--jobs", "2")
    try:
        # Both workers save epochs: neither was refused by the lock its parent holds.
        wait_for(lambda: all(saved_epoch(run / f"round_{r}" / "last.pt") >= 1 for r in (0, 1)), parent,
                 "an epoch in both rounds")
        assert json.loads((run / LOCK_NAME).read_text())["pid"] == parent.pid
    finally:
        err = stop(parent, signal.SIGTERM)  # to the parent only, as a scheduler would send it
    # The parent passed it on and waited for its workers to save and stop.
    assert parent.returncode == 143, err
    assert err.count("interrupted: [run] training stopped by SIGTERM") == 2  # each worker's line
    last_line = err.strip().splitlines()[-1]
    assert re.fullmatch(rf"interrupted: training stopped by SIGTERM; in {re.escape(str(run))}: "
                        r"round_0/last\.pt holds epoch \d+, round_1/last\.pt holds epoch \d+; "
                        rf"resume with: iqalib train {re.escape(str(cfg))} --jobs 2 --resume", last_line), last_line
    assert leftovers(run) == []


# ============================================================ divergence
def test_nan_validation_predictions_stop_with_the_last_good_checkpoint(tiny_set, tmp_path, monkeypatch):
    epochs_started = []
    original_epoch, original_forward = fit_module.train_one_epoch, fit_module.FeatureSource.forward

    def counting_epoch(*args, **kwargs):
        epochs_started.append(1)
        return original_epoch(*args, **kwargs)

    def forward(self, batch):
        pred, target, images = original_forward(self, batch)
        if len(epochs_started) >= 2 and not torch.is_grad_enabled():  # scoring in epoch 2: the model broke
            pred = pred * float("nan")
        return pred, target, images

    monkeypatch.setattr(fit_module, "train_one_epoch", counting_epoch)
    monkeypatch.setattr(fit_module.FeatureSource, "forward", forward)
    with pytest.raises(TrainingDiverged) as info:
        fit(tiny_config(tiny_set, tmp_path, epochs=3))
    last = tmp_path / "run" / "round_0" / "last.pt"
    assert str(info.value) == (f"the validation predictions became nan at epoch 2 (4 of 4 images); lower "
                               "train.trunk_lr or set train.grad_clip, then rerun with --force; the last good "
                               f"checkpoint is {last} (epoch 1)")
    state = load_checkpoint(last, model_name="smart_iqa_lite0")
    assert state["epoch"] == 0 and len(state["history"]) == 1
    assert not (tmp_path / "run" / "round_0" / "results.json").exists()


def test_infinite_test_predictions_of_the_selected_model_stop_too(tiny_set, tmp_path, monkeypatch):
    original = fit_module.predict_images
    calls = []

    def predict(source):
        calls.append(1)
        scores = original(source)
        return scores if len(calls) <= 2 else np.full_like(scores, np.inf)  # 2 epochs' validation, then test

    monkeypatch.setattr(fit_module, "predict_images", predict)
    with pytest.raises(TrainingDiverged, match=r"the selected model \(epoch [12]\) predicts inf for 4 of 4 test "
                       r"images; lower train.trunk_lr .* its weights are in .*best\.pt"):
        fit(tiny_config(tiny_set, tmp_path, epochs=2))


# ============================================================ batch of one
def batch_sizes(monkeypatch, source_class) -> list[int]:
    """Record the size of every training batch that reaches ``source_class.forward``."""
    sizes = []
    original = source_class.forward

    def forward(self, batch):
        if torch.is_grad_enabled():
            sizes.append(len(batch[1]))
        return original(self, batch)

    monkeypatch.setattr(source_class, "forward", forward)
    return sizes


def test_a_last_batch_of_one_joins_the_batch_before_it_with_batchnorm_training(tiny_set, tmp_path, monkeypatch):
    # 8 training images, one crop each, 7 per step: a last step of one patch. The trunk trains,
    # so its BatchNorm layers are in training mode (they raised "Expected more than 1 value per
    # channel when training" before).
    sizes = batch_sizes(monkeypatch, fit_module.PatchSource)
    result = fit(tiny_config(tiny_set, tmp_path, epochs=2, batch_size=7, freeze_backbone=False, trunk_lr=1e-4))
    assert sizes == [8, 8]  # one merged step per epoch: every patch trained
    assert [row["train_patches"] for row in result["round_results"][0]["history"]] == [8, 8]


def test_a_last_batch_of_one_joins_the_batch_before_it_on_cached_features(tiny_set, tmp_path, monkeypatch):
    sizes = batch_sizes(monkeypatch, fit_module.FeatureSource)
    original = fit_module.FeatureSource.forward  # now the recording one

    def batchnorm_head(self, batch):  # a head with BatchNorm in training mode
        pred, target, images = original(self, batch)
        if torch.is_grad_enabled():
            pred = torch.nn.functional.batch_norm(pred[:, None], None, None, training=True)[:, 0]
        return pred, target, images

    monkeypatch.setattr(fit_module.FeatureSource, "forward", batchnorm_head)
    fit(tiny_config(tiny_set, tmp_path, epochs=1, batch_size=7))
    assert sizes == [8]


def test_a_single_training_patch_with_batchnorm_is_one_clear_line(tiny_set, tmp_path):
    with pytest.raises(ConfigError, match=r"a training step holds a single patch \(train.batch_size=1 per process\) "
                       "and BatchNorm cannot train on a batch of one"):
        fit(tiny_config(tiny_set, tmp_path, epochs=1, batch_size=1, freeze_backbone=False, trunk_lr=1e-4))


def test_merge_lone_last_batch():
    def batches(*sizes):
        return [(torch.arange(n), torch.full((n,), float(i)), torch.zeros(n)) for i, n in enumerate(sizes)]

    def merged(*sizes):
        return [len(b[1]) for b in fit_module.merge_lone_last_batch(batches(*sizes))]

    assert merged(4, 4, 1) == [4, 5] and merged(4, 4, 2) == [4, 4, 2] and merged(1) == [1] and merged() == []
    assert merged(1, 1, 1) == [1, 1, 1]  # batch_size 1: nothing to merge into (refused with BatchNorm)
    last = list(fit_module.merge_lone_last_batch(batches(3, 1)))[-1]
    assert last[1].tolist() == [0.0, 0.0, 0.0, 1.0]  # the lone patch keeps its own score


# ============================================================ stale book runs
def test_code_identity_is_the_version_and_a_hash_computed_once_per_process(monkeypatch):
    import iqalib

    assert re.fullmatch(r"[0-9a-f]{16}", provenance.code_identity()["sources"])
    calls = []
    monkeypatch.setattr(provenance, "source_hash", lambda root=None, paths=None: calls.append(paths) or "ab" * 32)
    provenance.code_identity.cache_clear()
    try:
        assert provenance.code_identity() == {"version": iqalib.__version__, "sources": "ab" * 8}
        provenance.code_identity()
        assert calls == [provenance.CODE_PATHS]
    finally:
        provenance.code_identity.cache_clear()


def test_the_source_hash_reads_contents_and_paths_only(tmp_path):
    a = tmp_path / "a"
    (a / "sub").mkdir(parents=True)
    (a / "x.py").write_text("x = 1\n")
    (a / "sub" / "y.py").write_text("y = 2\n")
    reference = provenance.source_hash(a)
    b = tmp_path / "b"
    shutil.copytree(a, b)
    os.utime(b / "x.py", (0, 0))
    (b / "notes.txt").write_text("not code")
    (b / "x.pyc").write_bytes(b"compiled")
    assert provenance.source_hash(b) == reference  # times and other files do not count
    (b / "sub" / "y.py").write_text("y = 3\n")
    assert provenance.source_hash(b) != reference  # a changed line does
    (b / "sub" / "y.py").write_text("y = 2\n")
    (b / "sub" / "y.py").rename(b / "sub" / "z.py")
    assert provenance.source_hash(b) != reference  # and so does a moved file


def test_the_fingerprint_changes_with_the_code(tiny_set, tmp_path, monkeypatch):
    config = from_dict(tiny_config(tiny_set, tmp_path))
    before = fingerprint(config)
    cosmetic = from_dict(tiny_config(tiny_set, tmp_path / "moved", progress=True, workers=2))
    assert fingerprint(cosmetic) == before  # where the folder lies and what it prints change no result
    monkeypatch.setattr(provenance, "code_identity", lambda: {"version": "0.1.0", "sources": "0" * 16})
    assert fingerprint(config) != before


def test_a_book_run_made_by_other_code_is_trained_again(tiny_set, tmp_path, monkeypatch, capsys):
    config = from_dict(tiny_config(tiny_set, tmp_path))
    run = tmp_path / "run"
    first = run_or_load(config)
    assert first["code"] == provenance.code_identity()
    assert json.loads((run / "round_0" / "results.json").read_text())["code"] == first["code"]
    capsys.readouterr()
    assert run_or_load(config)["median_test_srcc"] == first["median_test_srcc"]  # read back
    assert capsys.readouterr().out == ""

    other = {"version": first["code"]["version"], "sources": "0123456789abcdef"}
    monkeypatch.setattr(provenance, "code_identity", lambda: other)
    again = run_or_load(config)
    lines = capsys.readouterr().out.strip().splitlines()
    assert lines == [f"rerunning 'run' in {run}: it was made by other code (iqalib {other['version']}, sources "
                     f"{first['code']['sources']}; now iqalib {other['version']}, sources 0123456789abcdef); "
                     "its earlier files are deleted"]
    assert again["code"] == other
    assert json.loads((run / "round_0" / "results.json").read_text())["code"] == other
    assert json.loads((run / "config_fingerprint.json").read_text())["code"] == other
    # Now current: read back without training.
    monkeypatch.setattr(sys.modules["iqalib.experiments"], "fit", lambda *a, **k: pytest.fail("trained again"))
    assert run_or_load(config)["code"] == other


def test_a_book_run_from_before_code_was_recorded_is_trained_again(tiny_set, tmp_path, capsys):
    config = from_dict(tiny_config(tiny_set, tmp_path))
    run_or_load(config)
    run = tmp_path / "run"
    summary = json.loads((run / "summary.json").read_text())
    del summary["code"]  # as written by earlier iqalib
    (run / "summary.json").write_text(json.dumps(summary))
    capsys.readouterr()
    run_or_load(config)
    assert "it was made by other code (code that did not record itself" in capsys.readouterr().out
    assert "code" in json.loads((run / "summary.json").read_text())
