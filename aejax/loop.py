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
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from aejax import checkpoint, parallel, resumable, sigint
from aejax.losslog import LossLog, NonFiniteLoss
from aejax.model import features_of
from aejax.config import Config, check_batch_size
from aejax.partcheck import check_ranges, check_signatures, check_traced, traced
from aejax.partdigest import digests
from aejax.parts import Parts, bars, name, require
from aejax.schedule import EpochOrders, chunk_plan, plan_from, plan_steps
from aejax.train import (StepFn, TrainState, create_state, make_model, make_optimizer,
                         make_train_chunk, make_train_step, root_keys, to_float)

logger = logging.getLogger(__name__)


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
    parts: dict[str, str | None]  # the custom parts' names, for checkpoints
    digests: dict[str, str]  # what each custom part computes (``partdigest.digests``): checkpoints
    compile_seconds: float  # how long compiling the chunks took


def fit(cfg: Config, train_images_u8: np.ndarray, *, progress: bool = True,
        mesh: jax.sharding.Mesh | None = None,
        checkpoints: checkpoint.Checkpointer | None = None,
        parts: Parts = Parts()) -> tuple[TrainState, dict[str, Any]]:
    """Train on uint8 images (N, D), from scratch or from a checkpoint; return state and history.

    Args:
      cfg: the run's configuration.
      train_images_u8: uint8 training images, (N, D) or (N, H, W).
      progress: show a tqdm bar with the running loss.
      mesh: a 1-D device mesh to shard every global batch over (``aejax.parallel.make_mesh``);
        None trains on the default device.
      checkpoints: save the state at epoch ends (and every ``checkpoints.every`` steps), and
        continue from the latest checkpoint when ``checkpoints.resume``; None saves nothing.
      parts: a custom model, loss or occlusion (``aejax.parts``); the default is the original's.
    """
    loop, state, log = prepare(cfg, train_images_u8, mesh, checkpoints, parts)
    log.bar = tqdm(total=plan_steps(loop.plan) * cfg.epochs, initial=sum(map(len, log.losses)),
                   disable=not progress, unit="step", desc="train")
    log.started = time.perf_counter()
    try:
        state = run_epochs(loop, state, log)
        jax.block_until_ready(state)
    except NonFiniteLoss as err:
        kept = f"{checkpoints.kept()}; " if checkpoints is not None else ""
        hint = (f"try a lower --learning-rate than {cfg.learning_rate}" if err.step != 0
                else "that loss comes before any update, so the learning rate is not the cause: "
                "check the loss and the model on these images")
        raise NonFiniteLoss(f"{err}; {kept}{hint}", err.step) from None
    finally:
        log.bar.close()
    history = {"loss": np.concatenate(log.losses), "steps_per_epoch": plan_steps(loop.plan),
               "train_seconds": log.seconds(), "compile_seconds": loop.compile_seconds}
    return state, history


def prepare(cfg: Config, train_images_u8: np.ndarray, mesh: jax.sharding.Mesh | None,
            checkpoints: checkpoint.Checkpointer | None, parts: Parts
            ) -> tuple[Loop, TrainState, LossLog]:
    """Check the parts, create (or restore) and place the state, compile every chunk length."""
    require(parts)
    parallel.check_mesh(mesh)
    train_images_u8 = check_train_images(train_images_u8)
    num, features = train_images_u8.shape
    check_batch_size(cfg, num)
    model = make_model(cfg, features) if parts.model is None else parts.model
    check_features(model, features)
    check_signatures(parts.model, parts.loss)
    tx, keys = make_optimizer(cfg), root_keys(cfg.seed)
    state = (create_state(keys["init"], model, tx) if parts.model is None  # jitted: its init
             else traced(f"the model {name(model)}", lambda: create_state(keys["init"], model, tx)))
    if parts.model is not None or parts.occlude is not None:  # before training, not after it
        check_ranges(model, state.params, to_float(jnp.asarray(train_images_u8[:8])),
                     bars(cfg) if parts.occlude is None else parts.occlude, keys["check"])
    batch = jax.ShapeDtypeStruct((cfg.batch_size, features), jnp.float32)  # as training calls
    check_traced(parts.model, parts.loss, state.params, batch)
    codes = ({} if checkpoints is None
             else digests(parts, model, state.params, batch, keys["check"]))
    state, images, noise_key = place(state, train_images_u8, keys["noise"], cfg, mesh)
    steps = num // cfg.batch_size
    data = resumable.fingerprint(train_images_u8) if checkpoints is not None else {}
    state, log = restore(cfg, state, checkpoints, data, steps, parts, codes)
    plan = chunk_plan(steps, max_length=checkpoints.every if checkpoints is not None else 0)
    done = sum(map(len, log.losses))
    lengths = {n for _, n in plan + plan_from(plan, done % steps)}  # a resumed epoch's rest too
    compile_start = time.perf_counter()
    step_fn = make_train_step(cfg, model, tx, loss=parts.loss, occlude=parts.occlude)
    orders = EpochOrders(keys["data"], num, cfg.batch_size, range(done // steps, cfg.epochs))
    chunks = {n: compile_chunk(step_fn, n, state, images, steps, cfg, noise_key, mesh)
              for n in sorted(lengths)}
    jax.block_until_ready(list(orders.ready.values()))
    loop = Loop(cfg, chunks, plan, images, noise_key, orders, mesh, checkpoints, data,
                parts.describe(), codes, time.perf_counter() - compile_start)
    return loop, state, log


def restore(cfg: Config, state: TrainState, checkpoints: checkpoint.Checkpointer | None,
            data: dict[str, Any], steps: int, parts: Parts, codes: dict[str, str]
            ) -> tuple[TrainState, LossLog]:
    """The state and loss log to train on from: the latest checkpoint's to resume, else new."""
    if checkpoints is None or not checkpoints.resume:
        return state, LossLog([])
    state, losses, seconds = checkpoints.load_latest(state, cfg, data, steps, parts.describe(),
                                                     codes)
    if len(losses) == steps * cfg.epochs:
        logger.warning("the run had already trained all %d epochs (step %d): nothing left to "
                       "train, only the evaluation runs again (raise --epochs to train longer)",
                       cfg.epochs, len(losses))
    return state, LossLog([losses], seconds_before=seconds)


def check_train_images(images: np.ndarray) -> np.ndarray:
    """The training images flattened to (N, D); ValueError unless they are uint8 pixels."""
    images = np.asarray(images)
    if images.dtype != np.uint8:  # to_float divides by 255: [0, 1] floats would train on ~0
        raise ValueError(f"training images must be uint8 pixels 0..255 as data.load returns "
                         f"them, got dtype {images.dtype}")
    if images.ndim not in (2, 3):
        raise ValueError(f"training images must be (N, D) or (N, H, W), got shape {images.shape}")
    if images.ndim == 3 and images.shape[1] != images.shape[2]:  # batches are occluded flat
        raise ValueError(f"training images are {images.shape[1]}x{images.shape[2]}; only square "
                         "images are supported")
    if not len(images):
        raise ValueError(f"there are no training images (shape {images.shape})")
    return images.reshape(len(images), -1)


def check_features(model: Any, features: int) -> None:
    """Raise ValueError unless the model takes images of ``features`` pixels."""
    if features_of(model, features) != features:
        raise ValueError(f"the model takes {model.features} pixels per image "
                         f"(its 'features'), but the training images have {features}")


def place(state: TrainState, images_u8: np.ndarray, noise_key: jax.Array, cfg: Config,
          mesh: jax.sharding.Mesh | None) -> tuple[TrainState, jax.Array, jax.Array]:
    """Put state, images and key on the device, or replicate them over the mesh."""
    if mesh is None:
        return state, jax.device_put(images_u8), noise_key
    parallel.check_batch(cfg.batch_size, mesh, num_train=len(images_u8))  # sharded later
    return parallel.put((state, images_u8, noise_key), parallel.replicated(mesh))


def run_epochs(loop: Loop, state: TrainState, log: LossLog) -> TrainState:
    """Train to the last epoch from ``state``'s step, saving checkpoints at chunk ends."""
    steps, start = plan_steps(loop.plan), sum(map(len, log.losses))
    ckpt = loop.checkpoints
    guard = sigint.stop_on_sigint() if ckpt is not None else contextlib.nullcontext()
    with guard as stop:
        for epoch in range(start // steps, loop.cfg.epochs):
            state = run_epoch(loop, state, log, epoch, max(0, start - epoch * steps), stop)
            loop.orders.done(epoch)
        if ckpt is not None:  # inside the guard: a Ctrl-C during the last save's background
            waited = time.perf_counter()  # work, waited for outside it, raised in Orbax's wait
            ckpt.wait()
            log.started += time.perf_counter() - waited  # train.seconds: training, not saving
        if stop is not None and stop.requested():  # Ctrl-C in the last chunk or its save
            hint = resumable.resume_hint(ckpt.directory.parent, loop.parts)
            raise stop.stopped(f" after the last step: saved step {sum(map(len, log.losses))} "
                               f"in {ckpt.directory}; {hint} evaluates it")
    return state


def run_epoch(loop: Loop, state: TrainState, log: LossLog, epoch: int, offset: int = 0,
              stop: Any = None) -> TrainState:
    """One epoch's chunks from step ``offset`` of it on.

    Each chunk's losses are checked while the next chunk runs; with checkpoints, the state is
    saved at the epoch's end, when ``checkpoints.every`` is crossed, and (then raising
    ``Interrupted``) when ``stop.requested()`` after a SIGINT or SIGTERM.
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
            if stopping:  # written inside the guard: a SIGTERM sent again, in close(), killed it
                ckpt.wait()
                hint = resumable.resume_hint(ckpt.directory.parent, loop.parts)
                raise stop.stopped(f": saved step {end} in {ckpt.directory}; continue with "
                                   f"{hint}")
    if pending is not None:
        log.add(*pending)
    return state


def save(loop: Loop, state: TrainState, log: LossLog, steps: int) -> None:
    """Checkpoint ``state`` (whose losses were all checked) unless its parameters are not finite."""
    losses = np.concatenate(log.losses)
    if not checkpoint.all_finite(parallel.fetch(state.params)):
        raise NonFiniteLoss(f"the parameters are not finite after step {len(losses)}; "
                            "training stopped", len(losses))
    loop.checkpoints.save(state, cfg=loop.cfg, data=loop.data, steps=steps, losses=losses,
                          seconds=log.seconds(), parts=loop.parts, digests=loop.digests,
                          devices=1 if loop.mesh is None else loop.mesh.size)


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
