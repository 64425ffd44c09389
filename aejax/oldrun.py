"""``--overwrite``: the old run is set aside until the new one has saved something, then deleted
(or put back); every move can be finished after a kill."""

from __future__ import annotations

import contextlib
import logging
import shutil
from pathlib import Path
from typing import Any

from aejax import checkpoint
from aejax.runfiles import clear, saved_anything, written

REPLACED = ".replaced"  # an old run --overwrite set aside until the new one has saved something
REPLACING, RESTORING = ".replacing", ".restoring"  # ... while it is moved there, or back

log = logging.getLogger(__name__)


def replace(path: Path, held: contextlib.ExitStack) -> None:
    """``--overwrite``: set the run in ``path`` aside until ``held`` closes, then delete it, or
    put it back if the new run failed before it saved anything (``settle``)."""
    set_aside(path)

    def settle_on_exit(failed: type[BaseException] | None, *_: Any) -> None:
        try:
            settle(path, failed=failed is not None)
        except OSError as err:  # the run's own outcome (or error) stands; recover() retries
            log.warning("could not settle the old run in %s (%s)", path / REPLACED, err)

    held.push(settle_on_exit)  # runs before the lock, pushed earlier, is released


def set_aside(path: Path) -> None:
    """Move what the run in ``path`` wrote into ``path/.replaced/``: all of it or, if a move
    fails, none of it; a kill half-way leaves ``.replacing/``, which ``recover`` puts back."""
    staging = path / REPLACING
    try:
        for item in written(path):
            move(item, path, staging)
    except BaseException:  # what is on disk, not what was counted: a Ctrl-C can follow a rename
        put_back(staging, path)
        raise
    staging.rename(path / REPLACED)  # complete: from now on the new run's files are its own
    with contextlib.suppress(OSError):
        (path / checkpoint.DIRNAME).rmdir()


def move(item: Path, source: Path, target: Path) -> None:
    """Move ``item`` from folder ``source`` to the same place under ``target``."""
    moved = target / item.relative_to(source)
    moved.parent.mkdir(parents=True, exist_ok=True)
    item.rename(moved)


def put_back(side: Path, path: Path) -> None:
    """Move everything a run wrote from the side folder ``side`` back into ``path``, then remove
    ``side``."""
    for item in written(side):
        move(item, side, path)
    shutil.rmtree(side)


def recover(path: Path) -> None:
    """Settle what a killed ``--overwrite`` left in ``path``: a move cut short is finished, the
    old run back; a complete ``.replaced`` comes back if the killed run saved nothing, else it
    is deleted."""
    for partial in (path / REPLACING, path / RESTORING):
        if partial.is_dir():
            log.warning("%s holds part of a run that a killed --overwrite was moving; putting "
                        "it back", path)
            put_back(partial, path)
    if (path / REPLACED).is_dir():
        log.warning("%s holds the run a killed --overwrite set aside; %s", path,
                    "deleting it (the new run saved a checkpoint)" if saved_anything(path)
                    else "putting it back (the new run saved nothing)")
        settle(path, failed=True)


def settle(path: Path, *, failed: bool) -> None:
    """After a run that ``set_aside`` an old one: put the old run back if the new one failed
    before it saved a checkpoint or results, else delete it."""
    aside = path / REPLACED
    if not aside.is_dir():
        return
    if not failed or saved_anything(path):
        shutil.rmtree(aside)
        return
    clear(path)  # the new run's config.json (and unfinished checkpoints)
    restoring = path / RESTORING
    aside.rename(restoring)  # a kill from here on: recover() finishes the put-back
    put_back(restoring, path)
