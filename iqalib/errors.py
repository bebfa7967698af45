"""User-facing errors.

Every error a user can cause (a bad file, table, key or parameter) is an
:class:`IQAError` whose message is one line naming the culprit and the fix.
The CLI prints that line and exits non-zero; ``--debug`` shows the traceback.
"""
from __future__ import annotations

import difflib
import re


class IQAError(Exception):
    """Base class: a problem the user can fix, described in one line."""


class DataError(IQAError):
    """A data set, table or image cannot be used as given."""


class ImageError(DataError):
    """One image file cannot be decoded or converted."""

    def __init__(self, path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{path}: {reason}")


class ConfigError(IQAError):
    """A configuration key, value or name is invalid."""


class CheckpointError(IQAError):
    """A checkpoint file cannot be loaded safely."""


class DownloadError(IQAError):
    """An archive could not be fetched or verified."""


class OutputError(IQAError, OSError):
    """A result, checkpoint or cache file cannot be written (disk full, no permission).

    Also an :class:`OSError` (``errno`` is the original one), so code that
    handled the raw error keeps working.
    """


def pickled_code(message: str) -> str | None:
    """What a ``torch.load(weights_only=True)`` refusal names, if the file asked for code or objects.

    Recognised: torch's wordings of a blocked global ("GLOBAL x was not an allowed global",
    "unsupported GLOBAL x whose module y is blocked", "Unsupported class x") and of an object
    it will not build. ``"io.open"`` for a file whose unpickling would call ``open``; ``"objects"``
    when the name is not given; None when the error is plain damage (a
    truncated file, random bytes), which is not a refusal.
    """
    found = re.search(r"GLOBAL (\S+) was not an allowed global|Unsupported class (\S+)"
                      r"|unsupported GLOBAL (\S+) whose module \S+ is blocked", message)
    if found:
        return next(name for name in found.groups() if name)
    objects = ("Unsupported global", "Can only build Tensor, Parameter, OrderedDict or types allowlisted",
               "Can only create new object for nn.Parameter or classes allowlisted")
    return "objects" if any(words in message for words in objects) else None


def did_you_mean(word: str, choices, prefix: str = "") -> str:
    """`` (did you mean 'x'?)`` for the closest of ``choices`` to a mistyped ``word``, else ``""``.

    ``prefix`` (a section such as ``"train."``) is shown, not compared: a shared
    prefix would make every key look close.
    """
    names = [str(c) for c in choices]
    by_case = {n.lower(): n for n in names}  # 'CPU' -> 'cpu': case alone should not hide the match
    close = difflib.get_close_matches(str(word)[:200].lower(), list(by_case), n=1, cutoff=0.6)
    return f" (did you mean {prefix + by_case[close[0]]!r}?)" if close else ""
