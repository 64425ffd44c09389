"""Tests for aejax.compare: grouping and labelling runs from their config and metrics files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from aejax import compare
from aejax.config import Config


def fake_run(folder: Path, mse: float, **config) -> str:
    """A run folder holding only config.json and metrics.json."""
    folder.mkdir(parents=True)
    cfg = json.loads(Config(**config).to_json())
    (folder / "config.json").write_text(json.dumps({"config": cfg}))
    (folder / "metrics.json").write_text(json.dumps({"test": {"occluded": {"mse": mse}}}))
    return str(folder)


def test_runs_differing_only_in_seed_form_one_row(tmp_path: Path) -> None:
    mses = {("none", 0): 0.017, ("none", 1): 0.016, ("none", 2): 0.019,
            ("mixed", 0): 0.009, ("mixed", 1): 0.0087}
    folders = [fake_run(tmp_path / f"{m}{s}", v, train_occlusion=m, seed=s,
                        data_dir=f"/data{s}") for (m, s), v in mses.items()]
    tab = compare.table(folders, ("test.occluded.mse", "test.clean.mse"))
    assert list(tab) == ["train_occlusion=none", "train_occlusion=mixed"]
    mean, std, n = tab["train_occlusion=none"]["test.occluded.mse"]
    assert (n, mean) == (3, np.mean([0.017, 0.016, 0.019]))
    assert std == np.std([0.017, 0.016, 0.019], ddof=1)
    assert math.isnan(tab["train_occlusion=mixed"]["test.clean.mse"][0])  # absent: NaN
    text = compare.format_markdown(tab)
    assert "| train_occlusion=mixed | 0.00885 ± 0.00021 | nan ± nan | 2 |" in text


def test_labels_name_the_fields_that_differ() -> None:
    a, b = (json.loads(Config(seed=s, init_scheme=i).to_json())
            for s, i in ((0, "torch"), (1, "flax")))
    assert compare.labels([a, b], ["r0", "r1"], group=True) == ["init_scheme=torch",
                                                               "init_scheme=flax"]
    assert compare.labels([a, b], ["r0", "r1"], group=False) == [
        "init_scheme=torch seed=0", "init_scheme=flax seed=1"]
    assert compare.labels([a, a], ["r0", "r1"], group=False) == ["r0", "r1"]
    assert compare.lookup({"a": {"b": 2}}, "a.b") == 2.0
    assert math.isnan(compare.lookup({"a": {"b": 2}}, "a.c"))
