"""Figures: every figure is written, also for a degenerate model whose correlations are undefined."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np

from aejax import evaluate, plots
from aejax.config import Config
from aejax.model import Autoencoder, init_params


def test_constant_reconstructions_still_give_every_figure(tmp_path: Path) -> None:
    model = Autoencoder(features=784, hidden=(4,))
    params = jax.tree.map(np.zeros_like, init_params(jax.random.key(0), model))  # output 0.5
    images = np.random.default_rng(0).integers(0, 256, (20, 28, 28), dtype=np.uint8)
    test, arrays = evaluate.evaluate(Config(), model, params, images, np.arange(20) % 10)
    assert np.isnan(test["occluded"]["corr"])  # undefined for every image: nothing to average
    plots.evaluation_figures(arrays, test, tmp_path)
    for name in ("figure.png", "correlation.png", "per_class.png"):
        assert (tmp_path / name).stat().st_size > 0, name
