"""Hub weights without a hub: local timm files for every trunk, and an at-once refusal offline.

A GPU box without access to the Hugging Face hub must get its ImageNet trunks
from local files (``model.pretrained=PATH``, the weights folder, or the hub's
own cache) and, when there are none, one line saying which file to fetch,
without a minute of retries.
"""
from __future__ import annotations

import huggingface_hub
import pytest
import timm
import torch
from safetensors.torch import save_file

from iqalib.errors import CheckpointError, DownloadError
from iqalib.models import create_model, list_models
from iqalib.models.backbones import BACKBONES, WEIGHTS_ENV, _source_key, hub_source, weights_folder



def trunk_name(model_name: str) -> str:
    """The backbone of a registered model (its name ends in the backbone's: ``smart_iqa_base`` -> ``base``)."""
    suffix = model_name.rsplit("_", 1)[-1]
    return next(b for b in BACKBONES if b == suffix or b.endswith(f"_{suffix}"))


HUB_MODELS = [name for name in list_models() if not BACKBONES[trunk_name(name)].offline_weights]


@pytest.fixture(scope="module")
def weight_files(tmp_path_factory, one_thread):
    """``files(backbone)``: (.pth, .safetensors, state dict) of a random-init timm classifier, built once.

    Every float tensor is shifted by 0.5, so a loaded trunk equal to the file
    cannot be a fresh random or constant initialisation by chance.
    """
    folder = tmp_path_factory.mktemp("timm-weights")
    made: dict[str, tuple] = {}

    def files(backbone: str):
        if backbone not in made:
            torch.manual_seed(len(made))
            state = timm.create_model(BACKBONES[backbone].timm_name).state_dict()
            state = {k: (v + 0.5 if v.is_floating_point() else v).contiguous() for k, v in state.items()}
            pth, safe = folder / f"{backbone}.pth", folder / f"{backbone}.safetensors"
            torch.save(state, pth)
            save_file(state, str(safe))
            made[backbone] = (pth, safe, state)
        return made[backbone]

    return files


def test_every_registered_model_is_covered():
    assert {trunk_name(m) for m in list_models()} == set(BACKBONES)
    assert {"hyperiqa_resnet50", "smart_iqa_tiny", "smart_iqa_small", "smart_iqa_base"} <= set(HUB_MODELS)


@pytest.mark.parametrize("model_name", [pytest.param(m, marks=pytest.mark.slow)
                                        if m in ("smart_iqa_base", "smart_iqa_small") else m for m in list_models()])
def test_timm_state_dict_file_loads_into_every_trunk(model_name, weight_files):
    pth, safe, state = weight_files(trunk_name(model_name))
    for path in (pth, str(safe)):  # a Path and a str, as a config gives it
        trunk = create_model(model_name, pretrained=path).backbone.trunk.state_dict()
        names = {key: _source_key(key, state) for key in trunk}
        assert None not in names.values(), f"{model_name}: {path} lacks trunk tensors"
        assert all(torch.equal(trunk[key], state[name]) for key, name in names.items()), f"{model_name}: {path}"
        # Only the classifier (and the final norm of the Swin classifier) is left out.
        unused = set(state) - set(names.values())
        assert all(k.startswith(("fc.", "head.", "classifier.", "norm.", "bn2.", "conv_head.")) for k in unused)


def test_a_file_of_another_trunk_is_refused_in_one_line(weight_files):
    pth, _, _ = weight_files("lite0")
    with pytest.raises(CheckpointError) as error:
        create_model("hyperiqa_resnet50", pretrained=pth)
    message = str(error.value)
    assert "\n" not in message
    assert f"{pth}: does not fit the resnet50 trunk" in message and "expected timm's resnet50 state dict" in message


# ------------------------------------------------------------ no hub at hand
@pytest.fixture
def no_hub(monkeypatch, tmp_path):
    """No network and an empty hub cache: every way timm or iqalib reaches the hub raises, and is counted."""
    calls = []

    def unreachable(*args, **kwargs):
        calls.append(args[0] if args else kwargs)
        raise ConnectionError("simulated: [Errno -2] Name or service not known")

    import timm.models._hub as timm_hub

    monkeypatch.setattr(huggingface_hub, "get_hf_file_metadata", unreachable)
    monkeypatch.setattr(huggingface_hub.file_download, "get_hf_file_metadata", unreachable)
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", unreachable)
    monkeypatch.setattr(timm_hub, "hf_hub_download", unreachable)
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_CACHE", str(tmp_path / "hf-cache"))
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv(WEIGHTS_ENV, str(tmp_path / "weights"))
    return calls


def test_offline_hub_model_fails_at_once_naming_model_file_and_path_option(no_hub):
    with pytest.raises(DownloadError) as error:
        create_model("hyperiqa_resnet50", pretrained=True)
    message = str(error.value)
    source = hub_source("resnet50")
    assert "\n" not in message
    assert message.startswith("no ImageNet weights for resnet50 (timm resnet50)")
    assert "simulated: [Errno -2]" in message
    assert source["url"] == "https://huggingface.co/timm/resnet50.a1_in1k/resolve/main/model.safetensors"
    assert f"fetch {source['url']} elsewhere" in message
    assert "pass model.pretrained=/path/to/weights.pth" in message
    assert f"save it as {weights_folder() / 'resnet50.safetensors'}" in message
    assert len(no_hub) <= 1, f"the hub was asked {len(no_hub)} times: {no_hub}"


def test_hub_offline_mode_refuses_without_asking_the_hub(no_hub, monkeypatch):
    monkeypatch.setattr(huggingface_hub.constants, "HF_HUB_OFFLINE", True)
    with pytest.raises(DownloadError, match=r"no ImageNet weights for swin_tiny \(timm "
                                            r"swin_tiny_patch4_window7_224\) on this machine and HF_HUB_OFFLINE is set"):
        create_model("smart_iqa_tiny", pretrained=True)
    assert no_hub == []


def test_weights_folder_and_hub_cache_load_without_the_hub(no_hub, weight_files, tmp_path, monkeypatch):
    pth, safe, state = weight_files("resnet50")

    def trunk_matches(model) -> bool:
        trunk = model.backbone.trunk.state_dict()
        return all(torch.equal(v, state[_source_key(k, state)]) for k, v in trunk.items())

    # 1. <weights folder>/<timm name>.safetensors
    folder = weights_folder()
    folder.mkdir(parents=True)
    (folder / "resnet50.safetensors").write_bytes(safe.read_bytes())
    assert trunk_matches(create_model("hyperiqa_resnet50", pretrained=True))
    (folder / "resnet50.safetensors").unlink()

    # 2. the file timm fetched earlier into the hub's cache (its snapshot layout)
    repo = hub_source("resnet50")["repo"]
    cache = tmp_path / "hf-cache" / f"models--{repo.replace('/', '--')}"
    (cache / "refs").mkdir(parents=True)
    (cache / "refs" / "main").write_text("0" * 40)
    snapshot = cache / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "pytorch_model.bin").write_bytes(pth.read_bytes())
    assert trunk_matches(create_model("hyperiqa_resnet50", pretrained=True))
    assert no_hub == []
