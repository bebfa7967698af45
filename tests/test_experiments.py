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


@pytest.mark.slow
def test_the_lr_sweep_reads_back_its_own_rates_chapter_run_and_never_touches_another(tmp_path, write_image,
                                                                                    monkeypatch):
    import iqalib.experiments as experiments
    from iqalib.experiments import lr_sweep, run_config, run_or_load

    root = tmp_path / "tiny"
    for i in range(16):
        write_image(root / f"im{i}.png", height=40, width=40, seed=i)
    (root / "scores.csv").write_text("image,mos\n" + "".join(f"im{i}.png,{5 * i + 10}\n" for i in range(16)))
    keys = dict(out_dir=tmp_path / "runs", dataset="csv", data_root=root, model="hyperiqa_lite0",
                pretrained=False, fractions=(0.5, 0.25, 0.25), epochs=1, patch_size=32, train_patches=1,
                test_patches=1, batch_size=4, freeze_backbone=True, device="cpu", progress=False)
    chapter = run_or_load(run_config("chapter_run", trunk_lr=1e-3, **keys))
    trained, real_fit = [], experiments.fit
    monkeypatch.setattr(experiments, "fit", lambda config, **kw: trained.append(config.name) or real_fit(config, **kw))

    sweep = lr_sweep("sweep", [1e-3, 1e-2], reuse={1e-3: "chapter_run"}, **keys)
    assert trained == ["sweep_lr0.01"]  # the chapter's rate is read back, not trained again
    own = sweep[sweep["trunk_lr"] == 1e-3]
    assert own["run"].tolist() == ["chapter_run"]
    assert own["srcc"].tolist() == [chapter["round_results"][0]["test"]["srcc"]]

    # Another recipe: the chapter's run is not this rate's run; it is left as it was, the sweep trains its own.
    chapter_files = {p: p.stat().st_mtime_ns for p in (tmp_path / "runs" / "chapter_run").rglob("*") if p.is_file()}
    trained.clear()
    lr_sweep("sweep", [1e-3], reuse={1e-3: "chapter_run"}, **{**keys, "epochs": 2})
    assert trained == ["sweep_lr0.001"]
    assert {p: p.stat().st_mtime_ns for p in chapter_files} == chapter_files
