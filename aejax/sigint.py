"""Ctrl-C (or SIGTERM) during training: a flag read at chunk ends, so that the state is saved
before training stops (``Interrupted`` then says how to resume); a second Ctrl-C stops at once,
a second SIGTERM changes nothing (a supervisor's next step is SIGKILL).

SIGTERM is what a cluster's scheduler (SLURM at a time limit or preemption), ``kill`` and
``docker stop`` send before SIGKILL: a run stopped that way saves its state like one stopped by
Ctrl-C, and says ``terminated`` instead of ``interrupted``.
"""

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
    """Training stopped on SIGINT or SIGTERM after saving a checkpoint; the message says how to
    resume, ``exit_code`` is the shell's for that signal (130, 143)."""

    def __init__(self, message: str, signum: int = signal.SIGINT) -> None:
        super().__init__(message)
        self.exit_code = 128 + int(signum)


class StopFlag:
    """Set by SIGINT or SIGTERM; read at chunk ends so that the state is saved before training
    stops."""

    def __init__(self) -> None:
        self.raised = False
        self.signum: int = signal.SIGINT  # the first signal this process received

    def stopped(self, what: str) -> Interrupted:
        """``Interrupted`` for training stopped by this flag: ``what`` after ``interrupted`` (a
        Ctrl-C) or ``terminated`` (SIGTERM)."""
        word = "terminated" if self.signum == signal.SIGTERM else "interrupted"
        return Interrupted(f"{word}{what}", self.signum)

    def requested(self) -> bool:
        """Whether any process was asked to stop (a collective when there are several); a
        process that got no signal takes the signal of the first that did, for ``stopped``."""
        if jax.process_count() == 1:
            return self.raised
        signals = multihost_utils.process_allgather(np.int32(self.signum * self.raised))
        got = [int(s) for s in np.ravel(signals) if s]
        if got and not self.raised:  # else a SIGTERM to process 1 was "interrupted" in process 0
            self.signum = got[0]
        return bool(got)


@contextlib.contextmanager
def stop_on_sigint() -> Iterator[StopFlag]:
    """Turn Ctrl-C and SIGTERM into a flag for the block's duration (main thread only; else the
    signals act as usual); inside another such block, the same flag (a signal ``defer_sigint``
    caught counts). Where SIGINT is ignored (nohup, a ``&`` job of a script) it stays ignored, as
    in the rest of the run; SIGTERM is taken only from its default action (a handler of the
    program's own, or an ignored SIGTERM, is left alone)."""
    flag = StopFlag()
    if threading.current_thread() is not threading.main_thread():
        yield flag
        return
    current = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    ours = [getattr(h, "stop_flag", None) for h in current.values()]
    flag = next((f for f in ours if f is not None), flag)

    def handler(signum: int, frame: Any) -> None:
        if flag.raised and signum == signal.SIGTERM:  # sent again (a supervisor, a launcher
            return  # forwarding its group's): the save goes on; only SIGKILL or Ctrl-C cut it
        if flag.raised:  # a second Ctrl-C stops at once, without saving
            raise KeyboardInterrupt
        flag.raised, flag.signum = True, signum

    handler.stop_flag = flag  # type: ignore[attr-defined]
    taken = [sig for sig, h in current.items() if takes_over(sig, h)]
    for sig in taken:
        signal.signal(sig, handler)
    try:
        yield flag
    finally:
        for sig in taken:
            signal.signal(sig, current[sig])


@contextlib.contextmanager
def held() -> Iterator[None]:
    """Hold Ctrl-C (and a SIGTERM that training handles) for the block, then act on it: Orbax's
    save and its wait, cut short by a KeyboardInterrupt, leave threads that print tracebacks at
    exit or hang it. Main thread only; an error in the block drops what was held."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    pending: list[tuple[int, Any]] = []
    handlers = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    hold = [sig for sig, h in handlers.items() if callable(h)]  # not ignored, not a plain kill
    for sig in hold:
        signal.signal(sig, lambda signum, frame: pending.append((signum, frame)))
    try:
        yield
    finally:
        for sig in hold:
            signal.signal(sig, handlers[sig])
    for signum, frame in pending:
        handlers[signum](signum, frame)


def takes_over(sig: int, handler: Any) -> bool:
    """Whether ``stop_on_sigint`` handles ``sig``, whose handler is now ``handler``."""
    if hasattr(handler, "stop_flag"):  # an enclosing block's: the same flag
        return True
    if sig == signal.SIGINT:
        return handler is not signal.SIG_IGN
    return handler is signal.SIG_DFL


def defer_sigint() -> contextlib.AbstractContextManager:
    """In a run of several processes, a Ctrl-C or SIGTERM before training (loading, restoring,
    compiling) becomes the flag read at the first chunk's end, where every process saves and stops
    together: one process stopping alone would leave the others waiting at a collective."""
    return stop_on_sigint() if jax.process_count() > 1 else contextlib.nullcontext()
