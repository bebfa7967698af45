"""Hostile archives and hostile servers for ``iqalib download``, served from 127.0.0.1 (port 0).

Every archive is built here: the CVE-2025-4517 pattern (a chain of symlinked
folders with 247-byte names, so that the resolved path outgrows PATH_MAX and
``realpath`` gives up; :func:`test_the_cve_poc_fools_tarfiles_data_filter`
shows that it is live against this Python's own ``filter="data"``), chains of
empty-named links, hard links leaving the archive, absolute names, ``..``,
NUL bytes, over-long names, devices and pipes, and their zip equivalents.
Each goes through the real command line (``main``, in process) from the
local server, and each test asserts the exit status, the one ``error:``
line, that nothing changed outside ``--root`` (a snapshot of the folder
around it) and that ``--root`` holds nothing but the fetched archive.
"""
from __future__ import annotations

import errno
import hashlib
import io
import os
import stat
import tarfile
import threading
import time
import zipfile
from pathlib import Path

import pytest

from faults_support import cli_error
from hostile_support import snapshot
from iqalib.cli import main
from iqalib.data import fetch as fetch_module
from iqalib.data import unpack as unpack_module
from iqalib.data.download import download_dataset
from iqalib.data.sources import SOURCES, Archive, DatasetSource
from iqalib.data.unpack import UnsafeArchiveError, unpack
from iqalib.errors import ConfigError, DownloadError, OutputError
# The local file server and its fixtures (server, and the autouse proxy guard) of tests/test_download.py.
from test_download import _Handler, _no_proxy, server  # noqa: F401

PAYLOAD = b"written by a hostile archive\n"
OUTSIDE = "outside.txt"  # where an escaping member would land: next to --root


# ----------------------------------------------------------------- archives
def _tar_gz(add) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", format=tarfile.PAX_FORMAT) as tf:
        add(tf)
    return buffer.getvalue()


def _file(tf: tarfile.TarFile, name: str, data: bytes = PAYLOAD) -> None:
    info = tarfile.TarInfo(name)
    info.size = len(data)
    tf.addfile(info, io.BytesIO(data))


def _member(tf: tarfile.TarFile, name: str, kind: bytes, linkname: str = "") -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = linkname
    tf.addfile(info)


def cve_2025_4517(tf: tarfile.TarFile, levels_up: int = 2) -> None:
    """The published proof of concept: 16 folders of 247-byte names, each reached through a
    one-letter symlink, a link climbing back through all of them, then a link ``escape``
    whose lexical path stays inside but whose real path is ``levels_up`` folders above the
    extraction folder, and a file written through it."""
    comp = "d" * 247
    steps = "abcdefghijklmnop"
    path = ""
    for step in steps:
        _member(tf, os.path.join(path, comp), tarfile.DIRTYPE)
        _member(tf, os.path.join(path, step), tarfile.SYMTYPE, comp)
        path = os.path.join(path, comp)
    linkpath = os.path.join(*steps, "l" * 254)
    _member(tf, linkpath, tarfile.SYMTYPE, "../" * len(steps))
    _member(tf, "escape", tarfile.SYMTYPE, linkpath + "/" + "../" * levels_up)
    _file(tf, f"escape/{OUTSIDE}")


def _special(tf: tarfile.TarFile, name: str, kind: bytes) -> None:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.devmajor, info.devminor = 1, 3
    tf.addfile(info)


# name -> (what it does to the tar file given the test's folder, fragment of the refusal)
TAR_CASES = {
    "cve_2025_4517_symlink_chain": (lambda tf, tmp: cve_2025_4517(tf), "refused link"),
    "empty_named_link_chain": (lambda tf, tmp: (
        _member(tf, "", tarfile.SYMTYPE, ".."), _member(tf, "./", tarfile.SYMTYPE, "../.."),
        _file(tf, f"../../{OUTSIDE}")), "an empty name"),
    "hard_link_leaving_the_archive": (lambda tf, tmp: (
        _file(tf, "set/a.txt"), _member(tf, "set/passwd", tarfile.LNKTYPE, f"../../{OUTSIDE}")),
        "points outside the archive"),
    "hard_link_to_an_escaping_symlink": (lambda tf, tmp: (
        _member(tf, "set/escape", tarfile.SYMTYPE, f"../../../{OUTSIDE}"),
        _member(tf, "set/h", tarfile.LNKTYPE, "set/escape")), "points outside the archive"),
    "absolute_name": (lambda tf, tmp: _file(tf, str(tmp / OUTSIDE)), "an absolute path"),
    "dotdot_name": (lambda tf, tmp: _file(tf, f"set/../../{OUTSIDE}"), "a '..' in its path"),
    "long_name": (lambda tf, tmp: _file(tf, "set/" + "n" * 300), "a name over 255 bytes"),
    "link_to_a_folder": (lambda tf, tmp: (
        _member(tf, "set/sub", tarfile.DIRTYPE), _member(tf, "set/l", tarfile.SYMTYPE, "sub"),
        _file(tf, "set/l/x.txt")), "links are not unpacked"),
    "character_device": (lambda tf, tmp: _special(tf, "set/null", tarfile.CHRTYPE), "a device, pipe"),
    "fifo": (lambda tf, tmp: _special(tf, "set/pipe", tarfile.FIFOTYPE), "a device, pipe"),
}


def _zip(add) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as zf:
        zf.writestr("ChallengeDB_release/README.txt", b"notice\n")
        add(zf)
    return buffer.getvalue()


def _zip_special(zf: zipfile.ZipFile, name: str, mode: int, data: bytes) -> None:
    info = zipfile.ZipInfo(name)
    info.create_system = 3  # unix: the mode lives in the high 16 bits
    info.external_attr = mode << 16
    zf.writestr(info, data)


def _zip_nul_name() -> bytes:
    # zipfile cannot write a NUL in a name; patch it into both headers (names carry no CRC).
    return _zip(lambda zf: zf.writestr("ChallengeDB_release/evilX.txt", PAYLOAD)).replace(
        b"evilX.txt", b"evil\x00.txt")


ZIP_CASES = {
    "symlink_leaving_the_archive": (lambda tmp: _zip(lambda zf: _zip_special(
        zf, "ChallengeDB_release/l", stat.S_IFLNK | 0o777, f"../../{OUTSIDE}".encode())), "refused link"),
    "symlink_loop": (lambda tmp: _zip(lambda zf: (
        _zip_special(zf, "ChallengeDB_release/a", stat.S_IFLNK | 0o777, b"b"),
        _zip_special(zf, "ChallengeDB_release/b", stat.S_IFLNK | 0o777, b"a"))), "links are not unpacked"),
    "dotdot_name": (lambda tmp: _zip(lambda zf: zf.writestr(f"../{OUTSIDE}", PAYLOAD)), "a '..' in its path"),
    "backslash_dotdot_name": (lambda tmp: _zip(lambda zf: zf.writestr(f"..\\..\\{OUTSIDE}", PAYLOAD)),
                              "a '..' in its path"),
    "absolute_name": (lambda tmp: _zip(lambda zf: zf.writestr(str(tmp / OUTSIDE), PAYLOAD)), "an absolute path"),
    "nul_in_name": (lambda tmp: _zip_nul_name(), "a NUL byte"),
    "character_device": (lambda tmp: _zip(lambda zf: _zip_special(
        zf, "ChallengeDB_release/null", stat.S_IFCHR | 0o644, b"")), "a device, pipe"),
}


# ----------------------------------------------------------------- fixtures
@pytest.fixture
def hostile_source(monkeypatch) -> str:
    """A data set whose one archive is a .tar.gz (the real sources publish zips only)."""
    monkeypatch.setitem(SOURCES, "hostile", DatasetSource(
        name="hostile", description="a test source", page="https://example.invalid/hostile", folder="set",
        archives=(Archive("release", "https://example.invalid/files/hostile.tar.gz"),)))
    return "hostile"


def _args(name: str, root: Path, server) -> list[str]:
    return ["download", name, "--root", str(root), "--base-url", f"{server.url}/m"]


def _only_the_archive(root: Path, filename: str) -> None:
    """--root holds the fetched archive and its checksum, nothing unpacked, no staging folder."""
    assert sorted(snapshot(root)) == ["archives", f"archives/{filename}", f"archives/{filename}.sha256"]


# ----------------------------------------------------------------- the proof of concept is live
def test_the_cve_poc_fools_tarfiles_data_filter(tmp_path):
    """Python's own safe extraction writes outside its folder with this archive (unless patched)."""
    box = tmp_path / "box"
    (box / "extract").mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(_tar_gz(lambda tf: cve_2025_4517(tf, levels_up=1)))) as tf:
        try:
            tf.extractall(box / "extract", filter="data")
        except (tarfile.TarError, OSError):
            pass
    if not (box / OUTSIDE).exists():
        pytest.skip("this Python's tarfile is patched against CVE-2025-4517")
    assert (box / OUTSIDE).read_bytes() == PAYLOAD  # outside the extraction folder


# ----------------------------------------------------------------- hostile archives
@pytest.mark.parametrize("case", sorted(TAR_CASES))
def test_hostile_tar_is_refused_and_nothing_lands_outside_root(case, server, hostile_source, tmp_path, capsys):
    build, fragment = TAR_CASES[case]
    server.files["/m/hostile.tar.gz"] = _tar_gz(lambda tf: build(tf, tmp_path))
    root = tmp_path / "data"
    before = snapshot(tmp_path, skip=root)
    line = cli_error(capsys, _args(hostile_source, root, server), UnsafeArchiveError,
                     "hostile.tar.gz: refused", fragment, "nothing was unpacked", "official source")
    assert len(line) < 600, line  # long member names are shortened in the message
    assert snapshot(tmp_path, skip=root) == before
    _only_the_archive(root, "hostile.tar.gz")


@pytest.mark.parametrize("case", sorted(ZIP_CASES))
def test_hostile_zip_is_refused_and_nothing_lands_outside_root(case, server, tmp_path, capsys):
    build, fragment = ZIP_CASES[case]
    server.files["/m/ChallengeDB_release.zip"] = build(tmp_path)
    root = tmp_path / "data"
    before = snapshot(tmp_path, skip=root)
    cli_error(capsys, _args("livec", root, server), UnsafeArchiveError,
              "ChallengeDB_release.zip: refused", fragment, "nothing was unpacked")
    assert snapshot(tmp_path, skip=root) == before
    _only_the_archive(root, "ChallengeDB_release.zip")


def test_links_inside_the_archive_are_unpacked_as_copies_never_as_links(server, hostile_source, tmp_path):
    server.files["/m/hostile.tar.gz"] = _tar_gz(lambda tf: (
        _file(tf, "set/sub/b.txt", b"beta"), _member(tf, "set/c.txt", tarfile.SYMTYPE, "sub/b.txt"),
        _member(tf, "set/d.txt", tarfile.LNKTYPE, "set/sub/b.txt")))
    root = tmp_path / "data"
    folder = download_dataset(hostile_source, root, base_url=f"{server.url}/m", progress=False)
    for name in ("c.txt", "d.txt"):
        assert not (folder / name).is_symlink() and (folder / name).read_bytes() == b"beta"
        assert os.stat(folder / name).st_nlink == 1  # not a hard link either
    assert not [p for p in root.iterdir() if p.name.endswith(".unpacking")]


def test_an_archive_never_replaces_a_link_or_folder_of_the_user(server, tmp_path, capsys):
    """A link the user made inside --root is not followed out of it, nor replaced."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    (elsewhere / "mine.txt").write_bytes(b"mine")
    root = tmp_path / "data"
    root.mkdir()
    (root / "ChallengeDB_release").symlink_to(elsewhere)
    server.files["/m/ChallengeDB_release.zip"] = _zip(lambda zf: zf.writestr("ChallengeDB_release/x.txt", b"x"))
    before = snapshot(tmp_path, skip=root)
    cli_error(capsys, _args("livec", root, server), DownloadError,
              f"would replace {root / 'ChallengeDB_release'}, which is a link", "move it away and rerun")
    assert snapshot(tmp_path, skip=root) == before
    assert (root / "ChallengeDB_release").is_symlink()
    assert not [p for p in root.iterdir() if p.name.endswith(".unpacking")]


# ----------------------------------------------------------------- a full disk
class _FullDisk:
    """A writable file whose every write fails with ENOSPC."""

    def __init__(self, handle):
        self._handle = handle

    def write(self, data):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    def __getattr__(self, name):
        return getattr(self._handle, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._handle.close()


def test_a_full_disk_while_fetching_is_one_line(server, tmp_path, capsys, monkeypatch):
    server.files["/m/ChallengeDB_release.zip"] = _zip(lambda zf: None)
    monkeypatch.setattr(fetch_module, "open", lambda *a, **k: _FullDisk(open(*a, **k)), raising=False)
    root = tmp_path / "data"
    before = snapshot(tmp_path, skip=root)
    cli_error(capsys, _args("livec", root, server), OutputError,
              "ChallengeDB_release.zip.part", "No space left on device", "free space")
    assert snapshot(tmp_path, skip=root) == before
    assert not (root / "archives" / "ChallengeDB_release.zip").exists()


def _full_disk_for_members(monkeypatch) -> None:
    real = os.fdopen

    def fdopen(fd, mode="r", *args, **kwargs):
        handle = real(fd, mode, *args, **kwargs)
        return _FullDisk(handle) if mode == "wb" else handle

    monkeypatch.setattr(unpack_module.os, "fdopen", fdopen)


def test_a_full_disk_while_unpacking_keeps_the_previous_files(tmp_path, monkeypatch):
    dest = tmp_path / "data"
    first, second = tmp_path / "v1.zip", tmp_path / "v2.zip"
    first.write_bytes(_zip(lambda zf: zf.writestr("ChallengeDB_release/a.txt", b"one")))
    second.write_bytes(_zip(lambda zf: zf.writestr("ChallengeDB_release/a.txt", b"two")))
    unpack(first, dest)
    before = snapshot(tmp_path)
    _full_disk_for_members(monkeypatch)
    with pytest.raises(OutputError, match="No space left on device") as info:
        unpack(second, dest)
    assert "\n" not in str(info.value)
    assert snapshot(tmp_path) == before  # the first unpack intact, no staging folder left


def test_a_full_disk_while_unpacking_through_the_cli_is_one_line(server, tmp_path, capsys, monkeypatch):
    server.files["/m/ChallengeDB_release.zip"] = _zip(lambda zf: None)
    _full_disk_for_members(monkeypatch)
    root = tmp_path / "data"
    cli_error(capsys, _args("livec", root, server), OutputError, "No space left on device", "free space")
    _only_the_archive(root, "ChallengeDB_release.zip")


# ----------------------------------------------------------------- --root
def test_root_that_is_a_file_is_one_line(tmp_path, capsys, server):
    root = tmp_path / "data"
    root.write_bytes(b"not a folder")
    before = snapshot(tmp_path)
    cli_error(capsys, _args("livec", root, server), DownloadError, f"{root} is a file, not a folder")
    cli_error(capsys, _args("livec", root / "sub", server), DownloadError, f"{root} is a file, not a folder")
    assert snapshot(tmp_path) == before
    assert server.requests == []  # refused before any download


def test_root_that_cannot_be_created_is_one_line(tmp_path, capsys, server, monkeypatch):
    # As root, chmod cannot make a folder read-only: refuse its creation as a read-only disk would.
    root = tmp_path / "ro" / "data"
    real_mkdir = Path.mkdir

    def mkdir(self, *args, **kwargs):
        if Path(self) == root or root.is_relative_to(self) and self != tmp_path:
            raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), str(self))
        return real_mkdir(self, *args, **kwargs)

    monkeypatch.setattr(Path, "mkdir", mkdir)
    before = snapshot(tmp_path)
    cli_error(capsys, _args("livec", root, server), OutputError, "cannot create the folder",
              "Permission denied", "make the folder writable")
    assert snapshot(tmp_path) == before


def test_root_with_a_nul_byte_is_one_line(tmp_path, capsys, server):
    cli_error(capsys, _args("livec", Path(f"{tmp_path}/da\x00ta"), server), DownloadError, "NUL byte")


# ----------------------------------------------------------------- hostile servers
class _Redirecting(_Handler):
    """Redirects /m/... to itself: a loop."""

    def do_GET(self):
        self.server.requests.append((self.path, self.headers.get("Range")))
        self.send_response(302)
        self.send_header("Location", self.path)
        self.send_header("Content-Length", "0")
        self.end_headers()


def test_a_redirect_loop_is_one_line(server, tmp_path, capsys):
    server.RequestHandlerClass = _Redirecting
    root = tmp_path / "data"
    cli_error(capsys, _args("livec", root, server), DownloadError, "redirects in a loop", "--base-url")
    assert not (root / "archives").exists() or not any((root / "archives").iterdir())


@pytest.mark.parametrize("content_type", ["application/zip", "application/octet-stream"])
def test_an_error_page_served_with_status_200_is_one_line(server, tmp_path, capsys, content_type):
    server.content_type = content_type
    server.files["/m/ChallengeDB_release.zip"] = b"\n  <!DOCTYPE html><html><body>Please log in</body></html>"
    root = tmp_path / "data"
    cli_error(capsys, _args("livec", root, server), DownloadError, "sent a web page instead of "
              "ChallengeDB_release.zip", "download it by hand", "official page")
    assert not any((root / "archives").iterdir())  # not even a .part file


def test_bytes_that_are_no_zip_are_refused_before_writing(server, tmp_path, capsys):
    server.files["/m/ChallengeDB_release.zip"] = b"\x00\x01 this is no archive"
    root = tmp_path / "data"
    cli_error(capsys, _args("livec", root, server), DownloadError, "not a zip file")
    assert not any((root / "archives").iterdir())


# ----------------------------------------------------------------- issue 26, class 5: caches and servers
def _livec_zip() -> bytes:
    return _zip(lambda zf: zf.writestr("ChallengeDB_release/a.txt", b"alpha" * 1000))


def test_a_stale_checksum_sidecar_is_not_trusted_over_the_archive(server, tmp_path, capsys):
    """The archive was replaced after its sidecar was written: verified by its own bytes, not refused."""
    good = _livec_zip()
    server.files["/m/ChallengeDB_release.zip"] = good
    root = tmp_path / "data"
    archive = root / "archives" / "ChallengeDB_release.zip"
    archive.parent.mkdir(parents=True)
    archive.write_bytes(good)
    os.utime(archive, ns=(time.time_ns() - 10**10,) * 2)  # older than the sidecar below
    sidecar = archive.with_name(archive.name + ".sha256")
    sidecar.write_text(f"{'0' * 64}  ChallengeDB_release.zip\n# size={len(good)} mtime_ns=1\n")
    pinned = hashlib.sha256(good).hexdigest()
    before = snapshot(tmp_path, skip=root)
    assert main([*_args("livec", root, server), "--sha256", pinned]) == 0, capsys.readouterr().err
    assert archive.read_bytes() == good and not archive.with_name(archive.name + ".bad").exists()
    assert (root / "ChallengeDB_release" / "a.txt").read_bytes() == b"alpha" * 1000
    assert server.requests == []  # the archive on disk was enough
    assert snapshot(tmp_path, skip=root) == before
    # The sidecar fetch writes records the archive's size and mtime: trusted while both hold.
    assert fetch_module.fetched_sha256(archive) == pinned
    fetch_module._write_sidecar(archive, "1" * 64)
    assert fetch_module.fetched_sha256(archive) == "1" * 64  # the cache, while it matches the file
    os.utime(archive, ns=(time.time_ns(),) * 2)
    assert fetch_module.fetched_sha256(archive) == pinned  # touched since: hashed again


class _Stalling(_Handler):
    """Accepts, promises the whole file, sends ``stall_after`` bytes (None: not even the headers), then
    goes quiet until the test ends."""

    def do_GET(self):
        server = self.server
        server.requests.append((self.path, self.headers.get("Range")))
        if server.stall_after is not None:
            body = server.files[self.path]
            self.send_response(200)
            self.send_header("Content-Type", server.content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: server.stall_after])
            self.wfile.flush()
        server.release.wait(60)
        self.close_connection = True


@pytest.mark.parametrize("stall_after, fragment", [
    (4096, "the server stopped sending data for 1 s (4096 bytes received); the partial file is kept: rerun to "
           "resume, or check the server"),
    (None, "the server stopped sending data for 1 s before the first byte; nothing was fetched: rerun, or check "
           "the server")])
def test_a_server_that_stalls_is_one_line(server, tmp_path, capsys, stall_after, fragment):
    server.RequestHandlerClass = _Stalling
    server.stall_after, server.release = stall_after, threading.Event()
    data = _livec_zip()
    server.files["/m/ChallengeDB_release.zip"] = data
    root = tmp_path / "data"
    before = snapshot(tmp_path, skip=root)
    try:
        cli_error(capsys, [*_args("livec", root, server), "--timeout", "1"], DownloadError,
                  "ChallengeDB_release.zip: ", fragment, "official page")
    finally:
        server.release.set()
    assert snapshot(tmp_path, skip=root) == before
    part = root / "archives" / "ChallengeDB_release.zip.part"
    if stall_after:
        assert part.read_bytes() == data[:stall_after]  # kept for a resume
    assert not (root / "archives" / "ChallengeDB_release.zip").exists()


@pytest.mark.parametrize("timeout", ["0", "-5", "nan", "inf"])
def test_a_timeout_that_never_or_always_ends_is_refused(server, tmp_path, capsys, timeout):
    cli_error(capsys, [*_args("livec", tmp_path / "data", server), "--timeout", timeout], ConfigError,
              "--timeout", "must be a positive number of seconds")
    assert server.requests == [] and not (tmp_path / "data").exists()


class _Overlong(_Handler):
    """Answers every request with 206 and a Content-Range announcing ``announced`` bytes in all, then
    sends the rest of the real file, which is longer."""

    def do_GET(self):
        server = self.server
        rng = self.headers.get("Range")
        server.requests.append((self.path, rng))
        body = server.files[self.path]
        start = int(rng.split("=")[1].rstrip("-")) if rng else 0
        self.send_response(206)
        self.send_header("Content-Range", f"bytes {start}-{server.announced - 1}/{server.announced}")
        self.send_header("Content-Type", server.content_type)
        self.send_header("Content-Length", str(len(body) - start))
        self.end_headers()
        self.wfile.write(body[start:])


@pytest.mark.parametrize("resumed", [False, True])
def test_a_body_longer_than_announced_is_refused_with_true_numbers(server, tmp_path, capsys, resumed):
    data = _livec_zip() + os.urandom(20_000)  # trailing bytes a zip reader would ignore
    server.RequestHandlerClass = _Overlong
    server.announced = len(data) - 9000
    server.files["/m/ChallengeDB_release.zip"] = data
    root = tmp_path / "data"
    archives = root / "archives"
    start = 1000 if resumed else 0
    if resumed:
        archives.mkdir(parents=True)
        (archives / "ChallengeDB_release.zip.part").write_bytes(data[:start])
    before = snapshot(tmp_path, skip=root)
    capsys.readouterr()
    assert main(_args("livec", root, server)) == 2
    err = capsys.readouterr().err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    announced = server.announced
    assert (f"the server sent more than the {announced - start} bytes it announced (bytes {start} to "
            f"{announced - 1} of a {announced}-byte file); moved the file to "
            f"{archives / 'ChallengeDB_release.zip.bad'}; rerun to fetch it again") in lines[0], lines[0]
    assert snapshot(tmp_path, skip=root) == before
    assert sorted(p.name for p in archives.iterdir()) == ["ChallengeDB_release.zip.bad"]  # no .part to resume
    assert len((archives / "ChallengeDB_release.zip.bad").read_bytes()) <= announced
