"""The lock on a run folder: one training or evaluating process at a time, and no reader of a
run whose results are still being written."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path

WAIT = "wait for it to finish, or choose another --workdir"


def lock(path: Path, held: contextlib.ExitStack, *, advice: str = WAIT) -> None:
    """Hold an exclusive lock on the run folder until ``held`` closes; ValueError (ending in
    ``advice``) if another process holds it. No lock where ``fcntl`` is missing (Windows)."""
    try:
        import fcntl
    except ImportError:
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ValueError(f"workdir {path} is in use: another train.py (or evaluate.py) is "
                         f"running there; {advice}") from None
    held.callback(os.close, fd)  # closing the folder releases the lock
