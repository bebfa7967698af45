"""The attention chapter reads every round's weights from the run's cached trunk features.

A frozen-trunk run scores its test crops from one feature bank; the stage
attention reads only those pooled maps. So the weights read from the bank must
equal the weights of a full forward pass over the same crops, and its scores
the run's own predictions, in every round; a run whose trunk trained has no bank.
"""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest

from iqalib.analysis.attention import (STAGE_COLUMNS, attention_for_run, attention_from_features,
                                       concentration_by_round)
from iqalib.engine.fit import fit

pytestmark = pytest.mark.usefixtures("one_thread")


def _config(mini_data, out_dir, name, **train):
    settings = dict(epochs=2, batch_size=16, train_patches=2, test_patches=2, patch_size=96, trunk_lr=1e-3,
                    freeze_backbone=True, progress=False, precision="fp32", rounds=2)
    settings.update(train)
    return {"name": name, "out_dir": str(out_dir), "data": mini_data,
            "model": {"name": "smart_iqa_lite0", "pretrained": True}, "train": settings}


@pytest.fixture(scope="module")
def frozen_run(mini_data, tmp_path_factory):
    out = tmp_path_factory.mktemp("attention")
    fit(_config(mini_data, out, "frozen"))
    return out / "frozen"


def test_bank_weights_equal_a_full_forward_pass_and_reproduce_the_runs_scores(frozen_run):
    frames = attention_from_features(frozen_run, [0, 1], device="cpu")
    assert sorted(frames) == [0, 1]
    for r, frame in frames.items():
        stored = pd.read_csv(frozen_run / f"round_{r}" / "predictions.csv")
        assert sorted(frame["image"]) == sorted(stored["image"].astype(str))
        # the run scored exactly these crops: its own predictions come back (fp32 throughout)
        np.testing.assert_allclose(frame["pred"], frame["run_pred"], atol=1e-4)
        weights = frame[list(STAGE_COLUMNS)].to_numpy()
        np.testing.assert_allclose(weights.sum(axis=1), 1.0, atol=1e-5)
    # round 0's crops are the bank's (same seed): the trunk pass over the images gives the same weights
    direct = attention_for_run(frozen_run, 0, device="cpu").set_index("image")
    from_bank = frames[0].set_index("image").loc[direct.index]
    np.testing.assert_allclose(from_bank[list(STAGE_COLUMNS)], direct[list(STAGE_COLUMNS)], atol=1e-4)
    np.testing.assert_allclose(from_bank["pred"], direct["pred"], atol=1e-3)


def test_concentration_by_round_reads_the_bank_and_a_trained_trunk_has_none(frozen_run, mini_data, tmp_path):
    by_round = concentration_by_round(frozen_run, [0, 1], device="cpu", n_boot=100)
    frames = attention_from_features(frozen_run, [0, 1], device="cpu")
    for r in (0, 1):
        from iqalib import metrics
        from iqalib.analysis.attention import concentration

        weights = frames[r][list(STAGE_COLUMNS)].to_numpy()
        assert by_round.loc[r, "srcc"] == pytest.approx(metrics.srcc(concentration(weights), frames[r]["mos"]))
    fit(_config(mini_data, tmp_path, "trained", freeze_backbone=False, rounds=1, epochs=1))
    assert attention_from_features(tmp_path / "trained", [0], device="cpu") is None
