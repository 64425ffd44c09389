"""What the digests of custom parts follow (the computation, not the source), and a resume
that notices a part edited under the same name."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import checkpoint, loop, parts, train
from aejax.partdigest import digests
from aejax.parts import Parts
from tests.test_parts import CFG, Tiny, bce, images_u8, patch


def bce_renamed(pred: jax.Array, target: jax.Array) -> jax.Array:
    clipped = jnp.clip(pred, 1e-6, 1 - 1e-6)  # bce, written differently: the same computation
    return -jnp.mean(target * jnp.log(clipped) + (1 - target) * jnp.log(1 - clipped))


def bce_edited(pred: jax.Array, target: jax.Array) -> jax.Array:
    p = jnp.clip(pred, 1e-4, 1 - 1e-4)  # another constant
    return -jnp.mean(target * jnp.log(p) + (1 - target) * jnp.log(1 - p))


bce_edited.__qualname__ = bce_edited.__name__ = "bce"  # as if bce itself had been edited
bce_edited.__module__ = bce.__module__


def row_bar(row: int) -> Any:
    """An occlusion closing over its mask: a constant array, not an argument."""
    mask = jnp.zeros((28, 28), bool).at[row].set(True).reshape(1, -1)

    def bar(key: jax.Array, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        m = jnp.broadcast_to(mask, images.shape)
        return jnp.where(m, 1.0, images), m

    return bar


def per_batch_of_32(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Written for batches of 32 only."""
    return jnp.mean(jnp.sum(jnp.square(pred - target).reshape(32, 28, 28), axis=(1, 2)))


def scaled_by(weight: float) -> Any:
    """A loss whose jitted helper closes over an array: a constant of a nested jaxpr."""
    w = jnp.full((1, 784), weight)

    @jax.jit
    def weigh(x: jax.Array) -> jax.Array:
        return x * w

    def loss(pred: jax.Array, target: jax.Array) -> jax.Array:
        return jnp.mean(jnp.square(weigh(pred - target)))

    return loss


def by_dtype(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Another formula for bfloat16 reconstructions."""
    if pred.dtype == jnp.bfloat16:
        return jnp.mean(jnp.abs(pred.astype(jnp.float32) - target))
    return jnp.mean(jnp.square(pred - target))


def with_gradient_scaled(scale: float) -> Any:
    """MSE whose custom_vjp scales its gradient: the forward is the same for every scale."""

    @jax.custom_vjp
    def loss(pred: jax.Array, target: jax.Array) -> jax.Array:
        return jnp.mean(jnp.square(pred - target))

    def fwd(pred: jax.Array, target: jax.Array) -> tuple[jax.Array, Any]:
        return loss(pred, target), (pred, target)

    def bwd(res: Any, g: jax.Array) -> tuple[jax.Array, jax.Array]:
        pred, target = res
        d = scale * g * 2 * (pred - target) / pred.size
        return d, -d

    loss.defvjp(fwd, bwd)
    return loss


class Half(nn.Module):
    """Tiny in bfloat16: its reconstructions are bfloat16."""

    features: int = 784

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.sigmoid(nn.Dense(self.features, dtype=jnp.bfloat16)(x))


class Binary(nn.Module):
    """Integer reconstructions: trainable (their gradient is zero), but not differentiable."""

    features: int = 784

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return (nn.Dense(self.features)(x) > 0).astype(jnp.int32)


def test_digests_follow_the_computation_not_the_source() -> None:
    model = Tiny()
    params = train.create_state(jax.random.key(0), model, train.make_optimizer(CFG)).params
    batch = jax.ShapeDtypeStruct((8, 784), jnp.float32)
    digest = functools.partial(digests, model=model, params=params, batch=batch,
                               key=jax.random.key(1))
    assert digest(Parts()) == {}
    assert set(digest(Parts(model=model, loss=bce, occlude=patch))) == {"model", "loss", "occlude"}
    assert digest(Parts(loss=bce)) == digest(Parts(loss=bce_renamed))
    assert digest(Parts(loss=bce)) != digest(Parts(loss=bce_edited))
    assert digest(Parts(occlude=row_bar(3))) == digest(Parts(occlude=row_bar(3)))
    assert digest(Parts(occlude=row_bar(3))) != digest(Parts(occlude=row_bar(4)))  # the constant
    assert digest(Parts(loss=scaled_by(0.5))) != digest(Parts(loss=scaled_by(0.25)))  # nested
    assert (digest(Parts(loss=with_gradient_scaled(1.0)))  # the backward counts
            != digest(Parts(loss=with_gradient_scaled(2.0))))
    assert digest(Parts(loss=per_batch_of_32)) == {}  # cannot be traced at 8 images: no digest
    assert digest(Parts(loss=per_batch_of_32), batch=jax.ShapeDtypeStruct((32, 784), jnp.float32))
    half = Half()
    half_params = train.create_state(jax.random.key(0), half, train.make_optimizer(CFG)).params
    assert (digest(Parts(loss=by_dtype), model=half, params=half_params)  # the model's output
            != digest(Parts(loss=by_dtype)))
    binary = Binary()
    binary_params = train.create_state(jax.random.key(0), binary, train.make_optimizer(CFG)).params
    assert set(digest(Parts(model=binary, loss=bce), model=binary, params=binary_params)) == {
        "model", "loss"}  # no gradient to trace: the forward alone


def test_a_loss_written_for_the_training_batch_shape_trains(tmp_path: Path) -> None:
    cfg = dataclasses.replace(CFG, batch_size=32)  # digests trace 32 images, as training does
    with contextlib.closing(checkpoint.Checkpointer(tmp_path)) as ckpt:
        _, history = loop.fit(cfg, images_u8(64), progress=False, checkpoints=ckpt,
                              parts=Parts(loss=per_batch_of_32))
    assert np.isfinite(history["loss"]).all()


def test_resuming_with_a_part_edited_under_the_same_name_warns(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    assert parts.name(bce_edited) == parts.name(bce)  # the names cannot tell them apart
    x = images_u8(32)
    with contextlib.closing(checkpoint.Checkpointer(tmp_path)) as ckpt:
        loop.fit(CFG, x, progress=False, checkpoints=ckpt, parts=Parts(loss=bce))
    for loss, epochs, warned in ((bce, 2, False), (bce_edited, 3, True)):
        caplog.clear()
        with contextlib.closing(checkpoint.Checkpointer(tmp_path, resume=True)) as ckpt:
            loop.fit(dataclasses.replace(CFG, epochs=epochs), x, progress=False, checkpoints=ckpt,
                     parts=Parts(loss=loss))
        messages = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
        assert any("whose computation has changed since" in m and "a loss named "
                   f"{parts.name(bce)}" in m for m in messages) == warned, messages


class GradScaled(nn.Module):
    """Tiny whose custom_vjp scales the gradient reaching its output: the same forward for
    every scale."""

    scale: float = 1.0
    features: int = 784

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = self.scale

        @jax.custom_vjp
        def same(y: jax.Array) -> jax.Array:
            return y

        same.defvjp(lambda y: (y, None), lambda _, g: (scale * g,))
        return same(nn.sigmoid(nn.Dense(self.features)(x)))


def keyed(seed: int) -> Any:
    """An occlusion closing over a PRNG key: a constant of key type."""
    fixed = jax.random.key(seed)

    def speckle(key: jax.Array, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        m = jax.random.bernoulli(fixed, 0.1, images.shape)
        return jnp.where(m, 1.0, images), m

    return speckle


def test_digests_follow_a_models_backward_and_an_occlusions_key_constants() -> None:
    batch = jax.ShapeDtypeStruct((8, 784), jnp.float32)

    def digest(part: Parts, model: nn.Module = Tiny()) -> dict[str, str]:
        params = train.create_state(jax.random.key(0), model, train.make_optimizer(CFG)).params
        return digests(part, model, params, batch, jax.random.key(1))

    one, two = GradScaled(1.0), GradScaled(2.0)
    assert digest(Parts(model=one), one)["model"] != digest(Parts(model=two), two)["model"]
    assert "occlude" in digest(Parts(occlude=keyed(0)))
    assert digest(Parts(occlude=keyed(0))) == digest(Parts(occlude=keyed(0)))
    assert digest(Parts(occlude=keyed(0))) != digest(Parts(occlude=keyed(1)))
