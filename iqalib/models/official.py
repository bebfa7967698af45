"""Official checkpoints in: the original HyperIQA release and the SMART-IQA seed's files.

Both code bases save ``model_hyper.state_dict()`` of their ``HyperNet``: a
plain state dict, no code. Two layouts are understood (``FORMATS``):

* ``hyperiqa``: Su et al.'s release (``koniq_pretrained.pkl``),
  ``HyperNet(16, 112, 224, 112, 56, 28, 14, 7)`` on ResNet-50. Its trunk and
  LDA branches live in one module ``res``; the hyper network beside it.
* ``smart_iqa``: the seed's ``HyperNet`` on a timm ``features_only`` Swin
  (``swin.backbone.*``: ``patch_embed``, ``layers_0``..``layers_3`` with patch
  merging at the *start* of stages 1-3, no final norm), its LDA branches in
  ``swin.lda*`` and its stage attention in ``multiscale_attention.attention_net``.

How their names become iqalib's (``hyperiqa_resnet50`` / ``smart_iqa_*``):

=============================================  ======================================
official                                       iqalib
=============================================  ======================================
``res.<trunk>`` / ``swin.backbone.<trunk>``    ``backbone.trunk.<trunk>`` (same timm names)
``{res,swin}.lda{i}_pool.0.weight``            ``lda.{i-1}.reduce.weight``
``{res,swin}.lda{i}_fc.*``                     ``lda.{i-1}.fc.*``
``multiscale_attention.attention_net.{0,3}.*``  ``multiscale_attention.net.{0,3}.*``
``conv1.{0,2,4}.*``                            ``conv1.{0,2,4}.*``
``fc{i}w_conv.*`` / ``fc{i}b_fc.*`` (i=1..4)    ``weight_generators.{i-1}.*`` / ``bias_generators.{i-1}.*``
``fc5w_fc.*`` / ``fc5b_fc.*``                  ``fc5_weight_generator.*`` / ``fc5_bias_generator.*``
=============================================  ======================================

The tensors are used as they are: iqalib's trunk is the same timm module
(its Swin stages are NHWC inside and permuted to NCHW afterwards, as the seed
does), its LDA branches pool before their 1x1 conv (both linear: the same
numbers) and its target net is the original's grouped 1x1 convs as a batched
matrix product. ``relative_position_index`` and ``attn_mask`` are computed by
the model itself (non-persistent buffers in timm); a file from an older timm
that still carries them has them dropped. Every other key must map, every
iqalib tensor must be filled and every shape must agree, or the import is
refused with one line naming the keys.
"""
from __future__ import annotations

import functools
import re
from collections import OrderedDict
from pathlib import Path

import torch

from iqalib.errors import CheckpointError, ConfigError, pickled_code
from iqalib.models.registry import create_model

FORMATS = {
    "hyperiqa": "the original HyperIQA release (koniq_pretrained.pkl): HyperNet(16, 112, 224, 112, 56, 28, 14, 7) "
                "on ResNet-50, keys res.*, conv1.*, fc1w_conv.* ... fc5b_fc.*",
    "smart_iqa": "the SMART-IQA seed's HyperNet: timm features_only Swin keys swin.backbone.layers_0..3, "
                 "LDA swin.lda*, attention multiscale_attention.attention_net.*",
}
_TRUNK_PREFIX = {"hyperiqa": "res.conv1, res.layer1..4 (the original HyperNet)",
                 "smart_iqa": "swin.backbone.patch_embed, swin.backbone.layers_0..3 (the seed's HyperNet)"}
SMART_IQA_MODELS = ("smart_iqa_tiny", "smart_iqa_small", "smart_iqa_base")
# Computed by the model (non-persistent in timm >= 0.9); older files may still carry them.
COMPUTED_BUFFERS = ("relative_position_index", "attn_mask")
# Containers people wrap a state dict in; the official files are bare.
_WRAPPERS = ("state_dict", "model_state_dict", "model_hyper", "model")
_LISTED = 4  # keys quoted per category in a refusal


# ---------------------------------------------------------------- key names

def _head_key(key: str) -> str | None:
    """The hyper network's keys, shared by both formats."""
    if re.fullmatch(r"conv1\.[024]\.(weight|bias)", key):
        return key
    found = re.fullmatch(r"fc([1-4])([wb])_(?:conv|fc)\.(weight|bias)", key)
    if found:
        index, kind, tensor = int(found.group(1)) - 1, found.group(2), found.group(3)
        expected = "conv" if kind == "w" else "fc"
        if not key.startswith(f"fc{index + 1}{kind}_{expected}."):
            return None
        return f"{'weight' if kind == 'w' else 'bias'}_generators.{index}.{tensor}"
    found = re.fullmatch(r"fc5([wb])_fc\.(weight|bias)", key)
    if found:
        return f"fc5_{'weight' if found.group(1) == 'w' else 'bias'}_generator.{found.group(2)}"
    return None


def _lda_key(rest: str) -> str | None:
    found = re.fullmatch(r"lda([1-3])_pool\.0\.weight", rest)
    if found:
        return f"lda.{int(found.group(1)) - 1}.reduce.weight"
    found = re.fullmatch(r"lda([1-4])_fc\.(weight|bias)", rest)
    if found:
        return f"lda.{int(found.group(1)) - 1}.fc.{found.group(2)}"
    return None


def iqalib_key(fmt: str, key: str) -> str | None:
    """iqalib's name for official key ``key`` of format ``fmt``; None if it is not one of the format's."""
    if fmt == "hyperiqa":
        if key.startswith("res."):
            rest = key[len("res."):]
            if rest.startswith("lda"):
                return _lda_key(rest)
            return "backbone.trunk." + rest
        return _head_key(key)
    if fmt == "smart_iqa":
        if key.startswith("swin.backbone."):
            return "backbone.trunk." + key[len("swin.backbone."):]
        if key.startswith("swin."):
            return _lda_key(key[len("swin."):])
        found = re.fullmatch(r"multiscale_attention\.attention_net\.([03])\.(weight|bias)", key)
        if found:
            return f"multiscale_attention.net.{found.group(1)}.{found.group(2)}"
        return _head_key(key)
    raise ConfigError(f"unknown checkpoint format {fmt!r}; choose one of {', '.join(FORMATS)}")


# ---------------------------------------------------------------- reading

def read_official(path: str | Path) -> OrderedDict[str, torch.Tensor]:
    """The state dict in ``path``, loaded with ``weights_only=True`` (no code runs)."""
    path = Path(path)
    if path.is_dir():
        raise CheckpointError(f"{path}: is a folder, not a weights file; pass the official .pkl/.pth file")
    if not path.is_file():
        raise CheckpointError(f"{path}: no such weights file; pass the official .pkl/.pth file")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as error:  # pickle, zip and EOF errors have no common base
        culprit = pickled_code(str(error))
        if culprit:
            raise CheckpointError(
                f"{path}: refused, it contains pickled code or objects, not only weights (it asks for {culprit}; "
                "loaded with weights_only=True); import only files you trust, re-saved as a plain state dict "
                "(torch.save(model.state_dict(), path))") from None
        lines = str(error).strip().splitlines()
        reason = f"{type(error).__name__}: {lines[0][:160]}" if lines else type(error).__name__
        raise CheckpointError(f"{path}: cannot read weights ({reason}); expected a PyTorch state dict "
                              "(torch.save(model.state_dict(), path)): re-download it") from None
    if isinstance(state, dict) and str(state.get("format", "")).startswith("iqalib-checkpoint"):
        raise CheckpointError(f"{path}: is already an iqalib checkpoint; use it directly "
                              "(iqalib score --checkpoint PATH)")
    for key in _WRAPPERS:
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict) or not state or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError(f"{path}: not a state dict (expected a mapping of names to tensors, as "
                              "torch.save(model.state_dict(), path) writes)")
    keys = list(state)
    if all(k.startswith("module.") for k in keys):  # saved from a DataParallel wrapper
        state = OrderedDict((k[len("module."):], v) for k, v in state.items())
    return OrderedDict(state)


# ---------------------------------------------------------------- which model

def detect_model(fmt: str, state: dict, model_name: str | None = None, *,
                 source: str = "the file") -> tuple[str, dict]:
    """(iqalib model name, its options) that the official ``state`` of format ``fmt`` fits.

    SMART-IQA's size comes from the patch embedding width (96: tiny or small,
    128: base) and the depth of stage 3 (6 blocks: tiny, 18: small);
    ``multiscale`` from the hyper network's input width, ``attention`` from
    the presence of the attention net. ``model_name`` overrides the size.
    """
    if fmt == "hyperiqa":
        name = model_name or "hyperiqa_resnet50"
        if name != "hyperiqa_resnet50":
            raise ConfigError(f"format 'hyperiqa' imports into hyperiqa_resnet50, not {name!r}; "
                              "drop --model, or import it as format smart_iqa")
        return name, {}
    if fmt != "smart_iqa":
        raise ConfigError(f"unknown checkpoint format {fmt!r}; choose one of {', '.join(FORMATS)}")
    if model_name is not None and model_name not in SMART_IQA_MODELS:
        raise ConfigError(f"format 'smart_iqa' imports into {', '.join(SMART_IQA_MODELS)}, not {model_name!r}")
    embed = state.get("swin.backbone.patch_embed.proj.weight")
    name = model_name
    if name is None and embed is not None:
        stage3 = {int(m.group(1)) for k in state
                  for m in [re.match(r"swin\.backbone\.layers_2\.blocks\.(\d+)\.", k)] if m}
        width, depth = int(embed.shape[0]), len(stage3)
        sizes = {(96, 6): "smart_iqa_tiny", (96, 18): "smart_iqa_small", (128, 18): "smart_iqa_base"}
        name = sizes.get((width, depth))
        if name is None:
            raise CheckpointError(f"{source}: a Swin trunk of width {width} with {depth} blocks in stage 3 is none "
                                  "of Swin-T/S/B; pass --model smart_iqa_tiny|small|base if it is one of them")
    options = {"attention": any(k.startswith("multiscale_attention.") for k in state)}
    hyper_in = state.get("conv1.0.weight")
    width = int(embed.shape[0]) if embed is not None else None
    options["multiscale"] = bool(hyper_in is not None and width is not None and hyper_in.shape[1] == 15 * width)
    if options["attention"] and not options["multiscale"]:
        options["multiscale"] = True  # attention implies multiscale; shapes will tell if not
    return name or "smart_iqa_tiny", options


# ---------------------------------------------------------------- conversion

@functools.lru_cache(maxsize=16)
def _meta_model(name: str, options: tuple):
    with torch.device("meta"):  # names and shapes only: nothing is allocated
        return create_model(name, pretrained=False, **dict(options))


def model_layout(name: str, **options):
    """Model ``name`` on the meta device (names, shapes, mean/std; no weights), built once per process."""
    return _meta_model(name, tuple(sorted(options.items())))


def _listed(keys, describe=str) -> str:
    keys = list(keys)
    shown = ", ".join(describe(k) for k in keys[:_LISTED])
    return shown + (f" and {len(keys) - _LISTED} more" if len(keys) > _LISTED else "")


def convert_state_dict(fmt: str, state: dict, model_name: str | None = None, *,
                       source: str = "the file") -> tuple[str, dict, OrderedDict]:
    """Map an official state dict onto iqalib's model: ``(model name, model options, iqalib state dict)``.

    Refuses (:class:`CheckpointError`, one line starting with ``source``)
    unless every official key maps, every iqalib tensor is filled and every
    shape agrees.
    """
    name, options = detect_model(fmt, state, model_name, source=source)
    expected = model_layout(name, **options).state_dict()
    kept = {k: v for k, v in state.items() if k.rsplit(".", 1)[-1] not in COMPUTED_BUFFERS}
    mapped = {k: iqalib_key(fmt, k) for k in kept}
    if not any(t in expected for t in mapped.values() if t and t.startswith("backbone.trunk.")):
        raise CheckpointError(f"{source}: not a {fmt} checkpoint: none of its {len(kept)} keys names the trunk as "
                              f"{_TRUNK_PREFIX[fmt]} (first: {_listed(list(kept)[:2])}); check the format "
                              f"({', '.join(FORMATS)})")
    leftover = [k for k, target in mapped.items() if target not in expected]
    targets: dict[str, str] = {}
    for k, target in mapped.items():
        if target in expected:
            targets.setdefault(target, k)
    missing = [iqalib_official_name(fmt, t) for t in expected if t not in targets]
    wrong = [(src, tuple(state[src].shape), tuple(expected[t].shape)) for t, src in targets.items()
             if tuple(state[src].shape) != tuple(expected[t].shape)]
    if leftover or missing or wrong:
        parts = []
        if leftover:
            parts.append(f"{len(leftover)} key(s) left over ({_listed(leftover)})")
        if missing:
            parts.append(f"{len(missing)} missing ({_listed(missing)})")
        if wrong:
            shapes = _listed(wrong, lambda w: f"{w[0]} is {w[1]}, expected {w[2]}")
            parts.append(f"{len(wrong)} of the wrong shape ({shapes})")
        raise CheckpointError(f"{source}: does not fit {name} as format {fmt!r}: {'; '.join(parts)}; "
                              "import refused, pass the unmodified official file (or the matching format and --model)")
    converted = OrderedDict((t, state[targets[t]].detach()) for t in expected)  # no copy: the file's tensors
    bad_dtype = [k for k, v in converted.items() if v.dtype != expected[k].dtype]
    if bad_dtype:
        k = bad_dtype[0]
        raise CheckpointError(f"{source}: {targets[k]} is {converted[k].dtype}, expected {expected[k].dtype}; "
                              "import refused, pass the unmodified official file")
    return name, options, converted


def iqalib_official_name(fmt: str, iqalib_name: str) -> str:
    """The official key that maps to ``iqalib_name`` (for naming missing keys in the official's terms)."""
    if iqalib_name.startswith("backbone.trunk."):
        rest = iqalib_name[len("backbone.trunk."):]
        return ("res." if fmt == "hyperiqa" else "swin.backbone.") + rest
    prefix = "res." if fmt == "hyperiqa" else "swin."
    found = re.fullmatch(r"lda\.(\d)\.(reduce|fc)\.(weight|bias)", iqalib_name)
    if found:
        i, part, tensor = int(found.group(1)) + 1, found.group(2), found.group(3)
        return f"{prefix}lda{i}_pool.0.weight" if part == "reduce" else f"{prefix}lda{i}_fc.{tensor}"
    found = re.fullmatch(r"multiscale_attention\.net\.(\d)\.(weight|bias)", iqalib_name)
    if found:
        return f"multiscale_attention.attention_net.{found.group(1)}.{found.group(2)}"
    found = re.fullmatch(r"(weight|bias)_generators\.(\d)\.(weight|bias)", iqalib_name)
    if found:
        kind = "w_conv" if found.group(1) == "weight" else "b_fc"
        return f"fc{int(found.group(2)) + 1}{kind}.{found.group(3)}"
    found = re.fullmatch(r"fc5_(weight|bias)_generator\.(weight|bias)", iqalib_name)
    if found:
        return f"fc5{found.group(1)[0]}_fc.{found.group(2)}"
    return iqalib_name
