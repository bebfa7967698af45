"""Fetching one file over HTTP: resume a broken download, verify it, never keep a wrong one.

:func:`fetch` downloads a URL into ``dest.part`` and renames it to ``dest``
only when it is complete and checked (the server's length, an expected size,
a pinned sha256). A rerun resumes with a Range request; a server that ignores
or muddles the range is read again from byte 0. The digest of every fetched
file goes to a ``<file>.sha256`` sidecar, with the file's size and mtime_ns on a
``#`` line (which ``sha256sum -c`` skips), so that users can pin it;
:func:`fetched_sha256` reads it back only while the file still has that size and
mtime, and hashes the file again otherwise (a file replaced since is verified by
its own bytes). A file that fails a check moves to ``<file>.bad`` so that a
rerun fetches afresh; a body longer than the server announced is such a failure.
A web page served in place of the file (an error or login page with status 200),
a redirect loop, a lost connection, a server that stops sending for ``timeout``
seconds (the partial file is kept for a resume) or a full disk: one line each.
"""
from __future__ import annotations

import hashlib
import os
import re
import urllib.error
import urllib.request
from http.client import HTTPException
from pathlib import Path

from tqdm import tqdm

from iqalib.errors import ConfigError, DownloadError
from iqalib.files import file_sha256, write_error  # one wording for a full or read-only disk
from iqalib.paths import shown

USER_AGENT = "iqalib-download/0.1 (+python urllib)"
_CONTENT_RANGE = re.compile(r"bytes\s+(\d+)-(\d+)/(\d+|\*)")
_UNSATISFIED_RANGE = re.compile(r"bytes\s+\*/(\d+)")


def _sidecar(path: Path) -> Path:
    return path.with_name(path.name + ".sha256")


def _part(path: Path) -> Path:
    return path.with_name(path.name + ".part")


def _bad(path: Path) -> Path:
    return path.with_name(path.name + ".bad")


def _hash_into(path: Path, digest, chunk: int = 1 << 20):
    """Feed the bytes already in ``path`` to ``digest`` (a resumed download continues it)."""
    with open(path, "rb") as handle:
        while block := handle.read(chunk):
            digest.update(block)


_SIDECAR = re.compile(r"([0-9a-f]{64})  [^\n]*\n# size=(\d+) mtime_ns=(\d+)\n?")


def fetched_sha256(path: Path) -> str:
    """The sha256 of ``path``: from the sidecar :func:`fetch` wrote while the file has the size and
    mtime_ns recorded there, else (replaced, touched, or no sidecar) computed from its bytes."""
    path = Path(path)
    info = path.stat()
    try:
        match = _SIDECAR.fullmatch(_sidecar(path).read_text(errors="replace")[:1024])
    except OSError:  # none, a folder, unreadable: hash the file
        match = None
    if match and (int(match.group(2)), int(match.group(3))) == (info.st_size, info.st_mtime_ns):
        return match.group(1)
    return file_sha256(path)


def _write_sidecar(path: Path, hexdigest: str) -> None:
    info = path.stat()  # the file the digest is of: a file replaced since no longer matches
    _sidecar(path).write_text(f"{hexdigest}  {path.name}\n# size={info.st_size} mtime_ns={info.st_mtime_ns}\n")


def reject_download(path: Path, url: str, reason: str, *, bad: Path | None = None) -> None:
    """Move a bad file aside to ``bad`` (so a rerun fetches afresh) and raise."""
    bad = bad or _bad(path)
    os.replace(path, bad)
    raise DownloadError(f"{url}: {reason}; moved the file to {bad}; rerun to fetch it again")


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    # A fresh opener reads the proxy settings of this moment, not of the first call.
    return urllib.request.build_opener().open(
        urllib.request.Request(url, headers=headers), timeout=timeout
    )


def _rerun(kept: int) -> str:
    """What to do after a download broke with ``kept`` bytes on disk: resume them, or try again."""
    if kept > 0:
        return f"rerun to resume ({kept} bytes are kept)"
    return "nothing was fetched; check the network connection and rerun (or pass --base-url for a mirror)"


def _http_failure(url: str, exc: Exception, kept: int = 0, timeout: float | None = None) -> DownloadError:
    if isinstance(exc, urllib.error.HTTPError):
        reason = " ".join(str(exc.reason).split())  # urllib's redirect messages span lines
        if "infinite loop" in reason:
            return DownloadError(
                f"{url}: the server redirects in a loop (HTTP {exc.code}); the address has moved or "
                "needs a login: check it in a browser, or pass base_url (--base-url) for a mirror"
            )
        return DownloadError(
            f"{url}: the server answered HTTP {exc.code} {shown(reason)[1:-1]}; check the address "
            "or pass base_url (--base-url) for a mirror"
        )
    reason = getattr(exc, "reason", None) or exc
    if isinstance(reason, TimeoutError) and timeout is not None:
        return _stalled(url, timeout, kept)
    return DownloadError(f"{url}: network error ({reason}); {_rerun(kept)}")


def _stalled(url: str, timeout: float, kept: int) -> DownloadError:
    """A server that accepted the request and then sent nothing for ``timeout`` seconds."""
    if kept > 0:
        return DownloadError(f"{url}: the server stopped sending data for {timeout:g} s ({kept} bytes received); "
                             "the partial file is kept: rerun to resume, or check the server")
    return DownloadError(f"{url}: the server stopped sending data for {timeout:g} s before the first byte; "
                         "nothing was fetched: rerun, or check the server (or pass --base-url for a mirror)")


def fetch(
    url: str,
    dest: Path,
    *,
    sha256: str | None = None,
    size: int | None = None,
    progress: bool = True,
    chunk: int = 1 << 20,
    timeout: float = 60,
) -> Path:
    """Download ``url`` to ``dest``, resuming a partial ``dest.part``; return ``dest``.

    The file appears at ``dest`` only when complete and verified: its length
    must match the server's (and ``size`` where given), and its sha256 must
    match ``sha256`` where given. A mismatch moves the file to ``.bad`` so
    that a rerun starts afresh. The computed digest is written to
    ``dest.sha256``. An existing ``dest`` is trusted (checked against
    ``sha256`` if given) and not fetched again.
    """
    dest = Path(dest)
    if sha256 is not None:
        sha256 = sha256.strip().lower()
        if not re.fullmatch(r"[0-9a-f]{64}", sha256):
            raise ConfigError(f"sha256={sha256!r} is not 64 hexadecimal digits")
    if dest.is_file():
        if size is not None and dest.stat().st_size != size:
            reject_download(dest, url, f"{dest} has {dest.stat().st_size} bytes, not {size}")
        if sha256 is not None and fetched_sha256(dest) != sha256:
            reject_download(dest, url, f"{dest} does not match sha256 {sha256}")
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = _part(dest)
    offset = part.stat().st_size if part.is_file() else 0
    digest = hashlib.sha256()
    response, offset, total = _connect(url, part, offset, timeout)
    if response is None:
        total = offset
    else:
        _receive(response, url, dest, part, offset, total, size, digest, progress, chunk, timeout)
    return _place(url, dest, part, response is None, total, size, sha256, digest)


def _connect(url: str, part: Path, offset: int, timeout: float):
    """``(response, offset, total)``: the server's answer for the bytes from ``offset`` (restarting
    from 0 where it ignores or muddles the range); ``response`` None when ``part`` is already whole."""
    for _attempt in range(2):  # the second try restarts from zero
        try:
            response = _open(url, offset, timeout)
        except urllib.error.HTTPError as exc:
            exc.close()  # it holds the connection
            if exc.code == 416 and offset:
                match = _UNSATISFIED_RANGE.search(exc.headers.get("Content-Range", ""))
                if match and int(match.group(1)) == offset:
                    return None, offset, None  # the part file already holds every byte
                offset = 0  # the part is longer than the file: it is not ours
                continue
            raise _http_failure(url, exc) from None
        except (urllib.error.URLError, HTTPException, OSError) as exc:
            raise _http_failure(url, exc, offset, timeout) from None
        if response.status == 206:
            match = _CONTENT_RANGE.search(response.headers.get("Content-Range", ""))
            if not match or int(match.group(1)) != offset or match.group(3) != "*" and int(match.group(3)) <= offset:
                response.close()
                offset = 0
                continue
            total = int(match.group(3)) if match.group(3) != "*" else None
        else:
            # 200: the server ignored the Range header, so the body starts at byte 0.
            offset = 0
            length = response.headers.get("Content-Length")
            total = int(length) if length is not None else None
        break
    else:
        raise DownloadError(
            f"{url}: the server answers ranges inconsistently; delete {part} and rerun"
        )
    return response, offset, total


def _receive(response, url: str, dest: Path, part: Path, offset: int, total, size, digest, progress: bool,
             chunk: int, timeout: float) -> None:
    """Append the response's body to ``part`` (hashing what it already held first)."""
    with response:
        is_page = response.headers.get("Content-Type", "").startswith("text/html")
        if is_page and dest.suffix.lower() not in (".html", ".htm"):
            raise DownloadError(
                f"{url}: the server sent a web page instead of {dest.name} (moved or behind a "
                f"login); download it by hand and place it at {dest}"
            )
        if size is not None and total is not None and total != size:
            raise DownloadError(
                f"{url}: the server offers {total} bytes but {size} are expected; "
                "the file has changed or the address is wrong"
            )
        if offset:
            _hash_into(part, digest)
        check = None if offset else _starts_like(dest, url, response.headers.get("Content-Type"))
        _stream(response, part, offset, total, digest, url, progress, chunk, check, timeout)


def _place(url: str, dest: Path, part: Path, whole_before: bool, total, size, sha256, digest) -> Path:
    """Check the finished ``part`` (length, ``size``, ``sha256``), then rename it to ``dest`` and
    write its digest beside it; a bad file moves to ``.bad``."""
    written = part.stat().st_size
    if whole_before:
        _hash_into(part, digest)
    if total is not None and written > total:  # bytes that were never part of the file
        reject_download(part, url, f"{written} bytes arrived for a file of {total}", bad=_bad(dest))
    if total is not None and written != total:
        raise DownloadError(
            f"{url}: download stopped at {written} of {total} bytes; {_rerun(written)}"
        )
    if size is not None and written != size:
        reject_download(part, url, f"got {written} bytes but {size} are expected", bad=_bad(dest))
    hexdigest = digest.hexdigest()
    if sha256 is not None and hexdigest != sha256:
        reason = f"sha256 {hexdigest} does not match the expected {sha256}"
        reject_download(part, url, reason, bad=_bad(dest))
    os.replace(part, dest)
    _write_sidecar(dest, hexdigest)
    return dest


_HEAD_BYTES = 256  # the first bytes of a fresh download that _starts_like looks at
_WEB_PAGE_STARTS = (b"<!doctype html", b"<html", b"<head", b"<body", b"<?xml", b"<!--", b"<title")
# The first bytes of each kind of file fetched here; anything else is not what was asked for.
_MAGIC = {".zip": (b"PK\x03\x04", b"PK\x05\x06"), ".gz": (b"\x1f\x8b",), ".tgz": (b"\x1f\x8b",)}


def _starts_like(dest: Path, url: str, content_type: str | None):
    """A check of the first bytes of a fresh download: a web page (an error or login page
    served with status 200) or, for a zip or gzip file, anything without its magic bytes
    is refused before a byte is written."""
    suffix = dest.suffix.lower()
    if suffix in (".html", ".htm"):
        return None

    def check(block: bytes) -> None:
        head = block[:_HEAD_BYTES].lstrip(b"\xef\xbb\xbf \t\r\n").lower()
        if head.startswith(_WEB_PAGE_STARTS):
            raise DownloadError(
                f"{url}: the server sent a web page instead of {dest.name} (an error or login page, "
                f"served as {shown(content_type or 'no content type')}); download it by hand and "
                f"place it at {dest}"
            )
        magic = _MAGIC.get(suffix)
        if magic and not block.startswith(magic):
            got = f"data starting with {shown(block[:8])}" if block else "an empty file"
            raise DownloadError(
                f"{url}: the server sent {got}, not a {suffix[1:]} file; check the address or "
                f"download it by hand and place it at {dest}"
            )

    return check


class _TooLong(Exception):
    """The body ran past the length the server announced."""


def _stream(response, part: Path, offset: int, total, digest, url, progress, chunk, check=None,
            timeout: float = 60) -> None:
    """Append the body to ``part``; a body longer than announced moves ``part`` to ``.bad``."""
    mode = "ab" if offset else "wb"
    bar = tqdm(
        total=total, initial=offset, unit="B", unit_scale=True, unit_divisor=1024,
        desc=part.name[: -len(".part")], disable=not progress, leave=False,
    )
    held = offset  # bytes in the part file; counted here: a disabled bar counts nothing

    def read() -> bytes:
        try:  # what has arrived, up to chunk: a stall loses nothing already received
            return response.read1(chunk)
        except TimeoutError:  # the server accepted, then went quiet
            raise _stalled(url, timeout, held) from None
        except (HTTPException, OSError) as exc:
            raise DownloadError(
                f"{url}: connection lost after {held} bytes ({exc or type(exc).__name__}); "
                f"{_rerun(held)}"
            ) from None

    with bar:
        block = read()
        while check is not None and 0 < len(block) < _HEAD_BYTES and (more := read()):
            block += more  # enough of the start to tell what it is
        if check is not None:
            check(block)  # before anything lands on disk
        try:
            with open(part, mode) as handle:
                while block:
                    if total is not None and held + len(block) > total:
                        raise _TooLong
                    handle.write(block)
                    digest.update(block)
                    held += len(block)
                    bar.update(len(block))
                    block = read()
        except OSError as exc:  # the disk, not the network
            raise write_error(part, exc) from None
        except _TooLong:
            reject_download(part, url, f"the server sent more than the {total - offset} bytes it announced "
                            f"(bytes {offset} to {total - 1} of a {total}-byte file)",
                            bad=part.with_name(part.name.removesuffix(".part") + ".bad"))
