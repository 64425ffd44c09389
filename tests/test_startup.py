"""Tests for aejax.startup: a Ctrl-C while the scripts import JAX ends in one line."""

from __future__ import annotations

import signal
import subprocess
import sys
import textwrap
import time
import types

import pytest

from aejax import startup


def test_a_ctrl_c_in_the_block_is_one_line_and_code_130(capsys: pytest.CaptureFixture) -> None:
    with pytest.raises(SystemExit) as exit_:
        with startup.interruptible("/somewhere/scripts/train.py"):
            raise KeyboardInterrupt
    assert exit_.value.code == 130
    assert capsys.readouterr().err == "train.py: interrupted\n"
    with startup.interruptible("train.py"):  # nothing happens otherwise
        pass
    with pytest.raises(ValueError, match="^not a Ctrl-C$"):  # and other errors pass through
        with startup.interruptible("train.py"):
            raise ValueError("not a Ctrl-C")


def test_a_ctrl_c_inside_an_import_is_one_line_too() -> None:
    # what jaxlib's initialisation (through NumPy's C API) made of a Ctrl-C raised inside it
    code = textwrap.dedent("""
        import signal, time
        signal.signal(signal.SIGINT, signal.default_int_handler)  # a shell's background job
        from aejax import startup                                   # starts with SIGINT ignored
        with startup.interruptible("train.py"):
            try:
                signal.raise_signal(signal.SIGINT)
                time.sleep(30)
            except KeyboardInterrupt as stop:
                raise ImportError("numpy._core.multiarray failed to import") from stop
        """)
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert (done.returncode, done.stderr) == (130, "train.py: interrupted\n")


def test_the_handler_is_put_back_and_an_ignored_ctrl_c_stays_ignored() -> None:
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        with startup.interruptible("train.py"):
            assert signal.getsignal(signal.SIGINT) is not signal.default_int_handler
        assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
        signal.signal(signal.SIGINT, signal.SIG_IGN)  # as under nohup
        with startup.interruptible("train.py"):
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN

        def own(*_: object) -> None:  # a handler of the caller's: not replaced either
            pass

        signal.signal(signal.SIGINT, own)
        with startup.interruptible("train.py"):
            assert signal.getsignal(signal.SIGINT) is own
        assert signal.getsignal(signal.SIGINT) is own
    finally:
        signal.signal(signal.SIGINT, previous)


def test_it_imports_nothing_heavy() -> None:
    heavy = {"jax", "numpy", "flax", "optax"}
    code = ("import sys; import aejax.startup; "
            f"print(sorted(set({sorted(heavy)!r}) & set(sys.modules)))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"


def test_a_swallowed_ctrl_c_is_delivered_again(monkeypatch: pytest.MonkeyPatch) -> None:
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)
    with startup.interruptible("train.py"):  # the scripts' block installs it
        pass
    assert getattr(sys.unraisablehook, "redelivers_interrupts", False)
    startup.redeliver_interrupts()  # once: no second wrapper
    assert sys.unraisablehook.__closure__ is not None and seen.append in [
        c.cell_contents for c in sys.unraisablehook.__closure__]
    got = []
    previous = signal.signal(signal.SIGINT, lambda *_: got.append(1))  # no KeyboardInterrupt here
    try:
        # what Python reports when a Ctrl-C lands in a gc callback (JAX's) or a finalizer
        sys.unraisablehook(types.SimpleNamespace(exc_type=KeyboardInterrupt, object=None))
        deadline = time.monotonic() + 5
        while not got and time.monotonic() < deadline:
            time.sleep(0.01)  # the handler runs in this thread, between sleeps
        assert got == [1]
    finally:
        signal.signal(signal.SIGINT, previous)
    other = types.SimpleNamespace(exc_type=ValueError, object=None)
    sys.unraisablehook(other)
    assert seen == [other]  # other reports reach the previous hook
