"""The machine a benchmark runs on: the JAX platform it uses, and the description of it (backend,
devices, CPU, versions, matmul precision, load average) recorded beside the numbers.
"""

from __future__ import annotations

import os
import platform
from typing import Any

import jax


def use_platform(device: str | None = None) -> None:
    """Run on ``cpu`` or ``gpu`` (None: JAX's default) and start that backend; call it before
    any backend starts. Child processes inherit the choice.

    On a GPU, chosen or by default, JAX does not preallocate 75% of its memory (the compile,
    train.py and scaling children and PyTorch share the device with this process), and float32
    matmuls are full float32 (``highest``) rather than TF32, like PyTorch's default, so that both
    sides and the roofline do the same arithmetic.
    """
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # read by GPU clients only
    if device is not None:
        name = {"cpu": "cpu", "gpu": "cuda"}[device]
        os.environ["JAX_PLATFORMS"] = name
        jax.config.update("jax_platforms", name)
    if jax.default_backend() == "gpu":
        os.environ.setdefault("JAX_DEFAULT_MATMUL_PRECISION", "highest")
        jax.config.update("jax_default_matmul_precision",
                          os.environ["JAX_DEFAULT_MATMUL_PRECISION"])


def machine() -> dict[str, Any]:
    """The platform, CPU, device and versions the numbers belong to."""
    device = jax.devices()[0]
    return {"backend": jax.default_backend(), "device_kind": device.device_kind,
            "device_count": jax.device_count(), "cpu": cpu_model(), "cpu_count": os.cpu_count(),
            "python": platform.python_version(), "jax": jax.__version__,
            "platform": platform.platform(),
            "matmul_precision": jax.config.jax_default_matmul_precision or "default"}


def cpu_model() -> str:
    """The CPU's model name (Linux), else the processor string."""
    try:
        with open("/proc/cpuinfo") as f:
            return next(line.split(":", 1)[1].strip() for line in f
                        if line.startswith("model name"))
    except (OSError, StopIteration):
        return platform.processor()


def load_average() -> list[float]:
    """The 1, 5 and 15 minute load averages (how busy the machine was)."""
    return [round(x, 2) for x in os.getloadavg()]
