"""The PyTorch original, as a speed baseline: the same MLP, MSE, Adam 1e-3 and a plain eager loop.

The loop is the original's (forward, ``zero_grad``, ``backward``, ``step`` per batch) without its
``DataLoader``: the images are converted to float once and batches are taken by index from a
shuffled order, which is the fastest way to feed it, so the ratio to JAX is not flattered. PyTorch
is optional (``pip install -e '.[bench]'``); ``available()`` says whether it is installed, and
``problem()`` why the baseline cannot run (an install that fails to import, a build without CUDA).
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from typing import Any

import numpy as np


def available() -> bool:
    """Whether PyTorch is installed (``problem()`` says whether it also imports and sees a GPU)."""
    return importlib.util.find_spec("torch") is not None


def problem(cuda: bool = False) -> str | None:
    """Why the baseline cannot run here (None: it can): PyTorch not installed, failing to import,
    or (with ``cuda``) not seeing a GPU."""
    if not available():
        return "PyTorch is not installed"
    try:
        import torch
    except Exception as err:  # a broken install raises anything: ImportError, OSError (a .so)...
        detail = (str(err).strip().splitlines() or [""])[0][:160]
        return f"PyTorch cannot be imported ({type(err).__name__}: {detail})"
    if cuda and not torch.cuda.is_available():
        return "this PyTorch build sees no GPU"
    return None


def make_model(features: int = 784, hidden: Sequence[int] = (128, 50)) -> Any:
    """The original ``nn.Sequential``: Linear+ReLU down to the code and back, sigmoid output."""
    from torch import nn

    widths = [features, *hidden, *hidden[-2::-1]]
    layers: list[Any] = []
    for fan_in, fan_out in zip(widths, widths[1:]):
        layers += [nn.Linear(fan_in, fan_out), nn.ReLU()]
    return nn.Sequential(*layers, nn.Linear(widths[-1], features), nn.Sigmoid())


def synchronize(device: str) -> None:
    """Wait for queued GPU work (CPU work is synchronous)."""
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize(device)


def runner(images_u8: np.ndarray, batch_size: int, steps: int, *, warmup: int = 20,
           learning_rate: float = 1e-3, device: str = "cpu", seed: int = 0) -> Any:
    """An ``aejax.bench.Runner`` for the eager PyTorch loop on uint8 images (N, D), warmed up.

    Args:
      images_u8: the training images, flattened to (N, D).
      batch_size: images per step.
      steps: steps per timed run.
      warmup: untimed steps first (allocator, kernels, caches).
      learning_rate: Adam's learning rate (the original: 1e-3).
      device: a torch device string, ``cpu`` or ``cuda``.
      seed: seeds the initialisation and the batch order.
    """
    import torch

    from aejax.bench import Runner

    torch.manual_seed(seed)
    # a copy: the input may be read-only
    data = torch.tensor(images_u8, device=device).float().div_(255.0)
    model = make_model(data.shape[1]).to(device)
    opt = torch.optim.Adam(model.parameters(), lr=learning_rate)
    loss_fn = torch.nn.MSELoss()
    order = torch.randperm(len(data), device=device)
    position, losses = 0, []

    def run(n: int = steps) -> None:
        nonlocal position
        for _ in range(n):
            if position + batch_size > len(order):
                position = 0
            x = data[order[position:position + batch_size]]
            position += batch_size
            loss = loss_fn(model(x), x)
            opt.zero_grad()
            loss.backward()
            opt.step()
        if n:  # no steps (warmup=0): no loss
            losses.append(loss.detach())
        synchronize(device)

    run(warmup)
    info = {"num_params": sum(p.numel() for p in model.parameters()),
            "threads": torch.get_num_threads(),
            "warmup_last_loss": float(losses[0]) if losses else None}  # after the warm-up
    return Runner(run, steps, info)
