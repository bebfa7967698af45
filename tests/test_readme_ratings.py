"""README's "Your own ratings" runs as written: its commands, on 16 images for one epoch."""
from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

README = Path(__file__).resolve().parents[1] / "README.md"


def ratings_block() -> str:
    """The bash block of README's section "Your own ratings"."""
    text = README.read_text()
    section = text.split("### Your own ratings\n", 1)[1].split("\n#", 1)[0]
    match = re.search(r"```bash\n(.*?)```", section, re.DOTALL)
    assert match, "README's 'Your own ratings' section has no bash block"
    return match.group(1)


def test_the_ratings_block_states_the_commands_the_test_shrinks():
    block = ratings_block()
    for part in ("N=40\n", "[0.6,0.2,0.2]", "train.epochs=8", "train.test_patches=4", ".venv/bin/iqalib train ",
                 ".venv/bin/iqalib evaluate ", ".venv/bin/iqalib score "):
        assert part in block, part


@pytest.mark.slow
@pytest.mark.subprocess
def test_the_readme_ratings_commands_train_evaluate_and_score(tmp_path):
    bin_dir = Path(sys.executable).parent
    # 16 images split 8/4/4: a split of 3 images has too few pairs for PLCC's logistic fit.
    block = (ratings_block().replace("N=40\n", "N=16\n").replace("[0.6,0.2,0.2]", "[0.5,0.25,0.25]")
             .replace("train.epochs=8", "train.epochs=1 train.patch_size=96 train.progress=false")
             .replace("train.test_patches=4", "train.test_patches=1")
             .replace(".venv/bin/python", str(sys.executable)).replace(".venv/bin/iqalib", str(bin_dir / "iqalib")))
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", block], cwd=tmp_path, capture_output=True, text=True,
                          timeout=900, env={**os.environ, "OMP_NUM_THREADS": "1"})  # the trunk weights' cache
    assert done.returncode == 0, done.stderr[-3000:]
    table = pd.read_csv(tmp_path / "ratings" / "scores.csv")
    assert list(table.columns) == ["image", "mos"] and len(table) == 16
    summary = json.loads((tmp_path / "runs" / "ratings" / "summary.json").read_text(),
                         parse_constant=lambda c: pytest.fail(f"summary.json holds {c}"))
    assert summary["rounds"] == 1 and summary["model"] == "smart_iqa_lite0"
    printed = [json.JSONDecoder().raw_decode(done.stdout, m.start())[0] for m in re.finditer(r"^\{", done.stdout, re.M)]
    evaluated = next(p for p in printed if "split" in p)  # train prints its summary, evaluate its metrics
    assert evaluated["split"] == "test" and evaluated["n"] == summary["test_per_round"][0]["n"]
    scores = pd.read_csv(tmp_path / "ratings-scores.csv", keep_default_na=False)
    assert len(scores) == 16 and (scores["error"] == "").all()
    assert pd.to_numeric(scores["score"]).between(-50, 150).all()
