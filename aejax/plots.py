"""Figures for a run (matplotlib's Agg canvas, without pyplot: the backend, and the figures, of
a notebook that runs experiments stay as they were); never called from inside jit."""

from __future__ import annotations

import io
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

import matplotlib
import numpy as np
from matplotlib.backend_bases import FigureCanvasBase
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from aejax.jsonio import write_atomic
from aejax.summaries import mean_std

if TYPE_CHECKING:  # the hints only: figures need no JAX
    import jax


def check_format(path: str | os.PathLike, flag: str) -> None:
    """ValueError, before any work, unless matplotlib can write ``path``'s file type."""
    suffix = Path(path).suffix.lstrip(".").lower()
    if suffix not in FigureCanvasBase.get_supported_filetypes():
        raise ValueError(f"{flag} {path}: matplotlib cannot write .{suffix} files; use a figure "
                         f"extension such as .png, .pdf or .svg")


def tile(rows: list[np.ndarray | jax.Array], n: int, gap: int = 2) -> np.ndarray:
    """The first ``n`` square images of each row in one array, NaN (drawn white) between them."""
    side = int(round(np.sqrt(np.asarray(rows[0][0]).size)))
    step = side + gap
    out = np.full((len(rows) * step - gap, n * step - gap), np.nan)
    for r, images in enumerate(rows):
        for c in range(n):
            out[r * step:r * step + side, c * step:c * step + side] = (
                np.asarray(images[c]).reshape(side, side))
    return out


def subplots(*shape: int, **kwargs: Any) -> tuple[Figure, Any]:
    """``plt.subplots`` on a figure of its own, drawn by Agg, that pyplot never sees."""
    fig = Figure(figsize=kwargs.pop("figsize", None))
    FigureCanvasAgg(fig)
    return fig, fig.subplots(*shape, **kwargs)


def reconstruction_grid(rows: dict[str, np.ndarray | jax.Array], path: str | os.PathLike,
                        n: int = 10) -> None:
    """The original's figure: one titled row per entry (e.g. original, occluded, reconstructed),
    of the first ``n`` images (all of them, if fewer).

    Drawn as one image on one axes (30 axes took most of a second to lay out).
    """
    n = min(n, *(len(images) for images in rows.values()))
    grid = tile(list(rows.values()), n)
    fig, ax = subplots(figsize=(n * 1.1, len(rows) * 1.15))
    cmap = matplotlib.colormaps["gray"].with_extremes(bad="white")
    ax.imshow(grid, cmap=cmap, vmin=0, vmax=1, interpolation="nearest")
    step = grid.shape[0] / len(rows)
    ax.set_yticks([(r + 0.5) * step - 1 for r in range(len(rows))], list(rows), fontsize=10)
    ax.set_xticks([])
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    fig.subplots_adjust(left=0.11, right=0.99, top=0.98, bottom=0.02)
    write_figure(fig, path)


def smooth(values: np.ndarray, window: int) -> np.ndarray:
    """Trailing moving average (shorter at the start)."""
    cumsum = np.cumsum(np.insert(np.asarray(values, np.float64), 0, 0.0))
    idx = np.arange(1, len(values) + 1)
    lo = np.maximum(0, idx - window)
    return (cumsum[idx] - cumsum[lo]) / (idx - lo)


def loss_curve(losses: np.ndarray, steps_per_epoch: int, path: str | os.PathLike,
               label: str = "MSE loss") -> None:
    """Training loss per step (raw and smoothed) with the mean of each whole epoch; ``label``
    names the loss (a custom one's name); the scale is logarithmic unless a loss is 0 or
    negative."""
    losses = np.asarray(losses)
    if not len(losses) or steps_per_epoch < 1:
        raise ValueError(f"a loss curve needs losses and steps_per_epoch >= 1, got "
                         f"{len(losses)} losses and {steps_per_epoch}")
    epochs = len(losses) // steps_per_epoch
    fig, ax = subplots(figsize=(7, 4))
    steps = np.arange(1, len(losses) + 1)
    ax.plot(steps, losses, color="0.8", lw=0.5, label="per step")
    ax.plot(steps, smooth(losses, max(1, steps_per_epoch // 20)), lw=1.2, label="smoothed")
    if epochs:  # an epoch's mean belongs in the middle of the steps it averages, not at their end
        means = losses[: epochs * steps_per_epoch].reshape(epochs, -1).mean(axis=1)
        ax.plot((np.arange(epochs) + 0.5) * steps_per_epoch, means, "o-", label="epoch mean")
    ax.set(xlabel="step", ylabel=label, yscale="log" if losses.min() > 0 else "linear",
           title="Training loss")
    top = ax.secondary_xaxis("top", functions=(lambda s: s / steps_per_epoch,
                                               lambda e: e * steps_per_epoch))
    top.set_xlabel("epoch")
    ax.legend()
    fig.tight_layout()
    write_figure(fig, path)


COMPARISON_STYLE = {"clean": ("reconstructed clean", "tab:blue"),
                    "occluded": ("reconstructed occluded", "tab:orange"),
                    "occluded_input": ("occluded input (no model)", "0.6")}
METRIC_TITLES = {"psnr": "PSNR (dB) per digit", "corr": "pixel correlation per digit",
                 "corr_nonzero": "correlation (pixels > 1e-4) per digit", "ssim": "SSIM per digit",
                 "mse": "MSE per digit"}


def _save(fig: Figure, path: str | os.PathLike) -> None:
    fig.tight_layout()
    write_figure(fig, path)


def write_figure(fig: Figure, path: str | os.PathLike) -> None:
    """Save ``fig``, atomically: a failed write (a full disk) leaves an earlier figure at
    ``path`` as it was, not half of a new one."""
    kind = Path(path).suffix.lstrip(".").lower()
    if kind not in FigureCanvasBase.get_supported_filetypes():  # matplotlib names the file
        fig.savefig(path, dpi=100)
        return
    drawn = io.BytesIO()
    fig.savefig(drawn, dpi=100, format=kind)
    write_atomic(drawn.getvalue(), path)


def finite_min(values: np.ndarray, default: float = 0.0) -> float:
    """Smallest finite value, or ``default`` when there are none."""
    finite = values[np.isfinite(values)]
    return float(finite.min()) if finite.size else default


def correlation_figure(arrays: dict, path: str | os.PathLike, index: int = 0, n: int = 10) -> None:
    """The original's correlation plots: one image's pixel scatter; per-image r of the first
    ``n`` images (all of them, if fewer) as bars, of every image as a histogram."""
    corr = {c: arrays["per_image"][c] for c in ("clean", "occluded")}
    n = min(n, len(arrays["labels"]))
    fig, axes = subplots(1, 3, figsize=(15, 4.3))
    clean = np.asarray(arrays["clean"][index]).ravel()
    recon = np.asarray(arrays["recon_occluded"][index]).ravel()
    bar = np.asarray(arrays["mask"][index]).ravel()
    axes[0].scatter(clean[~bar], recon[~bar], s=6, alpha=0.5, label="off bar")
    axes[0].scatter(clean[bar], recon[bar], s=10, color="tab:red", label="on bar")
    axes[0].plot([0, 1], [0, 1], color="0.5", lw=0.8)
    axes[0].set(xlabel="original pixel", ylabel="reconstructed pixel (occluded input)",
                title=f"test image {index} (digit {int(arrays['labels'][index])}): "
                      f"r = {corr['occluded']['corr'][index]:.3f}")
    axes[0].legend(loc="upper left")
    x = np.arange(n)
    finite = corr["occluded"]["corr"][np.isfinite(corr["occluded"]["corr"])]
    low = float(np.floor(10 * np.percentile(finite, 0.5)) / 10) if finite.size else 0.0
    hidden = []  # images whose r lies below the histogram's range, which are not drawn
    for k, c in enumerate(corr):
        label, color = COMPARISON_STYLE[c]
        axes[1].bar(x + (k - 0.5) * 0.4, corr[c]["corr_nonzero"][:n], 0.4, label=label,
                    color=color)
        values = corr[c]["corr"]
        axes[2].hist(values[np.isfinite(values)], bins=60, range=(low, 1), alpha=0.6,
                     color=color, label=f"{label}: mean {mean_std(values)[0]:.3f}")
        if below := int(np.sum(values < low)):
            hidden.append(f"{below} {label}")
    shown = np.concatenate([corr[c]["corr_nonzero"][:n] for c in corr])
    bottom = min(0.5, finite_min(shown) - 0.05)  # the lowest bar still shows
    axes[1].set(xticks=x, xlabel="test image", ylabel="r (pixels > 1e-4 in both)",
                ylim=(bottom, 1 + 0.25 * (1 - bottom)),
                yticks=np.arange(np.ceil(10 * bottom) / 10, 1.01, 0.1),
                title=f"first {n} test images: correlation with the original")
    axes[1].legend(loc="upper center", ncol=2, fontsize="small")  # above r = 1: no bar there
    axes[2].set(xlabel="r (all pixels)", ylabel="test images",
                title=f"all {len(arrays['labels'])} test images")
    axes[2].legend(loc="upper left")
    if hidden:  # mid-height on the left: the low tail's bars are short, the legend is above
        axes[2].text(0.02, 0.55, "\n".join([f"r < {low:.1f}, not shown:", *hidden]),
                     transform=axes[2].transAxes, fontsize="small", va="top")
    _save(fig, path)


def per_class_figure(test: dict, path: str | os.PathLike,
                     metrics: tuple[str, ...] = ("psnr", "corr")) -> None:
    """Mean ± std of each metric per digit, for every comparison: which digits suffer most?"""
    digits = sorted(test["per_class"], key=int)
    fig, axes = subplots(1, len(metrics), figsize=(6.5 * len(metrics), 4.2), squeeze=False)
    for ax, metric in zip(axes[0], metrics):
        for k, (c, (label, color)) in enumerate(COMPARISON_STYLE.items()):
            rows = [test["per_class"][d][c] for d in digits]
            ax.errorbar(np.arange(len(digits)) + (k - 1) * 0.2, [r[metric] for r in rows],
                        yerr=[r[f"{metric}_std"] for r in rows], fmt="o", capsize=3,
                        color=color, label=label)
        ax.set(xticks=range(len(digits)), xticklabels=digits, xlabel="digit",
               ylabel=f"{metric} (mean ± std over the class's images)",
               title=METRIC_TITLES.get(metric, metric))
        ax.grid(axis="y", alpha=0.3)
    handles, names = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, names, loc="lower center", ncol=len(names), frameon=False)
    fig.tight_layout(rect=(0, 0.07, 1, 1))
    write_figure(fig, path)


def compare_figure(table: dict[str, dict[str, tuple[float, float, int]]],
                   path: str | os.PathLike, ncols: int = 4) -> None:
    """One panel per metric, one point (mean ± std over seeds) per run or group of runs."""
    labels, metrics = list(table), list(next(iter(table.values())))
    nrows = -(-len(metrics) // ncols)
    size = (4.2 * ncols + 1.5, nrows * (1.2 + 0.4 * len(labels)))
    fig, axes = subplots(nrows, ncols, figsize=size, squeeze=False)
    y, colors = np.arange(len(labels)), matplotlib.colormaps["tab10"]
    for i, ax in enumerate(axes.flat):
        if i >= len(metrics):
            ax.axis("off")
            continue
        values = [table[g][metrics[i]] for g in labels]
        for k, (mean, std, _) in enumerate(values):
            ax.errorbar(mean, k, xerr=std, fmt="o", capsize=4, color=colors(k % 10))
        ax.set(yticks=y, yticklabels=labels if i % ncols == 0 else [], title=metrics[i])
        ax.invert_yaxis()
        ax.grid(axis="x", alpha=0.3)
    _save(fig, path)


def evaluation_figures(arrays: dict, test: dict, folder: str | os.PathLike) -> None:
    """figure.png, correlation.png and per_class.png of an evaluated run."""
    folder = Path(folder)
    reconstruction_grid({"original": arrays["clean"], "occluded": arrays["occluded_input"],
                         "reconstructed": arrays["recon_occluded"]}, folder / "figure.png")
    correlation_figure(arrays, folder / "correlation.png")
    per_class_figure(test, folder / "per_class.png")
