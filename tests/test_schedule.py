"""Tests for aejax.schedule: the chunk plan (every step once, whole pairs, bit-identical
results under any plan) and the epoch orders computed ahead."""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import loop, schedule, train
from tests.test_train import CFG, flat_images


def test_epoch_orders_are_each_epochs_own_order() -> None:
    key = jax.random.key(3)
    orders = schedule.epoch_orders(key, range(1, 3), 100, 16)
    assert list(orders) == [1, 2]
    for epoch, order in orders.items():
        want = train.epoch_order(jax.random.fold_in(key, epoch), 100, 16)
        np.testing.assert_array_equal(np.asarray(order), np.asarray(want))
    assert not np.array_equal(np.asarray(orders[1]), np.asarray(orders[2]))


def test_epoch_orders_are_computed_a_window_ahead_not_all_at_once() -> None:
    key = jax.random.key(4)
    orders = schedule.EpochOrders(key, 64, 16, range(2, 2 + schedule.ORDERS_AHEAD + 5))
    assert sorted(orders.ready) == list(range(2, 2 + schedule.ORDERS_AHEAD))  # bounded memory
    orders.done(2)  # epoch 2 trained: its order goes, the one ORDERS_AHEAD later comes
    assert sorted(orders.ready) == list(range(3, 3 + schedule.ORDERS_AHEAD))
    for epoch in (5, 2 + schedule.ORDERS_AHEAD + 4):  # ready, or computed when asked for
        want = train.epoch_order(jax.random.fold_in(key, epoch), 64, 16)
        np.testing.assert_array_equal(np.asarray(orders[epoch]), np.asarray(want))
    for epoch in orders.epochs:
        orders.done(epoch)
    assert orders.ready == {}  # nothing computed for epochs past the run's last


def test_training_past_the_order_window_equals_training_with_every_order_ahead(
        monkeypatch) -> None:
    cfg = dataclasses.replace(CFG, epochs=schedule.ORDERS_AHEAD + 3)
    x = flat_images(64)
    _, windowed = loop.fit(cfg, x, progress=False)
    monkeypatch.setattr(schedule, "ORDERS_AHEAD", 1000)
    _, all_ahead = loop.fit(cfg, x, progress=False)
    assert len(windowed["loss"]) == cfg.epochs * 4
    np.testing.assert_array_equal(windowed["loss"], all_ahead["loss"])


@pytest.mark.parametrize("steps", [1, 2, 7, 97, 1875, 2000])
def test_chunk_plan_covers_every_step_once(steps: int) -> None:
    plan = schedule.chunk_plan(steps)
    covered = [o + i for o, n in plan for i in range(n)]
    assert covered == list(range(steps)) and all(n > 0 for _, n in plan)  # no empty chunk
    assert len({n for _, n in plan}) <= 3  # the chunk size, the epoch's rest (or 2 + 1 for 3)


@pytest.mark.parametrize("steps,length", [(1875, 94), (58, 16), (234, 16), (1000, 50), (7, 7)])
def test_chunks_aim_at_min_length_steps_or_more(steps: int, length: int) -> None:
    plan = schedule.chunk_plan(steps)
    assert plan[0][1] == length and all(n >= min(16, steps) for _, n in plan[:-1])


@pytest.mark.parametrize("steps", [1, 7, 58, 97, 1875, 2000])
@pytest.mark.parametrize("every", [0, 2, 3, 5, 50])
def test_every_chunk_but_the_last_is_whole_unrolled_pairs(steps: int, every: int) -> None:
    plan = schedule.chunk_plan(steps, max_length=every)
    assert all(n % train.UNROLL == 0 for _, n in plan[:-1])


def test_a_last_chunk_of_three_steps_runs_as_a_pair_and_a_lone_step() -> None:
    assert schedule.chunk_plan(101, max_length=14)[-3:] == [(84, 14), (98, 2), (100, 1)]
    assert schedule.chunk_plan(3) == [(0, 2), (2, 1)]
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

    plan = schedule.chunk_plan(7, max_length=4)
    assert plan == [(0, 4), (4, 2), (6, 1)]
    for got, want in zip(params_after(plan), params_after([(0, 7)])):
        np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("steps", [5, 9, 15])
def test_an_odd_epoch_no_longer_than_the_checkpoint_interval_is_one_chunk(steps: int) -> None:
    # the wanted length covers the epoch: one chunk (one compilation), not pairs and a lone step
    assert schedule.chunk_plan(steps, max_length=steps) == [(0, steps)]


def test_a_divisor_exactly_half_the_wanted_length_is_preferred() -> None:
    # 136 = 8 x 17: chunks of 8 need one compilation; chunks of 16 would leave a rest of 8
    assert schedule.chunk_plan(136, max_length=16) == [(o, 8) for o in range(0, 136, 8)]


@pytest.mark.parametrize("steps,every", [(40, 5), (1875, 100), (97, 1), (7, 3)])
def test_chunk_plan_caps_chunks_at_the_checkpoint_interval(steps: int, every: int) -> None:
    plan = schedule.chunk_plan(steps, max_length=every)
    assert [o + i for o, n in plan for i in range(n)] == list(range(steps))
    assert max(n for _, n in plan) <= every


@pytest.mark.parametrize("offset", [0, 6, 7, 39])
def test_plan_from_covers_the_rest_of_the_epoch_once(offset: int) -> None:
    plan = schedule.chunk_plan(40, max_length=3)
    rest = schedule.plan_from(plan, offset)
    assert [o + i for o, n in rest for i in range(n)] == list(range(offset, 40))
    assert all(n <= 3 for _, n in rest) and (offset != 0 or rest == plan)


def test_a_resumed_epochs_rest_of_three_steps_also_runs_as_a_pair_and_a_lone_step() -> None:
    # an odd epoch saved 3 steps before its end under another --checkpoint-every (a kill)
    assert schedule.plan_from(schedule.chunk_plan(117, max_length=50), 114) == [(114, 2), (116, 1)]
    assert schedule.plan_from([(0, 12)], 9) == [(9, 2), (11, 1)]
    assert schedule.plan_from(schedule.chunk_plan(117), 112) == [(112, 5)]
