"""Evaluate a saved run again: reload it, recompute every test metric and figure, export arrays."""

from __future__ import annotations

import dataclasses
import json
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from aejax import data, evaluate, experiment, metrics, plots, train
from aejax.config import Config

TABLE_METRICS: tuple[str, ...] = metrics.METRICS + metrics.MASKED


def load_config(workdir: str | os.PathLike) -> Config:
    """The Config a run folder was trained with (ValueError if it is not a run folder)."""
    path = Path(workdir) / "config.json"
    if not path.is_file():
        raise ValueError(f"{workdir} is not a run folder: no config.json "
                         "(train one with scripts/train.py --workdir)")
    return Config.from_dict(json.loads(path.read_text())["config"])


def evaluate_run(workdir: str | os.PathLike, *, data_dir: str | None = None,
                 data_root: str | None = None) -> tuple[dict[str, Any], dict[str, Any]]:
    """Evaluate a trained run, rewrite its figures and its metrics.json (keeping ``train``).

    Args:
      workdir: a folder written by ``experiment.run``.
      data_dir: read the data from here instead of the run's ``--data-dir``.
      data_root: the data folder to use instead of the run's ``--data-root``.
    Returns:
      The whole metrics.json content and the evaluated arrays.
    """
    path = Path(workdir)
    cfg = load_config(path)
    params_file = path / experiment.PARAMS_FILE
    if not params_file.is_file():
        raise ValueError(f"{workdir} holds no trained parameters ({experiment.PARAMS_FILE})")
    overrides = {k: v for k, v in (("data_dir", data_dir), ("data_root", data_root)) if v}
    cfg = dataclasses.replace(cfg, **overrides)
    ds = data.load(cfg.dataset, data_dir=cfg.data_dir, data_root=cfg.data_root)
    model = train.make_model(cfg, int(np.prod(ds.test_images.shape[1:])))
    test, arrays = evaluate.evaluate(cfg, model, experiment.load_params(params_file),
                                     ds.test_images, ds.test_labels)
    metrics_file = path / "metrics.json"
    saved = json.loads(metrics_file.read_text()) if metrics_file.is_file() else {}
    saved.update(test=test, data=experiment.data_info(ds))
    experiment.write_json(saved, metrics_file)
    plots.evaluation_figures(arrays, test, path)
    return saved, arrays


def export_arrays(arrays: dict[str, Any], path: str | os.PathLike) -> None:
    """Save original, occluded, reconstructed (and clean reconstruction, mask, labels) as .npz."""
    n = len(arrays["labels"])
    side = math.isqrt(int(np.prod(np.shape(arrays["clean"])[1:])))
    images = {"original": "clean", "occluded": "occluded_input",
              "reconstructed": "recon_occluded", "reconstructed_clean": "recon_clean",
              "mask": "mask"}
    out = {name: np.asarray(arrays[key]).reshape(n, side, side) for name, key in images.items()}
    np.savez_compressed(path, labels=np.asarray(arrays["labels"]), **out)


def format_table(test: dict[str, Any]) -> str:
    """A compact text table: one row per comparison, then the occluded MSE per digit."""
    width = max(len(c) for c in evaluate.COMPARISONS)
    head = f"{'':{width}}" + "".join(f"{m:>13}" for m in TABLE_METRICS)
    lines = [head]
    for c in evaluate.COMPARISONS:
        lines.append(f"{c:{width}}" + "".join(f"{test[c][m]:13.5f}" for m in TABLE_METRICS))
    digits = sorted(test["per_class"], key=int)
    lines.append("per digit    " + "".join(f"{d:>8}" for d in digits))
    for c in ("clean", "occluded"):
        row = "".join(f"{test['per_class'][d][c]['mse']:8.4f}" for d in digits)
        lines.append(f"{c + ' mse':13}" + row)
    return "\n".join(lines)
