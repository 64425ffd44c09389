"""The per-matmul timings of BENCHMARKS.md's "Newer JAX" section.

Each of the training step's five 784-wide matmuls at batch 1024, in the operand layouts of the
compiled step (layer 4's input gradient contracts the kernel's last dimension; the weight
gradients contract the batch), and both layers' forward matmuls at batch 32, timed on their own:
a jitted ``fori_loop`` of N products whose left operand is updated every iteration (so XLA
cannot hoist the product; the update is one more element-wise pass over that operand, which
inflates the 1024 x 784 rows slightly), best of 7 calls after an untimed one. The 1024 x 1024
square matmul is the roofline's. Run it once per JAX version, alternating:

    python docs/matmul_shapes.py
"""
import time

import jax
import numpy as np


def time_matmul(a_shape: tuple[int, int], b_shape: tuple[int, int], n: int,
                transpose_a: bool = False, transpose_b: bool = False) -> float:
    """Microseconds per product ``a @ b`` (``a.T``, ``b.T`` with the flags), best of 7."""
    rng = np.random.default_rng(0)
    a = jax.numpy.asarray(rng.random(a_shape, dtype=np.float32))
    b = jax.numpy.asarray(rng.random(b_shape, dtype=np.float32))

    @jax.jit
    def loop(a, b):
        def body(i, a):
            c = (a.T if transpose_a else a) @ (b.T if transpose_b else b)
            return a + 1e-9 * c[0, 0]
        return jax.lax.fori_loop(0, n, body, a)

    loop(a, b).block_until_ready()
    best = float("inf")
    for _ in range(7):
        start = time.perf_counter()
        loop(a, b).block_until_ready()
        best = min(best, (time.perf_counter() - start) / n)
    return best * 1e6


SHAPES = [  # name, a, b, a transposed, b transposed
    ("L1 fwd 1024x784x128", (1024, 784), (784, 128), False, False),
    ("L4 fwd 1024x128x784", (1024, 128), (128, 784), False, False),
    ("L4 dx 1024x784x128", (1024, 784), (128, 784), False, True),
    ("dW1 784x1024x128", (1024, 784), (1024, 128), True, False),
    ("dW4 128x1024x784", (1024, 128), (1024, 784), True, False),
    ("L1 fwd b32", (32, 784), (784, 128), False, False),
    ("L4 fwd b32", (32, 128), (128, 784), False, False),
    ("sq 1024", (1024, 1024), (1024, 1024), False, False),
]

if __name__ == "__main__":
    print("jax", jax.__version__)
    for name, a_shape, b_shape, transpose_a, transpose_b in SHAPES:
        m, k = (a_shape[1], a_shape[0]) if transpose_a else a_shape
        n_out = b_shape[0] if transpose_b else b_shape[1]
        us = time_matmul(a_shape, b_shape, 2000 if m == 32 else 100, transpose_a, transpose_b)
        print(f"{name:22s} {us:8.1f} us {2 * m * k * n_out / us / 1e3:6.1f} GFLOP/s")
