"""Tests for aejax.sigint: Ctrl-C and SIGTERM during training as a flag read at chunk ends."""

from __future__ import annotations

import os
import signal
import threading

import numpy as np
import pytest

from aejax import sigint


def test_sigint_sets_a_flag_and_a_second_one_interrupts() -> None:
    before = signal.getsignal(signal.SIGINT)
    with sigint.stop_on_sigint() as stop:
        assert not stop.requested()
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested()  # no KeyboardInterrupt: training goes on to the next save
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGINT) is before


def test_an_ignored_sigint_stays_ignored_while_training(monkeypatch) -> None:
    # nohup or a `&` job of a script: start-up and evaluation ignore Ctrl-C, so training does too
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with sigint.stop_on_sigint() as stop:
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
            os.kill(os.getpid(), signal.SIGINT)
            assert not stop.requested()
        monkeypatch.setattr(sigint.jax, "process_count", lambda: 2)
        with sigint.defer_sigint():
            assert signal.getsignal(signal.SIGINT) is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, before)


def test_a_sigint_deferred_before_training_is_the_flag_training_reads(monkeypatch) -> None:
    before = signal.getsignal(signal.SIGINT)
    with sigint.defer_sigint():  # one process: a plain Ctrl-C
        assert signal.getsignal(signal.SIGINT) is before
    monkeypatch.setattr(sigint.jax, "process_count", lambda: 2)
    with sigint.defer_sigint() as early:
        os.kill(os.getpid(), signal.SIGINT)  # while loading or compiling: no KeyboardInterrupt
        with sigint.stop_on_sigint() as stop:  # the loop's guard sees it at its first chunk
            assert stop is early and stop.raised
        assert signal.getsignal(signal.SIGINT) is not before  # still deferred until fit ends
    assert signal.getsignal(signal.SIGINT) is before


def test_sigterm_is_a_stop_request_that_says_terminated() -> None:
    # a scheduler's time limit or preemption (SLURM), `kill`, `docker stop`: save, then stop
    before = signal.getsignal(signal.SIGTERM)
    with sigint.stop_on_sigint() as stop:
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested()
        stopped = stop.stopped(": saved step 8")
        assert isinstance(stopped, sigint.Interrupted)
        assert (str(stopped), stopped.exit_code) == ("terminated: saved step 8", 143)
        # SIGTERM again (sent twice, ms apart, it cut the save short: "interrupted", exit 130,
        # or a hang in Orbax's threads): the save goes on; a Ctrl-C then stops at once
        os.kill(os.getpid(), signal.SIGTERM)
        assert stop.requested() and stop.signum == signal.SIGTERM
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    assert signal.getsignal(signal.SIGTERM) is before
    with sigint.stop_on_sigint() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        stopped = stop.stopped(": saved step 8")
        assert (str(stopped), stopped.exit_code) == ("interrupted: saved step 8", 130)


@pytest.mark.parametrize("own", [signal.SIG_IGN, "handler"])
def test_a_sigterm_handler_of_the_programs_own_is_left_alone(own) -> None:
    seen = []
    own = (lambda signum, frame: seen.append(signum)) if own == "handler" else own
    before = signal.signal(signal.SIGTERM, own)
    try:
        with sigint.stop_on_sigint() as stop:
            assert signal.getsignal(signal.SIGTERM) is own
            os.kill(os.getpid(), signal.SIGTERM)
            assert not stop.requested()
        assert seen in ([], [signal.SIGTERM])
        assert seen or own is signal.SIG_IGN
    finally:
        signal.signal(signal.SIGTERM, before)


def test_a_sigterm_deferred_before_training_is_the_flag_training_reads(monkeypatch) -> None:
    monkeypatch.setattr(sigint.jax, "process_count", lambda: 2)
    with sigint.defer_sigint() as early:
        os.kill(os.getpid(), signal.SIGTERM)  # while loading or compiling: not killed
        with sigint.stop_on_sigint() as stop:
            assert stop is early and stop.raised and stop.signum == signal.SIGTERM


def test_a_process_that_got_no_signal_says_what_the_other_got(monkeypatch) -> None:
    # SIGTERM to process 1 only: process 0 stopped with it but said "interrupted", exit 130
    monkeypatch.setattr(sigint.jax, "process_count", lambda: 2)
    monkeypatch.setattr(sigint.multihost_utils, "process_allgather",
                        lambda x: np.stack([x, np.int32(signal.SIGTERM)]))
    with sigint.stop_on_sigint() as stop:
        assert stop.requested() and not stop.raised
        stopped = stop.stopped(": saved step 8")
        assert (str(stopped), stopped.exit_code) == ("terminated: saved step 8", 143)
        os.kill(os.getpid(), signal.SIGINT)  # its own signal, afterwards, is its own
        assert stop.requested() and stop.signum == signal.SIGINT


def test_a_held_ctrl_c_acts_when_the_block_ends() -> None:
    ran = []
    with pytest.raises(KeyboardInterrupt):
        with sigint.held():
            os.kill(os.getpid(), signal.SIGINT)
            with sigint.held():  # nested: still held, then acted on once
                os.kill(os.getpid(), signal.SIGINT)
            ran.append("the rest of the block")
    assert ran == ["the rest of the block"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
    with sigint.stop_on_sigint() as stop:  # training's handler: the first Ctrl-C sets the flag
        with sigint.held():
            os.kill(os.getpid(), signal.SIGINT)
            assert not stop.requested()
        assert stop.requested()


def test_a_process_with_a_signal_of_its_own_keeps_it_and_one_without_takes_the_first(
        monkeypatch) -> None:
    # three processes: SIGTERM to process 0, SIGINT to process 2; process 1 got none
    monkeypatch.setattr(sigint.jax, "process_count", lambda: 3)
    monkeypatch.setattr(sigint.multihost_utils, "process_allgather",
                        lambda x: np.stack([np.int32(signal.SIGTERM), x, np.int32(signal.SIGINT)]))
    with sigint.stop_on_sigint() as stop:
        assert stop.requested() and stop.signum == signal.SIGTERM  # the first that got one
    monkeypatch.setattr(sigint.multihost_utils, "process_allgather",
                        lambda x: np.stack([np.int32(signal.SIGTERM), x]))
    with sigint.stop_on_sigint() as stop:
        os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested() and stop.signum == signal.SIGINT  # its own: "interrupted"


def test_outside_the_main_thread_the_signals_act_as_usual() -> None:
    before = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    errors, seen = [], []

    def train() -> None:
        try:
            with sigint.stop_on_sigint() as stop, sigint.held():
                seen.append(stop.requested())
        except Exception as err:  # signal.signal is for the main thread only
            errors.append(err)

    thread = threading.Thread(target=train)
    thread.start()
    thread.join()
    assert (errors, seen) == ([], [False])
    assert {sig: signal.getsignal(sig) for sig in before} == before


def test_held_leaves_an_ignored_ctrl_c_ignored_and_acts_on_two_held_ones() -> None:
    before = signal.signal(signal.SIGINT, signal.SIG_IGN)  # nohup: nothing to hold or act on
    try:
        with sigint.held():
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        signal.signal(signal.SIGINT, before)
    with sigint.stop_on_sigint() as stop:  # two Ctrl-C during a save: the second stops at once
        with pytest.raises(KeyboardInterrupt):
            with sigint.held():
                os.kill(os.getpid(), signal.SIGINT)
                os.kill(os.getpid(), signal.SIGINT)
        assert stop.requested()
