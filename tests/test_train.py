"""Tests for aejax.train: input/target pairing, the step, the on-device epoch, determinism."""

from __future__ import annotations

import contextlib
import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import checkpoint, loop, occlusion, parts, train
from aejax.config import Config
from tests.conftest import synthetic_digits

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
    x = flat_images(160)
    cfg = dataclasses.replace(CFG, epochs=1, train_occlusion="mixed")
    state, history = loop.fit(cfg, x, progress=False)
    keys = train.root_keys(cfg.seed)
    model, tx = train.make_model(cfg), train.make_optimizer(cfg)
    ref = train.create_state(keys["init"], model, tx)
    step = jax.jit(train.make_train_step(cfg, model, tx))
    order = train.epoch_order(jax.random.fold_in(keys["data"], 0), len(x), cfg.batch_size)
    losses = []
    for idx in np.asarray(order):
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


def test_epoch_order_is_a_permutation_without_the_remainder() -> None:
    order = np.asarray(train.epoch_order(jax.random.key(0), 100, 16))
    assert order.shape == (6, 16)
    assert len(np.unique(order)) == 96 and order.min() >= 0 and order.max() < 100


def test_epoch_orders_are_each_epochs_own_order() -> None:
    key = jax.random.key(3)
    orders = loop.epoch_orders(key, range(1, 3), 100, 16)
    assert list(orders) == [1, 2]
    for epoch, order in orders.items():
        want = train.epoch_order(jax.random.fold_in(key, epoch), 100, 16)
        np.testing.assert_array_equal(np.asarray(order), np.asarray(want))
    assert not np.array_equal(np.asarray(orders[1]), np.asarray(orders[2]))


def test_epoch_orders_are_computed_a_window_ahead_not_all_at_once() -> None:
    key = jax.random.key(4)
    orders = loop.EpochOrders(key, 64, 16, range(2, 2 + loop.ORDERS_AHEAD + 5))
    assert sorted(orders.ready) == list(range(2, 2 + loop.ORDERS_AHEAD))  # bounded memory
    orders.done(2)  # epoch 2 trained: its order goes, the one ORDERS_AHEAD later comes
    assert sorted(orders.ready) == list(range(3, 3 + loop.ORDERS_AHEAD))
    for epoch in (5, 2 + loop.ORDERS_AHEAD + 4):  # ready, or computed when asked for
        want = train.epoch_order(jax.random.fold_in(key, epoch), 64, 16)
        np.testing.assert_array_equal(np.asarray(orders[epoch]), np.asarray(want))


def test_training_past_the_order_window_equals_training_with_every_order_ahead(
        monkeypatch) -> None:
    cfg = dataclasses.replace(CFG, epochs=loop.ORDERS_AHEAD + 3)
    x = flat_images(64)
    _, windowed = loop.fit(cfg, x, progress=False)
    monkeypatch.setattr(loop, "ORDERS_AHEAD", 1000)
    _, all_ahead = loop.fit(cfg, x, progress=False)
    assert len(windowed["loss"]) == cfg.epochs * 4
    np.testing.assert_array_equal(windowed["loss"], all_ahead["loss"])


@pytest.mark.parametrize("steps", [1, 7, 97, 1875, 2000])
def test_chunk_plan_covers_every_step_once(steps: int) -> None:
    plan = loop.chunk_plan(steps)
    covered = [o + i for o, n in plan for i in range(n)]
    assert covered == list(range(steps))
    assert len({n for _, n in plan}) <= 3  # the chunk size, the epoch's rest (or 2 + 1 for 3)


@pytest.mark.parametrize("steps,length", [(1875, 94), (58, 16), (234, 16), (1000, 50), (7, 7)])
def test_chunks_aim_at_min_length_steps_or_more(steps: int, length: int) -> None:
    plan = loop.chunk_plan(steps)
    assert plan[0][1] == length and all(n >= min(16, steps) for _, n in plan[:-1])


@pytest.mark.parametrize("steps", [1, 7, 58, 97, 1875, 2000])
@pytest.mark.parametrize("every", [0, 2, 3, 5, 50])
def test_every_chunk_but_the_last_is_whole_unrolled_pairs(steps: int, every: int) -> None:
    plan = loop.chunk_plan(steps, max_length=every)
    assert all(n % train.UNROLL == 0 for _, n in plan[:-1])


def test_a_last_chunk_of_three_steps_runs_as_a_pair_and_a_lone_step() -> None:
    assert loop.chunk_plan(101, max_length=14)[-3:] == [(84, 14), (98, 2), (100, 1)]
    assert loop.chunk_plan(3) == [(0, 2), (2, 1)]
    # and so the plan does not change the result: 4 + 2 + 1 steps against one chunk of 7
    cfg = dataclasses.replace(CFG, train_occlusion="mixed")
    model, tx = train.make_model(cfg), train.make_optimizer(cfg)
    images, keys = jnp.asarray(flat_images(112)), train.root_keys(0)
    order = train.epoch_order(keys["data"], 112, cfg.batch_size)
    step = train.make_train_step(cfg, model, tx)

    def params_after(plan: list[tuple[int, int]]) -> list[np.ndarray]:
        state = train.create_state(keys["init"], model, tx)
        for offset, n in plan:
            state, _ = train.make_train_chunk(step, n)(state, images, order, np.int32(offset),
                                                       keys["noise"])
        return [np.asarray(x) for x in jax.tree.leaves(state.params)]

    plan = loop.chunk_plan(7, max_length=4)
    assert plan == [(0, 4), (4, 2), (6, 1)]
    for got, want in zip(params_after(plan), params_after([(0, 7)])):
        np.testing.assert_array_equal(got, want)


def test_batch_larger_than_training_set_is_refused() -> None:
    with pytest.raises(ValueError, match="between 1 and the training set size"):
        loop.fit(dataclasses.replace(CFG, batch_size=500), flat_images(100), progress=False)


@pytest.mark.parametrize("steps,every", [(40, 5), (1875, 100), (97, 1), (7, 3)])
def test_chunk_plan_caps_chunks_at_the_checkpoint_interval(steps: int, every: int) -> None:
    plan = loop.chunk_plan(steps, max_length=every)
    assert [o + i for o, n in plan for i in range(n)] == list(range(steps))
    assert max(n for _, n in plan) <= every


@pytest.mark.parametrize("offset", [0, 6, 7, 39])
def test_plan_from_covers_the_rest_of_the_epoch_once(offset: int) -> None:
    plan = loop.chunk_plan(40, max_length=3)
    rest = loop.plan_from(plan, offset)
    assert [o + i for o, n in rest for i in range(n)] == list(range(offset, 40))
    assert all(n <= 3 for _, n in rest) and (offset != 0 or rest == plan)


def test_a_resumed_epochs_rest_of_three_steps_also_runs_as_a_pair_and_a_lone_step() -> None:
    # an odd epoch saved 3 steps before its end under another --checkpoint-every (a kill)
    assert loop.plan_from(loop.chunk_plan(117, max_length=50), 114) == [(114, 2), (116, 1)]
    assert loop.plan_from([(0, 12)], 9) == [(9, 2), (11, 1)]
    assert loop.plan_from(loop.chunk_plan(117), 112) == [(112, 5)]


def test_resuming_from_a_mid_epoch_checkpoint_is_bit_identical(tmp_path: Path) -> None:
    x = flat_images(640)
    cfg = dataclasses.replace(CFG, epochs=3, train_occlusion="mixed")
    ref, ref_history = loop.fit(cfg, x, progress=False)  # uninterrupted, no checkpoints
    one_epoch = dataclasses.replace(cfg, epochs=1)
    with contextlib.closing(checkpoint.Checkpointer(tmp_path, every=5, keep=100)) as ckpt:
        loop.fit(one_epoch, x, progress=False, checkpoints=ckpt)
        ckpt.manager.wait_until_finished()
        # 4-step chunks (the uninterrupted run's are 10 steps long): the results do not depend on it
        assert ckpt.manager.all_steps() == [8, 12, 16, 20, 28, 32, 36, 40]
        for step in (32, 36, 40):  # as if killed after step 28, seven tenths into the epoch
            ckpt.manager.delete(step)
    with contextlib.closing(checkpoint.Checkpointer(tmp_path, every=5, resume=True)) as ckpt:
        assert ckpt.latest()[1]["offset"] == 28
        state, history = loop.fit(cfg, x, progress=False, checkpoints=ckpt)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(ref), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(history["loss"], ref_history["loss"])


def test_a_ctrl_c_during_the_last_chunk_still_stops_with_the_saved_step(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class LateFlag:  # SIGINT arrives after the last chunk's check: while it runs, or its save
        calls = 0

        def requested(self) -> bool:
            self.calls += 1
            return self.calls > len(loop.chunk_plan(320 // CFG.batch_size)) * CFG.epochs

    monkeypatch.setattr(checkpoint, "stop_on_sigint", lambda: contextlib.nullcontext(LateFlag()))
    with contextlib.closing(checkpoint.Checkpointer(tmp_path / "ck")) as ckpt:
        with pytest.raises(checkpoint.Interrupted, match=r"interrupted after the last step: saved "
                           r"step 40 in .*ck; --workdir .* --resume evaluates it"):
            loop.fit(CFG, flat_images(), progress=False, checkpoints=ckpt)
        ckpt.manager.wait_until_finished()
        assert ckpt.manager.latest_step() == 40


def first_non_finite_step(cfg: Config, x: np.ndarray) -> int:
    """The first step whose loss is NaN or inf, found with a plain Python loop of jitted steps."""
    keys = train.root_keys(cfg.seed)
    model, tx = train.make_model(cfg), train.make_optimizer(cfg)
    state = train.create_state(keys["init"], model, tx)
    step = jax.jit(train.make_train_step(cfg, model, tx))
    order = train.epoch_order(jax.random.fold_in(keys["data"], 0), len(x), cfg.batch_size)
    for i, idx in enumerate(np.asarray(order)):
        state, m = step(state, jnp.asarray(x[idx]), jax.random.fold_in(keys["noise"], state.step))
        if not np.isfinite(float(m["loss"])):
            return i
    raise AssertionError("the loss stayed finite")


def test_a_non_finite_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(
        tmp_path: Path) -> None:
    x = flat_images(320)
    cfg = dataclasses.replace(CFG, learning_rate=1e8)  # Adam diverges within a few steps
    bad = first_non_finite_step(cfg, x)
    assert bad >= 2
    with contextlib.closing(checkpoint.Checkpointer(tmp_path, every=2, keep=100)) as ckpt:
        with pytest.raises(ValueError, match=(
                rf"the loss is nan at step {bad} \(epoch 1\); training stopped; the last good "
                rf"checkpoint \(step {bad // 2 * 2}\) is kept in .*; try a lower "
                r"--learning-rate than 100000000.0")):
            loop.fit(cfg, x, progress=False, checkpoints=ckpt)
        assert ckpt.manager.all_steps() == list(range(2, bad + 1, 2))
        state = ckpt.restore(bad // 2 * 2, train.create_state(
            jax.random.key(0), train.make_model(cfg), train.make_optimizer(cfg)))
    assert checkpoint.all_finite(state)
