"""Process-wide CPU numerics: subnormal floats are flushed to zero.

A saturated sigmoid in HyperIQA's target net passes gradients of 1e-39 and
less back into the weight generators. x86 CPUs compute with such subnormal
numbers in microcode, tens of times slower than with normal ones, and in fp32
one head training took 31 s instead of 18 s (2 cores; the same losses and
test SRCC to the last digit). Flush-to-zero and denormals-are-zero (the
``MXCSR`` bits that ``torch.set_flush_denormal`` sets) make them zero
instead, as TensorFlow and XLA do by default on CPUs.

The bits belong to each thread, and torch's worker threads copy them from
the main thread when they start: so :func:`flush_denormals` runs when
:mod:`iqalib.models` is imported (as the engine, the analyses and the
CLI's commands do), before torch's first parallel operation starts the
workers. In a process that computed with torch before importing iqalib only
the main thread flushes; :func:`denormal_state` says so (``"main thread
only"``) and every run records it. ``IQALIB_DENORMALS=keep`` leaves IEEE subnormals alone.
"""
from __future__ import annotations

import os

import torch

from iqalib.errors import ConfigError

ENV = "IQALIB_DENORMALS"
# float32 bit pattern 0x00000001: the smallest subnormal (1.4e-45). Made from its bits, since
# converting the number 1e-45 to float32 is itself arithmetic that a flushing thread zeroes.
SUBNORMAL_BITS = 1
# Elements in the probe of denormal_state: enough that torch splits it over every thread.
PROBE_ELEMENTS = 1 << 20


def _wanted() -> bool:
    value = os.environ.get(ENV, "flush").strip().lower() or "flush"
    if value not in ("flush", "keep"):
        raise ConfigError(f"${ENV}={value!r} must be flush or keep")
    return value == "flush"


def flush_denormals() -> bool:
    """Flush subnormals to zero on this thread (and the torch workers it will start), unless
    ``$IQALIB_DENORMALS=keep``. Returns whether they are flushed; False also where the CPU
    cannot (non-x86)."""
    return bool(torch.set_flush_denormal(_wanted()))


def denormal_state() -> str:
    """``"flushed"`` (every torch thread), ``"kept"`` or ``"main thread only"``.

    Multiplies subnormals by one: a thread that flushes writes zeros, one that
    does not writes the subnormal back. The element-wise product is split
    over torch's threads, so every worker answers for its share.
    """
    def subnormals(n: int) -> torch.Tensor:
        return torch.full((n,), SUBNORMAL_BITS, dtype=torch.int32).view(torch.float32)

    on_main = subnormals(1).mul(1.0).item() == 0.0
    everywhere = bool((subnormals(PROBE_ELEMENTS).mul(1.0) == 0).all())
    if everywhere:
        return "flushed"
    return "main thread only" if on_main else "kept"


flush_denormals()
