"""Names from configs and flags that become one part of a path (a run, a profile, a benchmark).

:func:`safe_part` accepts only a plain name that stays inside the folder it
is joined to: ``out_dir / name`` must never be ``out_dir/..``, an absolute
path, another drive or a file that the shell or a tool reads as an option.
:func:`shown` (a value) and :func:`cut` (a text) shorten what an error
message echoes, so that a megabyte of input never becomes a megabyte of message.
:func:`printable` writes a file name that is not valid UTF-8 with one escape everywhere it
appears (tables, stdout, stderr, cards), and :func:`from_printable` reads such a name back.
"""
from __future__ import annotations

import os
import re

from iqalib.errors import ConfigError

SHOWN_CHARS = 80  # an echoed value longer than this is cut, with an ellipsis
MAX_PART_BYTES = 255  # the longest file name of common file systems (ext4, APFS, NTFS)
_SURROGATE = re.compile("[\ud800-\udfff]")  # a lone surrogate: os.fsdecode's escape of a byte 80-ff


def cut(text: str, limit: int = SHOWN_CHARS) -> str:
    """``text`` cut to ``limit`` characters: ``aaaa… (123456 characters)``."""
    text = str(text)
    return text if len(text) <= limit else f"{text[:limit]}… ({len(text)} characters)"


def shown(value, limit: int = SHOWN_CHARS) -> str:
    """``repr(value)`` cut to ``limit`` characters, for echoing a user's value in an error message."""
    return cut(repr(value), limit)


def printable(name) -> str:
    """``name`` (a path or text) with each byte that is not UTF-8 written as ``\\xHH``.

    Python gives such bytes of a file name as surrogate escapes (:func:`os.fsdecode`), which
    no UTF-8 file or terminal can take; ``b'caf\\xe9.png'`` (Latin-1) becomes the text
    ``caf\\xe9.png``. Every other character, a backslash included, is kept as it is, so a
    valid name is never changed (and a Windows path keeps its separators).
    """
    def escape(match) -> str:
        code = ord(match.group())
        return f"\\x{code - 0xDC00:02x}" if 0xDC80 <= code <= 0xDCFF else f"\\u{code:04x}"

    return _SURROGATE.sub(escape, str(name))


def from_printable(text: str) -> str:
    """The file name :func:`printable` wrote as ``text``: each ``\\xHH`` of a byte 80-ff becomes
    that byte again (a name that exists as written is the caller's to prefer)."""
    if "\\x" not in text:
        return text
    raw = re.sub(rb"\\x([89a-fA-F][0-9a-fA-F])", lambda m: bytes([int(m.group(1), 16)]),
                 text.encode("utf-8", "surrogateescape"))
    return os.fsdecode(raw)


def safe_part(value, what: str) -> str:
    """``value`` if it is a plain file or folder name, else a one-line :class:`ConfigError`.

    Refused: non-text, ``''``, ``'.'``, ``'..'``, ``/`` or ``\\`` anywhere,
    NUL and other control characters, a drive (``C:x``), a leading ``-``
    (read as an option by the tools that get the name), more than
    :data:`MAX_PART_BYTES` bytes. ``what`` names the setting, e.g.
    ``"name"`` or ``"--profile"``.
    """
    fix = "use a plain name of letters, digits, '_', '-' and '.'"
    if not isinstance(value, str):
        raise ConfigError(f"{what}={shown(value)} must be a name (text); {fix}")
    problem = None
    if value in ("", ".", ".."):
        problem = "is not a name" if value == "" else "names a folder itself, not something inside it"
    elif "/" in value or "\\" in value:
        problem = "holds a path separator ('/' or '\\'), so it would leave its folder"
    elif re.search(r"[\x00-\x1f\x7f]", value):
        problem = "holds a NUL byte or another control character"
    elif re.match(r"[A-Za-z]:", value):
        problem = "starts with a drive ('C:'), so it would leave its folder"
    elif value.startswith("-"):
        problem = "starts with '-', which tools read as an option"
    elif len(value.encode("utf-8", "surrogatepass")) > MAX_PART_BYTES:
        problem = f"is longer than {MAX_PART_BYTES} bytes"
    if problem:
        raise ConfigError(f"{what}={shown(value)} {problem}; {fix}")
    return value
