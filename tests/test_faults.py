"""Faults that must lose nothing: Ctrl-C, a full or read-only disk, a failing notebook.

Covered elsewhere and not repeated here:

* A read-only run folder keeps every file and says to fix its permissions:
  tests/test_runfolder.py::test_a_read_only_run_folder_keeps_everything_and_says_fix_permissions.

* ``kill -9`` of ``iqalib train`` then ``--resume`` equals the uninterrupted run:
  tests/test_engine.py::test_sigkill_mid_run_then_resume_equals_the_uninterrupted_run
  (and two in-process crash-and-resume tests next to it).
* A broken download resumes with a Range request, and an archive whose sha256
  does not match (or that is corrupt) is never unpacked:
  tests/test_download.py::test_fetch_resumes_a_broken_download_with_a_range_request,
  ::test_fetch_moves_a_file_with_the_wrong_sha256_aside,
  ::test_download_with_a_wrong_sha256_unpacks_nothing,
  ::test_download_of_a_corrupt_archive_unpacks_nothing_and_refetches_on_rerun,
  ::test_unpack_detects_a_corrupt_zip.
"""
from __future__ import annotations

import errno
import functools
import io
import json
import os
import re
import shutil
import signal
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import iqalib.book as book_module
from faults_support import REPO_ROOT, chmod_blocks_writes, cli_error, noise_png, tiny_config, write_yaml
from iqalib.book import BookBuildFailed, NotebookFailed, build_html
from iqalib.cli import main
from iqalib.data.images import ImageStore
from iqalib.engine import fit
from iqalib.engine.checkpoint import load_checkpoint
from iqalib.files import atomic_write_bytes
from iqalib.engine.interrupt import TrainingInterrupted
from iqalib.signals import deferred_sigint
from iqalib.errors import OutputError
from signal_support import START_LIMIT, start_paused_train


pytestmark = pytest.mark.usefixtures("one_thread")  # conftest: small tensors run faster on one thread


# ===================================================================== Ctrl-C
@pytest.fixture
def python_sigint():
    """Python's own SIGINT handler in this process (a background job may start with SIGINT ignored)."""
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    yield
    signal.signal(signal.SIGINT, previous)


def test_ctrl_c_during_a_write_waits_for_the_file_to_be_complete(tmp_path, python_sigint):
    path = tmp_path / "last.pt"

    def write(f):
        f.write(b"first half ")
        # Ctrl-C in the middle of the write; raise_signal runs the handler before it returns
        # (no sleep to wait for delivery), and the handler only records it.
        signal.raise_signal(signal.SIGINT)
        f.write(b"second half")

    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(path, write)
    assert path.read_bytes() == b"first half second half"  # then the interrupt is delivered
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]


def test_a_second_ctrl_c_stops_the_write_and_keeps_the_previous_file(tmp_path, python_sigint):
    path = tmp_path / "last.pt"
    path.write_bytes(b"previous")

    def write(f):
        f.write(b"new")
        signal.raise_signal(signal.SIGINT)
        signal.raise_signal(signal.SIGINT)  # the user insists
        f.write(b" never written")

    with pytest.raises(KeyboardInterrupt):
        atomic_write_bytes(path, write)
    assert path.read_bytes() == b"previous"
    assert [p.name for p in tmp_path.iterdir()] == ["last.pt"]
    with deferred_sigint():
        pass  # and the process's own handler is back in place
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.subprocess
def test_sigint_saves_exits_130_with_the_resume_command_and_resume_finishes(tiny_set, tmp_path):
    """A real Ctrl-C (SIGINT) to ``iqalib train`` after its first epoch wrote last.pt."""
    epochs = 3
    cfg = write_yaml(tmp_path / "run.yaml", tiny_config(tiny_set, tmp_path / "runs", epochs=epochs))
    run = tmp_path / "runs" / "run"
    last = run / "round_0" / "last.pt"
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    # The child waits after writing last.pt, so the signal lands there however loaded the machine is.
    proc, err_file = start_paused_train(
        [str(cfg)], env=env, cwd=REPO_ROOT,
        # Python installs its KeyboardInterrupt handler only where SIGINT is not ignored.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=START_LIMIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    err_file.seek(0)
    err = err_file.read()
    assert proc.returncode == 130, err
    assert "Traceback" not in err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    match = re.fullmatch(rf"interrupted: training stopped by Ctrl-C; in {re.escape(str(run))}: "
                         rf"round_0/last\.pt holds epoch (\d+); "
                         rf"resume with: iqalib train {re.escape(str(cfg))} --resume", lines[0])
    assert match, lines[0]
    saved = load_checkpoint(last, model_name="smart_iqa_lite0")
    assert saved["epoch"] + 1 == int(match.group(1)) == 1  # the message tells the truth
    assert len(saved["history"]) == saved["epoch"] + 1
    assert not (run / "summary.json").exists()
    assert not list(run.glob("round_0/.*.tmp"))  # no half-written file left behind

    assert main(["train", str(cfg), "--resume"]) == 0  # the command the message gave
    history = pd.read_csv(run / "round_0" / "history.csv")
    assert history["epoch"].tolist() == list(range(1, epochs + 1))
    assert json.loads((run / "summary.json").read_text())["rounds"] == 1


def test_ctrl_c_through_the_api_is_a_keyboard_interrupt_saying_what_is_saved(tiny_set, tmp_path, monkeypatch):
    fit_module = sys.modules["iqalib.engine.fit"]
    original = fit_module.train_one_epoch

    def ctrl_c_in_second_epoch(source, model, optimizer, loss_fn, tc, epoch):
        if epoch == 1:
            raise KeyboardInterrupt
        return original(source, model, optimizer, loss_fn, tc, epoch)

    monkeypatch.setattr(fit_module, "train_one_epoch", ctrl_c_in_second_epoch)
    with pytest.raises(TrainingInterrupted) as info:
        fit(tiny_config(tiny_set, tmp_path / "runs", epochs=3))
    assert isinstance(info.value, KeyboardInterrupt)
    assert str(info.value) == (f"training stopped by Ctrl-C; in {tmp_path / 'runs' / 'run'}: "
                               "round_0/last.pt holds epoch 1")


# ============================================================ failed writes
@pytest.fixture(scope="module")
def finished_run(tiny_set, tmp_path_factory):
    """A finished 2-epoch run (constant learning rate, so --resume may add epochs), kept pristine:
    tests work on copies."""
    out = tmp_path_factory.mktemp("finished")
    fit(tiny_config(tiny_set, out, epochs=2, schedule="constant"))
    return out


@pytest.fixture
def run_copy(finished_run, tiny_set, tmp_path):
    """(config that resumes the run for a third epoch, its round folder, the files' bytes before)."""
    out = tmp_path / "runs"
    shutil.copytree(finished_run, out)
    round_dir = out / "run" / "round_0"
    before = {p.name: p.read_bytes() for p in round_dir.iterdir()}
    assert {"last.pt", "best.pt", "history.csv", "predictions.csv", "results.json"} <= set(before)
    # One more epoch (with --resume): every file it would write differs from the one on disk.
    return tiny_config(tiny_set, out, epochs=3, schedule="constant"), round_dir, before


class FillingDisk(io.FileIO):
    """A file that takes ``room`` bytes, then fails as a full disk does."""

    def __init__(self, fd: int, room: int):
        super().__init__(fd, "wb", closefd=True)
        self.room = room

    def write(self, data) -> int:
        data = memoryview(data).cast("B")
        if len(data) > self.room:
            if self.room:
                super().write(data[: self.room])  # a part lands on disk: the write fails midway
                self.room = 0
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(data)
        return super().write(data)


def disk_fills_while_writing(monkeypatch, folder: Path, name: str, room: int = 64) -> None:
    """Every write of ``folder/name`` (through its temporary file) fails after ``room`` bytes."""
    real_fdopen = os.fdopen

    def fdopen(fd, *args, **kwargs):
        target = os.readlink(f"/proc/self/fd/{fd}")
        if Path(target).parent == folder and Path(target).name.startswith(f".{name}."):
            return FillingDisk(fd, room)
        return real_fdopen(fd, *args, **kwargs)

    monkeypatch.setattr(os, "fdopen", fdopen)


def assert_intact(round_dir: Path, before: dict[str, bytes], name: str) -> None:
    """``name`` is byte for byte what it was, every file still loads, no temporary file is left."""
    assert (round_dir / name).read_bytes() == before[name]
    assert not [p.name for p in round_dir.iterdir() if p.name.endswith(".tmp")]
    load_checkpoint(round_dir / "last.pt", model_name="smart_iqa_lite0")
    load_checkpoint(round_dir / "best.pt", model_name="smart_iqa_lite0")
    assert len(pd.read_csv(round_dir / "history.csv")) >= 1
    json.loads((round_dir / "results.json").read_text())


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to map a descriptor to its file")
@pytest.mark.parametrize("name", ["last.pt", "history.csv", "results.json"])
def test_a_full_disk_mid_write_keeps_the_previous_file_and_says_free_space(run_copy, monkeypatch, name):
    config, round_dir, before = run_copy
    disk_fills_while_writing(monkeypatch, round_dir, name)
    with pytest.raises(OutputError) as info:
        fit(config, resume=True)
    monkeypatch.undo()
    message = str(info.value)
    assert "\n" not in message
    assert message == (f"cannot write {name} in {round_dir}: No space left on device; free space on that disk "
                       f"(or write elsewhere) and rerun; the previous {name} is intact")
    assert isinstance(info.value, OSError) and info.value.errno == errno.ENOSPC
    assert_intact(round_dir, before, name)


@pytest.mark.slow
@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc to map a descriptor to its file")
def test_a_full_disk_through_the_cli_is_one_line(run_copy, monkeypatch, capsys, tmp_path):
    config, round_dir, before = run_copy
    cfg = write_yaml(tmp_path / "run.yaml", config)
    disk_fills_while_writing(monkeypatch, round_dir, "last.pt")
    cli_error(capsys, ["train", str(cfg), "--resume"], OutputError, f"cannot write last.pt in {round_dir}: No space left",
              "free space on that disk")
    monkeypatch.undo()
    assert_intact(round_dir, before, "last.pt")


def test_an_out_dir_that_cannot_be_created_is_named(tiny_set, tmp_path, monkeypatch):
    parent = tmp_path / "locked"
    parent.mkdir()
    os.chmod(parent, 0o555)
    try:
        if not chmod_blocks_writes(parent):
            real_mkdir = Path.mkdir

            def mkdir(self, *args, **kwargs):
                if self.is_relative_to(parent) and self != parent:
                    raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
                return real_mkdir(self, *args, **kwargs)

            monkeypatch.setattr(Path, "mkdir", mkdir)
        with pytest.raises(OutputError) as info:
            fit(tiny_config(tiny_set, parent / "runs"))
        monkeypatch.undo()
    finally:
        os.chmod(parent, 0o755)
    assert str(info.value) == (f"cannot create the folder {parent / 'runs' / 'run'}: Permission denied; "
                               "make the folder writable (chmod/chown) or choose another folder")


def test_a_full_cache_disk_costs_the_cache_not_the_run(tmp_path, monkeypatch):
    paths = [noise_png(tmp_path / f"{i}.png", 30, 40, seed=i) for i in range(3)]

    class FullDiskArray(np.ndarray):
        def tofile(self, *args, **kwargs):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    original = ImageStore.from_arrays.__func__

    def from_arrays(cls, arrays):
        store = original(cls, arrays)
        store._buffer = store._buffer.view(FullDiskArray)  # writing the decoded pixels hits a full disk
        return store

    monkeypatch.setattr(ImageStore, "from_arrays", classmethod(from_arrays))
    with pytest.warns(UserWarning, match=rf"cannot write the image cache in {re.escape(str(tmp_path / 'cache'))} "
                                         r"\(No space left on device\); keeping the images in memory"):
        store = ImageStore.build(paths, cache=tmp_path / "cache")
    monkeypatch.undo()
    assert not store.on_disk and len(store) == 3
    assert np.array_equal(store[2], ImageStore.build(paths[2:])[0])
    assert not list((tmp_path / "cache").glob("*"))  # no half-written cache to be trusted later


# =================================================================== the book
NOTEBOOK_OK = '# %% tags=["parameters"]\nx = 1\n\n# %%\nprint(x)\n'
NOTEBOOK_FAILS = '# %% tags=["parameters"]\nx = 1\n\n# %%\ny = 2\n\n# %%\nraise ValueError(f"bad x={x}")\n'


@pytest.fixture
def tiny_book(tmp_path) -> Path:
    """A book folder whose first chapter runs and whose second fails in its last cell."""
    root = tmp_path / "book-root"
    (root / "notebooks").mkdir(parents=True)
    (root / "params").mkdir()
    (root / "params" / "tiny.yaml").write_text("common:\n  x: 7\n")
    (root / "notebooks" / "01_data.py").write_text(NOTEBOOK_OK)
    (root / "notebooks" / "03_baseline.py").write_text(NOTEBOOK_FAILS)
    # An earlier good run of 02 under the same profile: it must not survive as if current.
    executed = root / "book" / "executed"
    executed.mkdir(parents=True)
    (executed / "PROFILE").write_text("tiny\n")
    (executed / "03_baseline.ipynb").write_text("{}")
    return root


@pytest.mark.book
def test_a_failing_notebook_exits_non_zero_naming_it_and_no_book_is_published(tiny_book, monkeypatch, capsys):
    monkeypatch.setattr(book_module, "run_book", functools.partial(book_module.run_book, root=tiny_book))
    built = []
    monkeypatch.setattr(book_module, "build_html", lambda root=None: built.append(root))
    assert main(["book", "--profile", "tiny", "--only", "01_data", "03_baseline"]) == 2
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    executed = tiny_book / "book" / "executed"
    failed = executed / "03_baseline.failed.ipynb"
    assert len(lines) == 1 and "Traceback" not in captured.err
    # Cell 0: parameters, 1: injected parameters, 2: y = 2, 3: the raise.
    assert lines[0] == (f"error: notebook 03_baseline failed in cell 3 (In [4]): ValueError: bad x=7 "
                        f"(failed copy: {failed}); fix it and rerun")
    assert built == []  # the book was not built
    assert (executed / "01_data.ipynb").is_file() and failed.is_file()
    assert not (executed / "03_baseline.ipynb").exists()  # neither the failed run nor the stale one
    with pytest.raises(BookBuildFailed, match=r"lacks \['02_inside_the_model', '03_baseline', '04_smart_iqa',"):
        build_html(tiny_book)  # the real build (imported above, not the stub) refuses the incomplete folder
    with pytest.raises(NotebookFailed, match="notebook 03_baseline failed in cell 3"):
        main(["--debug", "book", "--profile", "tiny", "--only", "03_baseline", "--no-build"])
    # Fixed, the chapter runs under its own name and its failed copy goes.
    (tiny_book / "notebooks" / "03_baseline.py").write_text(NOTEBOOK_OK)
    book_module.execute_notebook("03_baseline", {"x": 1}, root=tiny_book)
    assert not failed.exists() and (executed / "03_baseline.ipynb").is_file()
