"""Helpers shared by the bad-input and fault tests (tests/test_bad_*.py, test_faults.py, test_load.py).

A tiny rated set of noise images (made in the test, nothing committed), a run
configuration that trains on it in a few seconds on a CPU (frozen offline
Lite0 trunk, one crop per image), a scoring checkpoint, and the assertions
every command-line error must pass.
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
