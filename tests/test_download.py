"""Tests for aejax.download: checksum tables, reachable(), fetches from a local http.server."""

import errno
import functools
import hashlib
import http.server
import importlib.util
import logging
import os
import re
import shutil
import socket
import sys
import threading
import time
from pathlib import Path

import pytest

from aejax import data, download, experiment, idx
from aejax.data import DataError
from tests.conftest import write_idx_dataset
from tests.test_data import _real_find_spec, _real_reachable, copy_with_changed_label, hide_module

HAS_TFDS = importlib.util.find_spec("tensorflow_datasets") is not None


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every test is offline unless it says otherwise; records reachability checks."""
    calls = []
    monkeypatch.setattr(download, "reachable", lambda url, *a, **k: calls.append(url) or False)
    return calls


@pytest.fixture
def serve(monkeypatch):
    """Serves a folder over HTTP on 127.0.0.1; returns (base URL, list of requested paths)."""
    servers = []
    monkeypatch.setattr(download, "reachable", _real_reachable)
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")

    def start(folder: Path) -> tuple[str, list[str]]:
        requested = []

        class Handler(http.server.SimpleHTTPRequestHandler):
            def log_message(self, *args):
                requested.append(self.path)

        handler = functools.partial(Handler, directory=str(folder))
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/", requested

    yield start
    for server in servers:
        server.shutdown()
        server.server_close()


@pytest.mark.skipif(not HAS_TFDS, reason="tensorflow_datasets is not installed")
def test_vendored_table_equals_tfds():
    folder = Path(_real_find_spec("tensorflow_datasets").submodule_search_locations[0])
    for name in data.DATASETS:
        tfds_lines = (folder / "url_checksums" / f"{name}.txt").read_text().split("\n")
        vendored = ["\t".join([i.url, str(i.size), i.sha256, i.filename])
                    for i in data.vendored(name).values()]
        assert sorted(line for line in tfds_lines if line.strip()) == sorted(vendored)
        assert data.registered(name) == data.vendored(name)


def test_registered_without_tfds(monkeypatch):
    hide_module(monkeypatch, "tensorflow_datasets")
    infos = data.registered("mnist")
    assert set(infos) == set(idx.FILES)
    assert infos["train-labels-idx1-ubyte"].sha256.startswith("3552534a")


def test_an_unreadable_file_is_a_one_line_data_error(small_idx_dir, tmp_path, monkeypatch):
    target = small_idx_dir / "t10k-labels-idx1-ubyte.gz"

    def no_permission(path, *args, **kwargs):  # chmod 000 cannot show it to root
        if Path(path) == target:
            raise PermissionError(13, "Permission denied", str(path))
        return open(path, *args, **kwargs)

    monkeypatch.setattr(download, "open", no_permission, raising=False)
    with pytest.raises(DataError, match=f"cannot read {target} \\(Permission denied\\): check "
                                        "that it is a readable file"):
        data.load("mnist", data_dir=small_idx_dir, data_root=tmp_path)


def test_sha256_file_needs_no_file_digest(tmp_path, monkeypatch):
    # hashlib.file_digest is new in Python 3.11; pyproject.toml allows 3.10
    path = tmp_path / "x.bin"
    path.write_bytes(bytes(range(256)) * 9000)  # several read chunks
    monkeypatch.delattr(hashlib, "file_digest", raising=False)
    assert download.sha256_file(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_name_lookup_that_hangs_counts_in_the_reachability_timeout(monkeypatch):
    release = threading.Event()  # a name server that never answers, until the test ends
    looked_up = []

    def hanging_lookup(host, *args, **kwargs):
        looked_up.append(host)
        release.wait(30)
        raise socket.gaierror("Temporary failure in name resolution")

    monkeypatch.setattr(socket, "getaddrinfo", hanging_lookup)
    start = time.perf_counter()
    try:
        assert _real_reachable("https://storage.googleapis.com/x", timeout=0.2) is False
        assert time.perf_counter() - start < 5.0  # not the lookup's 30 s
    finally:
        release.set()
    assert looked_up == ["storage.googleapis.com"]


def test_reachable_says_yes_and_no_at_once_for_a_local_port(monkeypatch):
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        start = time.perf_counter()
        assert _real_reachable(f"http://127.0.0.1:{port}/", timeout=10)
    assert not _real_reachable(f"http://127.0.0.1:{port}/", timeout=10)  # closed: refused
    assert time.perf_counter() - start < 5.0  # neither waits for the timeout


@pytest.fixture
def tried(monkeypatch):
    """The addresses that connections are tried to (each refused), with no proxy set."""
    addresses = []

    def refused(address, timeout=None, *args):
        addresses.append(address)
        raise ConnectionRefusedError("refused")

    monkeypatch.setattr(socket, "create_connection", refused)
    for scheme in ("http", "https", "all", "no"):
        monkeypatch.delenv(f"{scheme}_proxy", raising=False)
        monkeypatch.delenv(f"{scheme.upper()}_PROXY", raising=False)
    return addresses


def test_reachable_tries_the_schemes_port_or_the_proxy(monkeypatch, tried):
    assert not _real_reachable("https://example.org/x.gz", timeout=1)
    assert not _real_reachable("http://example.org/x.gz", timeout=1)
    monkeypatch.setenv("https_proxy", "proxy.example:3128")  # offline but for the proxy
    assert not _real_reachable("https://example.org/x.gz", timeout=1)
    assert tried == [("example.org", 443), ("example.org", 80), ("proxy.example", 3128)]


def test_a_url_without_a_host_is_unreachable_with_or_without_a_proxy(monkeypatch, tried):
    assert not _real_reachable("http:///x.gz", timeout=1)  # a mirror of "http:/host/dir"
    monkeypatch.setenv("http_proxy", "proxy.example:3128")
    monkeypatch.setenv("no_proxy", "localhost")  # urllib's proxy_bypass(None) raised
    assert not _real_reachable("http:/host/x.gz", timeout=1)
    assert tried == []  # not this machine's port 80, as (None, 80) would be


@pytest.mark.parametrize("mirror, why", [
    ("http://localhost:80x/dir", "port"), ("http://localhost:99999", "port"),
    ("http:/host/dir", "no host"), ("host/dir", "not http or https"),
    ("ftp://host/dir", "not http or https")])
def test_a_mirror_that_is_no_url_is_refused_naming_the_variable(tmp_path, monkeypatch, mirror,
                                                                why):
    monkeypatch.setenv("AEJAX_MIRROR_MNIST", mirror)
    monkeypatch.setattr(download, "reachable", lambda *a, **k: pytest.fail("not tried"))
    with pytest.raises(ValueError, match=rf"^AEJAX_MIRROR_MNIST='{re.escape(mirror)}' is not "
                                         rf"a base URL such as http://host/dir \({why}"):
        download.download_files("mnist", tmp_path)
    assert not list(tmp_path.iterdir())


@pytest.mark.skipif(not HAS_TFDS, reason="tensorflow_datasets is not installed")
def test_download_from_mirror(mnist_dir, tmp_path, monkeypatch, serve):
    url, requested = serve(mnist_dir)
    monkeypatch.setenv("AEJAX_MIRROR_MNIST", url)
    monkeypatch.setattr(download, "fetch_urllib", lambda *a: pytest.fail("not TFDS's download"))
    ds = data.load("mnist", data_root=tmp_path, fallback=False)
    assert (ds.name, ds.source, ds.is_sample) == ("mnist", str(tmp_path / "mnist"), False)
    assert experiment.data_info(ds)["folder"] == str((tmp_path / "mnist").resolve())
    assert ds.train_images.shape == (60000, 28, 28)
    assert sorted(requested) == sorted(f"/{b}.gz" for b in idx.FILES)
    for base, info in data.registered("mnist").items():
        path = tmp_path / "mnist" / info.filename
        assert hashlib.sha256(path.read_bytes()).hexdigest() == info.sha256
    data.load("mnist", data_root=tmp_path, fallback=False)
    assert len(requested) == 4  # the second load reads the local files
    assert not list(tmp_path.rglob("*.INFO"))  # TFDS's notes on the files moved are gone too


@pytest.mark.skipif(not HAS_TFDS, reason="tensorflow_datasets is not installed")
def test_download_with_wrong_checksum(mnist_dir, tmp_path, monkeypatch, serve):
    copy_with_changed_label(mnist_dir, tmp_path / "served")
    url, _ = serve(tmp_path / "served")
    monkeypatch.setenv("AEJAX_MIRROR_MNIST", url)
    info = data.registered("mnist")["train-labels-idx1-ubyte"]
    actual = hashlib.sha256((tmp_path / "served" / info.filename).read_bytes()).hexdigest()
    with pytest.raises(DataError, match=f"downloaded {url}{info.filename} has SHA-256 {actual}, "
                                        f"expected {info.sha256}: .*run again to retry"):
        data.load("mnist", data_root=tmp_path / "root")
    assert not (tmp_path / "root" / "mnist").exists()


def test_download_without_tfds(mnist_dir, tmp_path, monkeypatch, serve):
    hide_module(monkeypatch, "tensorflow_datasets")
    url, requested = serve(mnist_dir)
    monkeypatch.setenv("AEJAX_MIRROR_MNIST", url.rstrip("/"))  # http://host/dir, as documented
    ds = data.load("mnist", data_root=tmp_path, fallback=False)
    assert ds.name == "mnist" and ds.test_labels.shape == (10000,) and len(requested) == 4


@pytest.mark.parametrize("tfds", [pytest.param(True, marks=pytest.mark.skipif(
    not HAS_TFDS, reason="tensorflow_datasets is not installed")), False])
def test_a_failed_download_says_so_and_leaves_no_folder(tmp_path, monkeypatch, serve, caplog,
                                                        tfds):
    if not tfds:
        hide_module(monkeypatch, "tensorflow_datasets")
    (tmp_path / "empty").mkdir()
    url, requested = serve(tmp_path / "empty")  # every file: 404 Not Found
    monkeypatch.setenv("AEJAX_MIRROR_MNIST", url)
    with pytest.raises(DataError, match=f"^no mnist files under {tmp_path / 'root'} and it "
                                        r"could not be downloaded \(see the log\): put the four"):
        data.load("mnist", data_root=tmp_path / "root", fallback=False)
    assert f"downloading mnist from {url} failed" in caplog.text and "404" in caplog.text
    assert not (tmp_path / "root" / "mnist").exists()
    deadline = time.monotonic() + 30  # TFDS's threads fetch on after its first error: let them
    while tfds and len(set(requested)) < 4 and time.monotonic() < deadline:
        time.sleep(0.01)  # reach the server before it stops, or they retry and exit waits
    assert len(set(requested)) == (4 if tfds else 1)  # urllib: one at a time, stops at the first


def test_download_with_wrong_checksum_without_tfds(tmp_path, monkeypatch, serve):
    hide_module(monkeypatch, "tensorflow_datasets")
    served = write_idx_dataset(tmp_path / "served", 8, 4)  # valid IDX files, but not MNIST's
    url, _ = serve(served)
    monkeypatch.setenv("AEJAX_MIRROR_MNIST", url)
    info = next(iter(data.registered("mnist").values()))
    actual = hashlib.sha256((served / info.filename).read_bytes()).hexdigest()
    with pytest.raises(DataError) as err:
        data.load("mnist", data_root=tmp_path / "root")
    assert str(err.value) == (
        f"downloaded {url}{info.filename} has SHA-256 {actual}, expected {info.sha256}: the server "
        "sent another file (a changed mirror, a proxy's error page or a cut download); run again "
        f"to retry, or download the four files yourself and put them in {tmp_path / 'root/mnist'}")
    assert not (tmp_path / "root" / "mnist").exists()


def test_one_wrong_download_moves_none_of_the_four(mnist_dir, tmp_path, monkeypatch, serve):
    hide_module(monkeypatch, "tensorflow_datasets")  # our own check, not TFDS's
    copy_with_changed_label(mnist_dir, tmp_path / "served")  # the last of the four is wrong
    url, _ = serve(tmp_path / "served")
    monkeypatch.setenv("AEJAX_MIRROR_MNIST", url)
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz has SHA-256 "):
        data.load("mnist", data_root=tmp_path / "root")
    assert not (tmp_path / "root" / "mnist").exists()  # no half-filled folder a later run reads


def test_a_folder_holding_some_of_the_files_is_completed(mnist_dir, tmp_path, monkeypatch, serve,
                                                        caplog):
    hide_module(monkeypatch, "tensorflow_datasets")
    url, requested = serve(mnist_dir)
    monkeypatch.setenv("AEJAX_MIRROR_MNIST", url)
    (tmp_path / "mnist").mkdir()  # one of the four: not the files a run before us downloaded
    shutil.copy(mnist_dir / "train-labels-idx1-ubyte.gz", tmp_path / "mnist")
    ds = data.load("mnist", data_root=tmp_path, fallback=False)
    assert "holds only 1 of the 4 IDX files" in caplog.text
    assert ds.train_images.shape == (60000, 28, 28) and len(requested) == 4


def test_checksum_message_from_tfds_error():
    text = ("Artifact http://h/x.gz, downloaded to /d/x.gz, has wrong checksum:\n"
            f"* Expected: UrlInfo(size=3, checksum='{'a' * 64}', filename='x.gz')\n"
            f"* Got: UrlInfo(size=4, checksum='{'b' * 64}', filename='x.gz')\nTo debug, see: ...")
    assert download.checksum_message(text, Path("f")).startswith(
        f"downloaded http://h/x.gz has SHA-256 {'b' * 64}, expected {'a' * 64}: ")
    assert download.checksum_message("new\nwording", Path("f")) == (
        "a download has the wrong checksum (new wording); put the right files in f")
    one_sum = f"Artifact http://h/x.gz, bad:\nchecksum='{'a' * 64}'"
    assert download.checksum_message(one_sum, Path("f")).startswith(
        "a download has the wrong checksum (Artifact http://h/x.gz, bad: checksum=")


def test_runs_started_together_download_once(mnist_dir, tmp_path, monkeypatch, serve, caplog):
    url, requested = serve(mnist_dir)
    monkeypatch.setenv("AEJAX_MIRROR_MNIST", url)
    root, loaded = tmp_path / "root", []
    caplog.set_level(logging.INFO, logger="aejax.download")
    with download.one_at_a_time(root / "downloads", "mnist"):  # another run, downloading
        loader = threading.Thread(target=lambda: loaded.append(
            data.load("mnist", data_root=root, fallback=False)))
        loader.start()
        deadline = time.monotonic() + 10
        while "waiting for it" not in caplog.text and time.monotonic() < deadline:
            time.sleep(0.01)
        (root / "mnist").mkdir()  # ... which it then moves into place
        for base in idx.FILES:
            shutil.copy(mnist_dir / f"{base}.gz", root / "mnist")
    loader.join(60)
    assert "another process is downloading into" in caplog.text
    assert loaded[0].source == str(root / "mnist") and requested == []  # used, not fetched again


@pytest.mark.parametrize("why", ["no fcntl", "folder cannot be made", "no lock to be had"])
def test_without_a_lock_a_download_error_is_not_chained_to_why(tmp_path, monkeypatch, why):
    folder = tmp_path / "downloads"
    if why == "no fcntl":  # Windows
        monkeypatch.setitem(sys.modules, "fcntl", None)
    elif why == "folder cannot be made":
        folder.write_text("")  # a file in the way
    else:  # ENOLCK, as some network mounts answer
        fcntl = pytest.importorskip("fcntl")

        def no_lock(*args):
            raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

        monkeypatch.setattr(fcntl, "flock", no_lock)
    with download.one_at_a_time(folder, "mnist"):  # the download goes on, unlocked
        pass
    with pytest.raises(RuntimeError) as raised:
        with download.one_at_a_time(folder, "mnist"):
            raise RuntimeError("the download's own error")
    assert raised.value.__context__ is None  # a traceback starts at it, not at the lock
