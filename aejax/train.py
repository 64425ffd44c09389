"""Training: the train state, a pure jitted step, and chunks of an epoch that run on device.

The training set lives on device once, as uint8 (N, D). Each epoch draws a permutation from
``fold_in(data_key, epoch)``; batches are gathered by index inside ``jax.lax.scan`` and turned into
floats in the step. Per-step noise keys are ``fold_in(noise_key, step)``, so every random choice is
a function of (seed, epoch, step). The loop over epochs and chunks is ``aejax.loop.fit``.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from aejax import adam, partcheck, parts
from aejax.config import Config
from aejax.model import Autoencoder, init_params
from aejax.occlusion import is_integer

Metrics = dict[str, jax.Array]
UNROLL = 2  # training steps per loop iteration of a chunk's scan
CHECK_KEY_PURPOSE = 0x63686B73  # "chks": the range check's fold_in constant (``root_keys``)
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
    """Adam with the config's learning rate (the original: 1e-3); ``optax.adam``'s update and
    state layout, with one division per element instead of three (``aejax.adam``)."""
    return adam.adam(cfg.learning_rate)


@functools.partial(jax.jit, static_argnums=(1, 2))
def create_state(key: jax.Array, model: nn.Module,
                 tx: optax.GradientTransformation) -> TrainState:
    """Fresh parameters and optimizer state at step 0 (one compiled program, not eager ops)."""
    params = init_params(key, model)
    return TrainState(step=jnp.zeros((), jnp.int32), params=params, opt_state=tx.init(params))


def mse(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Mean squared error over every element (PyTorch's ``nn.MSELoss()``)."""
    return jnp.mean(jnp.square(pred - target))


def to_float(images_u8: jax.Array) -> jax.Array:
    """uint8 pixels -> float32 in [0, 1]; TypeError for any other dtype (checked when traced),
    as images already in [0, 1] would be divided by 255 again and train on near-black."""
    if jnp.dtype(images_u8.dtype) != jnp.uint8:
        raise TypeError(f"training batches must be uint8 pixels 0..255 (data.load's images), "
                        f"got dtype {jnp.dtype(images_u8.dtype)}")
    return images_u8.astype(jnp.float32) / 255.0


def make_pair(key: jax.Array, clean: jax.Array, mode: str, occlude: parts.OccludeFn, *,
              return_mask: bool = False) -> tuple[jax.Array, ...]:
    """The (input, target) pair for a training batch; the target is always the clean image.

    ``none``: the input is clean (the original); ``all``: every input is occluded by
    ``occlude(key, clean)`` (``parts.bars(cfg)`` for the config's bars); ``mixed``: each input
    is occluded with probability 0.5. With ``return_mask``, also the input's occluded pixels
    (boolean, shaped like ``clean``; all False where it is clean), for a step of one's own with
    a loss weighted by them.
    """
    if mode == "none":
        return (clean, clean, jnp.zeros(clean.shape, bool)) if return_mask else (clean, clean)
    occ_key, pick_key = jax.random.split(key)
    occluded, mask = partcheck.occlude_checked(occlude, occ_key, clean)
    if mode == "all":
        return (occluded, clean, mask) if return_mask else (occluded, clean)
    if mode == "mixed":  # one draw per image, whatever the image's own rank
        pick = jax.random.bernoulli(pick_key, jnp.float32(0.5),  # float32 draws under x64 too
                                    (clean.shape[0],) + (1,) * (clean.ndim - 1))
        pair = jnp.where(pick, occluded, clean), clean
        return (*pair, mask & pick) if return_mask else pair
    raise ValueError(f"train occlusion must be one of none, all, mixed; got {mode!r}")


def make_train_step(cfg: Config, model: Any, tx: optax.GradientTransformation, *,
                    loss: parts.LossFn | None = None, occlude: parts.OccludeFn | None = None
                    ) -> StepFn:
    """Build ``train_step(state, batch_u8, key) -> (state, metrics)``: forward, grad, Adam.

    ``loss(reconstruction, target)`` (None: ``mse``) and ``occlude`` (None: the config's bars)
    are the pluggable parts (``aejax.parts``); the defaults are the original's.
    """
    loss = mse if loss is None else loss
    occlude = parts.bars(cfg) if occlude is None else occlude

    def train_step(state: TrainState, batch_u8: jax.Array, key: jax.Array
                   ) -> tuple[TrainState, Metrics]:
        if batch_u8.ndim != 2:  # the model takes flat images, as fit passes them
            raise ValueError(f"training batches must be flat uint8 images (B, D), got shape "
                             f"{tuple(batch_u8.shape)}: reshape them to (B, -1)")
        inputs, targets = make_pair(key, to_float(batch_u8), cfg.train_occlusion, occlude)

        def loss_fn(params: Any) -> jax.Array:
            recon = model.apply({"params": params}, inputs)
            partcheck.check_reconstruction(model, inputs, recon)
            value = loss(recon, targets)
            if not isinstance(value, jax.Array):
                raise parts.PartError(f"a loss must return a scalar array; {parts.name(loss)} "
                                      f"returned a {type(value).__name__}")
            if jnp.ndim(value) != 0:
                raise ValueError(f"a loss must return a scalar; {parts.name(loss)} returned "
                                 f"shape {jnp.shape(value)}")
            if not jnp.issubdtype(value.dtype, jnp.floating):
                raise parts.PartError(f"a loss must return a float scalar (it is "
                                      f"differentiated); {parts.name(loss)} returned "
                                      f"{value.dtype}")
            return value

        value, grads = jax.value_and_grad(loss_fn)(state.params)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        return TrainState(state.step + 1, params, opt_state), {"loss": value}

    return train_step


def make_train_chunk(train_step: StepFn, length: int, unroll: int = UNROLL
                     ) -> Callable[..., tuple[TrainState, Metrics]]:
    """Jit ``length`` steps as one ``lax.scan`` over batches gathered on device; state donated.

    ``unroll=2`` puts two steps in each loop iteration: about 10% more steps/s at batch 32 on a
    2-core CPU (BENCHMARKS.md). An odd ``length`` ends with a lone step, whose Adam update XLA
    fuses differently (the last bits differ), so ``schedule.chunk_plan`` gives every chunk but an
    epoch's last a multiple of ``UNROLL`` steps. The returned
    ``chunk(state, images_u8_NxD, order_TxB, offset, noise_key)`` runs rows
    ``offset .. offset+length-1`` of the epoch's batch order and returns per-step metrics.
    ``offset + length`` must not exceed the epoch's T steps: like every dynamic slice, a start
    past ``T - length`` is clamped, and the chunk would re-run earlier batches.
    """
    for name, value in (("length", length), ("unroll", unroll)):
        if not is_integer(value) or value < 1:  # else a TypeError deep in lax, or an empty scan
            raise ValueError(f"a chunk's {name} must be a positive integer, got {value!r}")

    def chunk(state: TrainState, images_u8: jax.Array, order_TxB: jax.Array,
              offset: jax.Array, noise_key: jax.Array) -> tuple[TrainState, Metrics]:
        if length > len(order_TxB):  # checked while tracing: free at run time
            raise ValueError(f"a chunk of {length} steps is longer than the epoch's "
                             f"{len(order_TxB)} (the batch order's rows); give a length up to "
                             f"{len(order_TxB)}")
        idx_SxB = jax.lax.dynamic_slice_in_dim(order_TxB, offset, length)

        def body(state: TrainState, idx_B: jax.Array) -> tuple[TrainState, Metrics]:
            key = jax.random.fold_in(noise_key, state.step)
            return train_step(state, images_u8[idx_B], key)

        return jax.lax.scan(body, state, idx_SxB, unroll=unroll)

    return jax.jit(chunk, donate_argnums=0)


@functools.partial(jax.jit, static_argnums=(1, 2))
def epoch_order(key: jax.Array, num_examples: int, batch_size: int) -> jax.Array:
    """Shuffled example indices for one epoch as int32 (steps, batch); the remainder is dropped.

    int32 whatever ``jax_enable_x64`` says, as the compiled chunks take it.
    """
    if not 1 <= batch_size <= num_examples:
        raise ValueError(f"batch size must be between 1 and the number of examples "
                         f"({num_examples}), got {batch_size}")
    steps = num_examples // batch_size
    order = jax.random.permutation(key, num_examples)[: steps * batch_size]
    return order.astype(jnp.int32).reshape(steps, batch_size)


def root_keys(seed: int) -> dict[str, jax.Array]:
    """One root key from the seed, split once by purpose (``check``: the custom parts' range
    check before training, folded in with a constant that no other derivation uses)."""
    root = jax.random.key(seed)
    init, data, noise = jax.random.split(root, 3)
    return {"init": init, "data": data, "noise": noise,
            "check": jax.random.fold_in(root, CHECK_KEY_PURPOSE)}
