"""Helpers shared by the bad-input and fault tests (tests/test_bad_*.py, test_faults.py, test_load.py,
test_hostile_engine.py, test_runfolder.py).

A tiny rated set of noise images (made in the test, nothing committed), a run
configuration that trains on it in a few seconds on a CPU (frozen offline
Lite0 trunk, one crop per image), a scoring checkpoint, the assertions
every command-line error must pass, and a training process started in the
background and waited on.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml
from PIL import Image

from iqalib.cli import main

REPO_ROOT = Path(__file__).resolve().parents[1]
PATCH = 64  # training and scoring crop: small, so that everything runs in seconds


def noise_png(path: Path, height: int = 72, width: int = 96, seed: int = 0) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    arr = np.random.default_rng(seed).integers(0, 256, (height, width, 3), dtype=np.uint8)
    Image.fromarray(arr).save(path)
    return path


def write_tiny_set(root: Path, n: int = 16) -> Path:
    """``root/images/img00.png ..`` and ``root/scores.csv`` (image,mos on 0-100)."""
    names = [f"images/img{i:02d}.png" for i in range(n)]
    for i, name in enumerate(names):
        noise_png(root / name, seed=i)
    pd.DataFrame({"image": names, "mos": np.linspace(10, 90, n)}).to_csv(root / "scores.csv", index=False)
    return root


def tiny_config(root: Path, out_dir: Path, name: str = "run", *, on_error: str = "raise", **train) -> dict:
    settings = dict(epochs=1, batch_size=16, train_patches=1, test_patches=1, patch_size=PATCH,
                    trunk_lr=1e-3, freeze_backbone=True, progress=False)
    settings.update(train)
    return {"name": name, "out_dir": str(out_dir),
            "data": {"name": "csv", "root": str(root), "fractions": [0.5, 0.25, 0.25], "on_error": on_error,
                     "options": {"table": "scores.csv", "mos_range": [0, 100]}},
            "model": {"name": "smart_iqa_lite0", "pretrained": True}, "train": settings}


def write_yaml(path: Path, config: dict) -> Path:
    path.write_text(yaml.safe_dump(config))
    return path


def save_untrained_checkpoint(path: str | Path, model_name: str = "smart_iqa_lite0", *,
                              patch_size: int = 224, seed: int = 0) -> Path:
    """A checkpoint of an untrained ``model_name`` (seeded) that ``load_trained``/``iqalib score`` accept:
    the scoring path, tested without training a model first."""
    import torch

    from iqalib.engine.card import untrained_card
    from iqalib.engine.checkpoint import save_checkpoint
    from iqalib.models import create_model

    torch.manual_seed(seed)
    model = create_model(model_name, pretrained=False)
    save_checkpoint(path, {"model_name": model_name, "model": model.state_dict(), "epoch": 0, "round": 0,
                           "config": {"model": {"name": model_name, "options": {}},
                                      "train": {"patch_size": patch_size}},
                           "card": untrained_card(model_name, patch_size=patch_size, seed=seed, model=model)})
    return Path(path)


def scoring_checkpoint(path: Path, model_name: str = "smart_iqa_lite0") -> Path:
    """An iqalib checkpoint of an untrained model (random head) that scores PATCH-pixel crops."""
    return save_untrained_checkpoint(path, model_name, patch_size=PATCH)


# ------------------------------------------------------------ CLI assertions
def cli_error(capsys, args: list[str], error_class: type, *fragments: str, code: int = 2) -> str:
    """``iqalib ARGS`` fails with ``code``, one ``error: ...`` line holding every fragment and no
    traceback; with ``--debug`` the same ``error_class`` propagates (its traceback is shown)."""
    capsys.readouterr()
    assert main(args) == code
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err
    for fragment in fragments:
        assert fragment in lines[0], (fragment, lines[0])
    with pytest.raises(error_class) as info:
        main(["--debug", *args])
    assert type(info.value) is error_class
    for fragment in fragments:
        assert fragment in str(info.value)
    capsys.readouterr()
    return lines[0]


def run_cli(args: list[str], *, timeout: float = 300, **kwargs) -> subprocess.CompletedProcess:
    """``python -m iqalib.cli ARGS`` in a fresh process (one torch thread, like the tests)."""
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.run([sys.executable, "-m", "iqalib.cli", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, cwd=REPO_ROOT, **kwargs)


# ------------------------------------------------------------ a training process in the background
# (tests/test_hostile_engine.py's signals and tests/test_runfolder.py's busy folder): a test waits
# for a condition (a file appears, an epoch is saved), never for a fixed time.
WAIT = 300  # seconds: generous, for two shared cores under load; the conditions come much sooner


def start_train(*args: str) -> subprocess.Popen:
    """``python -m iqalib.cli train ARGS`` in the background (Python's own SIGINT handler in place)."""
    import signal

    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONUNBUFFERED="1")
    return subprocess.Popen([sys.executable, "-m", "iqalib.cli", "train", *args], env=env, cwd=REPO_ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def wait_for(condition, proc: subprocess.Popen, what: str) -> None:
    """Poll ``condition()`` until it holds; fail if ``proc`` ends first or after :data:`WAIT` seconds."""
    import time

    deadline = time.monotonic() + WAIT
    while not condition():
        if proc.poll() is not None:
            pytest.fail(f"the training process ended (status {proc.returncode}) before {what}: "
                        f"{proc.stderr.read()[-2000:]}")
        if time.monotonic() > deadline:
            pytest.fail(f"no {what} after {WAIT} s")
        time.sleep(0.02)


def saved_epoch(last: Path) -> int:
    """The 1-based epoch ``last`` holds; 0 while it does not exist yet."""
    from iqalib.engine.checkpoint import load_checkpoint

    try:
        return load_checkpoint(last)["epoch"] + 1
    except Exception:  # not written yet (the rename is atomic, so never half a file)
        return 0


def stop(proc: subprocess.Popen, signum=None) -> str:
    """Send ``signum`` (default SIGTERM) and wait for the process; its stderr."""
    import signal

    try:
        proc.send_signal(signal.SIGTERM if signum is None else signum)
        _, err = proc.communicate(timeout=WAIT)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return err


def leftovers(run: Path) -> list[str]:
    """Temporary files and locks under ``run``: none may survive a process."""
    from iqalib.engine.runlock import LOCK_NAME

    return [str(p.relative_to(run)) for p in run.rglob("*") if p.name.endswith(".tmp") or p.name == LOCK_NAME]


def chmod_blocks_writes(folder: Path) -> bool:
    """Whether a read-only mode really stops this process (not for root, nor on some mounts)."""
    import tempfile

    try:
        fd, probe = tempfile.mkstemp(dir=folder)
    except PermissionError:
        return True
    os.close(fd)
    os.unlink(probe)
    return False
