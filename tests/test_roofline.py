"""Tests for aejax.roofline: the 6PB rule and the matmul roofline the steps are measured against."""

from __future__ import annotations

import subprocess
import sys

import jax
import numpy as np
import pytest

from aejax import roofline
from tests.test_bench import fake_clock
from tests.test_parallel import TIMEOUT, device_env


def test_step_flops_and_percent_follow_the_6pb_rule() -> None:
    assert roofline.step_flops(214_594, 32) == 6 * 214_594 * 32
    # 1000 steps/s of 6 * 1e6 * 10 FLOPs = 60 GFLOP/s, which is 50% of 120 GFLOP/s
    assert roofline.percent_of_roofline(1000, 1_000_000, 10, 120.0) == pytest.approx(50.0)


def test_matmul_roofline_is_positive_and_finite() -> None:
    gflops = roofline.matmul_gflops(64, repeats=2)
    assert np.isfinite(gflops) and gflops > 0


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="a bound for CPUs")
def test_the_roofline_waits_for_its_matmuls() -> None:
    # timing only the dispatch (tens of microseconds) would claim tens of TFLOP/s at n = 1024
    assert roofline.matmul_gflops(1024, repeats=2) < 5_000


def test_the_roofline_is_2n3_flops_over_the_fastest_run(monkeypatch) -> None:
    monkeypatch.setattr(roofline, "time", fake_clock(0.0, 0.5, 1.0, 1.25, 2.0, 3.0))
    # timed runs of 0.5, 0.25 and 1 s: the fastest counts, 2 n^3 FLOPs each
    assert roofline.matmul_gflops(256, repeats=3) == pytest.approx(2 * 256**3 / 0.25 / 1e9)


DEFAULT_DEVICE_CODE = """
import jax
from aejax import roofline
placed = []
put = jax.device_put
jax.device_put = lambda x, device=None: placed.append(device) or put(x, device)
with jax.default_device(jax.devices()[1]):
    roofline.matmul_gflops(64, repeats=1)
print(placed == [jax.devices()[1]] * 2, placed)
"""


def test_the_roofline_runs_on_jax_default_device_as_documented() -> None:
    # "default: JAX's default device", where training runs; it took jax.devices()[0]
    done = subprocess.run([sys.executable, "-c", DEFAULT_DEVICE_CODE], env=device_env(2),
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("True"), done.stdout
