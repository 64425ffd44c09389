"""The machine's own roofline: dense float32 matmul GFLOP/s, and training measured against it.

The roofline is the best of several timed runs of one large square float32 matmul, jitted on the
same device, in the same process and with the same threading as the training it is compared with.
A training step of a dense network costs about 6 x parameters x batch FLOPs (2 for the forward
matmuls, 4 for the backward ones); biases and activations are left out of that count.
"""

from __future__ import annotations

import time

import jax
import jax.numpy as jnp

from aejax import parallel


def step_flops(num_params: int, batch_size: int) -> float:
    """FLOPs of one training step by the 6 x parameters x batch rule."""
    return 6.0 * num_params * batch_size


def matmul_gflops(size: int = 1024, repeats: int = 20, *, device: jax.Device | None = None,
                  dtype: jax.typing.DTypeLike = jnp.float32) -> float:
    """Best-of-``repeats`` GFLOP/s of a jitted ``size`` x ``size`` matmul (2 n^3 FLOPs).

    Args:
      size: the side of the square matrices.
      repeats: timed runs after one warm-up; the fastest counts (noise only slows a run down).
      device: where to run (default: JAX's default device).
      dtype: the element type (float32, as training uses).
    """
    device = device or parallel.default_device()  # where arrays without a placement go
    keys = jax.random.split(jax.random.key(0))
    a, b = (jax.device_put(jax.random.normal(k, (size, size), dtype), device) for k in keys)
    matmul = jax.jit(jnp.matmul)
    matmul(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        matmul(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2.0 * size**3 / best / 1e9


def percent_of_roofline(steps_per_second: float, num_params: int, batch_size: int,
                        roofline_gflops: float) -> float:
    """Training's achieved GFLOP/s (6 x P x B per step) as a percentage of the roofline."""
    return 100.0 * steps_per_second * step_flops(num_params, batch_size) / 1e9 / roofline_gflops
