"""``train.precision: auto``: bf16 autocast where a cached probe shows it faster, fp32 elsewhere."""
from __future__ import annotations

import json
import math
import types
from pathlib import Path

import numpy as np
import pytest
import torch

from iqalib.config import TrainConfig
from iqalib.data.images import ImageStore
from iqalib.engine import precision
from iqalib.engine.features import feature_bank
from iqalib.engine.fit import autocast, autocast_dtype
from iqalib.errors import ConfigError
from iqalib.models import create_model

FAST = {"size": 512, "fp32_gflops": 99.0, "bf16_gflops": 422.0, "seconds": 0.01, "threads": 1, "version": precision.PROBE_VERSION}
SLOW = {"size": 256, "fp32_gflops": 99.0, "bf16_gflops": 0.8, "seconds": 0.05, "threads": 1, "version": precision.PROBE_VERSION}
TIE = {"size": 512, "fp32_gflops": 99.0, "bf16_gflops": 110.0, "seconds": 0.01, "threads": 1, "version": precision.PROBE_VERSION}


@pytest.fixture
def fresh(private_cache, monkeypatch):
    """A private cache folder, no per-process memo, no override, and a counting fake probe."""
    monkeypatch.setattr(precision, "_memo", {})
    monkeypatch.delenv(precision.ENV, raising=False)
    calls = []

    def use(result):
        def fake():
            calls.append(result)
            return dict(result)

        monkeypatch.setattr(precision, "probe_matmul", fake)
        return calls

    return use


def test_decision_follows_the_probe(fresh):
    assert precision.decide(FAST) == "bf16"
    assert precision.decide(SLOW) == "fp32"
    assert precision.decide(TIE) == "fp32"  # within the margin: not worth bf16's coarser numbers
    fresh(FAST)
    assert autocast_dtype(torch.device("cpu"), "auto") is torch.bfloat16


@pytest.mark.parametrize("probe, expected", [(FAST, torch.bfloat16), (SLOW, None)])
def test_auto_on_cpu_probes_once_per_machine_then_reads_the_cache(fresh, private_cache, monkeypatch, probe,
                                                                   expected):
    calls = fresh(probe)
    assert autocast_dtype(torch.device("cpu"), "auto") is expected
    assert autocast_dtype(torch.device("cpu"), "auto") is expected
    assert len(calls) == 1  # the second call reads this process's memo
    monkeypatch.setattr(precision, "_memo", {})  # a new process: the file answers
    record = precision.precision_record("cpu", "auto")
    assert len(calls) == 1
    assert record["precision"] == ("bf16" if expected else "fp32") and record["probe"] == probe
    assert "probe (cached)" in record["reason"] and record["requested"] == "auto"
    saved = json.loads((private_cache / precision.CACHE_FILE).read_text())
    assert list(saved) == [precision.machine_key()] and saved[precision.machine_key()]["probe"] == probe


def test_explicit_precision_and_the_override_skip_the_probe(fresh, monkeypatch):
    calls = fresh(FAST)
    assert autocast_dtype(torch.device("cpu"), "fp32") is None
    assert autocast_dtype(torch.device("cpu"), "bf16") is torch.bfloat16
    assert autocast_dtype(torch.device("meta"), "auto") is None  # neither cuda nor cpu: fp32
    monkeypatch.setenv(precision.ENV, "fp32")
    assert precision.precision_record("cpu", "auto")["reason"] == f"auto on cpu: ${precision.ENV}=fp32"
    assert autocast_dtype(torch.device("cpu"), "auto") is None
    assert calls == []
    monkeypatch.setenv(precision.ENV, "fp16")
    with pytest.raises(ConfigError, match=rf"\${precision.ENV}='fp16' must be bf16, fp32 or auto"):
        autocast_dtype(torch.device("cpu"), "auto")
    with pytest.raises(ConfigError, match="train.precision='half' is not one of"):
        autocast_dtype(torch.device("cpu"), "half")


def test_another_cpu_or_torch_version_probes_again(fresh, monkeypatch):
    calls = fresh(SLOW)
    precision.cpu_probe()
    identity = precision.cpu_identity()
    monkeypatch.setattr(precision, "cpu_identity", lambda: {**identity, "flags": [*identity["flags"], "amx_bf16"]})
    fresh(FAST)
    assert precision.cpu_probe()["decision"] == "bf16"
    assert calls == [SLOW, FAST]  # measured once per machine
    saved = json.loads(precision.cache_path().read_text())
    assert len(saved) == 2  # both machines kept


def test_a_probe_taken_under_an_instruction_set_limit_is_not_used_without_it(fresh, monkeypatch):
    # e.g. ONEDNN_MAX_CPU_ISA=AVX2 on an AMX CPU makes bf16 slow; the same CPU without it is fast.
    for name in precision.ISA_LIMITS:
        monkeypatch.delenv(name, raising=False)
    usual = precision.machine_key()
    monkeypatch.setenv("ONEDNN_MAX_CPU_ISA", "AVX2")
    calls = fresh(SLOW)
    assert precision.cpu_probe()["decision"] == "fp32"
    assert precision.cpu_identity()["isa_limits"] == {"ONEDNN_MAX_CPU_ISA": "AVX2"}
    assert json.loads(precision.cache_path().read_text())[precision.machine_key()]["isa_limits"] == {
        "ONEDNN_MAX_CPU_ISA": "AVX2"}
    monkeypatch.delenv("ONEDNN_MAX_CPU_ISA")
    assert precision.machine_key() == usual and "isa_limits" not in precision.cpu_identity()
    fresh(FAST)
    assert precision.cpu_probe()["decision"] == "bf16"
    assert calls == [SLOW, FAST]


@pytest.mark.parametrize("damage", ["{not json", "[1, 2]", '{"k": {"probe": {"fp32_gflops": "x"}}}', ""])
def test_a_damaged_cache_is_measured_again_and_rewritten(fresh, damage):
    path = precision.cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(damage)
    calls = fresh(SLOW)
    entry = precision.cpu_probe()
    assert entry["source"] == "measured" and entry["decision"] == "fp32" and len(calls) == 1
    assert json.loads(path.read_text())[precision.machine_key()]["probe"] == SLOW
    assert [p.name for p in path.parent.iterdir()] == [precision.CACHE_FILE]  # no temporary file left


def test_an_unwritable_cache_costs_only_the_cache(fresh, private_cache):
    private_cache.parent.mkdir(parents=True, exist_ok=True)
    private_cache.write_text("a file where the cache folder should be")
    fresh(FAST)
    with pytest.warns(UserWarning, match="precision probe not cached"):
        assert precision.cpu_probe()["decision"] == "bf16"


class FakeMatmul:
    """torch.mm on a fake clock: fp32 takes ``fp32`` s, bf16 ``cold`` s the first time and ``bf16`` after."""

    def __init__(self, fp32, bf16, cold):
        self.now, self.fp32, self.bf16, self.cold, self.bf16_calls = 0.0, fp32, bf16, cold, 0

    def clock(self):
        return self.now

    def __call__(self, a, b):
        if a.dtype == torch.bfloat16:
            self.now += self.cold if self.bf16_calls == 0 else self.bf16
            self.bf16_calls += 1
        else:
            self.now += self.fp32


def test_a_cold_first_bf16_product_does_not_decide():
    # AMX: the first bf16 product costs 40x a warm fp32 one (tile set-up, kernel JIT); warm it is 4x faster
    amx = FakeMatmul(fp32=1e-3, bf16=2.5e-4, cold=40e-3)
    result = precision.probe_matmul(matmul=amx, clock=amx.clock)
    assert result["size"] == 512 and result["version"] == precision.PROBE_VERSION
    assert result["bf16_gflops"] == pytest.approx(4 * result["fp32_gflops"], rel=0.01)
    assert precision.decide(result) == "bf16"
    # emulated bf16 (100x slower warm too): stops at the first size after one timed product
    emulated = FakeMatmul(fp32=1e-3, bf16=0.1, cold=0.1)
    result = precision.probe_matmul(matmul=emulated, clock=emulated.clock)
    assert result["size"] == 256 and emulated.bf16_calls == 2 and precision.decide(result) == "fp32"


def test_a_cached_probe_of_an_older_version_is_measured_again(fresh):
    path = precision.cache_path()
    path.parent.mkdir(parents=True, exist_ok=True)
    old = {k: v for k, v in SLOW.items() if k != "version"}  # version 1: timed the cold bf16 product
    path.write_text(json.dumps({precision.machine_key(): {"cpu": "x", "torch": "y", "flags": [], "probe": old}}))
    calls = fresh(FAST)
    entry = precision.cpu_probe()
    assert entry["source"] == "measured" and entry["decision"] == "bf16" and len(calls) == 1


def test_the_real_probe_is_quick_and_sane():
    result = precision.probe_matmul()
    assert result["size"] in precision.PROBE_SIZES and result["threads"] == 1
    assert result["fp32_gflops"] > 0 and result["bf16_gflops"] > 0
    assert precision.decide(result) in ("bf16", "fp32")


# ------------------------------------------------------------------ bf16 on a CPU
@pytest.fixture(scope="module")
def lite0():
    torch.manual_seed(0)
    return create_model("hyperiqa_lite0", pretrained=False)


def test_cpu_bf16_autocast_head_step_gives_a_finite_loss(lite0, one_thread):
    model = lite0
    model.freeze_backbone(True)
    with torch.no_grad():
        pooled = [p.float() for p in model.pool_stages(model.forward_features(torch.randn(4, 3, 224, 224)))]
    optimizer = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-3)
    target = torch.tensor([20.0, 40.0, 60.0, 80.0])
    before = [p.detach().clone() for p in model.parameters() if p.requires_grad]
    with torch.no_grad():
        fp32 = model.forward_pooled(pooled)
    with autocast(torch.device("cpu"), torch.bfloat16):
        pred = model.forward_pooled(pooled)
    assert not torch.equal(pred.float(), fp32)  # autocast took effect (bf16 rounding)...
    assert torch.allclose(pred.float(), fp32, rtol=0.05, atol=0.05 * fp32.abs().max().item())  # ...and no more
    loss = torch.nn.functional.l1_loss(pred.float(), target)
    optimizer.zero_grad()
    loss.backward()
    optimizer.step()
    assert math.isfinite(loss.item())
    after = [p for p in model.parameters() if p.requires_grad]
    assert all(p.dtype == torch.float32 for p in after)  # weights stay fp32 under autocast
    assert any(not torch.equal(a, b) for a, b in zip(after, before))


def test_feature_pass_runs_in_the_chosen_precision_and_keys_the_cache_by_it(lite0, one_thread, private_cache):
    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (80, 96, 3), dtype=np.uint8) for _ in range(3)]
    data = types.SimpleNamespace(table=types.SimpleNamespace(paths=[f"img{i}.png" for i in range(3)]),
                                 store=ImageStore.from_arrays(arrays))
    banks = {}
    for name in ("fp32", "bf16"):
        tc = TrainConfig(train_patches=1, test_patches=1, batch_size=3, patch_size=64, precision=name,
                         progress=False)
        banks[name] = feature_bank(lite0, data, tc, device="cpu")
    files = sorted((private_cache / "features").glob("*.pt"))
    assert len(files) == 2  # one bank per precision, never one read for the other
    for fp32, bf16 in zip(banks["fp32"].features, banks["bf16"].features):
        assert fp32.dtype == bf16.dtype == torch.float32  # stored in fp32 either way
        assert torch.isfinite(bf16).all()
        assert not torch.equal(fp32, bf16)  # bf16 autocast did run
        assert torch.allclose(fp32, bf16, rtol=0.1, atol=0.1 * fp32.abs().max().item())


def test_a_long_feature_pass_says_first_how_long_and_where_its_cache_goes(lite0, one_thread, private_cache,
                                                                           monkeypatch, capsys):
    """One line before the pass: crops, time estimated from the second batch, cache path and size."""
    from iqalib.engine import features

    rng = np.random.default_rng(0)
    arrays = [rng.integers(0, 256, (80, 96, 3), dtype=np.uint8) for _ in range(4)]
    data = types.SimpleNamespace(table=types.SimpleNamespace(paths=[f"img{i}.png" for i in range(4)]),
                                 store=ImageStore.from_arrays(arrays))
    tc = TrainConfig(train_patches=2, test_patches=1, batch_size=4, patch_size=64, precision="fp32", progress=False)
    feature_bank(lite0, data, tc, device="cpu")  # short: nothing said
    assert "trunk features" not in capsys.readouterr().err
    monkeypatch.setattr(features, "LONG_PASS_SECONDS", 0.0)  # now every pass counts as long
    tc = TrainConfig(train_patches=3, test_patches=1, batch_size=4, patch_size=64, precision="fp32", progress=False)
    bank = feature_bank(lite0, data, tc, device="cpu")
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    size = sum(f[0].numel() for f in bank.features) * 4 * 12
    assert lines[0].startswith("computing trunk features once: 12 crops (3 per image), about ")
    assert lines[0].endswith(f" ({size / 1e9:.2g} GB)")
    named = Path(lines[0].split("; cache at ")[1].rsplit(" (", 1)[0])
    assert named.is_file() and named.parent == private_cache / "features"  # the line named the cache it wrote
