"""What the scripts do before JAX is imported: a Ctrl-C then ends in one line, not a traceback.

Imports nothing heavy itself, so that ``scripts/*.py`` can use it first.
"""

from __future__ import annotations

import contextlib
import os
import signal
import sys
import threading
from collections.abc import Iterator
from pathlib import Path

REDELIVERY_DELAY = 0.05  # seconds: long enough to be out of the callback that swallowed it


@contextlib.contextmanager
def interruptible(script: str) -> Iterator[None]:
    """Turn a Ctrl-C in the block (importing JAX takes ~1 s) into ``<script>: interrupted`` on
    stderr and exit code 130, as ``cli.run_main`` does once the script runs; and, from then
    on, deliver again a Ctrl-C that Python would swallow (``redeliver_interrupts``).

    In the block a Ctrl-C ends the process at once instead of raising KeyboardInterrupt: raised
    inside a C extension's initialisation (jaxlib's, through NumPy's C API) it came out as an
    ImportError after a printed traceback, or as an abort or a segmentation fault.
    """
    name = Path(script).name
    redeliver_interrupts()
    # only over Python's own handler: not where Ctrl-C is ignored (nohup) or handled otherwise
    own = (threading.current_thread() is threading.main_thread()
           and signal.getsignal(signal.SIGINT) is signal.default_int_handler)
    if own:
        signal.signal(signal.SIGINT, lambda *_: exit_interrupted(name))
    try:
        yield
    except KeyboardInterrupt:
        print(f"{name}: interrupted", file=sys.stderr)
        sys.exit(130)
    finally:
        if own:
            signal.signal(signal.SIGINT, signal.default_int_handler)


def exit_interrupted(name: str) -> None:
    """Say ``<name>: interrupted`` and end the process now with code 130, raising nothing.

    Nothing is there to clean up yet; and any exception, SystemExit too, raised where the
    imports happen to be would meet the C extensions' failure paths above.
    """
    print(f"{name}: interrupted", file=sys.stderr, flush=True)
    os._exit(130)


def redeliver_interrupts() -> None:
    """Raise SIGINT again when its KeyboardInterrupt lands in a callback that cannot raise.

    A Ctrl-C that arrives while Python runs a garbage-collector callback (JAX registers one)
    or a finalizer is only reported ("Exception ignored in ...") and then lost, so the script
    would go on as if no Ctrl-C had come. Sent again (from another thread, 50 ms later), it is
    handled at the next ordinary line: the default handler raises KeyboardInterrupt there, and
    train.py's own handler (during training) asks for a checkpoint and a stop.
    """
    previous = sys.unraisablehook
    if getattr(previous, "redelivers_interrupts", False):
        return

    def hook(unraisable: object) -> None:
        if getattr(unraisable, "exc_type", None) is KeyboardInterrupt:
            # not from here: the handler would run inside this hook and be swallowed again
            threading.Timer(REDELIVERY_DELAY, signal.raise_signal, (signal.SIGINT,)).start()
            return
        previous(unraisable)

    hook.redelivers_interrupts = True  # type: ignore[attr-defined]
    sys.unraisablehook = hook
