"""The on-disk cache of decoded dataset arrays: one .npz per set of input files, under
`<data_root>/cache/`, named after the inputs' SHA-256 sums, written atomically, and ignored (then
rebuilt) when unreadable.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

CACHE_VERSION = "v1"
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
        with np.load(path, allow_pickle=False) as npz:
            arrays = {key: npz[key] for key in KEYS}
        shapes_ok = all(a.dtype == np.uint8 for a in arrays.values()) and [
            a.ndim for a in arrays.values()] == [3, 1, 3, 1]
        if not shapes_ok:
            raise ValueError("unexpected dtypes or shapes")
    except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
        log.warning("ignoring unreadable cache %s (%s); rebuilding it", path, e)
        return None
    log.info("loaded decoded arrays from cache %s", path)
    return arrays


def write_cache(path: Path, arrays: dict[str, np.ndarray]) -> None:
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
