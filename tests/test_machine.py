"""Tests for aejax.machine: the platform a benchmark runs on."""

from __future__ import annotations

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
        assert os.environ["JAX_PLATFORMS"] == "cpu"
        machine.use_platform()  # this machine's backend (CPU): precision left alone
        assert jax.config.jax_default_matmul_precision == before
        assert os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
        monkeypatch.setattr(jax, "default_backend", lambda: "gpu")  # a GPU, without --device
        machine.use_platform()
        assert jax.config.jax_default_matmul_precision == "highest"
        assert os.environ["JAX_DEFAULT_MATMUL_PRECISION"] == "highest"  # children inherit it
    finally:
        jax.config.update("jax_default_matmul_precision", before)
        jax.config.update("jax_platforms", platforms)
