"""The trunk pass, side by side: eager, channels_last, bf16, compiled, ONNX Runtime, OpenVINO.

Every frozen-trunk run starts with one pass of the trunk over fixed crops
(:func:`iqalib.engine.features.feature_bank`: the trunk's four stages pooled
by ``pool_stages``), and a trunk that learns (issue 24) pays a pass and a
backward per step. This measures that pass for one trunk (EfficientNet-Lite0,
the offline ImageNet weights) on real crops of the embedded LIVE-C photographs
at one batch size, in every way this CPU offers, in one run:

* ``eager_fp32`` (NCHW), ``channels_last_fp32``;
* ``bf16`` and ``channels_last_bf16`` (autocast), where the CPU has native
  bf16 (AVX512-BF16 or AMX; elsewhere bf16 runs ~100x slower and is skipped
  with the reason);
* ``compiled_*`` (``torch.compile``, inductor) with ``--compile`` (compiling
  takes minutes on 2 cores);
* ``onnxruntime_fp32`` and ``openvino_fp32`` / ``openvino_bf16`` where the
  packages are installed (``pip install onnxruntime openvino onnx onnxscript``;
  not iqalib dependencies), as references for what the CPU can do.

Each setting reports crops/s (median of ``--repeats`` timed passes after a
warm-up) and how far its pooled features are from eager fp32's (largest
absolute difference over the largest magnitude): a path that is fast but
changes the numbers beyond bf16's own rounding is not a path to take.
``today`` names the setting the feature bank uses now (bf16 autocast, NCHW,
where bf16 is native; eager fp32 elsewhere) and ``speedup_vs_today`` the
fastest setting's gain over it (issue 24's goal: at least 3x). With
``--train`` it adds the step a trunk that learns costs (forward, L1 on the
pooled features' mean, backward, AdamW) for the whole trunk and for its last
stages alone on cached earlier stages (``from_stage2``: blocks 3-6 from the
stride-8 map; ``from_stage3``: blocks 5-6 from the stride-16 map).
Run: ``python benchmarks/trunk_pass.py [--batch 32] [--repeats 3] [--compile] [--train]``.
"""
from __future__ import annotations

import argparse
import contextlib
import copy
import statistics
import tempfile
from pathlib import Path

import torch
import torch.nn.functional as F

from common import RESULTS, bf16_native, call_times, cpu_info, load_average, write_json

from iqalib.data.datasets import load_dataset
from iqalib.data.images import ImageStore
from iqalib.data.patches import PatchDataset, to_model_input
from iqalib.models import create_model

MODEL = "smart_iqa_lite0"  # the trunk of the default edition; only its trunk and pool_stages run here


def real_crops(model, n: int, seed: int = 0) -> torch.Tensor:
    """``n`` 224x224 crops of the embedded LIVE-C photographs (4 per image), normalised for ``model``."""
    table = load_dataset("livec_jpeg")
    images = (n + 3) // 4
    store = ImageStore.build(table.paths[:images], short_side=table.short_side, min_side=224)
    dataset = PatchDataset(store, patch_size=224, patches_per_image=4, train=False, seed=seed)
    crops, _, _ = dataset.__getitems__(range(n))
    return to_model_input(crops, model.mean, model.std, device=torch.device("cpu"))


def timed(run, batch: torch.Tensor, repeats: int) -> float:
    """Crops/s: the median of ``repeats`` timed calls after one warm-up call."""
    return len(batch) / statistics.median(call_times(lambda: run(batch), repeats))


def error_vs(reference: list[torch.Tensor], pooled: list[torch.Tensor]) -> float:
    return max(float((p.float() - r).abs().max() / r.abs().max().clamp_min(1e-12)) for r, p in zip(reference, pooled))


def torch_settings(model, native_bf16: bool, compile_too: bool) -> dict:
    """name -> callable(batch) -> pooled features, for the PyTorch settings this CPU runs."""
    def pass_of(module, dtype, channels_last):
        def run(x):
            x = x.contiguous(memory_format=torch.channels_last) if channels_last else x
            autocast = torch.autocast("cpu", dtype=dtype) if dtype else contextlib.nullcontext()
            with torch.inference_mode(), autocast:
                return [p.float() for p in model.pool_stages(module(x))]
        return run

    # a copy: Module.to(memory_format=...) converts in place, and eager_fp32 must stay NCHW
    cl_trunk = copy.deepcopy(model.backbone).to(memory_format=torch.channels_last)
    settings = {"eager_fp32": pass_of(model.backbone, None, False),
                "channels_last_fp32": pass_of(cl_trunk, None, True)}
    if native_bf16:
        settings["bf16"] = pass_of(model.backbone, torch.bfloat16, False)
        settings["channels_last_bf16"] = pass_of(cl_trunk, torch.bfloat16, True)
    if compile_too:
        compiled = torch.compile(cl_trunk)
        settings["compiled_channels_last_fp32"] = pass_of(compiled, None, True)
        if native_bf16:
            settings["compiled_channels_last_bf16"] = pass_of(compiled, torch.bfloat16, True)
    return settings


def runtime_settings(model, batch: torch.Tensor, native_bf16: bool) -> tuple[dict, dict]:
    """ONNX Runtime and OpenVINO passes where installed; ({name: callable}, {name: why skipped})."""
    settings, skipped = {}, {}
    pooled_stages = lambda stages: [p.float() for p in model.pool_stages([torch.from_numpy(s) for s in stages])]
    try:
        import onnxruntime as ort

        with tempfile.TemporaryDirectory(prefix="trunk-onnx-") as folder:  # the session keeps the model
            onnx_path = Path(folder) / "trunk.onnx"
            torch.onnx.export(model.backbone.eval(), (batch,), str(onnx_path), input_names=["x"],
                              dynamic_axes={"x": {0: "n"}}, dynamo=False)
            session = ort.InferenceSession(str(onnx_path), providers=["CPUExecutionProvider"])
        settings["onnxruntime_fp32"] = lambda x: pooled_stages(session.run(None, {"x": x.numpy()}))
    except Exception as exc:  # not installed, or the exporter refused: say which
        skipped["onnxruntime_fp32"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    try:
        import openvino as ov

        core = ov.Core()
        converted = ov.convert_model(model.backbone.eval(), example_input=batch)
        hints = {"openvino_fp32": "f32", **({"openvino_bf16": "bf16"} if native_bf16 else {})}
        for name, hint in hints.items():
            compiled = core.compile_model(converted, "CPU", {"INFERENCE_PRECISION_HINT": hint})
            settings[name] = (lambda c: lambda x: pooled_stages(list(c(x.numpy()).values())))(compiled)
    except Exception as exc:
        skipped["openvino"] = f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"
    return settings, skipped


def train_steps(model, batch: torch.Tensor, native_bf16: bool, repeats: int) -> dict:
    """Crops/s of a step that trains the whole trunk, or only its blocks after stage 2 or 3."""
    trunk = model.backbone.trunk
    with torch.no_grad():  # not inference_mode: the cached maps feed steps that autograd tracks
        x = trunk.bn1(trunk.conv_stem(batch))
        cached = {}
        for i, block in enumerate(trunk.blocks):
            x = block(x)
            cached[i + 1] = x.clone()
    starts = {"whole_trunk": (None, 0), "from_stage2": (cached[3], 3), "from_stage3": (cached[5], 5)}
    out = {}
    for name, (start, first_block) in starts.items():
        for dtype in [None] + ([torch.bfloat16] if native_bf16 else []):
            trainable = ([p for p in trunk.parameters()] if start is None
                         else [p for b in trunk.blocks[first_block:] for p in b.parameters()])
            optimizer = torch.optim.AdamW(trainable, lr=1e-5)

            def step(_, start=start, first_block=first_block, dtype=dtype, optimizer=optimizer):
                autocast = torch.autocast("cpu", dtype=dtype) if dtype else contextlib.nullcontext()
                with autocast:
                    if start is None:
                        stages = model.backbone(batch)
                        last = stages[-1]
                    else:
                        h = start
                        for block in trunk.blocks[first_block:]:
                            h = block(h)
                        last = h
                    loss = F.l1_loss(last.float().mean(dim=(1, 2, 3)), torch.zeros(len(batch)))
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()

            model.backbone.train()
            out[f"{name}_{'bf16' if dtype else 'fp32'}"] = round(timed(step, batch, repeats), 2)
            model.backbone.eval()
    return out


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--compile", action="store_true", help="add torch.compile settings (minutes)")
    parser.add_argument("--train", action="store_true", help="add training steps of the trunk")
    parser.add_argument("--out", default=str(RESULTS / "trunk_pass.json"))
    args = parser.parse_args(argv)
    machine = cpu_info()
    native_bf16 = bf16_native(machine)
    result = {"machine": machine, "load_average_start": load_average(), "model": MODEL, "trunk": "lite0",
              "batch": args.batch, "repeats": args.repeats, "native_bf16": native_bf16,
              "today": "bf16" if native_bf16 else "eager_fp32", "crops_per_s": {}, "error_vs_eager_fp32": {},
              "skipped": {} if native_bf16 else {"bf16": "no native bf16 on this CPU (~100x slower)"}}
    torch.manual_seed(0)
    model = create_model(MODEL, pretrained=True).eval()
    batch = real_crops(model, args.batch)
    settings = torch_settings(model, native_bf16, args.compile)
    reference = settings["eager_fp32"](batch)
    extra, skipped = runtime_settings(model, batch, native_bf16)
    settings.update(extra)
    result["skipped"].update(skipped)
    for name, run in settings.items():
        result["crops_per_s"][name] = round(timed(run, batch, args.repeats), 2)
        result["error_vs_eager_fp32"][name] = float(f"{error_vs(reference, run(batch)):.3g}")
        print(f"{name:32s} {result['crops_per_s'][name]:8.1f} crops/s  error {result['error_vs_eager_fp32'][name]:.2g}",
              flush=True)
        write_json(args.out, result)
    best = max(result["crops_per_s"], key=result["crops_per_s"].get)
    result["fastest"] = best
    result["speedup_vs_today"] = round(result["crops_per_s"][best] / result["crops_per_s"][result["today"]], 2)
    if args.train:
        result["train_step_crops_per_s"] = train_steps(model, batch, native_bf16, args.repeats)
        print(result["train_step_crops_per_s"])
    result["load_average_end"] = load_average()
    write_json(args.out, result)
    print(f"fastest {best}: {result['speedup_vs_today']}x today's {result['today']}; skipped: {result['skipped']}")


if __name__ == "__main__":
    main()
