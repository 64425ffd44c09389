"""Training throughput of the JAX variants, timed in this process after a warm-up.

``scan``: the project's on-device epoch (``train.make_train_chunk``: batches gathered from uint8
images inside ``lax.scan``, the chunks of ``schedule.chunk_plan``, each chunk's losses read and
checked while the next one runs), run by ``loop.run_epoch`` as ``loop.fit`` runs it. ``loop``:
the naive JAX way, one jitted ``train_step`` call per batch from a Python loop, each batch sliced
on the host and transferred. Every timing ends with ``block_until_ready``.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from aejax import loop, losslog, schedule, train
from aejax.config import Config
from aejax.model import count_params
from aejax.parts import Parts


@dataclasses.dataclass(frozen=True)
class Setup:
    """What every variant shares: the config, its step function and a fresh state."""

    cfg: Config
    step_fn: train.StepFn
    state: train.TrainState
    keys: dict[str, jax.Array]

    @property
    def num_params(self) -> int:
        """Scalar parameters of the model."""
        return count_params(self.state.params)


def setup(cfg: Config, features: int) -> Setup:
    """The model, optimizer, step function and initial state a config describes."""
    model, tx = train.make_model(cfg, features), train.make_optimizer(cfg)
    keys = train.root_keys(cfg.seed)
    state = train.create_state(keys["init"], model, tx)
    return Setup(cfg, train.make_train_step(cfg, model, tx), state, keys)


def fresh_state(s: Setup) -> train.TrainState:
    """A private copy of the initial state (the timed calls donate theirs)."""
    return jax.tree.map(lambda x: x.copy(), s.state)


@dataclasses.dataclass(frozen=True)
class Runner:
    """One warmed-up variant: ``run()`` trains ``steps`` steps and blocks until they are done."""

    run: Callable[[], Any]
    steps: int
    info: dict[str, Any] = dataclasses.field(default_factory=dict)


def interleaved(runners: dict[str, Runner], repeats: int,
                after_turn: Callable[[], Any] | None = None) -> dict[str, list[float]]:
    """Steps/s of every turn of each runner, timing them in turn ``repeats`` times.

    Taking turns spreads every variant over the same stretch of time, so a burst of load from
    other processes slows all of them rather than the one that happened to be running.
    ``after_turn`` (a progress bar's update) is called between turns, outside the timings.
    """
    speeds: dict[str, list[float]] = {name: [] for name in runners}
    for _ in range(repeats):
        for name, r in runners.items():
            start = time.perf_counter()
            r.run()
            speeds[name].append(r.steps / (time.perf_counter() - start))
        if after_turn is not None:
            after_turn()
    return speeds


def scan_runner(s: Setup, images_u8: np.ndarray) -> Runner:
    """Whole on-device epochs run by ``loop.run_epoch``, as ``loop.fit`` runs them (chunks,
    each chunk's losses read and checked while the next one runs), without a progress bar or
    checkpoints; compiled and warmed up. Every turn runs epoch 0's batch order, computed once
    beforehand, as ``fit`` computes every epoch's order before training (and as the ``loop`` and
    PyTorch variants shuffle before timing)."""
    num, batch = len(images_u8), s.cfg.batch_size
    steps = num // batch
    plan = schedule.chunk_plan(steps)
    images = jax.device_put(images_u8)
    start = time.perf_counter()
    chunks = {n: loop.compile_chunk(s.step_fn, n, s.state, images, steps, s.cfg, s.keys["noise"])
              for n in sorted({n for _, n in plan})}
    compile_seconds = time.perf_counter() - start
    orders = schedule.EpochOrders(s.keys["data"], num, batch, range(1))
    epochs = loop.Loop(s.cfg, chunks, plan, images, s.keys["noise"], orders, mesh=None,
                       checkpoints=None, data={}, parts=Parts().describe(), digests={},
                       compile_seconds=compile_seconds)
    log = losslog.LossLog([], tqdm(disable=True))
    state = fresh_state(s)

    def run_epoch() -> None:
        nonlocal state
        state = loop.run_epoch(epochs, state, log, 0)
        jax.block_until_ready(state)
        log.losses.clear()  # only the last turn's losses are kept

    run_epoch()  # warm-up: first-call overheads and caches
    return Runner(run_epoch, steps, {"compile_seconds": compile_seconds})


def loop_runner(s: Setup, images_u8: np.ndarray, steps: int, *, warmup: int = 10) -> Runner:
    """A Python loop calling the jitted step once per host batch (the naive way); warmed up."""
    batch = s.cfg.batch_size

    def keyed_step(state: train.TrainState, batch_u8: jax.Array, noise_key: jax.Array) -> Any:
        # the step's key derived inside the program, as in the scan: an eager fold_in per step
        # would cost ~0.1 ms on the host and charge the loop for something the step does not need
        return s.step_fn(state, batch_u8, jax.random.fold_in(noise_key, state.step))

    step = jax.jit(keyed_step, donate_argnums=0)
    order = np.random.default_rng(s.cfg.seed).permutation(len(images_u8))
    rows = len(order) // batch
    state = fresh_state(s)
    count = 0

    def run(n: int = steps) -> None:
        nonlocal state, count
        for _ in range(n):
            row = count % rows
            batch_u8 = images_u8[order[row * batch:(row + 1) * batch]]
            state, _ = step(state, batch_u8, s.keys["noise"])
            count += 1
        jax.block_until_ready(state)

    run(warmup)
    return Runner(run, steps)
