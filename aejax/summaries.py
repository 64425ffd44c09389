"""Means of per-image metrics, over the test set and per class, as metrics.json holds them:
NaN values (undefined correlations, empty masks) are left out."""

from __future__ import annotations

import math
from typing import Any

import numpy as np


def mean_std(values: np.ndarray) -> tuple[float, float]:
    """Mean and (population, ddof=0) standard deviation, ignoring NaN (undefined correlations)."""
    if values.size == 0 or np.all(np.isnan(values)):
        return math.nan, math.nan
    return float(np.nanmean(values)), float(np.nanstd(values))


def summarize(values: dict[str, np.ndarray]) -> dict[str, float]:
    """Means of per-image metrics: ``{metric: mean}``."""
    return {name: mean_std(v)[0] for name, v in values.items()}


def check_labels(labels: Any) -> None:
    """Raise ValueError unless every label is a whole number (a class: ``per_class`` keys the
    classes by ``str(int(label))``, so 3.2 and 3.7 would share the class "3")."""
    labels = np.asarray(labels)
    if labels.dtype.kind in "iub":
        return
    flat = labels.ravel()
    if labels.dtype.kind == "f":
        flat = flat[~(np.isfinite(flat) & (flat == np.round(flat)))]
    if flat.size:
        raise ValueError(f"labels must be whole numbers (the class of each image), got "
                         f"{flat[0].item()!r} ({labels.dtype})")


def per_class(values: dict[str, dict[str, np.ndarray]], labels: np.ndarray
              ) -> dict[str, dict[str, Any]]:
    """``{digit: {"count": n, comparison: {metric: mean, metric + "_std": std}}}``."""
    check_labels(labels)
    labels = np.asarray(labels)
    out: dict[str, dict[str, Any]] = {}
    for label in np.unique(labels):
        in_class = labels == label
        entry: dict[str, Any] = {"count": int(in_class.sum())}
        for comparison, metrics in values.items():
            entry[comparison] = {}
            for name, v in metrics.items():
                mean, std = mean_std(v[in_class])
                entry[comparison][name] = mean
                entry[comparison][f"{name}_std"] = std
        out[str(int(label))] = entry
    return out
