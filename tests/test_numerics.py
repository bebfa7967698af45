"""Subnormals are flushed to zero in every torch thread once iqalib's models or engine are
imported (iqalib.numerics); each case runs in a fresh interpreter, since the bits are per thread
and torch's workers copy them when they start."""
import os
import platform
import subprocess
import sys

import pytest
import torch

# The smallest float32 subnormal times one, on 2 threads: zero where every thread flushes.
STATE = ("import torch; torch.set_num_threads(2); {before}; import {module}; "
         "from iqalib.numerics import denormal_state; print(denormal_state())")

pytestmark = pytest.mark.skipif(platform.machine().lower() not in ("x86_64", "amd64"),
                                reason="flush-to-zero is an x86 control (MXCSR)")


def _state(module="iqalib.models", before="pass", env=None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", STATE.format(module=module, before=before)],
                          capture_output=True, text=True, timeout=300,
                          env={**os.environ, **(env or {})})


@pytest.mark.subprocess
@pytest.mark.parametrize("module", ["iqalib.models", "iqalib.engine"])
def test_importing_iqalib_flushes_subnormals_in_every_thread(module):
    done = _state(module, env={"IQALIB_DENORMALS": ""})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "flushed"


@pytest.mark.subprocess
def test_keep_leaves_ieee_subnormals():
    done = _state(env={"IQALIB_DENORMALS": "keep"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "kept"


@pytest.mark.subprocess
def test_workers_started_before_the_import_are_reported():
    # A parallel product starts torch's second thread before iqalib sets the bits on the main one.
    done = _state(before="torch.ones(1 << 20).mul(2.0).sum()", env={"IQALIB_DENORMALS": "flush"})
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "main thread only"


@pytest.mark.subprocess
def test_a_bad_setting_is_one_clear_error():
    done = _state(env={"IQALIB_DENORMALS": "sometimes"})
    assert done.returncode != 0
    assert "IQALIB_DENORMALS='sometimes' must be flush or keep" in done.stderr


def test_flushing_changes_no_normal_number():
    # The target net's arithmetic on normal floats is untouched: only values below 1.18e-38 change.
    from iqalib.numerics import denormal_state

    assert denormal_state() in ("flushed", "main thread only")  # this process imported iqalib
    g = torch.Generator().manual_seed(0)
    a, b = torch.randn(64, 64, generator=g), torch.randn(64, 64, generator=g)
    expected = (a.double() @ b.double())
    assert torch.allclose((a @ b).double(), expected, rtol=1e-5, atol=1e-5)
    assert torch.sigmoid(torch.tensor([-80.0])).item() > 0  # 1.8e-35: normal, kept
    assert torch.sigmoid(torch.tensor([-100.0])).item() == 0.0  # 3.7e-44: subnormal, flushed
