"""Figures for a run (matplotlib with the Agg backend); never called from inside jit."""

from __future__ import annotations

import os

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402


def reconstruction_grid(rows: dict[str, np.ndarray], path: str | os.PathLike,
                        n: int = 10) -> None:
    """The original's figure: one titled row per entry (e.g. original, occluded, reconstructed)."""
    fig, axes = plt.subplots(len(rows), n, figsize=(n * 1.1, len(rows) * 1.25), squeeze=False)
    for r, (title, images) in enumerate(rows.items()):
        side = int(round(np.sqrt(images[0].size)))
        for c in range(n):
            ax = axes[r, c]
            ax.imshow(np.asarray(images[c]).reshape(side, side), cmap="gray", vmin=0, vmax=1)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(title, rotation=0, ha="right", va="center", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (shorter at the start)."""
    cumsum = np.cumsum(np.insert(np.asarray(values, np.float64), 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(0, idx - window)
    return (cumsum[idx] - cumsum[lo]) / (idx - lo)


def loss_curve(losses: np.ndarray, steps_per_epoch: int, path: str | os.PathLike) -> None:
    """Training loss per step (raw and smoothed) with the per-epoch mean."""
    losses = np.asarray(losses)
    epochs = len(losses) // steps_per_epoch
    fig, ax = plt.subplots(figsize=(7, 4))
    steps = np.arange(1, len(losses) + 1)
    ax.plot(steps, losses, color="0.8", lw=0.5, label="per step")
    ax.plot(steps, smooth(losses, max(1, steps_per_epoch // 20)), lw=1.2, label="smoothed")
    means = losses[: epochs * steps_per_epoch].reshape(epochs, -1).mean(axis=1)
    ax.plot((np.arange(epochs) + 1) * steps_per_epoch, means, "o-", label="epoch mean")
    ax.set(xlabel="step", ylabel="MSE loss", yscale="log", title="Training loss")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
