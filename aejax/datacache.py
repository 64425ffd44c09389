"""The on-disk cache of decoded dataset arrays: one .npz per set of input files, under
`<data_root>/cache/`, named after the inputs' SHA-256 sums, written atomically, and ignored (then
rebuilt) when unreadable.
"""

from __future__ import annotations

import contextlib
import hashlib
import io
import logging
import os
import tempfile
import time
import zipfile
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

CACHE_VERSION = "v1"
STALE_WRITE_S = 3600.0  # a cache write's temporary file older than this was left by a killed one
KEYS = ("train_images", "train_labels", "test_images", "test_labels")  # a data.Dataset's arrays


def cache_path(root: Path, stem: str, inputs: str) -> Path:
    """The cache file under `root` of the arrays decoded from `inputs` (their files' sums)."""
    key = hashlib.sha256(f"{CACHE_VERSION}{inputs}".encode())
    return root / "cache" / f"{stem}-{key.hexdigest()[:16]}.npz"


def read_cache(path: Path) -> dict[str, np.ndarray] | None:
    """Decoded arrays from the cache, or None when absent or unreadable."""
    if not path.is_file():
        return None
    try:
        arrays = _read_npz(path)
        shapes_ok = all(a.dtype == np.uint8 for a in arrays.values()) and [
            a.ndim for a in arrays.values()] == [3, 1, 3, 1]
        if not shapes_ok:
            raise ValueError("unexpected dtypes or shapes")
    # a damaged file fails in many ways (zipfile's NotImplementedError, NumPy's header tokenizer's
    # TokenError, ...): each only costs a rebuild
    except Exception as e:
        log.warning("ignoring unreadable cache %s (%s); rebuilding it", path, e)
        return None
    log.info("loaded decoded arrays from cache %s", path)
    return arrays


def _read_npz(path: Path) -> dict[str, np.ndarray]:
    """The cached arrays, each member read whole so that zipfile checks its CRC-32 (np.load reads
    only the bytes its header announces: a damaged shape there went unnoticed)."""
    arrays = {}
    with zipfile.ZipFile(path) as npz:
        for key in KEYS:
            raw = npz.read(f"{key}.npy")
            buf = io.BytesIO(raw)
            major, _ = np.lib.format.read_magic(buf)
            if major not in (1, 2):
                raise ValueError(f"{key}: .npy format version {major}")
            read_header = getattr(np.lib.format, f"read_array_header_{major}_0")
            shape, fortran_order, dtype = read_header(buf)
            if fortran_order or dtype.hasobject:
                raise ValueError(f"{key}: not a C-ordered array of numbers")
            arrays[key] = np.frombuffer(raw, dtype, offset=buf.tell()).reshape(shape)
    return arrays


def write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
    """Saves the arrays atomically; a failure (say a read-only folder) only logs."""
    tmp = None
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        remove_stale_writes(path.parent)
        with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".tmp", delete=False) as f:
            tmp = Path(f.name)
            np.savez(f, **arrays)
        tmp.chmod(0o644)  # NamedTemporaryFile makes it private; others share this cache
        os.replace(tmp, path)
    except OSError as e:
        log.warning("could not write the cache %s (%s); continuing without it", path, e)
        if tmp is not None:
            tmp.unlink(missing_ok=True)


def remove_stale_writes(folder: Path, age_s: float = STALE_WRITE_S) -> None:
    """Deletes the temporary files of cache writes killed midway (up to 55 MB each) older than
    ``age_s``: a write takes about a second, so no other process is still writing them."""
    now = time.time()
    for tmp in folder.glob("tmp*.tmp"):
        with contextlib.suppress(OSError):  # gone already (another process), or not ours to delete
            if now - tmp.stat().st_mtime > age_s:
                tmp.unlink()
