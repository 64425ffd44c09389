"""Tests for aejax.machine: the platform a benchmark runs on."""

from __future__ import annotations

import io
import os

import jax

from aejax import machine


def test_on_a_gpu_jax_matmuls_are_full_float32_like_pytorchs(monkeypatch) -> None:
    monkeypatch.delenv("JAX_DEFAULT_MATMUL_PRECISION", raising=False)
    monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE", raising=False)
    monkeypatch.setenv("JAX_PLATFORMS", "")
    before, platforms = jax.config.jax_default_matmul_precision, jax.config.jax_platforms
    try:
        machine.use_platform("cpu")  # children inherit the choice
        assert os.environ["JAX_PLATFORMS"] == "cpu" and jax.config.jax_platforms == "cpu"
        machine.use_platform()  # this machine's backend (CPU): precision left alone
        assert jax.config.jax_default_matmul_precision == before
        assert os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
        monkeypatch.setattr(jax, "default_backend", lambda: "gpu")  # a GPU, without --device
        machine.use_platform()
        assert jax.config.jax_default_matmul_precision == "highest"
        assert os.environ["JAX_DEFAULT_MATMUL_PRECISION"] == "highest"  # children inherit it
        monkeypatch.setenv("JAX_DEFAULT_MATMUL_PRECISION", "tensorfloat32")  # the user's choice
        machine.use_platform()
        assert jax.config.jax_default_matmul_precision == "tensorfloat32"
    finally:
        jax.config.update("jax_default_matmul_precision", before)
        jax.config.update("jax_platforms", platforms)


def test_the_recorded_cpu_is_its_model_name_or_the_processor_string(monkeypatch) -> None:
    def cpuinfo(lines):
        return lambda path: io.StringIO("".join(f"{line}\n" for line in lines))

    monkeypatch.setattr(machine, "open", cpuinfo(["processor\t: 0", "model name\t: Xeon: 8 cores",
                                                  "flags\t\t: fpu"]), raising=False)
    assert machine.cpu_model() == "Xeon: 8 cores"
    monkeypatch.setattr(machine.platform, "processor", lambda: "aarch64")
    monkeypatch.setattr(machine, "open", cpuinfo(["processor\t: 0", "BogoMIPS\t: 50.00"]),
                        raising=False)  # an ARM /proc/cpuinfo: no model name
    assert machine.cpu_model() == "aarch64"


def test_an_unset_matmul_precision_is_recorded_as_default() -> None:
    before = jax.config.jax_default_matmul_precision
    try:
        jax.config.update("jax_default_matmul_precision", None)
        described = machine.machine()
        assert described["matmul_precision"] == "default"
        assert described["device_count"] == jax.device_count() and described["cpu_count"] >= 1
    finally:
        jax.config.update("jax_default_matmul_precision", before)
