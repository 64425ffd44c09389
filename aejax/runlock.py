"""The lock on a run folder: one training or evaluating process at a time, and no reader of a
run whose results are still being written."""

from __future__ import annotations

import contextlib
import logging
import os
from pathlib import Path

log = logging.getLogger(__name__)

WAIT = "wait for it to finish, or choose another --workdir"
_unlockable: set[Path] = set()  # folders already warned about (--resume locks twice)


def lock(path: Path, held: contextlib.ExitStack, *, advice: str = WAIT,
         shared: bool = False) -> None:
    """Hold a lock on the run folder until ``held`` closes: exclusive for a process that writes
    there, ``shared`` for one that only reads (several readers may hold it at once).

    ValueError (ending in ``advice``) if another process holds it in a conflicting mode. No lock
    where ``fcntl`` is missing (Windows) or the file system does not support one.
    """
    try:
        import fcntl
    except ImportError:
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, (fcntl.LOCK_SH if shared else fcntl.LOCK_EX) | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(fd)
        raise ValueError(f"workdir {path} is in use: another train.py (or evaluate.py, or "
                         f"compare.py) is running there; {advice}") from None
    except OSError as err:  # e.g. ENOLCK on some network or FUSE mounts: no lock to be had
        os.close(fd)
        if path.resolve() not in _unlockable:
            _unlockable.add(path.resolve())
            log.warning("cannot lock %s (%s); going on without the lock", path, err.strerror)
        return
    held.callback(os.close, fd)  # closing the folder releases the lock
