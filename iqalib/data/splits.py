"""Train / validation / test splits.

The official split is used where a data set has one (KonIQ-10k). Otherwise
the split is drawn at random from a seed, over *groups* (reference contents
for KADID-10k and the demo set; single images elsewhere), so no content is
shared between splits. Validation is carved out of the training part: model
selection looks at ``val``, never at ``test``.
"""
from __future__ import annotations

import numpy as np

from iqalib.data.table import IQATable
from iqalib.errors import ConfigError


def split_table(
    table: IQATable,
    *,
    seed: int = 0,
    fractions: tuple[float, float, float] = (0.8, 0.1, 0.1),
    official: bool = True,
) -> dict[str, IQATable]:
    """Split ``table`` into ``{"train", "val", "test"}`` tables.

    ``fractions`` are (train, val, test) shares of the groups; the same seed
    always gives the same split. With ``official=True`` a data set's own split
    column wins and ``seed`` and ``fractions`` are ignored.
    """
    if official and table.has_official_split:
        splits = table.frame["split"].to_numpy()
        out = {name: table.subset(splits == name) for name in ("train", "val", "test")}
        if len(out["train"]) == 0 or len(out["test"]) == 0:
            raise ConfigError(f"{table.name}: the official split has an empty train or test part")
        return out
    fractions = tuple(float(f) for f in fractions)
    if len(fractions) != 3 or min(fractions) < 0 or fractions[0] <= 0 or fractions[2] <= 0:
        raise ConfigError(
            f"fractions={fractions} must be three shares (train, val, test), train and test > 0"
        )
    total = sum(fractions)
    if not np.isclose(total, 1.0, atol=1e-6):
        raise ConfigError(f"fractions={fractions} sum to {total:g}; they must sum to 1")
    groups = table.frame["group"].to_numpy()
    unique = np.unique(groups)  # sorted: independent of row order
    n = len(unique)
    n_test = int(round(fractions[2] * n))
    n_val = int(round(fractions[1] * n))
    if n_test < 1 or n - n_test - n_val < 1 or (fractions[1] > 0 and n_val < 1):
        raise ConfigError(
            f"{table.name}: {n} group(s) cannot be split as {fractions}; use more data or other fractions"
        )
    order = np.random.default_rng(seed).permutation(n)
    test_groups = set(unique[order[:n_test]])
    val_groups = set(unique[order[n_test : n_test + n_val]])
    is_test = np.isin(groups, list(test_groups))
    is_val = np.isin(groups, list(val_groups))
    return {
        "train": table.subset(~is_test & ~is_val),
        "val": table.subset(is_val),
        "test": table.subset(is_test),
    }
