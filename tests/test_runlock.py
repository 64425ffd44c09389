"""Tests for aejax.runlock: one process at a time holds a run folder."""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

from aejax import runlock


def test_the_lock_is_exclusive_until_released(tmp_path: Path) -> None:
    with contextlib.ExitStack() as held:
        runlock.lock(tmp_path, held)
        with pytest.raises(ValueError, match=r"is in use: another train.py \(or evaluate.py, or "
                                             r"compare.py\) is running there; wait for it to "
                                             "finish, or choose another --workdir$"):
            with contextlib.ExitStack() as second:
                runlock.lock(tmp_path, second)
        with pytest.raises(ValueError, match="is running there; wait for it to finish$"):
            with contextlib.ExitStack() as third:  # evaluate.py's words: no --workdir to choose
                runlock.lock(tmp_path, third, advice="wait for it to finish")
    with contextlib.ExitStack() as again:  # released when its stack closed
        runlock.lock(tmp_path, again)


def test_another_process_is_refused_while_the_lock_is_held(tmp_path: Path) -> None:
    code = ("import contextlib, sys; from pathlib import Path; from aejax import runlock\n"
            "with contextlib.ExitStack() as held:\n"
            "    try:\n        runlock.lock(Path(sys.argv[1]), held)\n"
            "    except ValueError as err:\n        print(err)")
    with contextlib.ExitStack() as held:
        runlock.lock(tmp_path, held)
        busy = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                              text=True, check=True).stdout
    free = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True,
                          text=True, check=True).stdout
    assert "is in use" in busy and free == ""


def test_readers_share_the_lock_but_exclude_a_writer(tmp_path: Path) -> None:
    with contextlib.ExitStack() as readers:
        runlock.lock(tmp_path, readers, shared=True)
        runlock.lock(tmp_path, readers, shared=True)  # two compare.py at once
        with pytest.raises(ValueError, match="is in use"):
            with contextlib.ExitStack() as writer:
                runlock.lock(tmp_path, writer)
    with contextlib.ExitStack() as writer:
        runlock.lock(tmp_path, writer)
        with pytest.raises(ValueError, match="is in use"):
            with contextlib.ExitStack() as reader:
                runlock.lock(tmp_path, reader, shared=True)


def test_a_file_system_without_locks_goes_on_without_one(tmp_path: Path, monkeypatch,
                                                          caplog) -> None:
    import errno
    import fcntl

    def no_locks(fd: int, operation: int) -> None:
        raise OSError(errno.ENOLCK, os.strerror(errno.ENOLCK))

    monkeypatch.setattr(fcntl, "flock", no_locks)
    with contextlib.ExitStack() as held:
        runlock.lock(tmp_path, held)  # not "in use"
        runlock.lock(tmp_path, held)  # --resume locks twice: said once
    said = f"cannot lock {tmp_path} (No locks available); going on without the lock"
    assert caplog.text.count(said) == 1
