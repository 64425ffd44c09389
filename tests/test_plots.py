"""Figures: every figure is written, also for a degenerate model with undefined correlations."""

from __future__ import annotations

import errno
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import jax
import numpy as np
import pytest

from aejax import evaluate, plots
from aejax.config import Config
from aejax.model import Autoencoder, init_params
from tests.test_jsonio import full_disk

ROOT = Path(__file__).resolve().parents[1]


def test_constant_reconstructions_still_give_every_figure(tmp_path: Path) -> None:
    model = Autoencoder(features=784, hidden=(4,))
    params = jax.tree.map(np.zeros_like, init_params(jax.random.key(0), model))  # output 0.5
    images = np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    test, arrays = evaluate.evaluate(Config(), model, params, images, np.arange(20) % 10)
    assert np.isnan(test["occluded"]["corr"])  # undefined for every image: nothing to average
    plots.evaluation_figures(arrays, test, tmp_path)
    for name in ("figure.png", "correlation.png", "per_class.png"):
        assert (tmp_path / name).stat().st_size > 0, name


def test_tile_places_each_image_in_its_row_and_column() -> None:
    rows = [np.arange(3 * 4, dtype=float).reshape(3, 4) + 100 * r for r in range(2)]  # 2x2 images
    grid = plots.tile(rows, n=3, gap=1)
    assert grid.shape == (2 * 3 - 1, 3 * 3 - 1)
    for r in range(2):
        for c in range(3):
            np.testing.assert_array_equal(grid[3 * r:3 * r + 2, 3 * c:3 * c + 2],
                                          rows[r][c].reshape(2, 2))
    assert np.isnan(grid[2]).all() and np.isnan(grid[:, 2]).all()  # the gaps


@pytest.mark.parametrize("window", [1, 3, 50])
def test_smooth_is_the_trailing_mean_of_a_plain_loop(window: int) -> None:
    values = np.random.default_rng(0).normal(size=20)
    want = [np.mean(values[max(0, i + 1 - window):i + 1]) for i in range(len(values))]
    np.testing.assert_allclose(plots.smooth(values, window), want, rtol=1e-12)


@pytest.mark.parametrize("losses,label,scale", [
    (np.linspace(0.1, 0.01, 40), "MSE loss", "log"),
    (-np.linspace(0.5, 0.9, 40), "loss (mine.negative_ssim)", "linear"),  # log would be empty
])
def test_the_loss_curve_names_its_loss_and_keeps_negative_losses_visible(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, losses: np.ndarray, label: str,
        scale: str) -> None:
    closed = drawn(monkeypatch)
    plots.loss_curve(losses, 20, tmp_path / "loss.png", label=label)
    ax = closed[0].axes[0]
    assert (ax.get_ylabel(), ax.get_yscale()) == (label, scale)
    assert (tmp_path / "loss.png").stat().st_size > 0


def test_fewer_test_images_than_the_figures_show_still_give_every_figure(tmp_path: Path) -> None:
    model = Autoencoder(features=784, hidden=(4,))
    params = init_params(jax.random.key(0), model)
    images = np.random.default_rng(1).integers(0, 256, (5, 28, 28), dtype=np.uint8)  # < 10
    test, arrays = evaluate.evaluate(Config(), model, params, images, np.arange(5))
    plots.evaluation_figures(arrays, test, tmp_path)
    for name in ("figure.png", "correlation.png", "per_class.png"):
        assert (tmp_path / name).stat().st_size > 0, name


def test_a_loss_curve_shorter_than_an_epoch_has_no_epoch_means(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    closed = drawn(monkeypatch)
    plots.loss_curve(np.full(5, 0.1), 10, tmp_path / "loss.png")
    labels = [line.get_label() for line in closed[0].axes[0].get_lines()]
    assert labels == ["per step", "smoothed"]
    with pytest.raises(ValueError, match="needs losses and steps_per_epoch >= 1, got 0 losses"):
        plots.loss_curve(np.zeros(0), 10, tmp_path / "none.png")


@pytest.mark.parametrize("lowest", [0.52, 0.3])  # above the usual bottom (0.5), and below it
def test_every_correlation_bar_shows_and_the_legend_covers_none(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, lowest: float) -> None:
    n = 10
    low = np.full(n, 0.95)
    low[:3] = 0.52  # the first images' bars end just above the axis' usual bottom
    low[1] = lowest
    per_image = {c: {"corr": np.full(n, 0.9), "corr_nonzero": low} for c in ("clean", "occluded")}
    arrays = {"per_image": per_image, "labels": np.arange(n), "clean": np.zeros((n, 784)),
              "recon_occluded": np.zeros((n, 784)), "mask": np.zeros((n, 784), bool)}
    closed = drawn(monkeypatch)
    plots.correlation_figure(arrays, tmp_path / "correlation.png")
    ax = closed[0].axes[1]
    renderer = closed[0].canvas.get_renderer()
    legend = ax.get_legend().get_window_extent(renderer)
    frame = ax.get_window_extent(renderer)
    for bar in ax.patches:
        shown = bar.get_window_extent(renderer)
        shown = type(shown).intersection(shown, frame)  # the part inside the axes
        assert shown is not None and shown.height >= 1, bar.get_x()  # at least a pixel
        assert not legend.overlaps(shown), bar.get_x()


def test_the_correlation_histogram_says_how_many_images_lie_below_its_range(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    n = 400
    occluded = np.linspace(0.6, 0.99, n)
    occluded[:3] = [0.1, 0.2, np.nan]  # two far below the others, one undefined
    clean = np.full(n, 0.95)
    ax = histogram_axes({"clean": {"corr": clean, "corr_nonzero": clean},
                         "occluded": {"corr": occluded, "corr_nonzero": occluded}},
                        tmp_path, monkeypatch)
    low = ax.patches[0].get_x()
    counts = [sum(p.get_height() for p in ax.patches[k * 60:(k + 1) * 60]) for k in range(2)]
    hidden = [int(np.sum(v < low)) for v in (clean, occluded)]
    assert hidden == [0, 2] and counts == [n, n - 3]
    assert [t.get_text() for t in ax.texts] == [
        f"r < {low:.1f}, not shown:\n2 reconstructed occluded"]


@pytest.mark.parametrize("name", ["loss.png", "compare.svg", "compare.pdf"])
def test_a_figure_that_cannot_be_written_leaves_the_earlier_one_whole(
        name: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / name
    plots.loss_curve(np.linspace(1, 0.1, 8), 4, path)
    before = path.read_bytes()
    real = plots.Figure.savefig

    def savefig(fig, fname, *args, **kwargs):  # into a file: its first bytes, then a full disk
        if isinstance(fname, (str, os.PathLike)):
            Path(fname).write_bytes(b"%PD")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(fname))
        return real(fig, fname, *args, **kwargs)

    monkeypatch.setattr(plots.Figure, "savefig", savefig)
    full_disk(monkeypatch)
    with pytest.raises(OSError, match="No space left on device"):
        plots.loss_curve(np.linspace(1, 0.5, 8), 4, path)
    monkeypatch.undo()
    assert path.read_bytes() == before and [p.name for p in tmp_path.iterdir()] == [name]


def test_the_reconstruction_grid_shows_each_image_once_when_there_are_fewer_than_n(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    closed = drawn(monkeypatch)
    images = jax.numpy.linspace(0, 1, 3 * 16).reshape(3, 16)  # JAX clamps indices past the end
    plots.reconstruction_grid({"original": images, "occluded": images}, tmp_path / "f.png", n=10)
    shown = closed[0].axes[0].images[0].get_array()
    assert shown.shape == (2 * 6 - 2, 3 * 6 - 2)  # 3 columns of 4 x 4 images, not 10


def test_each_epoch_mean_is_drawn_in_the_middle_of_its_epoch(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    closed = drawn(monkeypatch)
    losses = np.concatenate([np.full(20, 0.4), np.full(20, 0.2), np.full(5, 0.1)])
    plots.loss_curve(losses, 20, tmp_path / "loss.png")
    (means,) = [ln for ln in closed[0].axes[0].get_lines() if ln.get_label() == "epoch mean"]
    np.testing.assert_allclose(means.get_xdata(), [10, 30])  # the unfinished third: no mean
    np.testing.assert_allclose(means.get_ydata(), [0.4, 0.2])


def test_images_at_the_histograms_lowest_bin_edge_are_not_said_to_be_hidden(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    n = 400
    occluded = np.linspace(0.6, 0.99, n)
    occluded[:5] = 0.6  # the range starts at 0.6: drawn in its first bin
    per_image = {c: {"corr": occluded, "corr_nonzero": occluded} for c in ("clean", "occluded")}
    ax = histogram_axes(per_image, tmp_path, monkeypatch)
    assert ax.patches[0].get_x() == pytest.approx(0.6)
    assert sum(p.get_height() for p in ax.patches[:60]) == n and not ax.texts


def drawn(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The figures that plots draws from now on (each still written)."""
    figures, write = [], plots.write_figure

    def capture(fig: Any, path: Any) -> None:
        figures.append(fig)
        write(fig, path)

    monkeypatch.setattr(plots, "write_figure", capture)
    return figures


def histogram_axes(per_image: dict, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The histogram panel of correlation.png drawn for ``per_image`` (blank images)."""
    n = len(per_image["clean"]["corr"])
    arrays = {"per_image": per_image, "labels": np.arange(n) % 10, "clean": np.zeros((n, 784)),
              "recon_occluded": np.zeros((n, 784)), "mask": np.zeros((n, 784), bool)}
    closed = drawn(monkeypatch)
    plots.correlation_figure(arrays, tmp_path / "correlation.png")
    return closed[0].axes[2]


def test_drawing_leaves_the_users_backend_and_figures_alone(tmp_path: Path) -> None:
    code = ("import matplotlib; matplotlib.use('svg'); import matplotlib.pyplot as plt; "
            "plt.figure(); import numpy as np; from aejax import plots; "  # a notebook's state
            f"plots.loss_curve(np.linspace(1, 0.1, 8), 4, {str(tmp_path / 'loss.png')!r}); "
            "print(matplotlib.get_backend(), plt.get_fignums())")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["svg", "[1]"]  # not Agg, where plt.show() shows nothing
    assert (tmp_path / "loss.png").stat().st_size > 0
