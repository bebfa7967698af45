"""Run configuration: YAML + overrides, and every way a user can get it wrong."""
from __future__ import annotations

import dataclasses

import pytest

from iqalib.config import (
    DataConfig,
    ModelConfig,
    RunConfig,
    TrainConfig,
    from_dict,
    load_config,
    parse_override,
    resolve_train,
)
from iqalib.errors import ConfigError
from iqalib.models.hyperiqa import HYPERIQA_TRAINING, SMART_IQA_TRAINING

YAML = """\
name: exp
out_dir: somewhere
data:
  name: demo
  fractions: [0.6, 0.2, 0.2]
model:
  name: smart_iqa_lite0
  options: {multiscale: true}
train:
  epochs: 3
  trunk_lr: 1.0e-4
"""


@pytest.fixture
def yaml_file(tmp_path):
    path = tmp_path / "run.yaml"
    path.write_text(YAML)
    return path


def test_yaml_is_read_into_typed_sections(yaml_file):
    config = load_config(yaml_file)
    assert config.name == "exp" and config.out_dir == "somewhere"
    assert config.data == DataConfig(name="demo", fractions=[0.6, 0.2, 0.2])
    assert config.model == ModelConfig(name="smart_iqa_lite0", options={"multiscale": True})
    assert config.train.epochs == 3 and config.train.trunk_lr == 1e-4
    # Unset training keys stay None: "the model's default", filled by resolve_train.
    assert config.train.optimizer is None and config.train.batch_size is None
    assert config.run_dir.as_posix() == "somewhere/exp"


def test_overrides_win_over_the_file_and_parse_as_yaml(yaml_file):
    config = load_config(yaml_file, ["train.epochs=7", "train.trunk_lr=3e-5", "model.options.attention=false",
                                     "data.fractions=[0.5, 0.25, 0.25]", "name=other", "train.device=cpu"])
    assert config.train.epochs == 7
    assert config.train.trunk_lr == 3e-5  # YAML 1.1 reads 3e-5 as text; the override parser must not
    assert config.model.options == {"multiscale": True, "attention": False}  # merged, not replaced
    assert config.data.fractions == [0.5, 0.25, 0.25]
    assert config.name == "other" and config.train.device == "cpu"


def test_int_is_accepted_where_a_float_is_expected():
    assert from_dict({"train": {"trunk_lr": 1}}).train.trunk_lr == 1.0
    assert isinstance(from_dict({"train": {"trunk_lr": 1}}).train.trunk_lr, float)


@pytest.mark.parametrize("text, expected", [
    ("train.trunk_lr=1e-4", (["train", "trunk_lr"], 1e-4)),
    ("train.epochs=5", (["train", "epochs"], 5)),
    ("model.pretrained=false", (["model", "pretrained"], False)),
    ("model.pretrained=/w/trunk.pt", (["model", "pretrained"], "/w/trunk.pt")),
    ("data.root=null", (["data", "root"], None)),  # an empty value is refused (tests/test_hostile_config.py)
])
def test_parse_override(text, expected):
    assert parse_override(text) == expected


def test_override_without_equals_sign_is_an_error():
    with pytest.raises(ConfigError, match=r"'train\.epochs' must look like section\.key=value"):
        load_config(None, ["train.epochs"])


@pytest.mark.parametrize("data, key, valid", [
    ({"epochs": 3}, "'epochs'", "'data', 'model', 'name', 'out_dir', 'train'"),
    ({"train": {"epoch": 3}}, "'train.epoch'", "'batch_size', 'channels_last'"),
    ({"data": {"fraction": [1, 0, 0]}}, "'data.fraction'", "'fractions', 'image_cache'"),
    ({"model": {"option": {}}}, "'model.option'", "'name', 'options', 'pretrained'"),
])
def test_unknown_key_names_it_and_lists_the_valid_ones(data, key, valid):
    with pytest.raises(ConfigError) as info:
        from_dict(data)
    message = str(info.value)
    assert key in message and valid in message
    assert "\n" not in message


def test_typo_in_an_override_names_the_file_and_the_key(yaml_file):
    with pytest.raises(ConfigError, match=r"run\.yaml: unknown key\(s\) \['train\.trunk_rl'\]"):
        load_config(yaml_file, ["train.trunk_rl=1e-3"])


@pytest.mark.parametrize("data, message", [
    ({"train": {"epochs": "three"}}, "train.epochs='three' must be of type int"),
    ({"train": {"epochs": 2.5}}, "train.epochs=2.5 must be of type int"),
    ({"train": {"epochs": True}}, "train.epochs=True must be of type int"),  # bool is not a count
    ({"train": {"trunk_lr": "fast"}}, "train.trunk_lr='fast' must be of type float"),
    ({"data": {"fractions": 0.8}}, "data.fractions=0.8 must be a list"),
    ({"model": {"options": [1]}}, "model.options=[1] must be a mapping"),
    ({"train": 5}, "train must be a mapping, got int"),
    ({"name": 3}, "name=3 must be of type str"),
])
def test_wrong_type_is_an_error(data, message):
    with pytest.raises(ConfigError) as info:
        from_dict(data)
    assert message in str(info.value)


@pytest.mark.parametrize("data, message", [
    ({"train": {"epochs": 0}}, "train.epochs=0 must be positive"),
    ({"train": {"trunk_lr": -1e-4}}, "train.trunk_lr=-0.0001 must be positive"),
    ({"train": {"trunk_lr": 0.0}}, "train.trunk_lr=0.0 must be positive"),
    ({"train": {"batch_size": -2}}, "train.batch_size=-2 must be positive"),
    ({"train": {"patch_size": 0}}, "train.patch_size=0 must be at least 32"),
    ({"train": {"rounds": 0}}, "train.rounds=0 must be positive"),
    ({"train": {"weight_decay": -1.0}}, "train.weight_decay=-1.0 must not be negative"),
    ({"data": {"fractions": [0.8, 0.1, 0.2]}}, "must be three non-negative shares summing to 1"),
    ({"data": {"fractions": [0.9, 0.1]}}, "must be three non-negative shares summing to 1"),
    ({"data": {"fractions": [1.2, -0.1, -0.1]}}, "must be three non-negative shares summing to 1"),
    ({"train": {"optimizer": "adamax"}}, "train.optimizer='adamax' is not one of ('adam', 'adamw', 'sgd')"),
    ({"train": {"loss": "l3"}}, "train.loss='l3' is not one of ('fidelity', 'l1', 'l1+rank', 'mse', 'plcc', 'ranking', 'smooth_l1', "
     "'soft_srcc')"),
    ({"data": {"on_error": "ignore"}}, "data.on_error='ignore' is not one of ('raise', 'drop')"),
    ({"name": "a/b"}, "name='a/b' holds a path separator"),
])
def test_impossible_value_is_an_error(data, message):
    with pytest.raises(ConfigError) as info:
        from_dict(data)
    assert message in str(info.value)


def test_yaml_errors_name_the_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError, match="nope.yaml: configuration file not found"):
        load_config(missing)
    broken = tmp_path / "broken.yaml"
    broken.write_text("train:\n  epochs: 3\n bad: [\n")
    with pytest.raises(ConfigError, match=r"broken\.yaml: not valid YAML \(line \d+\)"):
        load_config(broken)
    listed = tmp_path / "list.yaml"
    listed.write_text("- 1\n- 2\n")
    with pytest.raises(ConfigError, match=r"list\.yaml: must hold a mapping"):
        load_config(listed)


def test_resolve_train_fills_hyperiqa_defaults():
    train = resolve_train(TrainConfig(), HYPERIQA_TRAINING)
    assert (train.optimizer, train.trunk_lr, train.head_lr_multiplier, train.weight_decay) == ("adam", 2e-5, 10.0, 5e-4)
    assert (train.schedule, train.loss, train.batch_size) == ("hyperiqa_step", "l1", 96)
    assert (train.train_patches, train.test_patches, train.epochs) == (25, 25, 16)
    assert train.grad_clip is None  # the original does not clip


def test_resolve_train_fills_smart_iqa_defaults_and_keeps_what_the_user_set():
    train = resolve_train(TrainConfig(epochs=2, trunk_lr=1e-4), SMART_IQA_TRAINING)
    assert (train.optimizer, train.head_lr_multiplier, train.weight_decay) == ("adamw", 10.0, 2e-4)
    assert (train.schedule, train.eta_min, train.grad_clip, train.loss) == ("cosine", 1e-6, 1.0, "l1")
    assert (train.batch_size, train.train_patches, train.test_patches) == (32, 20, 20)
    assert (train.epochs, train.trunk_lr) == (2, 1e-4)  # the user's values win
    assert resolve_train(TrainConfig(), SMART_IQA_TRAINING).trunk_lr == 5e-7


def test_resolve_train_reports_a_missing_value_and_validates_the_result():
    defaults = dict(SMART_IQA_TRAINING)
    del defaults["optimizer"]
    with pytest.raises(ConfigError, match="train.optimizer has no value and the model gives no default"):
        resolve_train(TrainConfig(), defaults)
    with pytest.raises(ConfigError, match="train.epochs=0 must be positive"):
        resolve_train(TrainConfig(), {**SMART_IQA_TRAINING, "epochs": 0})


def test_to_dict_round_trips():
    config = from_dict({"name": "x", "train": {"epochs": 2}, "model": {"options": {"attention": False}}})
    again = from_dict(config.to_dict())
    assert again == config and isinstance(again, RunConfig)
    assert dataclasses.asdict(again.train)["epochs"] == 2


@pytest.mark.parametrize("text, key, expected", [
    ("out_dir=runs/exp #1", "out_dir", "runs/exp #1"),  # YAML would stop at the '#'
    ("data.root=my data #2", "data.root", "my data #2"),
    ("name=exp#3", "name", "exp#3"),
    ("out_dir='quoted #4'", "out_dir", "quoted #4"),  # quoted as YAML: the quotes are YAML's
    ("out_dir=  spaced  ", "out_dir", "  spaced  "),
])
def test_a_text_value_arrives_exactly_as_typed(text, key, expected):
    path, value = parse_override(text)
    assert ".".join(path) == key and value == expected
    config = load_config(None, [text, "train.device=cpu"])
    section, _, field = key.rpartition(".")
    assert getattr(getattr(config, section) if section else config, field) == expected


@pytest.mark.parametrize("text, fragment", [
    ("out_dir=runs/a\nb", "holds a control character ('\\n')"),
    ("name=a\nb", "holds a control character ('\\n')"),
    ("data.root=x\ty", "holds a control character ('\\t')"),
    ("name=a\x1bb", "holds a control character ('\\x1b')"),
    ("train.epochs=3 #4", "YAML reads the text after '#' as a comment"),
    ("data.fractions=[0.6, 0.2, 0.2] # maybe", "YAML reads the text after '#' as a comment"),
])
def test_a_value_that_would_arrive_changed_is_refused_in_one_line(text, fragment):
    with pytest.raises(ConfigError) as info:
        parse_override(text)
    assert fragment in str(info.value) and "\n" not in str(info.value)
