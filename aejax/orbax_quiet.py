"""Orbax's noise around a damaged checkpoint, filtered so that the one-line error stays one line.

Reading a damaged checkpoint makes Orbax abandon its other reads (each reported by Python when
garbage-collected) and log a damaged metadata file every time it is opened. These filters drop
only reports that come from Orbax; everything else still reaches the user.
"""

from __future__ import annotations

import collections
import logging
import os
import re
import sys
import threading
import time
import traceback
from pathlib import Path
from typing import Any


def quiet_abandoned_reads() -> None:
    """Drop Python's reports about Orbax's abandoned reads of a damaged checkpoint (installed
    once per process).

    When one array fails, Orbax abandons its other pending reads: each one's error would be
    printed ("Exception ignored in <coroutine ...>", some 100 lines) after the one-line error
    when it is garbage-collected, reads that finish later hit Orbax's closed event loop
    ("RuntimeError: Event loop is closed" from asyncio's ``call_soon_threadsafe``), and asyncio
    logs their unread results (``abandoned_read``). Reports about anything else still go to the
    previous hook, and asyncio's log keeps every other record.
    """
    previous = sys.unraisablehook
    if getattr(previous, "quiets_orbax", False):
        return

    def hook(unraisable: Any) -> None:
        code = getattr(unraisable.object, "cr_code", None)
        if code is not None and from_orbax(code.co_filename):
            return  # an abandoned read's coroutine
        if (unraisable.exc_type is RuntimeError
                and str(unraisable.exc_value) == "Event loop is closed"
                and any(frame.name == "call_soon_threadsafe"
                        for frame in traceback.extract_tb(unraisable.exc_traceback))):
            return  # a TensorStore thread finishing a read calls back into the closed loop
        previous(unraisable)

    hook.quiets_orbax = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook
    logging.getLogger("asyncio").addFilter(lambda record: not abandoned_read(record))


def quiet_failed_saves() -> None:
    """Drop Orbax's ERROR reports, with tracebacks, of a save that failed on an OSError (a full
    disk: each of its threads logs it, some 200 lines): the error reaches the main thread at
    the next save or wait, which says it in one line (``Checkpointer.failed_save``); and of a
    wait for a save cut short by a second Ctrl-C, which train.py says as ``interrupted``.
    Installed once per process; any other record still gets through."""
    target = logging.getLogger("absl")
    if not any(f is failed_save_report for f in target.filters):
        target.addFilter(failed_save_report)


def failed_save_report(record: logging.LogRecord) -> bool:
    """False for a record from Orbax that reports a failed write (``failed_write``) or a
    KeyboardInterrupt (a Ctrl-C while a save is waited for)."""
    err = record.exc_info[1] if record.exc_info else None
    return not (err is not None and (failed_write(err) or isinstance(err, KeyboardInterrupt))
                and from_orbax(record.pathname))


def failed_write(err: BaseException) -> bool:
    """Whether ``err`` is how a write fails under Orbax: an OSError, or TensorStore's ValueError
    carrying a status code (``RESOURCE_EXHAUSTED: Error writing ...`` on a full disk)."""
    return isinstance(err, OSError) or (
        isinstance(err, ValueError) and re.match(rf"({'|'.join(STATUS_CODES)}): ", str(err))
        is not None)


def os_error(detail: str, limit: int = 200) -> str:
    """What a TensorStore error says: the OS's own words when it carries an OS error code
    (``... [os_error_code='28']``: ``No space left on device``), else its message on one line,
    cut at a word (marked) after about ``limit`` characters."""
    if code := re.search(r"os_error_code='(\d+)'", detail):
        return os.strerror(int(code.group(1)))
    detail = " ".join(detail.split(" See full TensorStore details")[0].split())
    if len(detail) > limit:
        detail = detail[:limit].rsplit(" ", 1)[0] + " ..."
    return detail


def join_orbax_threads(timeout: float = 30.0) -> None:
    """Wait (up to ``timeout`` seconds in all) for the threads Orbax started, such as the rest of
    a failed save, to end before the process does."""
    deadline = time.monotonic() + timeout
    for thread in threading.enumerate():
        if (type(thread).__module__.split(".")[0] == "orbax"
                and thread is not threading.current_thread()):
            thread.join(max(0.0, deadline - time.monotonic()))


def abandoned_read(record: logging.LogRecord) -> bool:
    """Whether an asyncio log record reports one of Orbax's abandoned reads: its exception passed
    through Orbax, or it is a TensorStore error (a ValueError "CODE: ..." from a C++ status,
    never raised in Python, so without a traceback) that no one retrieved from its future."""
    if not record.exc_info or record.exc_info[1] is None:
        return False
    err, tb = record.exc_info[1], record.exc_info[2]
    if any(from_orbax(frame.filename) for frame in traceback.extract_tb(tb)):
        return True
    return (tb is None and isinstance(err, ValueError)
            and str(record.msg).startswith("Future exception was never retrieved")
            and re.match(rf"({'|'.join(STATUS_CODES)}): ", str(err)) is not None)


# absl::StatusCode names but OK: the prefix of a TensorStore error's message
STATUS_CODES = ("CANCELLED", "UNKNOWN", "INVALID_ARGUMENT", "DEADLINE_EXCEEDED", "NOT_FOUND",
                "ALREADY_EXISTS", "PERMISSION_DENIED", "RESOURCE_EXHAUSTED", "FAILED_PRECONDITION",
                "ABORTED", "OUT_OF_RANGE", "UNIMPLEMENTED", "INTERNAL", "UNAVAILABLE", "DATA_LOSS",
                "UNAUTHENTICATED")


def from_orbax(filename: str) -> bool:
    """Whether ``filename`` is a file of the orbax package (a folder named orbax on its path)."""
    return "orbax" in Path(filename).parts[:-1]


class Once(logging.Filter):
    """Lets a record that starts with ``prefix`` through once per first argument (Orbax's: the
    file's path); any other record always. Remembers the last ``MEMORY`` arguments."""

    MEMORY = 64

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix, self.seen = prefix, collections.OrderedDict()

    def filter(self, record: logging.LogRecord) -> bool:
        if not str(record.msg).startswith(self.prefix):
            return True
        key = str(record.args[0]) if isinstance(record.args, tuple) and record.args else (
            record.getMessage())
        first = key not in self.seen
        self.seen[key] = None
        self.seen.move_to_end(key)
        while len(self.seen) > self.MEMORY:
            self.seen.popitem(last=False)
        return first


def say_once(logger: str, prefix: str) -> None:
    """Install ``Once(prefix)`` on ``logger`` unless it is there already. Orbax logs a damaged
    ``_CHECKPOINT_METADATA`` (timestamps only: the state still restores) as an ERROR every time
    the checkpoint is opened, and resuming opens it four times."""
    target = logging.getLogger(logger)
    if not any(isinstance(f, Once) and f.prefix == prefix for f in target.filters):
        target.addFilter(Once(prefix))
