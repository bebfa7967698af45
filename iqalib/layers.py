"""Which job lives where: iqalib's layers, lowest first.

A module may import from its own layer and the layers below it, never from a
layer above, and no chain of imports may come back to where it started (an
import inside a function counts too). ``tests/test_layout.py`` checks both on
every test run, and ``book/layout.md`` shows this table. A module belongs to
the layer of the longest prefix below that names it; ``iqalib/__init__.py``
(the lazy public exports) is the one module outside the table.
"""
from __future__ import annotations

LAYERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("base", ("iqalib.errors", "iqalib.paths", "iqalib.numerics", "iqalib.metrics", "iqalib.book_style",
              "iqalib.files", "iqalib.signals", "iqalib.version", "iqalib.layers")),
    ("data, losses, config", ("iqalib.data", "iqalib.losses", "iqalib.config")),
    ("models", ("iqalib.models",)),
    ("engine", ("iqalib.engine",)),
    ("experiments", ("iqalib.experiments", "iqalib.results")),
    ("analysis", ("iqalib.analysis",)),
    ("plots", ("iqalib.plots",)),
    ("entry points", ("iqalib.book", "iqalib.cli")),
)


def layer_of(module: str) -> int | None:
    """The layer index of ``module`` (a dotted name), or None when no prefix names it."""
    best, found = -1, None
    for index, (_, prefixes) in enumerate(LAYERS):
        for prefix in prefixes:
            if (module == prefix or module.startswith(prefix + ".")) and len(prefix) > best:
                best, found = len(prefix), index
    return found
