"""Bad run configurations, through the Python API and ``iqalib train cfg.yaml key=value``.

The validation rules themselves (every wrong type, every impossible value,
YAML syntax errors, unknown keys listing the valid ones) are unit-tested in
tests/test_config.py; unknown model and data set names and a patch larger
than the images through ``fit`` in tests/test_engine.py. Here: typos get a
"did you mean" suggestion, and each kind of mistake reaches the command line
as one ``error: ...`` line (exit 2, no traceback; ``--debug`` shows it).
"""
from __future__ import annotations

import pytest
import torch

from faults_support import cli_error, run_cli, tiny_config, write_yaml
from iqalib.config import from_dict, load_config
from iqalib.data.datasets import load_dataset
from iqalib.engine import fit
from iqalib.errors import ConfigError
from iqalib.models import create_model


@pytest.fixture
def cfg(tiny_set, tmp_path):
    """``run.yaml`` of a valid tiny run (images 96x72)."""
    return write_yaml(tmp_path / "run.yaml", tiny_config(tiny_set, tmp_path / "runs"))


def config_error(fn, *fragments: str) -> str:
    with pytest.raises(ConfigError) as info:
        fn()
    message = str(info.value)
    assert "\n" not in message
    for fragment in fragments:
        assert fragment in message, (fragment, message)
    return message


# ---------------------------------------------------------- did you mean
@pytest.mark.parametrize("data, fragments", [
    ({"train": {"epohcs": 3}}, ["unknown key(s) ['train.epohcs'] in section 'train' "
                                "(did you mean 'train.epochs'?); valid: ['batch_size',"]),
    ({"train": {"trunk_rl": 1e-3}}, ["(did you mean 'train.trunk_lr'?)"]),
    ({"data": {"fraction": [1, 0, 0]}}, ["(did you mean 'data.fractions'?)"]),
    ({"model": {"pretrain": False}}, ["(did you mean 'model.pretrained'?)"]),
    ({"nmae": "x"}, ["unknown key(s) ['nmae'] in the top level (did you mean 'name'?)"]),
    ({"train": {"optimizer": "sdg"}}, ["train.optimizer='sdg' is not one of ('adam', 'adamw', 'sgd') "
                                       "(did you mean 'sgd'?)"]),
])
def test_typos_name_the_key_and_suggest_the_closest(data, fragments):
    config_error(lambda: from_dict(data), *fragments)


def test_a_word_far_from_every_key_gets_no_guess():
    message = config_error(lambda: from_dict({"train": {"zzz": 1}}), "unknown key(s) ['train.zzz']")
    assert "did you mean" not in message


def test_unknown_names_suggest_the_closest_valid_one(tiny_set):
    config_error(lambda: create_model("smart_iqa_lite"), "unknown model 'smart_iqa_lite'; valid models: "
                 "hyperiqa_lite0, hyperiqa_resnet50, smart_iqa_base, smart_iqa_lite0, smart_iqa_small, "
                 "smart_iqa_tiny (did you mean 'smart_iqa_lite0'?)")
    config_error(lambda: load_dataset("konik"), "unknown data set 'konik'; choose one of ['csv', 'demo', "
                 "'kadid10k', 'koniq10k', 'livec', 'livec_jpeg', 'spaq'] (did you mean 'koniq10k'?)")
    config_error(lambda: load_dataset("csv", tiny_set, tabel="scores.csv"),
                 "unknown option(s) ['tabel'] for data set 'csv' (did you mean 'table'?); valid: ['table',")
    config_error(lambda: create_model("smart_iqa_lite0", multiscal=True),
                 "model 'smart_iqa_lite0' has no option 'multiscal' (did you mean 'multiscale'?)")


def test_fit_refuses_a_typo_before_any_work(tiny_set, tmp_path):
    config = tiny_config(tiny_set, tmp_path / "runs")
    config["train"]["epohcs"] = 3
    config_error(lambda: fit(config), "(did you mean 'train.epochs'?)")
    config = tiny_config(tiny_set, tmp_path / "runs")
    config["model"]["options"] = {"multiscal": True}
    config_error(lambda: fit(config), "model.options ['multiscal'] are not options of 'smart_iqa_lite0' "
                 "(did you mean 'multiscale'?); valid: ['attention',")
    assert not (tmp_path / "runs").exists()


# --------------------------------------------------- impossible values, API
def test_impossible_values_through_fit(tiny_set, tmp_path):
    out = tmp_path / "runs"
    config_error(lambda: fit(tiny_config(tiny_set, out, epochs=0)), "train.epochs=0 must be positive")
    config_error(lambda: fit(tiny_config(tiny_set, out, trunk_lr=-1e-4)), "train.trunk_lr=-0.0001 must be positive")
    config_error(lambda: fit(tiny_config(tiny_set, out, patch_size=500)),
                 "train.patch_size=500 is larger than 16 of 16 image(s)", "at most 72 fits all",
                 "lower train.patch_size")
    assert not out.exists()


def test_an_empty_validation_split_is_refused(tiny_set, tmp_path):
    config = tiny_config(tiny_set, tmp_path / "runs")
    config["data"]["fractions"] = [0.9, 0.0, 0.1]
    config_error(lambda: fit(config), "the validation split is empty; model selection needs one (data.fractions)")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_a_gpu_says_what_to_use(tiny_set, tmp_path):
    config_error(lambda: fit(tiny_config(tiny_set, tmp_path / "runs", device="cuda")),
                 "train.device='cuda' but no CUDA device is visible; use device=auto or cpu")


# ------------------------------------------------------------------- CLI
@pytest.mark.parametrize("overrides, fragments", [
    (["train.epohcs=3"], ["unknown key(s) ['train.epohcs'] in section 'train' (did you mean 'train.epochs'?)"]),
    (["train.epochs"], ["override 'train.epochs' must look like section.key=value"]),
    (["train.epochs=three"], ["train.epochs='three' must be of type int"]),
    (["train.trunk_lr=fast"], ["train.trunk_lr='fast' must be of type float"]),
    (["data.fractions=0.8"], ["data.fractions=0.8 must be a list"]),
    (["train.epochs=0"], ["train.epochs=0 must be positive"]),
    (["train.trunk_lr=-1e-4"], ["train.trunk_lr=-0.0001 must be positive"]),
    (["data.fractions=[0.8, 0.1, 0.2]"], ["must be three non-negative shares summing to 1"]),
    (["train.loss=l3"], ["train.loss='l3' is not one of ('fidelity', 'l1', 'l1+rank', 'mse', 'plcc', "
                          "'ranking', 'smooth_l1', 'soft_srcc')"]),
])
def test_cli_config_mistakes_name_the_file_and_the_key(cfg, capsys, overrides, fragments):
    cli_error(capsys, ["train", str(cfg), *overrides], ConfigError, f"{cfg}: ", *fragments)


@pytest.mark.parametrize("overrides, fragments", [
    (["model.name=smart_iqa_lite"], ["unknown model 'smart_iqa_lite'; valid models: hyperiqa_lite0,",
                                     "(did you mean 'smart_iqa_lite0'?)"]),
    (["data.name=konik"], ["unknown data set 'konik'; choose one of ['csv', 'demo',", "(did you mean 'koniq10k'?)"]),
    (["model.options.multiscal=true"], ["model.options ['multiscal'] are not options of 'smart_iqa_lite0'",
                                        "(did you mean 'multiscale'?)"]),
    (["train.patch_size=500"], ["train.patch_size=500 is larger than 16 of 16 image(s)", "at most 72 fits all"]),
])
def test_cli_names_and_sizes_checked_against_the_registries_and_the_data(cfg, capsys, overrides, fragments):
    cli_error(capsys, ["train", str(cfg), *overrides], ConfigError, *fragments)
    assert not (cfg.parent / "runs").exists()


def test_cli_missing_and_broken_config_files(tmp_path, capsys):
    cli_error(capsys, ["train", str(tmp_path / "nope.yaml")], ConfigError,
              f"{tmp_path / 'nope.yaml'}: configuration file not found")
    broken = tmp_path / "broken.yaml"
    broken.write_text("train:\n  epochs: 3\n bad: [\n")
    cli_error(capsys, ["train", str(broken)], ConfigError, f"{broken}: not valid YAML (line ",
              "check indentation and colons")


@pytest.mark.subprocess
def test_a_real_process_prints_one_line_and_a_traceback_only_with_debug(cfg):
    plain = run_cli(["train", str(cfg), "train.epohcs=3"])
    assert plain.returncode == 2 and "Traceback" not in plain.stderr
    assert plain.stderr.strip().splitlines() == [
        f"error: {cfg}: unknown key(s) ['train.epohcs'] in section 'train' (did you mean 'train.epochs'?); "
        f"valid: {sorted(load_config(None).train.__dataclass_fields__)}"]
    debug = run_cli(["--debug", "train", str(cfg), "train.epohcs=3"])
    assert debug.returncode != 0
    assert debug.stderr.startswith("Traceback (most recent call last):")
    assert "iqalib.errors.ConfigError: " in debug.stderr and "did you mean 'train.epochs'?" in debug.stderr


@pytest.mark.parametrize("flags, fragment", [
    (["--patches", "0"], "patches=0 (--patches on the command line) must be a positive whole number"),
    (["--short-side", "-5"], "short_side=-5 (--short-side on the command line) must be a positive whole number"),
])
def test_score_flags_out_of_range(tiny_set, tmp_path, capsys, flags, fragment):
    from faults_support import scoring_checkpoint

    checkpoint = scoring_checkpoint(tmp_path / "best.pt")
    cli_error(capsys, ["score", str(tiny_set / "images"), "--checkpoint", str(checkpoint), *flags], ConfigError,
              fragment)
