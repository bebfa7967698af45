"""The protocol of one edition, computed from its profile and data: what the book's text must not type.

``book/protocol.md`` says how this project measures in general; the numbers of
an edition (images per split, sources, rounds, crops, epochs) differ from
profile to profile, so chapter 1 prints them from here, from the profile the
book was built with.
"""
from __future__ import annotations

from typing import Mapping

import pandas as pd

from iqalib.analysis.words import counted
from iqalib.config import TrainConfig


def _sources(part) -> int:
    return int(part.frame["group"].astype(str).nunique())


def edition_protocol(table, parts: Mapping, recipe: Mapping, *, split_seed: int, model_defaults:
                     Mapping | None = None) -> pd.DataFrame:
    """One row per protocol item of this edition (item, value), from the data, its round-0 split and the recipe.

    ``model_defaults`` fills recipe keys the profile leaves to the model family (e.g. batch size).
    """
    recipe = {**(model_defaults or {}), **recipe}
    patch = recipe.get("patch_size", TrainConfig.patch_size)
    rows = [
        ("data set", f"{table.label}: {len(table)} images, {_sources(table)} sources, "
                     f"MOS {table.mos_range[0]:g}-{table.mos_range[1]:g} (higher is better)"),
        ("split of round 0", ", ".join(f"{name} {len(part)} images ({_sources(part)} sources)"
                                       for name, part in parts.items())),
        ("rounds", f"{recipe['rounds']}; round r splits with seed {split_seed} + r"),
        ("model selection", "the epoch with the best validation SRCC; the test split is scored once, with it"),
        ("epochs", f"{recipe['epochs']}"),
        ("training crops", f"{counted(recipe['train_patches'], 'random crop')} of {patch}x{patch} per image "
                           "and epoch, flipped at random"),
        ("test crops", f"{counted(recipe['test_patches'], 'seeded random crop')} of {patch}x{patch} per "
                       "image; an image's score is their mean"),
        ("trunk", "frozen (its features computed once and cached)" if recipe.get("freeze_backbone")
         else "trained with the head"),
    ]
    if recipe.get("batch_size") is not None:
        rows.append(("batch size", f"{recipe['batch_size']}"))
    if recipe.get("trunk_lr") is not None:
        rows.append(("trunk learning rate", f"{recipe['trunk_lr']:g} (the head's is a multiple of it, "
                                            "per model family)"))
    return pd.DataFrame(rows, columns=["item", "this edition"])
