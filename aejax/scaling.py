"""Data-parallel scaling: training images/s against the number of devices.

Each device count runs in its own Python process, because the number of CPU devices
(``--xla_force_host_platform_device_count``) is fixed when JAX's backend starts. On a GPU
machine the same code shards over the real GPUs (the flag only affects the CPU platform).
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from aejax import loop, parallel
from aejax.config import Config

ROOT = Path(__file__).resolve().parents[1]


def throughput(devices: int, batch_size: int, steps: int, *, epochs: int = 2,
               features: int = 784, seed: int = 0) -> dict[str, Any]:
    """Train ``epochs`` x ``steps`` steps on random uint8 images; time them (compile excluded)."""
    images = np.random.default_rng(seed).integers(0, 256, (steps * batch_size, features), np.uint8)
    cfg = dataclasses.replace(Config(), epochs=epochs, batch_size=batch_size, seed=seed)
    _, history = loop.fit(cfg, images, progress=False, mesh=parallel.make_mesh(devices))
    done = epochs * steps
    return {"devices": devices, "batch_size": batch_size, "steps": done,
            "seconds": history["train_seconds"],
            "images_per_second": done * batch_size / history["train_seconds"],
            "backend": jax.default_backend(), "device_kind": jax.devices()[0].device_kind}


def check_batches(devices: Sequence[int], batch_sizes: Sequence[int]) -> None:
    """Refuse batch sizes that some device count does not divide: their rows would be missing."""
    bad = [b for b in batch_sizes if any(b % n for n in devices)]
    if bad:
        step, text = math.lcm(*devices), lambda xs: ",".join(map(str, xs))
        counts = [n for n in devices if any(b % n for b in bad)]
        fits = sorted({step * max(1, round(b / step)) for b in batch_sizes})
        sizes = f"batch size {bad[0]} is" if len(bad) == 1 else f"batch sizes {text(bad)} are"
        raise ValueError(f"--scaling {text(devices)}: {sizes} not divisible by "
                         f"{' or '.join(map(str, counts))} "
                         "devices (each device takes an equal share of every global batch); use "
                         f"--batch-sizes that are multiples of {step}, such as {text(fits)}")


def check_counts(devices: Sequence[int], batch_sizes: Sequence[int] = ()) -> None:
    """Refuse device counts this backend cannot give (only the CPU platform makes extra ones),
    or that do not divide every batch size."""
    backend, have = jax.default_backend(), jax.device_count()
    if backend != "cpu" and max(devices, default=1) > have:
        counts = ",".join(map(str, devices))
        raise ValueError(f"--scaling {counts}: the {backend} backend has {have} device(s), and "
                         "only the CPU can be split into more (--device cpu); use counts up to "
                         f"{have}")
    check_batches(devices, batch_sizes)


def measure(devices: int, batch_size: int, steps: int, *, timeout: float = 600) -> dict[str, Any]:
    """``throughput`` in a fresh process that sees at least ``devices`` CPU devices."""
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
    env = {**os.environ, "XLA_FLAGS": flags.strip(),
           "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    code = ("import json; from aejax import scaling; "
            f"print(json.dumps(scaling.throughput({devices}, {batch_size}, {steps})))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                          timeout=timeout)
    if done.returncode != 0:
        raise RuntimeError(f"{devices} device(s), batch {batch_size} failed:\n"
                           f"{done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def sweep(devices: Sequence[int], batch_sizes: Sequence[int], steps: int) -> list[dict[str, Any]]:
    """``measure`` for every (batch size, device count) pair (ValueError first if one of the
    batches does not split evenly over one of the counts)."""
    check_batches(devices, batch_sizes)
    return [measure(n, b, steps) for b in batch_sizes for n in devices]


def table(rows: list[dict[str, Any]]) -> str:
    """A Markdown table: one row per global batch, images/s (and speed-up) per device count."""
    counts = sorted({r["devices"] for r in rows})
    lines = ["| global batch | " + " | ".join(f"{n} device(s)" for n in counts) + " |",
             "|---|" + "---|" * len(counts)]
    for b in sorted({r["batch_size"] for r in rows}):
        by_n = {r["devices"]: r["images_per_second"] for r in rows if r["batch_size"] == b}
        base = by_n.get(min(by_n))
        cells = [f"{by_n[n]:,.0f} ({by_n[n] / base:.2f}x)" if n in by_n else "-" for n in counts]
        lines.append(f"| {b} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
