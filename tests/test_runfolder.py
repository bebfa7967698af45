"""The run folder's rules (:mod:`iqalib.engine.runfolder`, its lock :mod:`iqalib.engine.runlock`), in one module.

* The book's runs survive an edit that cannot change them, and only such an
  edit: real smoke runs (16 images, one epoch, one crop, frozen trunk)
  through :func:`iqalib.experiments.run_or_load`. The code hash is pointed at
  a copy of iqalib's sources (``provenance.PACKAGE_ROOT``), so "editing" a
  file edits the copy and never the package under test.
* The folder's lock: a second process is refused (even with ``--force``), a
  lock left by a dead process or a reused pid is taken over with a warning,
  one from another host never, and the lock goes on every exit.
* A folder that holds a run: a finished or unfinished run is refused and
  left unchanged, ``--force`` (and ``run_or_load(force=True)``) deletes only
  the run's files, ``--resume`` follows its documented rule
  (:func:`iqalib.engine.runfolder.resume_conflicts`), and a read-only folder
  keeps every file.

Training processes are real ``python -m iqalib.cli train`` runs on the tiny
noise set of tests/faults_support.py, waited on by condition, never by clock.
"""
from __future__ import annotations

import errno
import io
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import pandas as pd
import pytest

from faults_support import (chmod_blocks_writes, cli_error, leftovers, noise_png, saved_epoch, start_train, stop,
                            tiny_config, wait_for, write_tiny_set, write_yaml)
from iqalib.cli import main
from iqalib.config import from_dict
from iqalib.engine import fit, provenance, runfolder
from iqalib.engine.checkpoint import load_checkpoint
from iqalib.engine.runlock import LOCK_NAME, RunFolderBusy, StaleLockWarning, process_start, run_lock
from iqalib.errors import ConfigError, OutputError
from iqalib.experiments import run_or_load
from iqalib.signals import Terminated

RunExists = runfolder.RunExists
SOURCES = Path(provenance.__file__).resolve().parents[1]

pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: small tensors run faster on one thread


@pytest.fixture
def sources(tmp_path, monkeypatch):
    """A copy of iqalib's sources that the code hash reads."""
    copy = tmp_path / "iqalib_copy"
    shutil.copytree(SOURCES, copy, ignore=shutil.ignore_patterns("__pycache__"))
    monkeypatch.setattr(provenance, "PACKAGE_ROOT", copy)
    provenance.code_identity.cache_clear()
    yield copy
    provenance.code_identity.cache_clear()


def _edit(path: Path) -> None:
    path.write_text(path.read_text() + "\n# an edit\n")
    provenance.code_identity.cache_clear()  # a new process would hash the sources afresh


def _no_training(monkeypatch):
    monkeypatch.setattr(sys.modules["iqalib.experiments"], "fit", lambda *a, **k: pytest.fail("trained again"))


# ========================================================= the book's runs and the code
def test_code_paths_are_the_training_path_only():
    files = {p.relative_to(SOURCES).as_posix() for p in provenance.code_files(SOURCES)}
    assert {"engine/fit.py", "models/hyperiqa.py", "data/table.py", "losses.py", "config.py", "files.py"} <= files
    assert not {f for f in files if f.split("/")[0] in ("analysis", "plots")}
    assert not {"book.py", "cli.py", "experiments.py"} & files
    assert all((SOURCES / part).exists() for part in provenance.CODE_PATHS)  # no stale entry


def test_editing_an_analysis_or_a_plot_keeps_the_finished_run(sources, tmp_path, monkeypatch, capsys):
    config = from_dict(tiny_config(write_tiny_set(tmp_path / "set"), tmp_path / "runs"))
    first = run_or_load(config)
    _edit(next((sources / "analysis").glob("*.py")))
    _edit(next((sources / "plots").glob("*.py")))
    _edit(sources / "book.py")
    capsys.readouterr()
    with monkeypatch.context() as patch:
        _no_training(patch)
        again = run_or_load(config)
    assert capsys.readouterr().out == ""
    assert again["median_test_srcc"] == first["median_test_srcc"]


def test_editing_the_linear_probe_recomputes_it_and_keeps_every_run(sources, tmp_path):
    from iqalib.analysis import linear_probe as probe

    config = from_dict(tiny_config(write_tiny_set(tmp_path / "set"), tmp_path / "runs"))

    def probe_key() -> str:  # what decides whether a finished probe is read back
        return probe._fingerprint(config, config.train, probe.ALPHAS, "lite0")

    before, runs_code = probe_key(), provenance.code_identity()
    _edit(sources / "analysis" / "words.py")
    assert probe_key() == before  # an analysis the probe's numbers do not depend on
    _edit(sources / "analysis" / "linear_probe.py")
    assert probe_key() != before
    assert provenance.code_identity() == runs_code  # the runs' fingerprint does not cover the probe


@pytest.mark.parametrize("edited", ["engine/fit.py", pytest.param("models/hyperiqa.py", marks=pytest.mark.slow)])
def test_editing_the_training_loop_or_a_model_retrains(edited, sources, tmp_path, capsys):
    config = from_dict(tiny_config(write_tiny_set(tmp_path / "set"), tmp_path / "runs"))
    first = run_or_load(config)
    _edit(sources / edited)
    capsys.readouterr()
    again = run_or_load(config)
    now = provenance.code_identity()
    assert now["sources"] != first["code"]["sources"]
    assert capsys.readouterr().out.splitlines() == [
        f"rerunning 'run' in {config.run_dir}: it was made by other code (iqalib {now['version']}, sources "
        f"{first['code']['sources']}; now iqalib {now['version']}, sources {now['sources']}); "
        "its earlier files are deleted"]
    assert again["code"] == now


@pytest.mark.slow
def test_a_changed_image_retrains_and_an_unchanged_set_is_read_back(tmp_path, monkeypatch, capsys):
    root = write_tiny_set(tmp_path / "set")
    config = from_dict(tiny_config(root, tmp_path / "runs"))
    run_or_load(config)
    capsys.readouterr()
    with monkeypatch.context() as patch:
        _no_training(patch)
        run_or_load(config)  # same files: the hashes are remembered, nothing is trained
    assert capsys.readouterr().out == ""
    noise_png(root / "images" / "img03.png", seed=99)  # same name, other pixels
    run_or_load(config)
    printed = capsys.readouterr().out
    assert printed.startswith(f"rerunning 'run' in {config.run_dir}: its data changed (table ")
    assert printed.rstrip().endswith("its earlier files are deleted")


# ========================================================= the folder's lock
@pytest.mark.subprocess
def test_a_second_train_into_a_busy_folder_is_refused_and_the_first_is_unaffected(tiny_set, tmp_path, capsys):
    # Many epochs at a constant rate: the first process is still training when the second starts.
    cfg = write_yaml(tmp_path / "run.yaml", tiny_config(tiny_set, tmp_path / "runs", epochs=10_000,
                                                        schedule="constant"))
    run = tmp_path / "runs" / "run"
    last = run / "round_0" / "last.pt"
    first = start_train(str(cfg))
    try:
        wait_for(lambda: saved_epoch(last) >= 1, first, "the first epoch")
        holder = json.loads((run / LOCK_NAME).read_text())
        assert (holder["pid"], holder["host"]) == (first.pid, socket.gethostname())
        assert holder["command"].endswith(f"train {cfg}") and holder["since"]
        for extra in ([], ["--force"], ["--resume"]):  # not even --force may take it
            cli_error(capsys, ["train", str(cfg), *extra], RunFolderBusy, f"{run} is in use: pid {first.pid} on host",
                      "is training into it; wait for it to finish, or choose another name=")
        with pytest.raises(RunFolderBusy):
            run_or_load(from_dict(tiny_config(tiny_set, tmp_path / "runs", epochs=10_000, schedule="constant")))
        refused_at = saved_epoch(last)
        # The first one goes on: it saves further epochs, in one history, under its own lock.
        wait_for(lambda: saved_epoch(last) > refused_at + 1, first, "a later epoch")
        assert json.loads((run / LOCK_NAME).read_text())["pid"] == first.pid
    finally:
        err = stop(first, signal.SIGTERM)
    assert first.returncode == 143, err
    history = pd.read_csv(run / "round_0" / "history.csv")
    assert history["epoch"].tolist() == list(range(1, len(history) + 1))
    assert leftovers(run) == []  # and its lock went with it


def test_a_lock_left_by_a_dead_process_is_taken_over_with_a_warning(tiny_set, tmp_path):
    run = tmp_path / "runs" / "run"
    run.mkdir(parents=True)
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    lock = run / LOCK_NAME
    lock.write_text(json.dumps({"pid": dead.pid, "host": socket.gethostname(), "process_start": "1",
                                "since": "2020-01-01T00:00:00", "command": "iqalib train old.yaml"}))
    with pytest.warns(StaleLockWarning, match=rf"taking over the lock of {re.escape(str(run))}: pid {dead.pid} "
                      r"on host .* \(since 2020-01-01T00:00:00: iqalib train old.yaml\) is no longer running"):
        fit(tiny_config(tiny_set, tmp_path / "runs"))
    assert (run / "summary.json").is_file() and not lock.exists()


def test_a_reused_pid_does_not_keep_a_stale_lock(tmp_path):
    """The pid runs again, but as another process (another start time): the lock is stale."""
    lock = tmp_path / LOCK_NAME
    lock.write_text(json.dumps({"pid": os.getpid(), "host": socket.gethostname(), "process_start": "0",
                                "since": "2020-01-01T00:00:00", "command": "iqalib train old.yaml"}))
    assert process_start(os.getpid()) not in (None, "0")
    with pytest.warns(StaleLockWarning, match="is no longer running"), run_lock(tmp_path):
        assert json.loads(lock.read_text())["process_start"] == process_start(os.getpid())
    assert not lock.exists()


def test_a_lock_from_another_host_is_never_taken_over(tmp_path):
    lock = tmp_path / LOCK_NAME
    lock.write_text(json.dumps({"pid": 1, "host": "elsewhere.invalid", "since": "2020-01-01T00:00:00",
                                "command": "iqalib train x.yaml"}))
    with pytest.raises(RunFolderBusy) as info, run_lock(tmp_path):
        pass
    assert str(info.value) == (f"{tmp_path} is in use: pid 1 on host elsewhere.invalid (since 2020-01-01T00:00:00: "
                               f"iqalib train x.yaml) is training into it; if that process has ended, delete {lock} "
                               "and rerun, or choose another name=")
    assert lock.is_file()  # not ours to delete


def test_the_lock_is_released_on_every_exit_and_reentrant_in_one_process(tmp_path):
    lock = tmp_path / "run" / LOCK_NAME
    for exc in (KeyboardInterrupt(), Terminated(signal.SIGTERM), ConfigError("x"), SystemExit(3)):
        with pytest.raises(type(exc)), run_lock(tmp_path / "run"):
            with run_lock(tmp_path / "run"):  # run_or_load holds it around fit, which takes it too
                assert lock.is_file()
            assert lock.is_file()
            raise exc
        assert not lock.exists()
    assert not (tmp_path / "run").exists()  # a folder made only for the lock goes with it


# ========================================================= finished runs
@pytest.fixture(scope="module")
def two_rounds(tiny_set, tmp_path_factory) -> Path:
    """A finished 2-round, 2-epoch run (constant rate), kept pristine: tests work on copies."""
    out = tmp_path_factory.mktemp("two_rounds")
    fit(tiny_config(tiny_set, out, epochs=2, rounds=2, schedule="constant"))
    return out


@pytest.fixture
def finished(two_rounds, tiny_set, tmp_path):
    """(a copy of the finished run's out_dir, its run folder, its config as YAML, every file's bytes)."""
    out = tmp_path / "runs"
    shutil.copytree(two_rounds, out)
    run = out / "run"
    cfg = write_yaml(tmp_path / "run.yaml", tiny_config(tiny_set, out, epochs=2, rounds=2, schedule="constant"))
    return out, run, cfg, snapshot(run)


def snapshot(run: Path) -> dict[str, bytes]:
    return {str(p.relative_to(run)): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}


def test_training_into_a_finished_run_is_refused_and_changes_nothing(finished, capsys):
    _, run, cfg, before = finished
    for overrides in ([], ["train.rounds=1"], ["train.trunk_lr=0.003"]):
        cli_error(capsys, ["train", str(cfg), *overrides], RunExists,
                  f"{run} already holds a finished run (2 round folder(s) and summary.json); continue it with "
                  "--resume, start it afresh with --force (deletes its files), or choose another name=")
    assert snapshot(run) == before


def test_an_unfinished_run_is_refused_too(finished, capsys):
    _, run, cfg, _ = finished
    (run / "summary.json").unlink()
    shutil.rmtree(run / "round_1")
    cli_error(capsys, ["train", str(cfg)], RunExists,
              f"{run} already holds an unfinished run (round_0/last.pt holds epoch 2); continue it with --resume")


def test_force_clears_the_earlier_run_and_keeps_the_users_files(finished, capsys):
    _, run, cfg, before = finished
    (run / "notes.txt").write_text("mine")
    (run / "round_1" / ".last.pt.abc123.tmp").write_bytes(b"left by kill -9")
    assert main(["train", str(cfg), "train.rounds=1", "--force"]) == 0
    # One round now, and no stale round_1 beside a summary that says 1 round.
    assert sorted(p.name for p in run.iterdir()) == ["notes.txt", "round_0", "summary.json"]
    assert json.loads((run / "summary.json").read_text())["rounds"] == 1
    assert (run / "notes.txt").read_text() == "mine"
    # Every file of round_0 is the new run's.
    assert load_checkpoint(run / "round_0" / "best.pt")["config"]["train"]["rounds"] == 1
    assert load_checkpoint(run / "round_0" / "last.pt")["config"]["train"]["rounds"] == 1
    assert json.loads((run / "round_0" / "results.json").read_text())["config"]["train"]["rounds"] == 1
    assert before["round_0/results.json"] != (run / "round_0" / "results.json").read_bytes()


def test_run_or_load_force_clears_through_the_same_path(finished, tiny_set, capsys):
    out, run, _, _ = finished
    config = from_dict(tiny_config(tiny_set, out, epochs=2, rounds=1, schedule="constant"))
    results = run_or_load(config, force=True)
    printed = capsys.readouterr().out
    assert f"rerunning 'run' in {run}: force=True; its earlier files are deleted" in printed
    assert results["rounds"] == 1 and len(results["round_results"]) == 1
    assert sorted(p.name for p in run.iterdir()) == ["config_fingerprint.json", "round_0", "summary.json"]


# ========================================================== --resume
def test_resume_with_another_learning_rate_is_refused_naming_the_key(finished, capsys):
    _, run, cfg, before = finished
    cli_error(capsys, ["train", str(cfg), "train.trunk_lr=0.003", "data.split_seed=5", "--resume"], ConfigError,
              f"cannot resume {run}: its configuration differs in data.split_seed (0 -> 5), "
              "train.trunk_lr (0.001 -> 0.003); resume with the values it was started with, or start afresh "
              "with --force (deletes its files) or another name= (--resume may change only train.epochs")
    assert snapshot(run) == before


def test_resume_with_more_epochs_continues_and_removes_what_a_killed_write_left(finished):
    _, run, cfg, before = finished
    stale = run / "round_0" / ".last.pt.abc123.tmp"
    stale.write_bytes(b"x" * 1000)  # what kill -9 in the middle of a checkpoint leaves
    assert main(["train", str(cfg), "train.epochs=3", "train.progress=true", "--resume"]) == 0
    for r in (0, 1):
        history = pd.read_csv(run / f"round_{r}" / "history.csv")
        assert history["epoch"].tolist() == [1, 2, 3]
        kept = pd.read_csv(io.BytesIO(before[f"round_{r}/history.csv"]))
        pd.testing.assert_frame_equal(history.iloc[:2].drop(columns=TIMING), kept.drop(columns=TIMING))
    assert not stale.exists() and leftovers(run) == []


TIMING = ["train_seconds", "patches_per_s", "loader_wait_fraction", "val_seconds"]


def test_resume_of_a_finished_run_changes_no_file_but_the_summary(finished):
    _, run, cfg, before = finished
    assert main(["train", str(cfg), "--resume"]) == 0
    after = snapshot(run)
    assert {k for k in before if before[k] != after[k]} <= {"summary.json"}


def test_resume_with_nothing_to_resume_says_so_and_creates_nothing(tiny_set, tmp_path, capsys):
    cfg = write_yaml(tmp_path / "run.yaml", tiny_config(tiny_set, tmp_path / "runs"))
    cli_error(capsys, ["train", str(cfg), "name=typo", "--resume"], ConfigError,
              f"nothing to resume in {tmp_path / 'runs' / 'typo'}: no round has a last.pt; check name= and "
              "out_dir=, or start the run without --resume")
    assert not (tmp_path / "runs" / "typo").exists()
    cli_error(capsys, ["train", str(cfg), "--resume", "--force"], ConfigError, "give --resume or --force, not both")


def test_resume_conflicts_follow_the_documented_rule(tiny_set, tmp_path):
    stored = from_dict(tiny_config(tiny_set, tmp_path, epochs=2)).to_dict()  # schedule None: cosine for Lite0

    def conflicts(**changes):
        data = json.loads(json.dumps(stored))
        for key, value in changes.items():
            section, name = key.split("__")
            data[section][name] = value
        return runfolder.resume_conflicts(from_dict(data), stored)

    assert conflicts() == []
    assert conflicts(train__device="cpu", train__workers=2, train__progress=True, data__image_cache="auto") == []
    assert conflicts(train__rounds=3) == []
    assert conflicts(train__schedule="cosine") == []  # None means the model's default, which is cosine
    assert conflicts(train__epochs=3) == ["train.epochs (2 -> 3: the length of the cosine schedule the trained "
                                          "epochs followed)"]
    assert conflicts(train__epochs=1) == ["train.epochs (2 -> 1)"]
    assert conflicts(train__trunk_lr=0.01, train__seed=1) == ["train.seed (0 -> 1)", "train.trunk_lr (0.001 -> 0.01)"]
    constant = json.loads(json.dumps(stored))
    constant["train"]["schedule"] = "constant"
    longer = json.loads(json.dumps(constant))
    longer["train"]["epochs"] = 5
    assert runfolder.resume_conflicts(from_dict(longer), constant) == []


# ========================================================= a read-only run folder
def test_a_read_only_run_folder_keeps_everything_and_says_fix_permissions(finished, tiny_set, monkeypatch):
    out, run, _, before = finished
    round_dir = run / "round_0"
    os.chmod(round_dir, 0o555)
    try:
        if not chmod_blocks_writes(round_dir):
            # Running as root: chmod does not stop us, so refuse the write the way the kernel would.
            real_mkstemp = tempfile.mkstemp

            def mkstemp(*args, dir=None, **kwargs):
                if dir is not None and Path(dir) == round_dir:
                    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(dir))
                return real_mkstemp(*args, dir=dir, **kwargs)

            monkeypatch.setattr(tempfile, "mkstemp", mkstemp)
        with pytest.raises(OutputError) as info:  # one more epoch, resumed: every file it writes would differ
            fit(tiny_config(tiny_set, out, epochs=3, rounds=2, schedule="constant"), resume=True)
        monkeypatch.undo()
    finally:
        os.chmod(round_dir, 0o755)
    assert str(info.value) == (f"cannot write last.pt in {round_dir}: Permission denied; make the folder writable "
                               "(chmod/chown) or choose another folder; the previous last.pt is intact")
    assert snapshot(run) == before
