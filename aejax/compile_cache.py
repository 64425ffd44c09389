"""JAX's persistent compilation cache, on by default in the scripts (never at import time)."""

from __future__ import annotations

import logging
import os
from pathlib import Path

import jax
from jax.experimental.compilation_cache import compilation_cache

log = logging.getLogger(__name__)
DEFAULT_DIR = Path("~/.cache/aejax/jax").expanduser()


def enable(directory: str | os.PathLike | None = None, *,
           off_flag: str | None = "--no-compile-cache") -> Path | None:
    """Cache every compiled program on disk so a second run skips XLA compilation.

    JAX caches nothing that compiled in under 1 s by default; this model's steps compile faster
    than that, so the threshold is lowered to 0. ``AEJAX_JAX_CACHE`` overrides the folder. The
    cache only saves time: a folder that cannot be created (a read-only home) gives a warning
    (naming the script's ``off_flag``, where it has one) and None, and everything compiles as
    without the cache.
    """
    path = Path(directory or os.environ.get("AEJAX_JAX_CACHE") or DEFAULT_DIR).expanduser()
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        log.warning("no compilation cache: cannot create %s (%s); set AEJAX_JAX_CACHE to a "
                    "writable folder%s", path, err.strerror or err,
                    f", or pass {off_flag}" if off_flag else "")
        return None
    if jax.config.jax_compilation_cache_dir not in (None, str(path)):  # JAX opens one folder
        compilation_cache.reset_cache()  # per process: else it went on caching in the old one
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
