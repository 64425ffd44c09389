"""Shared test set-up: strict rank promotion, Ctrl-C as in a terminal, small IDX datasets, the real
MNIST location."""

from __future__ import annotations

import gzip
import os
import signal
import struct
from pathlib import Path

import jax
import numpy as np
import pytest

jax.config.update("jax_numpy_rank_promotion", "raise")
if signal.getsignal(signal.SIGINT) is signal.SIG_IGN:  # pytest started as a script's `&` job:
    signal.signal(signal.SIGINT, signal.default_int_handler)  # Ctrl-C tests, children included,
    # see what a terminal's user sees (Python's handler, which exec resets to the default)

IDX_NAMES = {
    "train_images": "train-images-idx3-ubyte",
    "train_labels": "train-labels-idx1-ubyte",
    "test_images": "t10k-images-idx3-ubyte",
    "test_labels": "t10k-labels-idx1-ubyte",
}


def idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array in the IDX format (magic 0x0000 08 <ndim>, big-endian dims)."""
    header = struct.pack(">HBB", 0, 0x08, array.ndim) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + np.ascontiguousarray(array, np.uint8).tobytes()


def synthetic_digits(n: int, seed: int, side: int = 28) -> tuple[np.ndarray, np.ndarray]:
    """Blurry blob images (uint8, N x side x side) and labels: structured enough to learn."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 10, n).astype(np.uint8)
    yy, xx = np.mgrid[:side, :side]
    cy = 8 + labels[:, None, None] + rng.normal(0, 1, (n, 1, 1))
    cx = 6 + 1.5 * labels[:, None, None] + rng.normal(0, 1, (n, 1, 1))
    blob = np.exp(-((yy - cy) ** 2 + (xx - cx) ** 2) / 12.0)
    return (255 * blob).astype(np.uint8), labels


def write_idx_dataset(folder: Path, n_train: int = 256, n_test: int = 64, *,
                      gz: bool = True, seed: int = 0, side: int = 28) -> Path:
    """Write the four IDX files of a small synthetic dataset into ``folder`` (its images
    cropped to ``side`` x ``side``)."""
    folder.mkdir(parents=True, exist_ok=True)
    train_x, train_y = synthetic_digits(n_train, seed)
    test_x, test_y = synthetic_digits(n_test, seed + 1)
    arrays = {"train_images": train_x[:, :side, :side], "train_labels": train_y,
              "test_images": test_x[:, :side, :side], "test_labels": test_y}
    for key, name in IDX_NAMES.items():
        payload = idx_bytes(arrays[key])
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(payload, compresslevel=1))
        else:
            (folder / name).write_bytes(payload)
    return folder


def x64():
    """A context in which JAX computes in 64 bits: ``jax.enable_x64(True)``, which JAX 0.6 (the
    oldest pyproject.toml allows, and the newest on Python 3.10) has only as
    ``jax.experimental.enable_x64()``, and newer JAX only as ``jax.enable_x64``."""
    if hasattr(jax, "enable_x64"):
        return jax.enable_x64(True)
    from jax.experimental import enable_x64
    return enable_x64()


def cpu() -> jax.Device:
    """The CPU, which JAX always has beside a GPU: for tests whose expectation is XLA:CPU's
    arithmetic (two programs that agree bit for bit or to 1e-4 there; an overflow that ends in
    NaN), run under ``jax.default_device(cpu())`` on any machine. On a GPU, different programs'
    kernels add in different orders."""
    return jax.devices("cpu")[0]


@pytest.fixture(autouse=True, scope="session")
def session_compile_cache(tmp_path_factory: pytest.TempPathFactory):
    """Scripts run in-process (bench.py, train.py) turn JAX's persistent compilation cache on, in
    ``AEJAX_JAX_CACHE`` or else the user's ~/.cache/aejax/jax: unless set, point it at a folder
    of this session (script subprocesses inherit it), so the tests leave the home untouched."""
    if os.environ.get("AEJAX_JAX_CACHE"):
        yield
        return
    patch = pytest.MonkeyPatch()
    patch.setenv("AEJAX_JAX_CACHE", str(tmp_path_factory.mktemp("jax-cache")))
    yield
    patch.undo()


@pytest.fixture
def small_idx_dir(tmp_path: Path) -> Path:
    """A folder holding a 256/64-image synthetic dataset in MNIST's IDX format."""
    return write_idx_dataset(tmp_path / "small")


@pytest.fixture
def no_figures(monkeypatch: pytest.MonkeyPatch) -> None:
    """Runs and evaluations draw no figures (about half a warm run's time): for tests that check
    no figure."""
    from aejax import plots
    monkeypatch.setattr(plots, "evaluation_figures", lambda *args, **kwargs: None)
    monkeypatch.setattr(plots, "loss_curve", lambda *args, **kwargs: None)


@pytest.fixture
def mnist_dir() -> Path:
    """The real MNIST files (``AEJAX_MNIST_DIR``, set by .ci/run); skip when absent."""
    value = os.environ.get("AEJAX_MNIST_DIR")
    if not value:
        pytest.skip("AEJAX_MNIST_DIR is not set (it points at the four official MNIST files)")
    path = Path(value)
    if not all((path / f"{n}.gz").exists() for n in IDX_NAMES.values()):
        pytest.skip(f"AEJAX_MNIST_DIR={value} does not hold the four MNIST .gz files")
    return path
