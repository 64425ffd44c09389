"""Reading and validating IDX files (the MNIST file format), in pure NumPy.

An IDX file is a 4-byte magic number (two zero bytes, a dtype byte, the number of
dimensions), one big-endian uint32 per dimension, then the values in C order. MNIST,
Fashion-MNIST and KMNIST ship four of them, each optionally gzipped.
"""

from __future__ import annotations

import gzip
import math
import os
import stat
import zlib
from pathlib import Path

import numpy as np

IMAGES_MAGIC = 2051  # 0x00000803: unsigned bytes, 3 dimensions (N, H, W)
LABELS_MAGIC = 2049  # 0x00000801: unsigned bytes, 1 dimension (N,)
UBYTE = 0x08
NUM_CLASSES = 10
FILES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)
TEST_FILES = FILES[2:]  # all that evaluation reads
_GZIP_MAGIC = b"\x1f\x8b"
_IDX_MAGIC_START = b"\x00\x00"  # an IDX magic number's two zero bytes

Split = tuple[np.ndarray, np.ndarray]


class DataError(ValueError):
    """One-line, user-facing data problem (message says what + what to do)."""


def find_files(folder: str | os.PathLike) -> dict[str, Path]:
    """The IDX files present in `folder`, keyed by base name (`.gz` preferred; then the spelling
    with a dot, `train-images.idx3-ubyte`, as Kaggle's MNIST zip unpacks them)."""
    folder = Path(folder)
    found = {}
    for base in FILES:
        dotted = base.replace("-idx", ".idx")
        for name in (f"{base}.gz", base, f"{dotted}.gz", dotted):
            if is_file(folder / name):
                found[base] = folder / name
                break
    return found


def is_file(path: Path) -> bool:
    """Whether `path` is a file (links followed); DataError when its folder denies access."""
    mode = file_mode(path)
    return mode is not None and stat.S_ISREG(mode)


def file_mode(path: Path) -> int | None:
    """`path`'s st_mode (links followed), None when there is nothing there; DataError when a
    folder on the way denies access, which would otherwise read as a missing file (or, depending
    on Python, a bare PermissionError)."""
    try:
        return os.stat(path).st_mode
    except PermissionError as e:  # the first folder on the way that cannot be entered
        blocked = next((p for p in reversed(path.parents) if not os.access(p, os.X_OK)),
                       path.parent)
        raise DataError(f"cannot read the folder {blocked} ({e.strerror}): check its "
                        "permissions") from None
    except (OSError, ValueError):  # missing, a broken link, a name the OS refuses
        return None


def locate(folder: str | os.PathLike, *, test_only: bool = False) -> dict[str, Path]:
    """All four IDX files in `folder` (with `test_only`, the two test ones are enough; the
    training ones are returned too when present); DataError naming whatever is missing."""
    folder, wanted = Path(folder), TEST_FILES if test_only else FILES
    what = "the two test" if test_only else "the four"
    mode = file_mode(folder)
    if mode is not None and not stat.S_ISDIR(mode):
        raise DataError(f"data folder {folder} is a file, not a folder: name the folder that "
                        f"holds {what} MNIST-format IDX files")
    if mode is None:
        raise DataError(f"data folder {folder} does not exist: create it and put {what} "
                        f"MNIST-format IDX files ({', '.join(wanted)}, .gz or not) in it")
    found = find_files(folder)
    missing = [f"{base}[.gz]" for base in wanted if base not in found]
    if missing:
        below, hint = [] if found else subfolders_with_files(folder, wanted), ""
        held = "both test files" if test_only else "all four"
        if len(below) == 1:
            hint = f"; {below[0]} holds {held}: pass --data-dir {below[0]}"
        elif below:
            hint = f"; {', '.join(map(str, below))} hold {held} each: pass one as --data-dir"
        put = "the two test (or all four)" if test_only else "all four"
        raise DataError(f"{folder} is missing {', '.join(missing)}: put {put} "
                        f"MNIST-format IDX files (gzipped or not) in that folder{hint}")
    return found


def subfolders_with_files(folder: Path, wanted: tuple[str, ...] = FILES) -> list[Path]:
    """The folders just below ``folder`` that hold the ``wanted`` IDX files (a likely mix-up)."""
    try:
        below = sorted(p for p in folder.iterdir() if p.is_dir())
    except OSError:
        return []
    return [p for p in below if holds(p, wanted)]


def holds(folder: Path, wanted: tuple[str, ...]) -> bool:
    """Whether ``folder`` holds the ``wanted`` IDX files; False when it denies access."""
    try:
        return set(wanted) <= set(find_files(folder))
    except DataError:
        return False


def unreadable(path: str | os.PathLike, err: OSError) -> DataError:
    """The error for a file that exists but cannot be read."""
    return DataError(f"cannot read {path} ({err.strerror}): check that it is a readable file")


def read_bytes(path: str | os.PathLike) -> bytes:
    """The file's content, gunzipped when it is a gzip file."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise unreadable(path, e) from None
    if not _gunzips(raw[:2], path):
        return raw
    try:
        return gzip.decompress(raw)
    except (OSError, EOFError, zlib.error) as e:
        raise DataError(f"{path} is not a valid gzip file ({e}): it is corrupt or "
                        "truncated; delete it and download or copy it again") from e


def is_gzipped(path: str | os.PathLike) -> bool:
    """Whether ``read_bytes`` gunzips the file (by its first bytes and name, as it reads them)."""
    path = Path(path)
    try:
        with open(path, "rb") as f:
            return _gunzips(f.read(2), path)
    except OSError as e:
        raise unreadable(path, e) from None


def _gunzips(head: bytes, path: Path) -> bool:
    """Whether a file starting with ``head`` is gzip: its magic, or a .gz name on what is not
    plain IDX (a .gz a browser saved decompressed, keeping the name, is plain IDX)."""
    return head == _GZIP_MAGIC or (path.suffix == ".gz" and head != _IDX_MAGIC_START)


def parse(buf: bytes, *, magic: int, name: str = "<buffer>") -> np.ndarray:
    """Decodes one IDX buffer holding unsigned bytes with the expected magic number."""
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    found = int.from_bytes(buf[:4], "big")
    if len(buf) >= 4 and found != magic:
        note = f" (dtype byte 0x{buf[2]:02X}, expected 0x{UBYTE:02X})" if buf[2] != UBYTE else ""
        kind = "images (IDX3)" if magic == IMAGES_MAGIC else "labels (IDX1)"
        raise DataError(f"{name}: magic number {found}, expected {magic}{note}: this is not an "
                        f"MNIST-format {kind} file; replace it with the right file")
    if len(buf) < header:
        raise DataError(f"{name}: only {len(buf)} bytes, too short for an IDX header; "
                        "the file is truncated, replace it")
    shape = tuple(int(d) for d in np.frombuffer(buf, ">u4", ndim, offset=4))
    if any(d == 0 for d in shape):
        raise DataError(f"{name}: empty dimension in shape {shape}; replace the file")
    expected = header + math.prod(shape)  # Python ints: np.prod would wrap around in int64
    if len(buf) != expected:
        raise DataError(f"{name}: {len(buf)} bytes but its header {shape} implies {expected}; "
                        "the file is truncated or corrupt, replace it")
    return np.frombuffer(buf, np.uint8, offset=header).reshape(shape)


def read_images(path: str | os.PathLike) -> np.ndarray:
    """Images uint8 (N, H, W) from an IDX3 file (gzipped or not)."""
    return parse(read_bytes(path), magic=IMAGES_MAGIC, name=str(path))


def read_labels(path: str | os.PathLike) -> np.ndarray:
    """Labels uint8 (N,) from an IDX1 file (gzipped or not)."""
    return parse(read_bytes(path), magic=LABELS_MAGIC, name=str(path))


def read_split(images_path: str | os.PathLike, labels_path: str | os.PathLike,
               num_classes: int = NUM_CLASSES) -> Split:
    """Images and labels of one split, with matching counts and labels in range."""
    images_NxHxW, labels_N = read_images(images_path), read_labels(labels_path)
    if len(images_NxHxW) != len(labels_N):
        raise DataError(f"{images_path} holds {len(images_NxHxW)} images but {labels_path} "
                        f"holds {len(labels_N)} labels; the two files do not belong together")
    if labels_N.max() >= num_classes:
        raise DataError(f"{labels_path}: label {labels_N.max()} out of range 0..{num_classes - 1}; "
                        "this is not an MNIST-style label file")
    return images_NxHxW, labels_N


def read_folder(files: dict[str, Path]) -> tuple[Split, Split]:
    """(train, test) splits from the four files returned by `locate`."""
    train = read_split(files[FILES[0]], files[FILES[1]])
    test = read_split(files[FILES[2]], files[FILES[3]])
    if train[0].shape[1:] != test[0].shape[1:]:
        raise DataError(f"train images are {train[0].shape[1:]} but test images are "
                        f"{test[0].shape[1:]}; all images must have the same height and width")
    return train, test
