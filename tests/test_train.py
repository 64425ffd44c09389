"""Tests for aejax.train: input/target pairing, the step, the on-device epoch, determinism."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from aejax import evaluate, loop, occlusion, parts, train
from aejax.config import Config
from tests.conftest import cpu, synthetic_digits, x64

CFG = Config(epochs=2, batch_size=16)


def flat_images(n: int = 320, seed: int = 0) -> np.ndarray:
    return synthetic_digits(n, seed)[0].reshape(n, -1)


def test_make_pair_target_is_clean_and_input_is_occluded() -> None:
    clean = jnp.asarray(flat_images(8), jnp.float32) / 255.0
    key = jax.random.key(5)
    inp, tgt = train.make_pair(key, clean, "none", parts.bars(CFG))
    assert inp is clean and tgt is clean
    inp, tgt = train.make_pair(key, clean, "all", parts.bars(CFG))
    expected = occlusion.occlude(jax.random.split(key)[0], clean)
    np.testing.assert_array_equal(np.asarray(tgt), np.asarray(clean))
    np.testing.assert_array_equal(np.asarray(inp), np.asarray(expected))
    assert not np.array_equal(np.asarray(inp), np.asarray(tgt))


def test_make_pair_returns_the_inputs_occluded_pixels_on_request() -> None:
    clean = jnp.asarray(flat_images(64), jnp.float32) / 255.0
    key, bars = jax.random.key(7), parts.bars(CFG)
    occ_key, pick_key = jax.random.split(key)
    bar_mask = np.asarray(bars(occ_key, clean)[1])
    pick = np.asarray(jax.random.bernoulli(pick_key, jnp.float32(0.5), (64, 1)))
    pair = jax.jit(train.make_pair, static_argnames=("mode", "occlude", "return_mask"))
    for mode, want in (("none", np.zeros_like(bar_mask)), ("all", bar_mask),
                       ("mixed", bar_mask & pick)):
        inp, tgt, mask = pair(key, clean, mode=mode, occlude=bars, return_mask=True)
        assert mask.dtype == bool and want.any() == (mode != "none")
        np.testing.assert_array_equal(mask, want, err_msg=mode)
        np.testing.assert_array_equal(inp, np.where(mask, 1.0, clean))  # bars only where masked
        for a, b in zip((inp, tgt), train.make_pair(key, clean, mode, bars), strict=True):
            np.testing.assert_array_equal(a, b)  # the same pair as without the mask


def test_the_first_loss_is_the_original_mse_computed_in_numpy() -> None:
    model, tx = train.make_model(CFG), train.make_optimizer(CFG)
    state = train.create_state(jax.random.key(2), model, tx)
    batch_u8 = flat_images(16)
    _, metrics = train.make_train_step(CFG, model, tx)(state, jnp.asarray(batch_u8),
                                                       jax.random.key(0))
    x = batch_u8.astype(np.float64) / 255.0  # pixels in [0, 1], the target is the clean input
    h = x
    for i in range(4):  # 784-128-50-128-784, ReLU inside, sigmoid out, written out by hand
        layer = state.params[f"dense_{i}"]
        h = h @ np.asarray(layer["kernel"], np.float64) + np.asarray(layer["bias"], np.float64)
        h = np.maximum(h, 0.0) if i < 3 else 1.0 / (1.0 + np.exp(-h))
    assert float(metrics["loss"]) == pytest.approx(np.mean((h - x) ** 2), rel=1e-5)


def test_mixed_occludes_about_half_of_the_inputs() -> None:
    clean = jnp.asarray(flat_images(400), jnp.float32) / 255.0
    inp, tgt = train.make_pair(jax.random.key(0), clean, "mixed", parts.bars(CFG))
    np.testing.assert_array_equal(np.asarray(tgt), np.asarray(clean))
    changed = np.any(np.asarray(inp) != np.asarray(clean), axis=1)
    assert 150 < changed.sum() < 250
    # the changed inputs are exactly the "all" pair's occluded images, row for row
    occluded, _ = train.make_pair(jax.random.key(0), clean, "all", parts.bars(CFG))
    np.testing.assert_array_equal(np.asarray(inp)[changed], np.asarray(occluded)[changed])


def test_mixed_draws_its_pick_from_its_own_key_not_the_occlusions() -> None:
    clean = jnp.asarray(flat_images(64), jnp.float32) / 255.0
    key = jax.random.key(7)
    inp, _ = train.make_pair(key, clean, "mixed", parts.bars(CFG))
    occ_key, pick_key = jax.random.split(key)  # one key each: the pick is not tied to the bars
    occluded, _ = parts.bars(CFG)(occ_key, clean)
    pick = np.asarray(jax.random.bernoulli(pick_key, jnp.float32(0.5), (64, 1)))
    np.testing.assert_array_equal(np.asarray(inp), np.where(pick, occluded, clean))


def test_a_train_step_is_adam_with_its_moments_carried_from_step_to_step() -> None:
    cfg = dataclasses.replace(CFG, train_occlusion="none")
    model, tx = train.make_model(cfg), train.make_optimizer(cfg)
    state = train.create_state(jax.random.key(0), model, tx)
    step = jax.jit(train.make_train_step(cfg, model, tx))
    ref_tx = optax.adam(cfg.learning_rate)
    params, opt = state.params, ref_tx.init(state.params)

    @jax.jit
    def ref_step(params: dict, opt: optax.OptState, x: jax.Array) -> tuple:
        grads = jax.grad(lambda p: train.mse(model.apply({"params": p}, x), x))(params)
        updates, opt = ref_tx.update(grads, opt, params)
        return optax.apply_updates(params, updates), opt

    for seed in range(3):
        batch = flat_images(16, seed)
        state, _ = step(state, jnp.asarray(batch), jax.random.key(1))
        params, opt = ref_step(params, opt, jnp.asarray(batch, jnp.float32) / 255.0)
    assert int(state.opt_state[0].count) == 3
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                 state.params, params)


def test_train_step_learns_and_jit_matches_eager() -> None:
    model, tx = train.make_model(CFG), train.make_optimizer(CFG)
    state = train.create_state(jax.random.key(0), model, tx)
    step = train.make_train_step(CFG, model, tx)
    batch = jnp.asarray(flat_images(16))
    with jax.disable_jit():
        eager_state, eager_metrics = step(state, batch, jax.random.key(1))
    jit_step = jax.jit(step)
    jit_state, jit_metrics = jit_step(state, batch, jax.random.key(1))
    np.testing.assert_allclose(eager_metrics["loss"], jit_metrics["loss"], rtol=1e-6)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                 eager_state.params, jit_state.params)
    first = float(jit_metrics["loss"])
    for i in range(50):
        jit_state, metrics = jit_step(jit_state, batch, jax.random.key(i))
    assert int(jit_state.step) == 51
    assert float(metrics["loss"]) < 0.5 * first


def test_scan_epoch_equals_a_python_loop_over_the_same_batches() -> None:
    with jax.default_device(cpu()):  # on an H100: 68 of 100,352 weights 1e-5 apart
        scan_epoch_equals_python_loop()


def scan_epoch_equals_python_loop() -> None:
    """``fit``'s epochs of scanned chunks give the losses and parameters of jitted steps, each
    epoch in its own order."""
    x = flat_images(160)
    cfg = dataclasses.replace(CFG, epochs=2, train_occlusion="mixed")
    state, history = loop.fit(cfg, x, progress=False)
    keys = train.root_keys(cfg.seed)
    model, tx = train.make_model(cfg), train.make_optimizer(cfg)
    ref = train.create_state(keys["init"], model, tx)
    step = jax.jit(train.make_train_step(cfg, model, tx))
    orders = [train.epoch_order(jax.random.fold_in(keys["data"], e), len(x), cfg.batch_size)
              for e in range(cfg.epochs)]
    assert not np.array_equal(np.asarray(orders[0]), np.asarray(orders[1]))
    losses = []
    for idx in np.concatenate([np.asarray(order) for order in orders]):
        ref, m = step(ref, jnp.asarray(x[idx]), jax.random.fold_in(keys["noise"], ref.step))
        losses.append(float(m["loss"]))
    np.testing.assert_allclose(history["loss"], losses, rtol=1e-5)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
                 state.params, ref.params)


def test_same_seed_is_bit_identical_and_other_seed_differs() -> None:
    x = flat_images(200)
    a, ha = loop.fit(CFG, x, progress=False)
    b, hb = loop.fit(CFG, x, progress=False)
    c, hc = loop.fit(dataclasses.replace(CFG, seed=1), x, progress=False)
    np.testing.assert_array_equal(ha["loss"], hb["loss"])
    jax.tree.map(np.testing.assert_array_equal, a.params, b.params)
    assert not np.array_equal(ha["loss"], hc["loss"])
    assert len(ha["loss"]) == CFG.epochs * (200 // CFG.batch_size)


def test_root_keys_are_distinct_and_the_check_key_is_no_step_key() -> None:
    keys = train.root_keys(0)
    data = {name: tuple(np.asarray(jax.random.key_data(k))) for name, k in keys.items()}
    steps = {tuple(np.asarray(jax.random.key_data(jax.random.fold_in(keys["noise"], i))))
             for i in range(200)}
    assert len(set(data.values())) == 4 and data["check"] not in steps


def test_epoch_order_is_a_permutation_without_the_remainder() -> None:
    order = np.asarray(train.epoch_order(jax.random.key(0), 100, 16))
    assert order.shape == (6, 16)
    assert len(np.unique(order)) == 96 and order.min() >= 0 and order.max() < 100
    other = np.asarray(train.epoch_order(jax.random.key(1), 100, 16))
    assert not np.array_equal(order, other)  # shuffled, by the key
    assert not np.array_equal(np.sort(order, axis=None), order.ravel())


def test_every_example_is_drawn_over_the_epochs_not_only_the_first_whole_batches() -> None:
    # the remainder dropped is a random one each epoch, not always the last examples
    orders = [np.asarray(train.epoch_order(jax.random.key(e), 100, 16)) for e in range(10)]
    np.testing.assert_array_equal(np.unique(np.concatenate(orders)), np.arange(100))


def test_uint8_pixels_become_floats_in_0_1_as_training_and_evaluation_scale_them() -> None:
    pixels = np.arange(256, dtype=np.uint8)
    # a JAX array under jit, as in the step (a NumPy array would take NumPy's exact division)
    got = np.asarray(jax.jit(train.to_float)(jnp.asarray(pixels)))
    assert got.dtype == np.float32 and got[0] == 0.0 and got[-1] == 1.0
    assert np.all(np.diff(got) > 0)
    # XLA multiplies by float32(1 / 255) rather than dividing: within one ulp of x / 255
    exact = (pixels / 255).astype(np.float32)
    np.testing.assert_array_less(np.abs(got.view(np.int32) - exact.view(np.int32)), 2)
    # and evaluate.evaluate scales the test images the same way, bit for bit
    model = train.make_model(CFG)
    params = train.create_state(jax.random.key(0), model, train.make_optimizer(CFG)).params
    images = np.resize(pixels, (1, 28, 28))  # every value 0..255 in one image
    _, arrays = evaluate.evaluate(CFG, model, params, images, np.zeros(1, np.int64))
    np.testing.assert_array_equal(np.asarray(arrays["clean"])[0, :256], got)


def test_a_train_step_refuses_unflattened_batches() -> None:
    model, tx = train.make_model(CFG), train.make_optimizer(CFG)
    state = train.create_state(jax.random.key(0), model, tx)
    step = jax.jit(train.make_train_step(CFG, model, tx))
    with pytest.raises(ValueError, match=r"must be flat uint8 images \(B, D\), got shape "
                                         r"\(8, 28, 28\): reshape them to \(B, -1\)"):
        step(state, flat_images(8).reshape(8, 28, 28), jax.random.key(1))


@pytest.mark.parametrize("dtype", [np.float32, np.int32])
def test_a_train_step_refuses_batches_that_are_not_uint8(dtype: type) -> None:
    model, tx = train.make_model(CFG), train.make_optimizer(CFG)
    state = train.create_state(jax.random.key(0), model, tx)
    step = jax.jit(train.make_train_step(CFG, model, tx))
    batch = (flat_images(CFG.batch_size) / 255).astype(dtype)  # [0, 1] would be /255 again
    with pytest.raises(TypeError, match=f"must be uint8 pixels .* got dtype {np.dtype(dtype)}"):
        step(state, batch, jax.random.key(1))


def test_epoch_order_is_int32_with_x64_enabled() -> None:
    with x64():
        order = train.epoch_order(jax.random.key(0), 100, 16)
    assert order.dtype == jnp.int32 and order.shape == (6, 16)


@pytest.mark.parametrize("batch_size", [0, 101])
def test_epoch_order_refuses_a_batch_size_outside_1_to_n(batch_size: int) -> None:
    with pytest.raises(ValueError, match=r"between 1 and the number of examples \(100\)"):
        train.epoch_order(jax.random.key(0), 100, batch_size)


def test_a_chunk_longer_than_the_epoch_is_refused_while_tracing() -> None:
    model, tx = train.make_model(CFG), train.make_optimizer(CFG)
    step = train.make_train_step(CFG, model, tx)
    images = jnp.asarray(flat_images(64))
    order = train.epoch_order(jax.random.key(1), 64, 16)  # 4 steps
    state = train.create_state(jax.random.key(2), model, tx)
    with pytest.raises(ValueError, match=r"^a chunk of 5 steps is longer than the epoch's 4 "
                                         r"\(the batch order's rows\); give a length up to 4"):
        train.make_train_chunk(step, 5)(state, images, order, np.int32(0), jax.random.key(3))
    state, metrics = train.make_train_chunk(step, 4)(state, images, order, np.int32(0),
                                                     jax.random.key(3))  # the whole epoch runs
    assert metrics["loss"].shape == (4,) and int(state.step) == 4


@pytest.mark.parametrize("length, unroll", [(0, 1), (-1, 1), (2.0, 1), (2, 0), (2, 1.5)])
def test_a_chunk_length_or_unroll_that_is_not_a_positive_integer_is_refused_at_once(
        length: object, unroll: object) -> None:
    step = train.make_train_step(CFG, train.make_model(CFG), train.make_optimizer(CFG))
    with pytest.raises(ValueError, match=r"^a chunk's (length|unroll) must be a positive integer, "
                                         r"got (0|-1|2\.0|1\.5)$"):
        train.make_train_chunk(step, length, unroll)  # not later, deep in lax (a TypeError)


def test_an_occluded_step_reconstructs_the_occluded_input_and_scores_it_against_the_clean() -> None:
    cfg = dataclasses.replace(CFG, train_occlusion="all")
    model, tx = train.make_model(cfg), train.make_optimizer(cfg)
    state = train.create_state(jax.random.key(2), model, tx)
    batch_u8, key = jnp.asarray(flat_images(16)), jax.random.key(4)
    _, metrics = train.make_train_step(cfg, model, tx)(state, batch_u8, key)
    clean = train.to_float(batch_u8)
    occluded, _ = train.make_pair(key, clean, "all", parts.bars(cfg))
    recon = model.apply({"params": state.params}, occluded)
    want = float(train.mse(recon, clean))
    assert float(metrics["loss"]) == pytest.approx(want, rel=1e-6)
    wrong = (train.mse(recon, occluded),  # scored against the occluded input
             train.mse(model.apply({"params": state.params}, clean), clean))  # clean input
    assert all(abs(float(w) - want) > 1e-5 * want for w in wrong)  # so the test can tell


def test_a_chunk_donates_the_state_it_is_given() -> None:
    model, tx = train.make_model(CFG), train.make_optimizer(CFG)
    step = train.make_train_step(CFG, model, tx)
    images, order = jnp.asarray(flat_images(64)), train.epoch_order(jax.random.key(1), 64, 16)
    state = train.create_state(jax.random.key(2), model, tx)
    new, _ = train.make_train_chunk(step, 2)(state, images, order, np.int32(0), jax.random.key(3))
    assert all(x.is_deleted() for x in jax.tree.leaves(state))  # updated in place, no copy
    assert not images.is_deleted() and int(new.step) == 2  # the data stays for the next chunk
