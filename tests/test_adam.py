"""Tests for aejax.adam: the rearranged Adam against optax.adam."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from aejax import adam, train
from aejax.config import Config
from tests.conftest import x64


def params_and_grads(seed: int, steps: int) -> tuple[dict, list[dict]]:
    keys = jax.random.split(jax.random.key(seed), steps + 1)
    shapes = {"kernel": (7, 5), "bias": (5,)}

    def tree(key: jax.Array, scale: float) -> dict:
        k1, k2 = jax.random.split(key)
        return {"kernel": scale * jax.random.normal(k1, shapes["kernel"]),
                "bias": scale * jax.random.normal(k2, shapes["bias"])}

    # gradients over six orders of magnitude, so that eps matters for some elements
    return tree(keys[0], 1.0), [tree(k, 10.0 ** -(i % 7)) for i, k in enumerate(keys[1:])]


SCHEDULE = optax.exponential_decay(3e-3, transition_steps=5, decay_rate=0.5)


@pytest.mark.parametrize("rate", [1e-3, SCHEDULE], ids=["float", "schedule"])
def test_state_has_the_layout_of_optax_adam(rate: object) -> None:
    params, _ = params_and_grads(0, 1)
    ours, theirs = adam.adam(rate).init(params), optax.adam(rate).init(params)
    assert jax.tree.structure(ours) == jax.tree.structure(theirs)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), ours, theirs)


@pytest.mark.parametrize("rate", [3e-3, SCHEDULE], ids=["float", "schedule"])
def test_updates_match_optax_adam_step_by_step(rate: object) -> None:
    params, grads = params_and_grads(1, 40)
    ours_tx, theirs_tx = adam.adam(rate), optax.adam(rate)
    ours, theirs = ours_tx.init(params), theirs_tx.init(params)
    for g in grads:  # the same gradients to both, so only rounding can separate them
        u_ours, ours = jax.jit(ours_tx.update)(g, ours, params)
        u_theirs, theirs = jax.jit(theirs_tx.update)(g, theirs, params)
        jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=3e-9),
                     u_ours, u_theirs)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-6),
                 ours[0].nu, theirs[0].nu)
    assert int(ours[0].count) == int(theirs[0].count) == len(grads)
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), ours[1], theirs[1])


def test_first_step_moves_every_parameter_by_the_learning_rate() -> None:
    params, (g, *_) = params_and_grads(2, 1)
    updates, _ = adam.adam(1e-2).update(g, adam.adam(1e-2).init(params))
    # at t = 1 the bias-corrected step is lr * g / (|g| + eps): lr * sign(g) for |g| >> eps, up to
    # the float32 rounding of 1 - 0.999 (1.3e-5 relative; optax.adam rounds the same way)
    jax.tree.map(lambda u, gi: np.testing.assert_allclose(u, -1e-2 * jnp.sign(gi), rtol=1e-5),
                 updates, g)


def test_zero_gradients_leave_parameters_alone() -> None:
    params, _ = params_and_grads(3, 0)
    zeros = jax.tree.map(jnp.zeros_like, params)
    updates, _ = adam.adam(1e-3).update(zeros, adam.adam(1e-3).init(params))
    assert all(np.all(np.asarray(u) == 0) for u in jax.tree.leaves(updates))


def test_one_optimizer_per_setting_so_create_state_compiles_once() -> None:
    cfg = Config(learning_rate=3e-4)
    assert train.make_optimizer(cfg) is train.make_optimizer(Config(learning_rate=3e-4))
    assert train.make_optimizer(cfg) is not train.make_optimizer(Config())
    model = train.make_model(cfg)
    train.create_state(jax.random.key(0), model, train.make_optimizer(cfg))
    compiled = train.create_state._cache_size()
    train.create_state(jax.random.key(1), train.make_model(cfg), train.make_optimizer(cfg))
    assert train.create_state._cache_size() == compiled  # a second run reuses the program


def test_any_spelling_of_a_setting_is_one_object_and_array_rates_still_work() -> None:
    assert adam.adam(1e-3) is adam.adam(learning_rate=1e-3) is adam.adam(1e-3, 0.9, 0.999)
    assert adam.adam(1e-3) is not adam.adam(2e-3)
    params = {"w": jnp.ones(3)}

    def first_update(lr: jax.Array) -> jax.Array:
        tx = adam.adam(lr)
        return tx.update(params, tx.init(params))[0]["w"]

    want = first_update(1e-3)
    np.testing.assert_allclose(first_update(jnp.asarray(1e-3)), want)  # an array: hashed by value
    assert adam.adam(jnp.asarray(1e-3)) is adam.adam(float(jnp.float32(1e-3)))  # its float's
    np.testing.assert_allclose(jax.jit(first_update)(1e-3), want, rtol=1e-6)  # traced: not cached


def test_updates_stay_float32_and_equal_with_x64_enabled() -> None:
    params, grads = params_and_grads(3, 3)
    tx = adam.adam(1e-3)

    def run() -> list:
        state, out = tx.init(params), []
        for g in grads:
            updates, state = jax.jit(tx.update)(g, state, params)
            out.append(updates)
        return out

    ref = run()
    with x64():  # optax's dtypes: float32 updates, not float64 arithmetic
        wide = run()
    for a, b in zip(jax.tree.leaves(ref), jax.tree.leaves(wide), strict=True):
        assert b.dtype == jnp.float32
        np.testing.assert_array_equal(a, b)
