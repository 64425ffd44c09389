"""JAX's persistent compilation cache, on by default in the scripts (never at import time)."""

from __future__ import annotations

import os
from pathlib import Path

import jax

DEFAULT_DIR = Path("~/.cache/aejax/jax").expanduser()


def enable(directory: str | os.PathLike | None = None) -> Path:
    """Cache every compiled program on disk so a second run skips XLA compilation.

    JAX caches nothing that compiled in under 1 s by default; this model's steps compile faster
    than that, so the threshold is lowered to 0. ``AEJAX_JAX_CACHE`` overrides the folder.
    """
    path = Path(directory or os.environ.get("AEJAX_JAX_CACHE") or DEFAULT_DIR).expanduser()
    path.mkdir(parents=True, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
