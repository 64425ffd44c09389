"""The training loop: epochs in chunks on device, a progress bar, checkpoints and resume.

``fit`` places the data on device once, compiles one ``train.make_train_chunk`` per chunk length
ahead of time, then runs every epoch as a few chunks (so the progress bar advances without a
host sync per step), reading each chunk's losses while the next one runs. With a
``checkpoint.Checkpointer`` it saves at epoch ends (and every N steps) and resumes exactly.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable, Iterable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from aejax import checkpoint, parallel
from aejax.config import Config, check_batch_size
from aejax.parts import Parts, bars, check_ranges
from aejax.train import (UNROLL, StepFn, TrainState, create_state, epoch_order, make_model,
                         make_optimizer, make_train_chunk, make_train_step, root_keys,
                         to_float)

logger = logging.getLogger(__name__)
ORDERS_AHEAD = 16  # epochs whose batch orders exist at once (``EpochOrders``)


def chunk_plan(steps: int, target_chunks: int = 20, max_length: int = 0, min_length: int = 16,
               multiple: int = UNROLL) -> list[tuple[int, int]]:
    """Split an epoch's steps into (offset, length) chunks, all but the last a multiple long.

    Chunks let a progress bar advance without a host sync per step. Every chunk but the epoch's
    last is a multiple of the scan's unroll, so every step but an odd epoch's last one runs as one
    of a compiled pair. XLA fuses a lone step's Adam update differently, which changes the last
    bits; with whole pairs, any plan (another checkpoint interval, another chunk length) trains
    to the same parameters bit for bit. The wanted length is ``steps / target_chunks``, at least
    ``min_length`` (every chunk boundary costs about a millisecond on a 2-core CPU, which made
    2-step chunks at batch 1024 5% slower; BENCHMARKS.md) and at most ``max_length`` (the
    checkpoint interval, so that a chunk ends soon after every multiple of it), rounded down to
    the multiple; a divisor of ``steps`` at least half as long is preferred (one compilation).
    Only a ``max_length`` below the multiple gives lone steps. A last chunk of 3 steps is run as
    2 + 1: a scan of 3 makes one pass of its loop, which XLA compiles as straight-line code whose
    steps it fuses differently from the same steps in a longer scan.
    """
    want = max(min_length, -(-steps // target_chunks))
    if max_length > 0:
        want = min(want, max_length)
    if want >= steps:
        plan = [(0, steps)]
    else:
        unit = multiple if want >= multiple else 1
        want -= want % unit
        divisors = [d for d in range(unit, want + 1, unit) if steps % d == 0]
        size = divisors[-1] if divisors and divisors[-1] * 2 >= want else want
        plan = [(o, min(size, steps - o)) for o in range(0, steps, size)]
    return plan[:-1] + split_short(*plan[-1], multiple)


def split_short(offset: int, length: int, multiple: int = UNROLL) -> list[tuple[int, int]]:
    """The chunk (offset, length), as two chunks if one pass of the scan's loop plus lone steps
    (3 steps for pairs): XLA compiles such a scan as straight-line code, which fuses its steps
    differently (see ``chunk_plan``)."""
    if multiple < length < 2 * multiple:
        return [(offset, multiple), (offset + multiple, length - multiple)]
    return [(offset, length)]


def plan_steps(plan: list[tuple[int, int]]) -> int:
    """The number of steps an epoch's plan covers."""
    return plan[-1][0] + plan[-1][1]


def plan_from(plan: list[tuple[int, int]], offset: int) -> list[tuple[int, int]]:
    """The chunks of ``plan`` from step ``offset`` of the epoch on (a resumed epoch's rest)."""
    rest = [(o, n) for o, n in plan if o >= offset]
    end = rest[0][0] if rest else plan_steps(plan)
    return (split_short(offset, end - offset) if end > offset else []) + rest


class NonFiniteLoss(ValueError):
    """A step's loss was NaN or infinite."""


@dataclasses.dataclass
class LossLog:
    """Every step's loss so far (checked to be finite), a progress bar, and the training time."""

    losses: list[np.ndarray]
    bar: Any
    seconds_before: float = 0.0
    started: float = dataclasses.field(default_factory=time.perf_counter)

    def add(self, loss: jax.Array, first_step: int, epoch: int) -> None:
        """Record a chunk's losses, whose first step is ``first_step``; stop on NaN or inf."""
        loss = np.asarray(parallel.fetch(loss))
        bad = np.flatnonzero(~np.isfinite(loss))
        if bad.size:
            raise NonFiniteLoss(f"the loss is {loss[bad[0]]} at step {first_step + bad[0]} "
                                f"(epoch {epoch + 1}); training stopped")
        self.losses.append(loss)
        self.bar.update(len(loss))
        self.bar.set_postfix(epoch=epoch + 1, loss=f"{loss.mean():.4f}")

    def seconds(self) -> float:
        """Training time so far, earlier sessions of a resumed run included."""
        return self.seconds_before + time.perf_counter() - self.started


@dataclasses.dataclass(frozen=True)
class Loop:
    """What the epoch loop needs besides the state and the loss log."""

    cfg: Config
    chunks: dict[int, Callable]
    plan: list[tuple[int, int]]
    images: jax.Array
    noise_key: jax.Array
    orders: EpochOrders  # each epoch's batch order, computed ahead
    mesh: jax.sharding.Mesh | None
    checkpoints: checkpoint.Checkpointer | None
    data: dict[str, Any]  # the training images' fingerprint, for checkpoints
    parts: dict[str, str | None] = dataclasses.field(  # the custom parts' names, for checkpoints
        default_factory=lambda: Parts().describe())


def fit(cfg: Config, train_images_u8: np.ndarray, *, progress: bool = True,
        mesh: jax.sharding.Mesh | None = None,
        checkpoints: checkpoint.Checkpointer | None = None,
        parts: Parts = Parts()) -> tuple[TrainState, dict[str, Any]]:
    """Train on uint8 images (N, D), from scratch or from a checkpoint; return state and history.

    Args:
      cfg: the run's configuration.
      train_images_u8: uint8 training images, flattened to (N, D).
      progress: show a tqdm bar with the running loss.
      mesh: a 1-D device mesh to shard every global batch over (``aejax.parallel.make_mesh``);
        None trains on the default device.
      checkpoints: save the state at epoch ends (and every ``checkpoints.every`` steps), and
        continue from the latest checkpoint when ``checkpoints.resume``; None saves nothing.
      parts: a custom model, loss or occlusion (``aejax.parts``); the default is the original's.
    """
    num, features = train_images_u8.shape
    check_batch_size(cfg, num)
    model = make_model(cfg, features) if parts.model is None else parts.model
    check_features(model, features)
    tx = make_optimizer(cfg)
    keys = root_keys(cfg.seed)
    state = create_state(keys["init"], model, tx)
    if parts.model is not None or parts.occlude is not None:  # before training, not after it
        check_ranges(model, state.params, to_float(jnp.asarray(train_images_u8[:8])),
                     bars(cfg) if parts.occlude is None else parts.occlude, keys["noise"])
    state, images, noise_key = place(state, train_images_u8, keys["noise"], cfg, mesh)
    steps = num // cfg.batch_size
    data = checkpoint.fingerprint(train_images_u8) if checkpoints is not None else {}
    losses, seconds = [], 0.0
    if checkpoints is not None and checkpoints.resume:
        state, restored, seconds = checkpoints.load_latest(state, cfg, data, steps,
                                                           parts.describe())
        losses = [restored]
    plan = chunk_plan(steps, max_length=checkpoints.every if checkpoints is not None else 0)
    done = sum(map(len, losses))
    if checkpoints is not None and checkpoints.resume and done == steps * cfg.epochs:
        logger.warning("the run had already trained all %d epochs (step %d): nothing left to "
                       "train, only the evaluation runs again (raise --epochs to train longer)",
                       cfg.epochs, done)
    lengths = {n for _, n in plan + plan_from(plan, done % steps)}  # a resumed epoch's rest too
    compile_start = time.perf_counter()
    step_fn = make_train_step(cfg, model, tx, loss=parts.loss, occlude=parts.occlude)
    orders = EpochOrders(keys["data"], num, cfg.batch_size, range(done // steps, cfg.epochs))
    chunks = {n: compile_chunk(step_fn, n, state, images, steps, cfg, noise_key, mesh)
              for n in sorted(lengths)}
    jax.block_until_ready(list(orders.ready.values()))
    compile_seconds = time.perf_counter() - compile_start
    loop = Loop(cfg, chunks, plan, images, noise_key, orders, mesh, checkpoints, data,
                parts.describe())
    bar = tqdm(total=steps * cfg.epochs, initial=done, disable=not progress, unit="step",
               desc="train")
    log = LossLog(losses, bar, seconds)
    try:
        state = run_epochs(loop, state, log)
        jax.block_until_ready(state)
    except NonFiniteLoss as err:
        kept = f"{checkpoints.kept()}; " if checkpoints is not None else ""
        raise NonFiniteLoss(f"{err}; {kept}try a lower --learning-rate than "
                            f"{cfg.learning_rate}") from None
    finally:
        bar.close()
    history = {"loss": np.concatenate(log.losses), "steps_per_epoch": steps,
               "train_seconds": log.seconds(), "compile_seconds": compile_seconds}
    return state, history


def check_features(model: Any, features: int) -> None:
    """Raise ValueError unless the model takes images of ``features`` pixels."""
    if getattr(model, "features", None) != features:
        raise ValueError(f"the model takes {getattr(model, 'features', None)} pixels per image "
                         f"(its 'features'), but the training images have {features}")


def place(state: TrainState, images_u8: np.ndarray, noise_key: jax.Array, cfg: Config,
          mesh: jax.sharding.Mesh | None) -> tuple[TrainState, jax.Array, jax.Array]:
    """Put state, images and key on the device, or replicate them over the mesh."""
    if mesh is None:
        return state, jax.device_put(images_u8), noise_key
    parallel.check_batch(cfg.batch_size, mesh)  # data parallel: batches are sharded later
    return parallel.put((state, images_u8, noise_key), parallel.replicated(mesh))


def run_epochs(loop: Loop, state: TrainState, log: LossLog) -> TrainState:
    """Train to the last epoch from ``state``'s step, saving checkpoints at chunk ends."""
    steps, start = plan_steps(loop.plan), sum(map(len, log.losses))
    ckpt = loop.checkpoints
    guard = checkpoint.stop_on_sigint() if ckpt is not None else contextlib.nullcontext()
    with guard as stop:
        for epoch in range(start // steps, loop.cfg.epochs):
            state = run_epoch(loop, state, log, epoch, max(0, start - epoch * steps), stop)
            loop.orders.done(epoch)
        if stop is not None and stop.requested():  # Ctrl-C in the last chunk or its save
            raise checkpoint.Interrupted(
                f"interrupted after the last step: saved step {sum(map(len, log.losses))} in "
                f"{ckpt.directory}; --workdir {ckpt.directory.parent} --resume evaluates it")
    return state


def run_epoch(loop: Loop, state: TrainState, log: LossLog, epoch: int, offset: int = 0,
              stop: Any = None) -> TrainState:
    """One epoch's chunks from step ``offset`` of it on.

    Each chunk's losses are checked while the next chunk runs; with checkpoints, the state is
    saved at the epoch's end, when ``checkpoints.every`` is crossed, and (then raising
    ``Interrupted``) when ``stop.requested()`` after a SIGINT.
    """
    plan, ckpt = loop.plan, loop.checkpoints
    steps = plan_steps(plan)
    order = loop.orders[epoch]
    if loop.mesh is not None:  # each device gets its columns of every batch
        order = parallel.put(order, parallel.batch_sharded(loop.mesh))
    pending = None
    for start, n in plan_from(plan, offset):
        state, metrics = loop.chunks[n](state, loop.images, order, np.int32(start), loop.noise_key)
        if pending is not None:  # read the previous chunk while this one runs
            log.add(*pending)
        first, end = epoch * steps + start, epoch * steps + start + n
        pending = (metrics["loss"], first, epoch)
        stopping = stop is not None and stop.requested()
        if ckpt is not None and (start + n == steps or ckpt.due(first, end) or stopping):
            log.add(*pending)  # never save a state whose losses were not checked
            pending = None
            save(loop, state, log, steps)
            if stopping:
                raise checkpoint.Interrupted(
                    f"interrupted: saved step {end} in {ckpt.directory}; continue with "
                    f"--workdir {ckpt.directory.parent} --resume")
    if pending is not None:
        log.add(*pending)
    return state


def save(loop: Loop, state: TrainState, log: LossLog, steps: int) -> None:
    """Checkpoint ``state`` (whose losses were all checked) unless its parameters are not finite."""
    losses = np.concatenate(log.losses)
    if not checkpoint.all_finite(parallel.fetch(state.params)):
        raise NonFiniteLoss(f"the parameters are not finite after step {len(losses)}; "
                            "training stopped")
    loop.checkpoints.save(state, cfg=loop.cfg, data=loop.data, steps=steps, losses=losses,
                          seconds=log.seconds(), parts=loop.parts)


def epoch_orders(data_key: jax.Array, epochs: Iterable[int], num: int, batch_size: int
                 ) -> dict[int, jax.Array]:
    """Each epoch's batch order: ``train.epoch_order`` of ``fold_in(data_key, epoch)``."""
    return {e: epoch_order(jax.random.fold_in(data_key, e), num, batch_size) for e in epochs}


class EpochOrders:
    """The batch orders of ``epochs``, computed up to ``ORDERS_AHEAD`` epochs ahead of training.

    The shuffle is a sort of the whole epoch (~25 ms for 60,000 images on a 2-core CPU, 3-6% of
    an epoch there). The first orders are dispatched before the chunks are compiled, so the
    device computes them while the host compiles, and each later one ``ORDERS_AHEAD`` epochs
    before it is needed: no epoch waits for its sort. A window rather than every epoch, because
    each order takes 4 bytes per image (100,000 epochs of MNIST would take 24 GB).
    """

    def __init__(self, data_key: jax.Array, num: int, batch_size: int, epochs: range) -> None:
        self.data_key, self.num, self.batch_size, self.epochs = data_key, num, batch_size, epochs
        self.ready = epoch_orders(data_key, epochs[:ORDERS_AHEAD], num, batch_size)

    def __getitem__(self, epoch: int) -> jax.Array:
        if epoch not in self.ready:
            self.ready.update(epoch_orders(self.data_key, [epoch], self.num, self.batch_size))
        return self.ready[epoch]

    def done(self, epoch: int) -> None:
        """Forget ``epoch``'s order and dispatch the one ``ORDERS_AHEAD`` epochs later."""
        self.ready.pop(epoch, None)
        later = epoch + ORDERS_AHEAD
        if later in self.epochs and later not in self.ready:
            self[later]


def compile_chunk(step_fn: StepFn, length: int, state: TrainState, images: jax.Array,
                  steps: int, cfg: Config, noise_key: jax.Array,
                  mesh: jax.sharding.Mesh | None = None) -> Callable:
    """Ahead-of-time compile one chunk length (so compile time is measured on its own)."""
    order = jax.ShapeDtypeStruct((steps, cfg.batch_size), jnp.int32)
    offset = jax.ShapeDtypeStruct((), jnp.int32)
    chunk = make_train_chunk(step_fn, length)
    if mesh is not None:  # data parallel: batch-sharded order in, replicated state/loss out
        order = parallel.order_spec(mesh, steps, cfg.batch_size)
        offset = jax.ShapeDtypeStruct((), jnp.int32, sharding=parallel.replicated(mesh))
        chunk = jax.jit(chunk, donate_argnums=0, out_shardings=parallel.replicated(mesh))
    return chunk.lower(state, images, order, offset, noise_key).compile()
