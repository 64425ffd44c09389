"""The order of training work: each epoch's chunks (the chunk plan) and its batch order.

``chunk_plan`` splits an epoch's steps into the chunks ``aejax.loop`` runs as compiled scans;
``EpochOrders`` computes each epoch's shuffled batch order ahead of the training that needs it.
"""

from __future__ import annotations

from collections.abc import Iterable

import jax

from aejax.train import UNROLL, epoch_order

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
