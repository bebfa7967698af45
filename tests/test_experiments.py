"""iqalib.experiments helpers that the book calls with a profile's parameters."""
from __future__ import annotations

import pytest

from iqalib.errors import ConfigError
from iqalib.experiments import measure_throughput


def test_measure_throughput_accepts_the_profiles_auto_device():
    # The livec and koniq profiles say device: auto; it must mean "CUDA if there is one".
    assert measure_throughput("hyperiqa_lite0", batch_size=1, repeats=1, device="auto") > 0


def test_measure_throughput_refuses_cuda_without_a_gpu():
    pytest.importorskip("torch")
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is visible")
    with pytest.raises(ConfigError, match="no CUDA device"):
        measure_throughput("hyperiqa_lite0", batch_size=1, repeats=1, device="cuda")
