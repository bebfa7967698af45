"""Comparing builds of one edition: medians within the tolerance, verdicts of the same kind."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from iqalib.analysis.agreement import MEDIAN_TOLERANCE, agreement, verdict_kind
from iqalib.errors import DataError

ROOT = Path(__file__).resolve().parents[1]


def _build(folder: Path, medians: dict, verdicts: dict) -> Path:
    for run, value in medians.items():
        (folder / run).mkdir(parents=True)
        (folder / run / "summary.json").write_text(json.dumps({"median_test_srcc": value}))
    (folder / "claims").mkdir(parents=True)
    (folder / "claims" / "04.json").write_text(json.dumps(
        {"chapter": "04", "claims": [{"claim": c, "edition": "", "verdict": v} for c, v in verdicts.items()]}))
    return folder


def test_verdict_kind_reads_the_words_before_the_reason():
    assert verdict_kind("supported") == "supported"
    assert verdict_kind("not supported (signed-rank test p = 0.23; 6 of 10 rounds for it, 4 against)") == "not supported"
    assert verdict_kind("contradicted (from 0.003 to 0.01 ...)") == "contradicted"
    assert verdict_kind("untested (3 rounds; the rule needs 6)") == "untested"
    with pytest.raises(DataError, match="unknown verdict"):
        verdict_kind("probably")


def test_builds_agree_when_kinds_match_and_medians_are_close(tmp_path):
    a = _build(tmp_path / "a", {"smart": 0.80, "hyper": 0.70}, {"x": "supported", "y": "not supported (p = 0.3)"})
    b = _build(tmp_path / "b", {"smart": 0.81, "hyper": 0.70 + MEDIAN_TOLERANCE / 2},
               {"x": "supported", "y": "not supported (p = 0.6)"})
    result = agreement({"bf16": a, "fp32": b})
    assert result["all_medians_within"] and result["all_verdicts_agree"]
    assert result["medians"].loc["smart", "spread"] == pytest.approx(0.01)


def test_a_flipped_verdict_a_distant_median_or_a_missing_run_disagree(tmp_path):
    a = _build(tmp_path / "a", {"smart": 0.80, "hyper": 0.70}, {"x": "supported", "y": "supported"})
    b = _build(tmp_path / "b", {"smart": 0.75}, {"x": "not supported (p = 0.2)", "y": "supported"})
    result = agreement({"bf16": a, "fp32": b})
    assert not result["all_verdicts_agree"] and not result["all_medians_within"]
    assert result["verdicts"]["agree"].to_dict() == {"x": False, "y": True}
    assert result["medians"]["within"].to_dict() == {"hyper": False, "smart": False}  # hyper: missing in b
    assert np.isnan(result["medians"].loc["hyper", "fp32"])


def test_the_script_writes_strict_json_and_fails_on_disagreement(tmp_path):
    a = _build(tmp_path / "a", {"smart": 0.80}, {"x": "supported"})
    b = _build(tmp_path / "b", {"smart": 0.70}, {"x": "supported"})
    out = tmp_path / "agreement.json"
    done = subprocess.run([sys.executable, str(ROOT / "benchmarks" / "edition_agreement.py"), f"bf16={a}", f"fp32={b}",
                           "--out", str(out)], capture_output=True, text=True)
    assert done.returncode == 1, done.stderr
    saved = json.loads(out.read_text())
    assert saved["all_medians_within"] is False and saved["all_verdicts_agree"] is True
    assert saved["medians"][0]["spread"] == pytest.approx(0.1)
    with pytest.raises(DataError, match="no claims/ folder"):
        agreement({"a": tmp_path, "b": a})
