"""Tests for aejax.orbax_quiet: Orbax's reports about a damaged checkpoint are dropped or said
once, and every other report still gets through."""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
import types
from pathlib import Path

import pytest

from aejax import checkpoint, orbax_quiet
from tests.test_checkpoint import CFG, STEPS, save, trained_state


def test_reports_of_orbaxs_abandoned_reads_are_dropped_and_others_kept(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    seen = []
    monkeypatch.setattr(sys, "unraisablehook", seen.append)  # the hook before, restored after
    asyncio_log = logging.getLogger("asyncio")
    monkeypatch.setattr(asyncio_log, "filters", [])
    orbax_quiet.quiet_abandoned_reads()
    orbax_quiet.quiet_abandoned_reads()  # once per process: no second wrapper
    assert sys.unraisablehook.__closure__ is not None and seen.append in [
        c.cell_contents for c in sys.unraisablehook.__closure__]

    def raised_in(function: str, error: BaseException,
                  filename: str = "asyncio/base_events.py") -> BaseException:
        """``error`` raised from a function of that name in a file of that name."""
        code = compile(f"def {function}():\n    raise error\n", filename, "exec")
        scope = {"error": error}
        exec(code, scope)
        try:
            scope[function]()
        except BaseException as caught:
            return caught
        raise AssertionError("not raised")

    def report(obj: object, err: BaseException) -> types.SimpleNamespace:
        return types.SimpleNamespace(exc_type=type(err), exc_value=err,
                                     exc_traceback=err.__traceback__, object=obj)

    orbax_read = types.SimpleNamespace(cr_code=types.SimpleNamespace(
        co_filename="/x/orbax/checkpoint/serialization.py"))
    closed = raised_in("call_soon_threadsafe", RuntimeError("Event loop is closed"))
    sys.unraisablehook(report(orbax_read, ValueError("read failed")))
    sys.unraisablehook(report(None, closed))
    assert seen == []  # both dropped
    other = [report(None, raised_in("elsewhere", RuntimeError("Event loop is closed"))),
             report(None, raised_in("call_soon_threadsafe", RuntimeError("another error"))),
             report(types.SimpleNamespace(cr_code=types.SimpleNamespace(co_filename="/x/mine.py")),
                    ValueError("mine"))]
    for item in other:
        sys.unraisablehook(item)
    assert seen == other  # anything else reaches the previous hook
    orbax_error = raised_in("_read", ValueError("read failed"), "/x/orbax/serialization.py")
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        asyncio_log.error("future exception was never retrieved", exc_info=orbax_error)
        asyncio_log.error("something else", exc_info=closed)
    assert [r.getMessage() for r in caplog.records if r.name == "asyncio"] == ["something else"]


def test_unretrieved_tensorstore_errors_are_dropped_and_other_unretrieved_errors_kept(
        monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    # Python's own hook (restored after), so that the filter is installed even where an earlier
    # test in this process installed it already
    monkeypatch.setattr(sys, "unraisablehook", sys.__unraisablehook__)
    asyncio_log = logging.getLogger("asyncio")
    monkeypatch.setattr(asyncio_log, "filters", [])
    orbax_quiet.quiet_abandoned_reads()
    # as asyncio logs a future's exception that nobody retrieved; TensorStore's come from C++
    # statuses, set on the future without ever being raised in Python (no traceback)
    unread = "Future exception was never retrieved\nfuture: <Future finished exception=%r>"
    tensorstore = ValueError('FAILED_PRECONDITION: Error reading "params/0.0" in OCDBT database')
    kept = [ValueError("mine"), ValueError("NOT_FOUND: raised in Python"),
            ValueError("ERROR: not a status code"), RuntimeError("INTERNAL: not TensorStore's")]
    try:
        raise kept[1]
    except ValueError:
        pass  # now it has a traceback: not TensorStore's
    with caplog.at_level(logging.ERROR, logger="asyncio"):
        for err in [tensorstore, *kept]:
            asyncio_log.error(unread, err, exc_info=(type(err), err, err.__traceback__))
        asyncio_log.error("Task was destroyed but it is pending!", exc_info=(
            type(tensorstore), tensorstore, None))
    assert [r.args for r in caplog.records if r.name == "asyncio"] == [(e,) for e in kept] + [()]


def test_orbax_metadata_parse_errors_are_logged_once_per_file(caplog) -> None:
    orbax_quiet.say_once("absl", "Failed to json parse Metadata file")
    orbax_quiet.say_once("absl", "Failed to json parse Metadata file")  # installed once
    log = logging.getLogger("absl")
    with caplog.at_level(logging.ERROR, logger="absl"):
        for path in ("a", "a", "b", "a"):
            log.error("Failed to json parse Metadata file: %s/_CHECKPOINT_METADATA", path)
        log.error("another error")
        log.error("another error")
    assert [r.getMessage().split(": ")[-1] for r in caplog.records] == [
        "a/_CHECKPOINT_METADATA", "b/_CHECKPOINT_METADATA", "another error", "another error"]


def test_a_damaged_checkpoint_metadata_file_is_reported_once_by_all_of_a_resumes_readers(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with contextlib.closing(checkpoint.Checkpointer(tmp_path)) as ckpt:
        save(ckpt, trained_state(STEPS), {})
    (tmp_path / str(STEPS) / "_CHECKPOINT_METADATA").write_text("{damaged")
    with caplog.at_level(logging.ERROR, logger="absl"):
        for _ in range(3):  # train.py's resume opens the latest checkpoint this often, and more
            with contextlib.closing(checkpoint.Checkpointer(tmp_path, resume=True)) as ckpt:
                step, meta = ckpt.latest()
                assert step == STEPS and meta["config"]["epochs"] == CFG.epochs
    said = [r for r in caplog.records if "_CHECKPOINT_METADATA" in r.getMessage()]
    assert len(said) == 1 and str(tmp_path / str(STEPS)) in said[0].getMessage()


def test_a_tensorstore_write_error_is_told_in_the_oss_words() -> None:
    full = ('RESOURCE_EXHAUSTED: Error writing local file "/r/checkpoints/4.orbax-checkpoint-tmp/'
            'state/_sharding": Failed to write 83 bytes to file 11: No space left on device '
            "[os_error_code='28']")
    assert orbax_quiet.failed_write(ValueError(full)) and orbax_quiet.failed_write(OSError(28))
    assert not orbax_quiet.failed_write(ValueError("the loss is nan"))
    assert orbax_quiet.os_error(full) == "No space left on device"
    assert orbax_quiet.os_error("UNKNOWN: " + "word " * 60).endswith("word ...")
    assert orbax_quiet.os_error("DATA_LOSS: bad\n  chunk See full TensorStore details: {...}") == (
        "DATA_LOSS: bad chunk")


def test_only_orbaxs_reports_of_a_failed_write_are_dropped() -> None:
    def record(pathname: str, err: BaseException | None) -> logging.LogRecord:
        return logging.makeLogRecord({"pathname": pathname, "msg": "save failed",
                                      "exc_info": (type(err), err, None) if err else None})

    orbax = "/x/orbax/checkpoint/future.py"
    assert not orbax_quiet.failed_save_report(record(orbax, OSError(28, "No space left")))
    assert orbax_quiet.failed_save_report(record(orbax, None))
    assert orbax_quiet.failed_save_report(record(orbax, KeyError("not a write")))
    assert orbax_quiet.failed_save_report(record("/x/mine.py", OSError(28, "No space left")))


def test_orbaxs_report_of_a_save_stopped_by_a_second_ctrl_c_is_dropped() -> None:
    # a second Ctrl-C while train.py waits for a save: Orbax logs "Save Finalize thread
    # (save_finalize) failed." with the KeyboardInterrupt's traceback before "train.py: interrupted"
    def record(pathname: str, err: BaseException) -> logging.LogRecord:
        return logging.makeLogRecord({"pathname": pathname, "msg": "save_finalize failed.",
                                      "exc_info": (type(err), err, None)})

    manager = "/x/orbax/checkpoint/checkpoint_manager.py"
    assert not orbax_quiet.failed_save_report(record(manager, KeyboardInterrupt()))
    assert orbax_quiet.failed_save_report(record("/x/mine.py", KeyboardInterrupt()))


def test_only_orbaxs_threads_are_waited_for(monkeypatch: pytest.MonkeyPatch) -> None:
    orbax_thread = type("Thread", (threading.Thread,), {"__module__": "orbax.checkpoint.x"})
    saving = orbax_thread(target=time.sleep, args=(0.3,), daemon=True)
    release = threading.Event()
    other = threading.Thread(target=release.wait, daemon=True)  # not Orbax's: never waited for
    saving.start()
    other.start()
    # only these (not threads earlier tests' checkpoints may have left)
    monkeypatch.setattr(threading, "enumerate", lambda: [threading.current_thread(), saving, other])
    try:
        started = time.monotonic()
        orbax_quiet.join_orbax_threads(timeout=5)
        assert not saving.is_alive() and time.monotonic() - started < 4
    finally:
        release.set()


def test_said_once_remembers_the_most_recently_seen_paths() -> None:
    once = orbax_quiet.Once("Failed")
    once.MEMORY = 2
    said = [path for path in "abacac" if once.filter(logging.makeLogRecord(
        {"msg": "Failed to parse %s", "args": (path,)}))]
    assert said == ["a", "b", "c"]  # b, the least recently seen, was forgotten for c
