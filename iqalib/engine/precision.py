"""Which autocast precision a device runs fastest: ``train.precision: auto``.

* CUDA: bf16 autocast where the card supports it, else fp32.
* CPU: bf16 autocast only where a quick probe shows it faster. CPUs with
  native bf16 (AVX512-BF16, AMX) multiply bf16 matrices several times faster
  than fp32; CPUs without it emulate bf16 at a small fraction of the fp32
  speed. The probe times one square matmul in each type (well under a second,
  stopping early when bf16 is plainly slower) and is cached per machine in
  ``$IQALIB_CACHE/precision.json``, keyed by CPU model, CPU flags and torch
  version, so it runs once per machine, not once per run.
  ``$IQALIB_CPU_PRECISION`` (``bf16`` or ``fp32``) overrides the probe.
* elsewhere (mps): fp32.

``precision: bf16`` or ``fp32`` in a config is taken as given on any device.
:func:`precision_record` says what was chosen and why, for a run's results.
"""
from __future__ import annotations

import hashlib
import json
import os
import platform
import stat
import time
import warnings
from pathlib import Path

import torch

from iqalib.data.images import cache_root
from iqalib.errors import ConfigError, OutputError
from iqalib.files import atomic_write_json
from iqalib.numerics import denormal_state

ENV = "IQALIB_CPU_PRECISION"
CACHE_FILE = "precision.json"
MARGIN = 1.2  # bf16 must beat fp32 by this factor: a tie is not worth bf16's coarser numbers
PROBE_SIZES = (256, 512)
PROBE_REPS = 3
# Cached probes of an older version are measured again (version 1 timed bf16's cold first product).
PROBE_VERSION = 2
# The flags that decide bf16 and matmul speed; the cache key holds the whole flag set.
SPEED_FLAGS = ("avx2", "fma", "avx512f", "avx512_bf16", "avx512_vnni", "avx_vnni", "amx_bf16", "amx_tile")
# Variables that stop torch, oneDNN or MKL from using what the CPU has (e.g. AMX): a probe taken
# under them says nothing about the same CPU without them, so they are part of the cache key.
ISA_LIMITS = ("ATEN_CPU_CAPABILITY", "ONEDNN_MAX_CPU_ISA", "DNNL_MAX_CPU_ISA", "MKL_ENABLE_INSTRUCTIONS",
              "MKL_CBWR", "ONEDNN_DEFAULT_FPMATH_MODE")

_memo: dict[str, dict] = {}  # per process: key -> probe result


# ------------------------------------------------------------------ the machine
def cpu_identity() -> dict:
    """CPU model name, its flags (sorted), torch version and any :data:`ISA_LIMITS` set: what a
    probe result depends on."""
    model, flags = "", []
    try:
        text = Path("/proc/cpuinfo").read_text()
    except OSError:
        text = ""
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = sorted(set(value.split()))
    identity = {"model": model or platform.processor() or platform.machine(), "flags": flags,
                "torch": torch.__version__}
    limits = isa_limits()
    if limits:  # absent when unset, so that the usual key stays what it was
        identity["isa_limits"] = limits
    return identity


def isa_limits() -> dict[str, str]:
    """The :data:`ISA_LIMITS` set in the environment, by name."""
    return {name: os.environ[name] for name in ISA_LIMITS if os.environ.get(name)}


def machine_key(identity: dict | None = None) -> str:
    identity = identity or cpu_identity()
    return hashlib.sha1(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:16]


# ------------------------------------------------------------------ the probe
def _seconds(a: torch.Tensor, b: torch.Tensor, reps: int, matmul=torch.mm, clock=time.perf_counter) -> float:
    """The fastest of ``reps`` products: other processes only ever add time, never remove it."""
    times = []
    for _ in range(reps):
        start = clock()
        matmul(a, b)
        times.append(clock() - start)
    return min(times)


def probe_matmul(sizes=PROBE_SIZES, reps: int = PROBE_REPS, *, matmul=torch.mm, clock=time.perf_counter) -> dict:
    """GFLOP/s of an fp32 and a bf16 square matmul on one CPU thread, in well under a second.

    One thread: the ratio of the two is what decides, and a single thread is
    not thrown off by a busy machine the way a team of threads is. Each type's
    first product is a warm-up and is not timed: a CPU with AMX spends
    milliseconds on its first bf16 product (tile permission, kernel JIT), 20x
    a warm fp32 product at 256^2 on a loaded machine. Starts at ``sizes[0]``;
    where bf16's first timed product is already 20 times slower than fp32's
    (no native bf16: about a hundred times) the probe stops there, else it
    measures each size while bf16 keeps up, and reports the last.
    ``matmul`` and ``clock`` are for tests.
    """
    started = time.perf_counter()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        generator = torch.Generator().manual_seed(0)
        result = {}
        for size in sizes:
            a = torch.randn(size, size, generator=generator)
            b = torch.randn(size, size, generator=generator)
            matmul(a, b)  # warm-up: kernel choice
            fp32 = _seconds(a, b, 2 * reps, matmul, clock)
            a16, b16 = a.bfloat16(), b.bfloat16()
            matmul(a16, b16)  # warm-up: on AMX the first product pays for setting the tiles up
            bf16 = _seconds(a16, b16, 1, matmul, clock)
            plainly_slower = bf16 > 20 * fp32  # emulated bf16: no need to time it again
            if not plainly_slower and reps > 1:
                bf16 = min(bf16, _seconds(a16, b16, reps - 1, matmul, clock))
            flops = 2 * size ** 3
            result = {"size": size, "fp32_gflops": round(flops / fp32 / 1e9, 2),
                      "bf16_gflops": round(flops / bf16 / 1e9, 2)}
            if plainly_slower or result["bf16_gflops"] < result["fp32_gflops"]:
                break
    finally:
        torch.set_num_threads(threads)
    result["seconds"] = round(time.perf_counter() - started, 3)
    result["threads"] = 1
    result["version"] = PROBE_VERSION
    return result


def decide(probe: dict, margin: float = MARGIN) -> str:
    """``"bf16"`` where the probe's bf16 matmul beats fp32 by ``margin``, else ``"fp32"``."""
    return "bf16" if probe["bf16_gflops"] >= margin * probe["fp32_gflops"] else "fp32"


# ------------------------------------------------------------------ the cache
def cache_path() -> Path:
    return cache_root() / CACHE_FILE


def _read_cache(path: Path) -> dict:
    """The cached probes by machine key; {} for a missing or damaged file (it is then rewritten), and
    for anything that is not a regular file (a named pipe would block the read forever)."""
    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return {}
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {k: v for k, v in data.items() if isinstance(v, dict) and _valid(v)}


def _valid(entry: dict) -> bool:
    return (isinstance(entry.get("probe"), dict) and entry["probe"].get("version") == PROBE_VERSION
            and all(isinstance(entry["probe"].get(k), (int, float)) and entry["probe"][k] > 0
                    for k in ("fp32_gflops", "bf16_gflops")))


def cpu_probe(*, refresh: bool = False, probe=None) -> dict:
    """This machine's probe: from this process, the cache file, or measured now (and cached).

    Returns ``{"key", "cpu", "probe", "decision", "source"}``; ``source`` is
    ``"measured"`` or ``"cached"``. A cache that cannot be written costs only
    the cache (a warning); the probe result is used all the same.
    """
    identity = cpu_identity()
    key = machine_key(identity)
    if key in _memo and not refresh:
        return {**_memo[key], "source": "cached"}
    path = cache_path()
    cached = _read_cache(path)
    if key in cached and not refresh:
        entry = cached[key]
    else:
        measured = (probe or probe_matmul)()
        entry = {"cpu": identity["model"], "torch": identity["torch"],
                 "flags": [f for f in SPEED_FLAGS if f in identity["flags"]], "probe": measured}
        if "isa_limits" in identity:  # says why the file holds a second entry for the same CPU
            entry["isa_limits"] = identity["isa_limits"]
        cached[key] = entry
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(path, cached)
        except (OutputError, OSError) as exc:
            warnings.warn(f"precision probe not cached: {exc}", stacklevel=2)
        entry = {**entry, "source": "measured"}
    entry = {"key": key, **entry, "decision": decide(entry["probe"])}
    entry.setdefault("source", "cached")
    _memo[key] = {k: v for k, v in entry.items() if k != "source"}
    return entry


# ------------------------------------------------------------------ the choice
def _env_choice() -> str | None:
    value = os.environ.get(ENV, "").strip().lower()
    if not value or value == "auto":
        return None
    if value not in ("bf16", "fp32"):
        raise ConfigError(f"${ENV}={value!r} must be bf16, fp32 or auto")
    return value


def resolve_precision(device: torch.device | str, precision: str) -> dict:
    """``{"precision": "bf16"|"fp32", "reason": ...}`` for ``precision`` (auto, bf16, fp32) on ``device``.

    On a CPU, ``auto`` adds ``"probe"`` (the cached or measured matmul rates).
    """
    device = torch.device(device)
    if precision not in ("auto", "bf16", "fp32"):
        raise ConfigError(f"train.precision={precision!r} is not one of ('auto', 'fp32', 'bf16')")
    if precision != "auto":
        return {"precision": precision, "reason": f"train.precision={precision}"}
    if device.type == "cuda":
        supported = torch.cuda.is_bf16_supported()
        return {"precision": "bf16" if supported else "fp32",
                "reason": "auto on cuda: " + ("bf16 supported" if supported else "no bf16 on this card")}
    if device.type != "cpu":
        return {"precision": "fp32", "reason": f"auto on {device.type}: fp32"}
    forced = _env_choice()
    if forced:
        return {"precision": forced, "reason": f"auto on cpu: ${ENV}={forced}"}
    entry = cpu_probe()
    p = entry["probe"]
    return {"precision": entry["decision"], "probe": p, "cpu": entry["cpu"],
            "reason": (f"auto on cpu: probe ({entry['source']}) bf16 {p['bf16_gflops']} vs fp32 "
                       f"{p['fp32_gflops']} GFLOP/s at {p['size']}^2")}


def autocast_dtype(device: torch.device | str, precision: str) -> torch.dtype | None:
    """The autocast dtype for ``precision`` on ``device``: ``torch.bfloat16``, or None for fp32."""
    return torch.bfloat16 if resolve_precision(device, precision)["precision"] == "bf16" else None


def precision_record(device: torch.device | str, precision: str) -> dict:
    """What a run's results record: requested and chosen precision, device, reason, probe, and
    whether subnormals are flushed (:mod:`iqalib.numerics`)."""
    return {"requested": precision, "device": str(torch.device(device)), **resolve_precision(device, precision),
            "denormals": denormal_state()}
