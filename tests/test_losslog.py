"""Tests for aejax.losslog: losses are checked as they arrive, and drive the progress bar."""

from __future__ import annotations

import os
import signal
import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from tqdm.auto import tqdm

from aejax.sigint import stop_on_sigint
from aejax.losslog import LossLog, NonFiniteLoss
from tests.conftest import cpu


class Bar:
    """What LossLog uses of a tqdm bar."""

    def __init__(self) -> None:
        self.n, self.postfix = 0, {}

    def update(self, n: int) -> None:
        self.n += n

    def set_postfix(self, **kwargs: object) -> None:
        self.postfix = kwargs


def test_finite_losses_are_kept_and_advance_the_bar() -> None:
    log = LossLog([], Bar(), seconds_before=10.0)
    log.add(np.array([0.5, 0.4, 0.3], np.float32), first_step=0, epoch=0)
    log.add(np.array([0.2, 0.1], np.float32), first_step=3, epoch=1)
    np.testing.assert_array_equal(np.concatenate(log.losses),
                                  np.array([0.5, 0.4, 0.3, 0.2, 0.1], np.float32))
    assert log.bar.n == 5 and log.bar.postfix == {"epoch": 2, "loss": "0.1500"}
    assert log.seconds() >= 10.0  # earlier sessions count


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_a_non_finite_loss_names_its_step_and_is_not_kept(bad: float) -> None:
    log = LossLog([np.zeros(4, np.float32)], tqdm(disable=True))
    with pytest.raises(NonFiniteLoss, match=rf"the loss is {bad} at step 6 \(epoch 2\); "
                                            r"training stopped") as stopped:
        log.add(np.array([0.1, 0.2, bad, np.nan], np.float32), first_step=4, epoch=1)
    assert stopped.value.step == 6 and len(log.losses) == 1


@jax.jit
def slow_loss(x: jax.Array) -> jax.Array:
    """A chunk's losses that take a second or more to compute."""
    x = jax.lax.fori_loop(0, 3000, lambda i, x: jnp.tanh(x @ x), x)
    return jnp.mean(x, axis=1)


def test_a_ctrl_c_is_seen_while_the_losses_are_awaited() -> None:
    x = jax.device_put(jnp.full((256, 256), 1e-3), cpu())  # ~1 s there; a GPU is too fast
    slow_loss(x).block_until_ready()  # compiled
    seen = []
    with stop_on_sigint() as stop:  # as training holds it
        previous = signal.getsignal(signal.SIGINT)

        def handler(signum, frame) -> None:
            seen.append(loss.is_ready())
            previous(signum, frame)

        signal.signal(signal.SIGINT, handler)
        loss = slow_loss(x)
        threading.Timer(0.05, os.kill, (os.getpid(), signal.SIGINT)).start()
        LossLog([], Bar()).add(loss, first_step=0, epoch=0)
        signal.signal(signal.SIGINT, previous)
    assert stop.requested() and seen == [False]  # not only once the chunk had ended
