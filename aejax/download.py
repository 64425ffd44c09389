"""Registered MNIST-family downloads: TFDS's checksum table, a reachability check, the fetch.

TFDS's table is read from its installed text files without importing TFDS (slow, and absent on
some machines); a vendored copy stands in without it. Downloads go through TFDS's
`DownloadManager` (no TensorFlow needed) or, without TFDS, plain urllib; both are verified.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import importlib.util
import logging
import os
import re
import socket
import threading
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path

from aejax import idx
from aejax.idx import DataError

log = logging.getLogger(__name__)

MIRROR_ENV = "AEJAX_MIRROR_{}"  # e.g. AEJAX_MIRROR_MNIST=http://host/dir: base URL of the .gz files
CONNECT_TIMEOUT_S = 3.0

# TFDS's registered downloads, copied from tensorflow_datasets/url_checksums/<name>.txt for
# machines without TFDS: (base URL, ((filename, size, sha256), ...)). A test keeps them equal.
VENDORED = {
    "mnist": ("https://storage.googleapis.com/cvdf-datasets/mnist/", (
        ("t10k-images-idx3-ubyte.gz", 1648877,
         "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        ("t10k-labels-idx1-ubyte.gz", 4542,
         "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
        ("train-images-idx3-ubyte.gz", 9912422,
         "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        ("train-labels-idx1-ubyte.gz", 28881,
         "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"))),
    "fashion_mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", (
        ("t10k-images-idx3-ubyte.gz", 4422102,
         "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
        ("t10k-labels-idx1-ubyte.gz", 5148,
         "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
        ("train-images-idx3-ubyte.gz", 26421880,
         "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
        ("train-labels-idx1-ubyte.gz", 29515,
         "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"))),
    "kmnist": ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/", (
        ("t10k-images-idx3-ubyte.gz", 3041136,
         "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5"),
        ("t10k-labels-idx1-ubyte.gz", 5120,
         "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c"),
        ("train-images-idx3-ubyte.gz", 18165135,
         "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4"),
        ("train-labels-idx1-ubyte.gz", 29497,
         "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17"))),
}

# SHA-256 of the registered MNIST files decompressed (gunzip of the .gz above), so that an
# uncompressed copy is recognised and verified too; the other datasets' are not known here.
UNCOMPRESSED = {"mnist": {
    "t10k-images-idx3-ubyte": "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7",
    "t10k-labels-idx1-ubyte": "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2",
    "train-images-idx3-ubyte": "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db",
    "train-labels-idx1-ubyte": "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"}}


@dataclasses.dataclass(frozen=True)
class FileInfo:
    """One registered download: its URL, size in bytes, SHA-256 and file name."""

    url: str
    size: int
    sha256: str
    filename: str


def vendored(name: str) -> dict[str, FileInfo]:
    """The vendored copy of TFDS's table, keyed by IDX base name."""
    base, rows = VENDORED[name]
    return {f.removesuffix(".gz"): FileInfo(base + f, size, sha, f) for f, size, sha in rows}


def registered(name: str) -> dict[str, FileInfo]:
    """TFDS's registered files for `name` (read without importing TFDS), keyed by IDX base name."""
    spec = importlib.util.find_spec("tensorflow_datasets")
    table = None
    if spec is not None and spec.submodule_search_locations:
        table = Path(list(spec.submodule_search_locations)[0], "url_checksums", f"{name}.txt")
    if table is None or not table.is_file():
        return vendored(name)
    infos = {}
    for line in table.read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            url, size, sha, *rest = line.strip().split("\t")
            filename = rest[0] if rest else url.rsplit("/", 1)[-1]
            infos[filename.removesuffix(".gz")] = FileInfo(url, int(size), sha, filename)
    return infos


def download_files(name: str, root: Path) -> Path | None:
    """Downloads the four verified .gz files into `<root>/<name>/`; None if the download
    failed, DataError if a downloaded file is not the registered one (its SHA-256)."""
    infos = registered(name)
    mirror = mirror_url(name)
    if mirror:
        infos = {b: dataclasses.replace(i, url=f"{mirror.rstrip('/')}/{i.filename}")
                 for b, i in infos.items()}
    url = infos[idx.FILES[0]].url
    if not reachable(url):
        log.warning("cannot reach %s (offline?); not downloading %s", url, name)
        return None
    with one_at_a_time(root / "downloads", name):
        if len(idx.find_files(root / name)) == len(idx.FILES):  # the process before us got them
            return root / name
        return _download(name, infos, root)


def mirror_url(name: str) -> str | None:
    """The base URL that ``AEJAX_MIRROR_<NAME>`` gives, if set; ValueError if it is no
    http(s) URL with a host (it would only be found unreachable, "offline?")."""
    var = MIRROR_ENV.format(name.upper())
    value = os.environ.get(var)
    if not value:
        return None
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https"):
        why = "not http or https"
    elif not parts.hostname:
        why = "no host"
    else:
        try:
            _ = parts.port  # urllib checks the port when it is read
            return value
        except ValueError as err:  # "Port could not be cast ...", "Port out of range 0-65535"
            why = f"port: {err}"
    raise ValueError(f"{var}={value!r} is not a base URL such as http://host/dir ({why})")


def _download(name: str, infos: dict[str, FileInfo], root: Path) -> Path | None:
    """`download_files`' download, check and move, by one process at a time."""
    fetch = fetch_tfds if importlib.util.find_spec("tensorflow_datasets") else fetch_urllib
    try:
        paths = fetch(name, infos, root)
    except DataError:
        raise
    except Exception as e:  # requests, urllib and TFDS raise errors of their own; all mean "failed"
        where = os.path.commonprefix([i.url for i in infos.values()]).rpartition("/")[0]
        log.warning("downloading %s from %s/ failed: %s", name, where, e)  # e names the file
        return None
    folder = root / name
    for base, info in infos.items():  # all checked before any is moved: no half-filled folder
        if (actual := sha256_file(paths[base])) != info.sha256:
            raise DataError(mismatch_message(info.url, info.sha256, actual, folder))
    folder.mkdir(parents=True, exist_ok=True)
    for base, info in infos.items():
        os.replace(paths[base], folder / info.filename)
        Path(f"{paths[base]}.INFO").unlink(missing_ok=True)  # TFDS's note on a file now moved
    log.info("downloaded %s into %s", name, folder)
    return folder


@contextlib.contextmanager
def one_at_a_time(folder: Path, name: str) -> Iterator[None]:
    """Holds an exclusive lock on `folder` (made if missing), waiting for a process that holds
    it: runs started together download once, not over each other's files. No lock without
    `fcntl` (Windows) or where the folder cannot be made or locked (the download then fails or
    goes on as before)."""
    try:
        import fcntl
        folder.mkdir(parents=True, exist_ok=True)
        fd = os.open(folder, os.O_RDONLY)
    except (ImportError, OSError):
        fd = None
    if fd is None:  # yielded outside the except: the download's errors are not chained to it
        yield
        return
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            log.info("another process is downloading into %s; waiting for it (%s)", folder, name)
            fcntl.flock(fd, fcntl.LOCK_EX)
        except OSError:  # e.g. ENOLCK on some network mounts: no lock to be had
            pass
        yield
    finally:
        os.close(fd)


def reachable(url: str, timeout: float = CONNECT_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the URL's host (or its proxy) opens within `timeout` seconds,
    the name lookup included: it runs in a thread, since a lookup has no timeout of its own (an
    unreachable name server holds it for resolv.conf's 5 s times 2 attempts)."""
    parts = urllib.parse.urlsplit(url)
    if not parts.hostname:  # "http:/host/dir": nowhere to connect (None would be this machine)
        return False
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname):
        parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    opened: list[bool] = []

    def connect() -> None:
        try:
            with socket.create_connection((parts.hostname, port), timeout=timeout):
                opened.append(True)
        except OSError:
            pass

    thread = threading.Thread(target=connect, daemon=True, name="aejax-reachable")
    thread.start()
    thread.join(timeout)  # back as soon as it connects or fails, or when the time is up
    return bool(opened)


def fetch_tfds(name: str, infos: dict[str, FileInfo], root: Path) -> dict[str, Path]:
    """Downloads with TFDS's DownloadManager, which checks the files against `infos`."""
    import tensorflow_datasets as tfds  # slow import, and only needed to download

    url_infos = {i.url: tfds.download.checksums.UrlInfo(size=i.size, checksum=i.sha256,
                                                        filename=i.filename)
                 for i in infos.values()}
    manager = tfds.download.DownloadManager(download_dir=root / "downloads", dataset_name=name,
                                            url_infos=url_infos, force_checksums_validation=True)
    try:
        paths = manager.download({base: info.url for base, info in infos.items()})
    except tfds.core.download.download_manager.NonMatchingChecksumError as e:
        raise DataError(checksum_message(str(e), root / name)) from None
    return {base: Path(path) for base, path in paths.items()}


def mismatch_message(url: str, expected: str, actual: str, folder: Path) -> str:
    """One line: which download has the wrong SHA-256, both sums, and what to do."""
    return (f"downloaded {url} has SHA-256 {actual}, expected {expected}: the server sent another "
            f"file (a changed mirror, a proxy's error page or a cut download); run again to "
            f"retry, or download the four files yourself and put them in {folder}")


def checksum_message(tfds_error: str, folder: Path) -> str:
    """`mismatch_message` for TFDS's multi-line NonMatchingChecksumError."""
    url = re.search(r"Artifact (\S+?),", tfds_error)
    sums = re.findall(r"checksum='([0-9a-f]+)'", tfds_error)
    if url and len(sums) == 2:
        return mismatch_message(url.group(1), sums[0], sums[1], folder)
    detail = " ".join(tfds_error.split())  # TFDS changed its wording: keep it, on one line
    return f"a download has the wrong checksum ({detail}); put the right files in {folder}"


def fetch_urllib(name: str, infos: dict[str, FileInfo], root: Path) -> dict[str, Path]:
    """Plain download for machines without TFDS; `download_files` verifies the checksums."""
    folder = root / "downloads" / name
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for base, info in infos.items():
        paths[base] = folder / info.filename
        with urllib.request.urlopen(info.url, timeout=60) as response:
            paths[base].write_bytes(response.read())
    return paths


def sha256_file(path: Path) -> str:
    """Hex SHA-256 of a file; DataError when it cannot be read (say, no read permission)."""
    digest = hashlib.sha256()  # not hashlib.file_digest: Python 3.10 lacks it
    try:
        with open(path, "rb") as f:
            while chunk := f.read(1 << 20):
                digest.update(chunk)
    except OSError as e:
        raise idx.unreadable(path, e) from None
    return digest.hexdigest()
