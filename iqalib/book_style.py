"""How the book's pages show numbers and progress: applied once, in the kernel that executes a chapter.

:func:`apply` runs at the start of every chapter's kernel (``make book`` /
:func:`iqalib.book.execute_notebook` start the kernel with it), so every
chapter shows tables the same way without a line of set-up in the notebook:

* **Numbers in tables** (pandas ``DataFrame`` and ``Styler``, text and HTML):
  :func:`format_number` gives four decimals (``0.9123``), enough to compare
  SRCCs that differ in the third decimal and narrow enough that a table fits
  the page; a value that four decimals would show as 0 (a learning rate of
  ``3e-05``, a stage weight of ``9.4e-06``) or a large one keeps two
  significant digits instead (``9.4e-06``, ``3.9e+08``), never a column of
  ``9.41234e-06``.
* **Whole tables**: no column, row or cell text is cut to "…" (wide tables
  scroll sideways on the page instead, ``_static/wide_tables.css``).
* **Progress bars**: libraries that pick a bar with ``tqdm.auto`` (the model
  hub client that timm imports does) get tqdm's plain text bar, which is
  what ``tqdm.auto`` chooses anyway in a kernel without ``ipywidgets``; only
  its advice to install ``ipywidgets`` (a ``TqdmWarning`` naming the
  interpreter's absolute path) is left out, since executed pages have no
  widget front end to install it for.

The same settings work in JupyterLab: ``import iqalib.book_style;
iqalib.book_style.apply()``.
"""
from __future__ import annotations

import math
import numbers
import warnings

DECIMALS = 4  # places shown for ordinary numbers
SMALL = 10.0 ** -(DECIMALS - 1)  # below this (but not 0) four decimals would hide the value
LARGE = 1e6  # from here on, 0.0000-style fixed point is wider than the page wants


def format_number(value) -> str:
    """``0.9123`` for ordinary numbers, ``9.4e-06`` / ``3.9e+08`` for tiny or huge ones, ``nan`` as is.

    Whole numbers (``int``, ``bool``) and text are shown unchanged (a Styler
    formatter sees every cell, not only floats).
    """
    if isinstance(value, (str, numbers.Integral)) or not isinstance(value, numbers.Real):
        return str(value)
    number = float(value)
    if not math.isfinite(number):
        return str(number)
    if number == 0 or SMALL <= abs(number) < LARGE:
        return f"{number:.{DECIMALS}f}"
    return f"{number:.2g}"


def plain_progress_bars() -> None:
    """Make ``tqdm.auto`` the plain text bar before a library imports it (no ``IProgress`` warning)."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="IProgress not found")
        import tqdm.auto  # noqa: F401  (cached: later imports get the same plain bar)


def apply() -> None:
    """Table number format (pandas, text and HTML, Styler) and plain progress bars, for this process."""
    import pandas as pd

    pd.set_option("display.float_format", format_number)
    pd.set_option("styler.format.formatter", format_number)
    pd.set_option("display.width", 90)  # text tables wrap at the code-cell width of the pages
    # Nothing a reader needs is replaced by "…": every column, every row, whole cell texts
    # (the pages scroll wide tables sideways: _static/wide_tables.css).
    pd.set_option("display.max_columns", None)
    pd.set_option("display.max_colwidth", None)
    pd.set_option("display.max_rows", 1000)
    pd.set_option("display.min_rows", 1000)
    plain_progress_bars()
