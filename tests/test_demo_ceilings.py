"""What the demo set's labels allow: the rater-noise ceiling and the content-blind distortion oracle."""
from __future__ import annotations

import numpy as np
import pytest
from scipy.stats import spearmanr

import iqalib.data.demo as demo
from iqalib.data.splits import split_table


def test_ceilings_per_round_match_a_slow_re_derivation(demo_table):
    ceilings = demo.label_ceilings(demo_table, fractions=(0.5, 0.25, 0.25), split_seed=3, rounds=2, draws=50)
    assert list(ceilings.index) == [0, 1] and (ceilings["n"] == 75).all()
    for r in (0, 1):
        parts = split_table(demo_table, seed=3 + r, fractions=(0.5, 0.25, 0.25))
        train, test = parts["train"].frame, parts["test"].frame
        oracle = [train[(train.distortion == d) & (train.level == lv)].mos.mean()
                  for d, lv in zip(test.distortion, test.level)]
        assert ceilings.loc[r, "distortion_oracle"] == pytest.approx(spearmanr(oracle, test.mos)[0])
        assert ceilings.loc[r, "observed"] == pytest.approx(spearmanr(test.fidelity, test.mos)[0])
    # 24 raters with sd 12 on scores spread over 0-100: the MOS keeps nearly all of the order.
    assert (ceilings["noise_ceiling"] > 0.95).all() and (ceilings["noise_ceiling"] < 1).all()
    # The content-blind oracle is the tighter bound on these splits.
    assert (ceilings["distortion_oracle"] < ceilings["noise_ceiling"]).all()


def test_noise_ceiling_follows_the_rater_model(demo_table, monkeypatch):
    first = demo.label_ceilings(demo_table, fractions=(0.5, 0.25, 0.25), rounds=1, draws=20)
    assert demo.label_ceilings(demo_table, fractions=(0.5, 0.25, 0.25), rounds=1, draws=20).equals(first)
    monkeypatch.setattr(demo, "RATER_SD", 0.0)  # perfect raters: the MOS is the fidelity
    assert demo.label_ceilings(demo_table, fractions=(0.5, 0.25, 0.25), rounds=1, draws=5).loc[
        0, "noise_ceiling"] == pytest.approx(1.0)
    monkeypatch.setattr(demo, "RATER_SD", 60.0)  # very noisy raters: a much lower ceiling
    noisy = demo.label_ceilings(demo_table, fractions=(0.5, 0.25, 0.25), rounds=1, draws=20)
    assert noisy.loc[0, "noise_ceiling"] < first.loc[0, "noise_ceiling"] - 0.05
    assert np.isfinite(noisy.to_numpy()).all()
