"""Ctrl-C during training: a flag read at chunk ends, so that the state is saved before training
stops (``Interrupted`` then says how to resume); a second Ctrl-C stops at once."""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any

import jax
import numpy as np
from jax.experimental import multihost_utils


class Interrupted(KeyboardInterrupt):
    """Training stopped on SIGINT after saving a checkpoint; the message says how to resume."""


class StopFlag:
    """Set by SIGINT; read at chunk ends so that the state is saved before training stops."""

    def __init__(self) -> None:
        self.raised = False

    def requested(self) -> bool:
        """Whether any process was asked to stop (a collective when there are several)."""
        if jax.process_count() == 1:
            return self.raised
        flags = multihost_utils.process_allgather(np.array(self.raised))
        return bool(np.any(flags))


@contextlib.contextmanager
def stop_on_sigint() -> Iterator[StopFlag]:
    """Turn Ctrl-C into a flag for the block's duration (main thread only; else plain Ctrl-C);
    inside another such block, the same flag (a Ctrl-C ``defer_sigint`` caught counts). Where
    SIGINT is ignored (nohup, a ``&`` job of a script) it stays ignored, as in the rest of the
    run."""
    flag = StopFlag()
    if (threading.current_thread() is not threading.main_thread()
            or signal.getsignal(signal.SIGINT) is signal.SIG_IGN):
        yield flag
        return
    flag = getattr(signal.getsignal(signal.SIGINT), "stop_flag", flag)

    def handler(signum: int, frame: Any) -> None:
        if flag.raised:  # a second Ctrl-C stops at once, without saving
            raise KeyboardInterrupt
        flag.raised = True

    handler.stop_flag = flag  # type: ignore[attr-defined]
    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield flag
    finally:
        signal.signal(signal.SIGINT, previous)


def defer_sigint() -> contextlib.AbstractContextManager:
    """In a run of several processes, a Ctrl-C before training (loading, restoring, compiling)
    becomes the flag read at the first chunk's end, where every process saves and stops
    together: one process stopping alone would leave the others waiting at a collective."""
    return stop_on_sigint() if jax.process_count() > 1 else contextlib.nullcontext()
