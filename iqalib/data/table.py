"""The IQA table contract shared by every data set.

A data set is a root folder plus a table with one row per rated image:

========  =========================================================
column    meaning
========  =========================================================
image     path of the image file, relative to the root (POSIX form)
mos       mean opinion score on the data set's declared scale
std       standard deviation of the ratings (NaN where unknown)
split     official split ("train", "val", "test") or None
group     content id: images sharing it never straddle splits
========  =========================================================

Further columns a data set provides (the demo set's ``distortion`` and
``level``, say) are kept after these five.

:func:`validate_frame` checks a raw table against this contract and either
raises one :class:`~iqalib.errors.DataError` listing every offending row, or,
where the user asked for it (``on_error="drop"``), drops those rows with a
warning.
"""
from __future__ import annotations

import os
import posixpath
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

import numpy as np
import pandas as pd

from iqalib.errors import ConfigError, DataError

COLUMNS = ("image", "mos", "std", "split", "group")
SPLITS = ("train", "val", "test")
ON_ERROR = ("raise", "drop")
# How many offending rows an error message quotes before summarising.
_MAX_LISTED = 10
_MIN_ROWS_FOR_SCALE_CHECK = 10


@dataclass(frozen=True)
class IQATable:
    """A validated table of rated images below ``root``.

    ``short_side`` is the data set's resize convention (decode, then scale so
    the short side has this many pixels; None keeps the native size).
    ``synthetic`` marks the embedded demo set so that every figure can say so.
    """

    name: str
    root: Path
    frame: pd.DataFrame
    mos_range: tuple[float, float]
    short_side: int | None = None
    synthetic: bool = False
    citation: str = ""
    meta: dict = field(default_factory=dict)

    def __len__(self) -> int:
        return len(self.frame)

    @property
    def paths(self) -> list[Path]:
        return [self.root / p for p in self.frame["image"]]

    @property
    def mos(self) -> np.ndarray:
        return self.frame["mos"].to_numpy(dtype=np.float64)

    @property
    def std(self) -> np.ndarray:
        """The raters' standard deviation per image, in MOS units (NaN where unknown)."""
        return self.frame["std"].to_numpy(dtype=np.float64)

    @property
    def has_official_split(self) -> bool:
        return self.frame["split"].notna().all()

    @property
    def label(self) -> str:
        """Display name; the demo set always says it is synthetic."""
        return f"{self.name} (synthetic)" if self.synthetic else self.name

    def subset(self, rows) -> "IQATable":
        """A table of the selected rows (boolean mask or positional indices)."""
        if isinstance(rows, (pd.Series, np.ndarray)) and np.asarray(rows).dtype == bool:
            frame = self.frame[np.asarray(rows)]
        else:
            frame = self.frame.iloc[list(rows)]
        return replace(self, frame=frame.reset_index(drop=True))


def _one_line(value) -> str:
    """``value`` as text with line breaks escaped: messages stay on one line."""
    return str(value).replace("\r", "\\r").replace("\n", "\\n")


def _quote_rows(frame: pd.DataFrame, mask, what: str) -> str:
    bad = frame.index[np.asarray(mask)]
    shown = ", ".join(
        f"row {i} ({_one_line(frame.at[i, 'image']) if 'image' in frame else '?'})"
        for i in bad[:_MAX_LISTED]
    )
    more = f" and {len(bad) - _MAX_LISTED} more" if len(bad) > _MAX_LISTED else ""
    return f"{len(bad)} row(s) {what}: {shown}{more}"


def _escapes_root(name: str) -> bool:
    p = PurePosixPath(name.replace("\\", "/"))
    return p.is_absolute() or ".." in p.parts or (len(name) > 1 and name[1] == ":")


def _with_contract_columns(frame: pd.DataFrame, source) -> pd.DataFrame:
    """A copy of ``frame`` with image names as text and std/split/group present; a table without
    rows or without an image or MOS column is one :class:`DataError`."""
    if frame is None or len(frame) == 0:
        raise DataError(f"{source}: the table has no rows; check that it is the right file")
    missing = [c for c in ("image", "mos") if c not in frame.columns]
    if missing:
        raise DataError(
            f"{source}: missing column(s) {missing}; found {list(frame.columns)}; "
            "rename them or use the loader for this data set's layout"
        )
    frame = frame.copy().reset_index(drop=True)
    # Missing names become "" (pandas keeps NaN through astype(str)).
    frame["image"] = frame["image"].map(lambda v: "" if pd.isna(v) else str(v).strip())
    for col in ("std", "split", "group"):
        if col not in frame:
            frame[col] = np.nan if col == "std" else None
    return frame


def _mos_problems(mos: pd.Series, mos_range, source) -> list[tuple[np.ndarray, str]]:
    """Rows whose MOS is missing, infinite or off the declared scale; a whole table on the wrong
    scale is one :class:`DataError`."""
    problems: list[tuple[np.ndarray, str]] = []
    not_numeric = mos.isna().to_numpy()
    problems.append((not_numeric, "have a missing or non-numeric MOS"))
    finite = mos.to_numpy(dtype=float)
    infinite = np.isinf(finite)
    problems.append((infinite, "have an infinite MOS"))
    if mos_range is not None:
        lo, hi = mos_range
        # A small tolerance: published tables round their extremes.
        tol = 1e-6 * max(1.0, hi - lo)
        out = ~not_numeric & ~infinite & ((finite < lo - tol) | (finite > hi + tol))
        problems.append((out, f"have a MOS outside the declared scale [{lo:g}, {hi:g}]"))
        used = finite[~not_numeric & np.isfinite(finite)]
        # A 0-100 scale declared for 1-5 scores passes the range check; catch it
        # by the share of the scale the scores use (only meaningful on real tables).
        if used.size >= _MIN_ROWS_FOR_SCALE_CHECK and np.ptp(used) < 0.05 * (hi - lo):
            raise DataError(
                f"{source}: the MOS values span only [{used.min():g}, {used.max():g}] of the "
                f"declared scale [{lo:g}, {hi:g}]; pass the scale the table really uses"
            )
    return problems


def _row_problems(frame: pd.DataFrame, std: pd.Series, root, check_files: bool) -> list[tuple[np.ndarray, str]]:
    """Rows with a bad std, image name or split, or (``check_files``) no file below ``root``."""
    problems: list[tuple[np.ndarray, str]] = []
    std_values = std.to_numpy(dtype=float)
    # A std that is given but not a number is a typo, not "unknown": don't let it become NaN.
    problems.append(((frame["std"].notna() & std.isna()).to_numpy(), "have a non-numeric std"))
    problems.append(((std_values < 0) | np.isinf(std_values), "have a negative or infinite std"))
    empty = (frame["image"] == "") | frame["image"].isin(["nan", "None"])
    problems.append((empty.to_numpy(), "have an empty image name"))
    escapes = frame["image"].map(_escapes_root).to_numpy()
    problems.append((escapes, "name a path outside the data root (absolute or with '..')"))
    problems.append(_collisions(frame["image"], ~(empty.to_numpy() | escapes), root if check_files else None))
    split_ok = frame["split"].isna() | frame["split"].isin(SPLITS)
    problems.append((~split_ok.to_numpy(), f"have a split other than {SPLITS}"))
    if check_files and root is not None:
        listed_ok = ~(empty.to_numpy() | escapes)
        exists = np.array(
            [ok and (Path(root) / name).is_file() for ok, name in zip(listed_ok, frame["image"])]
        )
        problems.append((listed_ok & ~exists, f"name an image missing below {root}"))
    return problems


def _identity(name: str, root) -> str:
    """What an image name points to: the resolved path below ``root`` (links followed), else the
    normalised name (``./a.png``, ``a.png`` and ``x/../a.png`` are one image)."""
    normal = posixpath.normpath(name.replace("\\", "/"))
    return os.path.realpath(Path(root) / normal) if root is not None else normal


def _collisions(images: pd.Series, usable: np.ndarray, root) -> tuple[np.ndarray, str]:
    """Rows that name one image more than once, compared as resolved paths, and which rows collide."""
    identity = pd.Series([_identity(n, root) if ok else None for n, ok in zip(images, usable)], index=images.index)
    dup = (identity.notna() & identity.duplicated(keep=False)).to_numpy()
    groups = [" = ".join(f"row {i}" for i in rows)
              for rows in sorted(identity[dup].groupby(identity[dup]).groups.values(), key=min)]
    listed = "; ".join(groups[:_MAX_LISTED]) + (f"; and {len(groups) - _MAX_LISTED} more" if len(groups) > _MAX_LISTED
                                                else "")
    return dup, f"name one image more than once, compared as resolved paths ({listed})"


def _report(frame: pd.DataFrame, problems, source, on_error: str) -> np.ndarray:
    """The rows to drop: every problem in one :class:`DataError` (``on_error="raise"``, or when no row
    is left), else in one warning."""
    bad_any = np.zeros(len(frame), dtype=bool)
    messages = []
    for mask, what in problems:
        mask = np.asarray(mask, dtype=bool)
        if mask.any():
            bad_any |= mask
            messages.append(_quote_rows(frame, mask, what))
    if messages:
        if on_error == "raise" or bad_any.all():
            hint = (
                "fix the table or the files, or pass on_error='drop' (data.on_error=drop in a run "
                "config) to skip these rows"
                if not bad_any.all()
                else "no usable row is left; check the root folder and the table"
            )
            raise DataError(f"{source}: " + "; ".join(messages) + f"; {hint}")
        warnings.warn(f"{source}: dropped {int(bad_any.sum())} row(s): " + "; ".join(messages),
                      stacklevel=4)  # the caller of validate_frame
    return bad_any


def validate_frame(
    frame: pd.DataFrame,
    *,
    source: str | Path,
    root: Path | None = None,
    mos_range: tuple[float, float] | None = None,
    check_files: bool = True,
    on_error: str = "raise",
) -> pd.DataFrame:
    """Check ``frame`` against the table contract and return a clean copy.

    ``source`` names the table file in messages. Problems are collected over
    all rows before reporting: missing files are listed together, not one by
    one. With ``on_error="drop"`` the offending rows are removed with a
    warning instead; an empty result is still an error.
    """
    if on_error not in ON_ERROR:
        raise ConfigError(f"on_error={on_error!r} is not one of {ON_ERROR}")
    frame = _with_contract_columns(frame, source)
    mos = pd.to_numeric(frame["mos"], errors="coerce")
    std = pd.to_numeric(frame["std"], errors="coerce")
    problems = _mos_problems(mos, mos_range, source) + _row_problems(frame, std, root, check_files)
    bad_any = _report(frame, problems, source, on_error)
    frame["mos"] = mos.astype(float)
    frame["std"] = std.astype(float)
    # Extra columns (e.g. the demo set's distortion and level) travel along
    # after the contract columns, so subsets keep them row for row.
    extra = [c for c in frame.columns if c not in COLUMNS]
    frame = frame.loc[~bad_any, list(COLUMNS) + extra].reset_index(drop=True)
    frame["group"] = frame["group"].where(frame["group"].notna(), frame["image"]).astype(str)
    return frame


def make_table(
    frame: pd.DataFrame,
    *,
    name: str,
    root: str | Path,
    source: str | Path,
    mos_range: tuple[float, float],
    check_files: bool = True,
    on_error: str = "raise",
    **kwargs,
) -> IQATable:
    """Validate ``frame`` and wrap it as an :class:`IQATable`."""
    root = Path(root)
    clean = validate_frame(
        frame,
        source=source,
        root=root,
        mos_range=mos_range,
        check_files=check_files,
        on_error=on_error,
    )
    return IQATable(name=name, root=root, frame=clean, mos_range=tuple(mos_range), **kwargs)


def read_csv_table(path: Path, **kwargs) -> pd.DataFrame:
    """Read a CSV with clear errors for missing, unreadable or non-UTF-8 files."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: table not found; check the data set root (see `iqalib datasets`)")
    try:
        return pd.read_csv(path, **kwargs)
    except UnicodeDecodeError:
        line, offset = _first_bad_byte(path, kwargs.get("encoding") or "utf-8")
        raise DataError(
            f"{path}: not UTF-8 text (line {line}, byte {offset}); re-save the table as UTF-8 CSV"
        ) from None
    except (pd.errors.ParserError, pd.errors.EmptyDataError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DataError(f"{path}: cannot be read as CSV ({first}); check the file") from None



def _first_bad_byte(path: Path, encoding: str) -> tuple[int, int]:
    """(line, byte offset) of the first undecodable byte in ``path``.

    pandas decodes in chunks, so its exception's offset is relative to a chunk;
    decoding the whole file again gives the position a user can find.
    """
    raw = path.read_bytes()
    try:
        raw.decode(encoding)
    except UnicodeDecodeError as exc:
        return raw.count(b"\n", 0, exc.start) + 1, exc.start
    return 1, 0  # pandas failed where a plain decode does not: point at the start
