"""Training: the train state, a pure jitted step, and an epoch that runs on device.

The training set lives on device once, as uint8 (N, D). Each epoch draws a permutation from
``fold_in(data_key, epoch)``; batches are gathered by index inside ``jax.lax.scan`` and turned into
floats in the step. Per-step noise keys are ``fold_in(noise_key, step)``, so every random choice is
a function of (seed, epoch, step).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import time
from collections.abc import Callable
from typing import Any

import flax.struct
import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from aejax import checkpoint, occlusion, parallel
from aejax.config import Config, check_batch_size
from aejax.model import Autoencoder, init_params

Metrics = dict[str, jax.Array]
StepFn = Callable[["TrainState", jax.Array, jax.Array], tuple["TrainState", Metrics]]


@flax.struct.dataclass
class TrainState:
    """Everything that changes during training."""

    step: jax.Array
    params: Any
    opt_state: Any


def make_model(cfg: Config, features: int = 784) -> Autoencoder:
    """The autoencoder a config describes."""
    return Autoencoder(features=features, hidden=cfg.hidden, init_scheme=cfg.init_scheme)


def make_optimizer(cfg: Config) -> optax.GradientTransformation:
    """Adam with the config's learning rate (the original: 1e-3)."""
    return optax.adam(cfg.learning_rate)


def create_state(key: jax.Array, model: Autoencoder, tx: optax.GradientTransformation) -> TrainState:
    """Fresh parameters and optimizer state at step 0."""
    return _init_state(key, model, tx)


@functools.partial(jax.jit, static_argnums=(1, 2))
def _init_state(key: jax.Array, model: Autoencoder, tx: optax.GradientTransformation) -> TrainState:
    """``create_state`` as one compiled program: bit-identical, and faster than dozens of eager ops."""
    params = init_params(key, model)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def mse(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Mean squared error over every element (PyTorch's ``nn.MSELoss()``)."""
    return jnp.mean(jnp.square(pred - target))


def to_float(images_u8: jax.Array) -> jax.Array:
    """uint8 pixels -> float32 in [0, 1]."""
    return images_u8.astype(jnp.float32) / 255.0


def make_pair(key: jax.Array, clean: jax.Array, mode: str,
              occlusion_kwargs: dict[str, Any]) -> tuple[jax.Array, jax.Array]:
    """The (input, target) pair for a training batch; the target is always the clean image.

    ``none``: the input is clean (the original); ``all``: every input is occluded; ``mixed``: each
    input is occluded with probability 0.5.
    """
    if mode == "none":
        return clean, clean
    occ_key, pick_key = jax.random.split(key)
    occluded = occlusion.occlude(occ_key, clean, **occlusion_kwargs)
    if mode == "all":
        return occluded, clean
    if mode == "mixed":
        pick_Bx1 = jax.random.bernoulli(pick_key, 0.5, (clean.shape[0], 1))
        return jnp.where(pick_Bx1, occluded, clean), clean
    raise ValueError(f"train occlusion must be one of none, all, mixed; got {mode!r}")


def make_train_step(cfg: Config, model: Autoencoder, tx: optax.GradientTransformation) -> StepFn:
    """Build ``train_step(state, batch_u8, key) -> (state, metrics)``: forward, grad, Adam."""
    occ_kwargs = cfg.occlusion_kwargs()

    def train_step(state: TrainState, batch_u8: jax.Array, key: jax.Array
                   ) -> tuple[TrainState, Metrics]:
        inputs, targets = make_pair(key, to_float(batch_u8), cfg.train_occlusion, occ_kwargs)

        def loss_fn(params: Any) -> jax.Array:
            return mse(model.apply({"params": params}, inputs), targets)

        loss, grads = jax.value_and_grad(loss_fn)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(state.step + 1, params, opt_state), {"loss": loss}

    return train_step


def make_train_chunk(train_step: StepFn, length: int, unroll: int = 2
                     ) -> Callable[..., tuple[TrainState, Metrics]]:
    """Jit ``length`` steps as one ``lax.scan`` over batches gathered on device; state donated.

    ``unroll=2`` puts two steps in each loop iteration: bit-identical results, about 10% more
    steps/s at batch 32 on a 2-core CPU (less loop overhead per step; BENCHMARKS.md). The returned ``chunk(state, images_u8_NxD, order_TxB, offset, noise_key)`` runs rows
    ``offset .. offset+length-1`` of the epoch's batch order and returns per-step metrics.
    """

    def chunk(state: TrainState, images_u8: jax.Array, order_TxB: jax.Array,
              offset: jax.Array, noise_key: jax.Array) -> tuple[TrainState, Metrics]:
        idx_SxB = jax.lax.dynamic_slice_in_dim(order_TxB, offset, length)

        def body(state: TrainState, idx_B: jax.Array) -> tuple[TrainState, Metrics]:
            key = jax.random.fold_in(noise_key, state.step)
            return train_step(state, images_u8[idx_B], key)

        return jax.lax.scan(body, state, idx_SxB, unroll=unroll)

    return jax.jit(chunk, donate_argnums=0)


@functools.partial(jax.jit, static_argnums=(1, 2))
def epoch_order(key: jax.Array, num_examples: int, batch_size: int) -> jax.Array:
    """Shuffled example indices for one epoch as (steps, batch); the remainder is dropped."""
    steps = num_examples // batch_size
    return jax.random.permutation(key, num_examples)[: steps * batch_size].reshape(steps, -1)


def chunk_plan(steps: int, target_chunks: int = 20, max_length: int = 0) -> list[tuple[int, int]]:
    """Split an epoch's steps into (offset, length) chunks of (mostly) one length.

    Chunks let a progress bar advance without a host sync per step; a single length keeps it to
    one compilation when a divisor of ``steps`` is close to ``steps / target_chunks``. A
    ``max_length`` (the checkpoint interval) caps the length, so that a chunk ends soon after
    every multiple of it.
    """
    want = max(1, -(-steps // target_chunks))
    if max_length > 0:
        want = min(want, max_length)
    size = max(d for d in range(1, want + 1) if steps % d == 0)
    if size * 2 < want:
        size = want
    return [(o, min(size, steps - o)) for o in range(0, steps, size)]


def plan_from(plan: list[tuple[int, int]], offset: int) -> list[tuple[int, int]]:
    """The chunks of ``plan`` from step ``offset`` of the epoch on (a resumed epoch's rest)."""
    rest = [(o, n) for o, n in plan if o >= offset]
    end = rest[0][0] if rest else plan[-1][0] + plan[-1][1]
    return ([(offset, end - offset)] if end > offset else []) + rest


def root_keys(seed: int) -> dict[str, jax.Array]:
    """One root key from the seed, split once by purpose."""
    init, data, noise = jax.random.split(jax.random.key(seed), 3)
    return {"init": init, "data": data, "noise": noise}


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
    data_key: jax.Array
    mesh: jax.sharding.Mesh | None
    checkpoints: checkpoint.Checkpointer | None
    data: dict[str, Any]  # the training images' fingerprint, for checkpoints


def fit(cfg: Config, train_images_u8: np.ndarray, *, progress: bool = True,
        mesh: jax.sharding.Mesh | None = None,
        checkpoints: checkpoint.Checkpointer | None = None) -> tuple[TrainState, dict[str, Any]]:
    """Train on uint8 images (N, D), from scratch or from a checkpoint; return state and history.

    Args:
      cfg: the run's configuration.
      train_images_u8: uint8 training images, flattened to (N, D).
      progress: show a tqdm bar with the running loss.
      mesh: a 1-D device mesh to shard every global batch over (``aejax.parallel.make_mesh``);
        None trains on the default device.
      checkpoints: save the state at epoch ends (and every ``checkpoints.every`` steps), and
        continue from the latest checkpoint when ``checkpoints.resume``; None saves nothing.
    """
    num, features = train_images_u8.shape
    check_batch_size(cfg, num)
    model, tx = make_model(cfg, features), make_optimizer(cfg)
    keys = root_keys(cfg.seed)
    state, images, noise_key = place(create_state(keys["init"], model, tx), train_images_u8,
                                     keys["noise"], cfg, mesh)
    steps = num // cfg.batch_size
    data = checkpoint.fingerprint(train_images_u8) if checkpoints is not None else {}
    losses, seconds = [], 0.0
    if checkpoints is not None and checkpoints.resume:
        state, restored, seconds = checkpoints.load_latest(state, cfg, data, steps)
        losses = [restored]
    plan = chunk_plan(steps, max_length=checkpoints.every if checkpoints is not None else 0)
    done = sum(map(len, losses))
    lengths = {n for _, n in plan + plan_from(plan, done % steps)}  # a resumed epoch's rest too
    compile_start, step_fn = time.perf_counter(), make_train_step(cfg, model, tx)
    chunks = {n: compile_chunk(step_fn, n, state, images, steps, cfg, noise_key, mesh)
              for n in sorted(lengths)}
    compile_seconds = time.perf_counter() - compile_start
    loop = Loop(cfg, chunks, plan, images, noise_key, keys["data"], mesh, checkpoints, data)
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


def place(state: TrainState, images_u8: np.ndarray, noise_key: jax.Array, cfg: Config,
          mesh: jax.sharding.Mesh | None) -> tuple[TrainState, jax.Array, jax.Array]:
    """Put state, images and key on the device, or replicate them over the mesh."""
    if mesh is None:
        return state, jax.device_put(images_u8), noise_key
    parallel.check_batch(cfg.batch_size, mesh)  # data parallel: batches are sharded later
    return parallel.put((state, images_u8, noise_key), parallel.replicated(mesh))


def run_epochs(loop: Loop, state: TrainState, log: LossLog) -> TrainState:
    """Train to the last epoch from ``state``'s step, saving checkpoints at chunk ends."""
    cfg, plan, ckpt = loop.cfg, loop.plan, loop.checkpoints
    steps, start = plan[-1][0] + plan[-1][1], sum(map(len, log.losses))
    num = loop.images.shape[0]
    guard = checkpoint.stop_on_sigint() if ckpt is not None else contextlib.nullcontext()
    with guard as stop:
        for epoch in range(start // steps, cfg.epochs):
            order = epoch_order(jax.random.fold_in(loop.data_key, epoch), num, cfg.batch_size)
            if loop.mesh is not None:  # each device gets its columns of every batch
                order = parallel.put(order, parallel.batch_sharded(loop.mesh))
            pending = None
            for offset, n in plan_from(plan, max(0, start - epoch * steps)):
                state, metrics = loop.chunks[n](state, loop.images, order, np.int32(offset),
                                                loop.noise_key)
                if pending is not None:  # read the previous chunk while this one runs
                    log.add(*pending)
                first, end = epoch * steps + offset, epoch * steps + offset + n
                pending = (metrics["loss"], first, epoch)
                stopping = ckpt is not None and stop.requested()
                if ckpt is not None and (offset + n == steps or ckpt.due(first, end) or stopping):
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
                          seconds=log.seconds())


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
