"""Fetch, resume, verify and unpack, offline against a local HTTP server."""
from __future__ import annotations

import hashlib
import io
import random
import re
import socket
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from iqalib.data.download import download_dataset
from iqalib.data.fetch import fetch
from iqalib.data.sources import SOURCES, list_downloadable
from iqalib.data.unpack import DamagedArchiveError, unpack
from iqalib.errors import ConfigError, DownloadError

# Seconds; bounds every request and every server read. No test waits for it to expire (a cut
# download ends with the connection), so it is generous: a loaded machine may leave the server
# thread unscheduled for seconds.
TIMEOUT = 120


class _Handler(BaseHTTPRequestHandler):
    timeout = TIMEOUT

    def log_message(self, *args):  # keep pytest output clean
        pass

    def do_GET(self):
        server = self.server
        rng = self.headers.get("Range")
        server.requests.append((self.path, rng))
        body = server.files.get(self.path)
        if body is None:
            self.send_error(404)
            return
        start = 0
        if rng and server.honour_range:
            start = int(re.fullmatch(r"bytes=(\d+)-", rng).group(1))
            if start >= len(body):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
        else:
            self.send_response(200)
        payload = body[start:]
        self.send_header("Content-Type", server.content_type)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if server.cut_after is not None:
            # Promise the full length, send part of it, hang up: a broken download.
            payload, server.cut_after = payload[: server.cut_after], None
            self.close_connection = True
        self.wfile.write(payload)


class FileServer(ThreadingHTTPServer):
    """Serves ``files`` (path -> bytes) on 127.0.0.1 and logs each request's Range."""

    daemon_threads = True

    def __init__(self):
        super().__init__(("127.0.0.1", 0), _Handler)
        self.files: dict[str, bytes] = {}
        self.requests: list[tuple[str, str | None]] = []
        self.honour_range = True
        self.cut_after: int | None = None  # one-shot
        self.content_type = "application/octet-stream"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_port}"


@pytest.fixture(autouse=True)
def _no_proxy(monkeypatch):
    # A proxy set in the environment must not capture requests to 127.0.0.1.
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "*")
    monkeypatch.setenv("NO_PROXY", "*")


@pytest.fixture
def server():
    srv = FileServer()
    thread = threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield srv
    srv.shutdown()
    srv.server_close()
    thread.join(timeout=TIMEOUT)


def _payload(n: int = 200_000, seed: int = 0) -> bytes:
    return random.Random(seed).randbytes(n)


def _zip(members: dict[str, bytes]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_STORED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buffer.getvalue()


def _tar_gz(members: dict[str, bytes], links: dict[str, str] | None = None) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tf:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tf.addfile(info, io.BytesIO(data))
        for name, target in (links or {}).items():
            info = tarfile.TarInfo(name)
            info.type = tarfile.SYMTYPE
            info.linkname = target
            tf.addfile(info)
    return buffer.getvalue()


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def _fetch(server, path: str, dest: Path, **kwargs) -> Path:
    return fetch(f"{server.url}{path}", dest, progress=False, chunk=8192, timeout=TIMEOUT, **kwargs)


def _download(server, name: str, root: Path, **kwargs) -> Path:
    """download_dataset from the server's /m/ folder as a mirror."""
    return download_dataset(
        name, root, base_url=f"{server.url}/m", progress=False, timeout=TIMEOUT, **kwargs
    )


LIVEC_FILES = {
    "ChallengeDB_release/Images/100.bmp": _payload(3000, seed=1),
    "ChallengeDB_release/Images/1000.JPG": _payload(2000, seed=2),
    "ChallengeDB_release/Data/AllMOS_release.mat": _payload(500, seed=3),
    "ChallengeDB_release/README.txt": b"notice\n",
}


# -- fetch ------------------------------------------------------------------


def test_fetch_full_download_checks_sha256_and_writes_sidecar(server, tmp_path):
    data = _payload()
    server.files["/a.bin"] = data
    dest = _fetch(server, "/a.bin", tmp_path / "a.bin", sha256=_sha(data), size=len(data))
    assert dest.read_bytes() == data
    info = dest.stat()  # the file the digest is of, so that a file replaced since is hashed again
    assert (tmp_path / "a.bin.sha256").read_text() == (f"{_sha(data)}  a.bin\n"
                                                       f"# size={info.st_size} mtime_ns={info.st_mtime_ns}\n")
    assert not (tmp_path / "a.bin.part").exists()
    assert server.requests == [("/a.bin", None)]


def test_fetch_resumes_a_broken_download_with_a_range_request(server, tmp_path):
    data = _payload()
    server.files["/a.bin"] = data
    server.cut_after = 70_000
    with pytest.raises(DownloadError, match=r"rerun to resume \(70000 bytes are kept\)") as info:
        _fetch(server, "/a.bin", tmp_path / "a.bin")
    assert "/a.bin" in str(info.value) and "\n" not in str(info.value)
    assert (tmp_path / "a.bin.part").stat().st_size == 70_000
    assert not (tmp_path / "a.bin").exists()

    dest = _fetch(server, "/a.bin", tmp_path / "a.bin")
    assert dest.read_bytes() == data
    assert server.requests[-1] == ("/a.bin", "bytes=70000-")
    # The digest covers the bytes fetched before the break, too.
    assert (tmp_path / "a.bin.sha256").read_text().split()[0] == _sha(data)


def test_fetch_restarts_from_zero_when_the_server_ignores_range(server, tmp_path):
    data = _payload()
    server.files["/a.bin"] = data
    server.honour_range = False
    # A part file whose bytes differ from the original: appending to it would show.
    (tmp_path / "a.bin.part").write_bytes(b"x" * 50_000)
    dest = _fetch(server, "/a.bin", tmp_path / "a.bin", sha256=_sha(data))
    assert dest.read_bytes() == data
    assert server.requests == [("/a.bin", "bytes=50000-")]


def test_fetch_takes_a_complete_part_file_when_the_server_answers_416(server, tmp_path):
    data = _payload()
    server.files["/a.bin"] = data
    (tmp_path / "a.bin.part").write_bytes(data)
    dest = _fetch(server, "/a.bin", tmp_path / "a.bin", sha256=_sha(data))
    assert dest.read_bytes() == data
    assert server.requests == [("/a.bin", f"bytes={len(data)}-")]


def test_fetch_moves_a_file_with_the_wrong_sha256_aside(server, tmp_path):
    data = _payload()
    server.files["/a.bin"] = data
    with pytest.raises(DownloadError, match="does not match"):
        _fetch(server, "/a.bin", tmp_path / "a.bin", sha256="0" * 64)
    assert not (tmp_path / "a.bin").exists()
    assert not (tmp_path / "a.bin.part").exists()
    assert (tmp_path / "a.bin.bad").read_bytes() == data
    # A rerun fetches afresh instead of resuming the rejected bytes.
    _fetch(server, "/a.bin", tmp_path / "a.bin", sha256=_sha(data))
    assert server.requests[-1] == ("/a.bin", None)


def test_fetch_refuses_a_size_other_than_expected(server, tmp_path):
    server.files["/a.bin"] = _payload()
    with pytest.raises(DownloadError, match="200000 bytes but 123 are expected"):
        _fetch(server, "/a.bin", tmp_path / "a.bin", size=123)
    assert list(tmp_path.iterdir()) == []


def test_fetch_refuses_a_web_page_in_place_of_an_archive(server, tmp_path):
    server.files["/a.zip"] = b"<html>log in first</html>"
    server.content_type = "text/html; charset=utf-8"
    with pytest.raises(DownloadError, match="web page"):
        _fetch(server, "/a.zip", tmp_path / "a.zip")
    assert not (tmp_path / "a.zip").exists()


def test_fetch_reports_http_errors_with_the_url(server, tmp_path):
    with pytest.raises(DownloadError, match=r"/missing\.zip: the server answered HTTP 404"):
        _fetch(server, "/missing.zip", tmp_path / "missing.zip")


def test_fetch_reports_an_unreachable_server(tmp_path):
    # A port bound but not listening refuses connections, and holding it bound keeps any other
    # process from taking it meanwhile (a port freed and reused would make this test flaky).
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
        url = f"http://127.0.0.1:{port}/a.zip"
        with pytest.raises(DownloadError, match="nothing was fetched; check the network connection and rerun") as info:
            fetch(url, tmp_path / "a.zip", progress=False, timeout=TIMEOUT)
    assert url in str(info.value) and "resume" not in str(info.value)  # nothing on disk to resume


# -- unpack -----------------------------------------------------------------


def test_unpack_zip_then_skip_the_same_archive(tmp_path):
    archive = tmp_path / "set.zip"
    archive.write_bytes(_zip(LIVEC_FILES))
    dest = tmp_path / "out"
    files = unpack(archive, dest)
    assert sorted(files) == sorted(dest / name for name in LIVEC_FILES)
    for name, data in LIVEC_FILES.items():
        assert (dest / name).read_bytes() == data
    # Same sha256 -> skipped: a file edited since is left alone.
    (dest / "ChallengeDB_release/README.txt").write_bytes(b"edited")
    assert sorted(unpack(archive, dest)) == sorted(files)
    assert (dest / "ChallengeDB_release/README.txt").read_bytes() == b"edited"
    assert not [p for p in dest.iterdir() if "unpacking" in p.name]  # staging removed


def test_unpack_tar_gz(tmp_path):
    members = {"set/a.txt": b"alpha", "set/sub/b.txt": b"beta"}
    archive = tmp_path / "set.tar.gz"
    archive.write_bytes(_tar_gz(members, links={"set/c.txt": "sub/b.txt"}))
    files = unpack(archive, tmp_path / "out")
    assert sorted(p.relative_to(tmp_path / "out").as_posix() for p in files) == [
        "set/a.txt", "set/c.txt", "set/sub/b.txt"
    ]
    assert (tmp_path / "out/set/c.txt").read_bytes() == b"beta"  # a link inside is fine


@pytest.mark.parametrize("name", ["../evil", "a/../../evil", "/tmp/evil"])
def test_unpack_refuses_zip_members_that_escape(tmp_path, name):
    archive = tmp_path / "evil.zip"
    archive.write_bytes(_zip({"ok.txt": b"fine", name: b"gotcha"}))
    dest = tmp_path / "box" / "out"
    with pytest.raises(DownloadError, match="refused member"):
        unpack(archive, dest)
    assert not (tmp_path / "box" / "evil").exists() and not (tmp_path / "evil").exists()
    assert list(dest.iterdir()) == []  # not even the harmless member


@pytest.mark.parametrize("target", ["../../outside", "/etc/passwd"])
def test_unpack_refuses_tar_links_that_escape(tmp_path, target):
    archive = tmp_path / "evil.tar.gz"
    archive.write_bytes(_tar_gz({"set/a.txt": b"alpha"}, links={"set/link": target}))
    dest = tmp_path / "out"
    with pytest.raises(DownloadError, match="refused link"):
        unpack(archive, dest)
    assert list(dest.iterdir()) == []


def test_unpack_detects_a_corrupt_zip(tmp_path):
    payload = _payload(50_000)
    raw = bytearray(_zip({"set/a.bin": payload}))
    at = raw.find(payload) + 1000  # inside the stored member's data
    raw[at : at + 8] = bytes(b ^ 0xFF for b in raw[at : at + 8])
    archive = tmp_path / "set.zip"
    archive.write_bytes(bytes(raw))
    dest = tmp_path / "out"
    with pytest.raises(DamagedArchiveError, match="damaged"):
        unpack(archive, dest)
    assert list(dest.iterdir()) == []


# -- data sets --------------------------------------------------------------


def test_list_downloadable_describes_every_source_in_one_line():
    listing = list_downloadable()
    assert set(listing) == set(SOURCES) >= {"livec", "koniq10k", "kadid10k", "spaq"}
    assert all(text and "\n" not in text for text in listing.values())


def test_unknown_dataset_is_a_config_error_listing_the_names(tmp_path):
    with pytest.raises(ConfigError, match="unknown data set 'koniq'") as info:
        download_dataset("koniq", tmp_path, progress=False)
    assert all(name in str(info.value) for name in SOURCES)


def test_spaq_explains_the_manual_download(tmp_path):
    with pytest.raises(DownloadError, match=r"github\.com/h4nwei/SPAQ") as info:
        download_dataset("spaq", tmp_path, progress=False)
    message = str(info.value)
    assert "\n" not in message and str(tmp_path / "SPAQ" / "TestImage") in message
    assert list(tmp_path.iterdir()) == []


def test_download_livec_from_a_mirror(server, tmp_path):
    server.files["/mirror/ChallengeDB_release.zip"] = _zip(LIVEC_FILES)
    folder = download_dataset(
        "livec", tmp_path, base_url=f"{server.url}/mirror/", progress=False, timeout=TIMEOUT
    )
    assert folder == tmp_path / "ChallengeDB_release"
    for name, data in LIVEC_FILES.items():
        assert (tmp_path / name).read_bytes() == data
    assert server.requests == [("/mirror/ChallengeDB_release.zip", None)]
    # A rerun neither fetches nor unpacks again.
    again = download_dataset("livec", tmp_path, base_url=f"{server.url}/mirror", progress=False)
    assert again == folder
    assert len(server.requests) == 1


def test_download_with_a_wrong_sha256_unpacks_nothing(server, tmp_path):
    server.files["/m/ChallengeDB_release.zip"] = _zip(LIVEC_FILES)
    with pytest.raises(DownloadError, match="does not match"):
        _download(server, "livec", tmp_path, sha256="ab" * 32)
    assert not (tmp_path / "ChallengeDB_release").exists()
    assert not (tmp_path / "archives" / "ChallengeDB_release.zip").exists()


def test_download_of_a_corrupt_archive_unpacks_nothing_and_refetches_on_rerun(server, tmp_path):
    good = _zip(LIVEC_FILES)
    raw = bytearray(good)
    at = raw.find(LIVEC_FILES["ChallengeDB_release/Images/100.bmp"]) + 100
    raw[at] ^= 0xFF
    server.files["/m/ChallengeDB_release.zip"] = bytes(raw)
    with pytest.raises(DownloadError, match="damaged"):
        _download(server, "livec", tmp_path)
    assert not (tmp_path / "ChallengeDB_release").exists()
    assert not (tmp_path / "archives" / "ChallengeDB_release.zip").exists()
    assert (tmp_path / "archives" / "ChallengeDB_release.zip.bad").exists()

    server.files["/m/ChallengeDB_release.zip"] = good
    folder = _download(server, "livec", tmp_path)
    assert (folder / "README.txt").read_bytes() == b"notice\n"


def test_download_failure_names_the_official_page(server, tmp_path):
    with pytest.raises(DownloadError, match="HTTP 404") as info:
        _download(server, "kadid10k", tmp_path)
    message = str(info.value)
    assert "/m/kadid10k.zip" in message and SOURCES["kadid10k"].page in message


def test_download_koniq10k_layout_and_archive_selection(server, tmp_path):
    csv = b"image_name,MOS,SD,set\n1.jpg,50.0,0.5,training\n"
    server.files.update({
        "/m/koniq10k_1024x768.zip": _zip({"1024x768/1.jpg": b"jpeg"}),
        "/m/koniq10k_scores_and_distributions.zip": _zip(
            {"koniq10k_scores_and_distributions.csv": csv}
        ),
        "/m/koniq10k_distributions_sets.csv": csv,
    })
    folder = _download(server, "koniq10k", tmp_path)
    assert folder == tmp_path / "koniq10k"
    assert (folder / "1024x768/1.jpg").read_bytes() == b"jpeg"
    assert (folder / "koniq10k_scores_and_distributions.csv").read_bytes() == csv
    assert (folder / "koniq10k_distributions_sets.csv").read_bytes() == csv
    # The 512x384 archive is opt-in.
    assert "/m/koniq10k_512x384.zip" not in {path for path, _ in server.requests}

    with pytest.raises(ConfigError, match="unknown archive"):
        download_dataset("koniq10k", tmp_path, which=["images_2048"], progress=False)


def test_pinned_sha256_by_archive_key_is_checked(server, tmp_path):
    data = _zip({"1024x768/1.jpg": b"jpeg"})
    server.files["/m/koniq10k_1024x768.zip"] = data
    digest = _sha(data).upper()  # as pasted from another tool
    folder = _download(
        server, "koniq10k", tmp_path, which=["images_1024x768"], sha256={"images_1024x768": digest}
    )
    assert (folder / "1024x768/1.jpg").read_bytes() == b"jpeg"
    with pytest.raises(ConfigError, match="not among the selected archives"):
        _download(server, "koniq10k", tmp_path, which=["split"], sha256={"scores": digest})


def test_one_sha256_for_several_archives_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="one sha256 given for 3 archives"):
        download_dataset("koniq10k", tmp_path, sha256="ab" * 32, progress=False)
