"""User-facing errors.

Every error a user can cause (a bad file, table, key or parameter) is an
:class:`IQAError` whose message is one line naming the culprit and the fix.
The CLI prints that line and exits non-zero; ``--debug`` shows the traceback.
"""
from __future__ import annotations


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
