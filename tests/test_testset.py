"""Tests for aejax.testset: which test set an evaluation scored, by its digest, or for runs that
recorded no digest of their own by its folder or name."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from aejax import data, experiment
from aejax.testset import evaluated_data, same_source


def test_runs_without_a_test_digest_are_matched_by_folder_or_registered_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    assert same_source({"source": a, "folder": a}, {"source": a, "folder": a})
    assert not same_source({"source": a, "folder": a}, {"source": b, "folder": b})
    assert not same_source({"source": "d", "folder": a}, {"source": "d", "folder": b})  # cwd moved
    assert same_source({"source": "mnist"}, {"source": "mnist", "folder": None})
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").mkdir()  # relative to wherever the run was trained: not known the same
    assert not same_source({"source": "mine"}, {"source": "mine", "folder": None})


def test_a_changed_test_set_in_the_runs_own_folder_is_another_one_of_its_own_size(
        tmp_path: Path) -> None:
    digits = np.zeros((5, 28, 28), np.uint8)
    ds = data.Dataset("custom", digits[:0], digits[:0, 0, 0], digits, digits[:, 0, 0],
                      str(tmp_path), False)
    now = experiment.data_info(ds)
    # what the run recorded when it trained on this folder, before its test files changed
    trained = {**now, "train_size": 256, "test_size": 64, "test_sha256": "0" * 16}
    out = evaluated_data({}, trained, ds, tmp_path)
    assert out["test_sha256"] == "0" * 16 and out["tested_sha256"] == now["test_sha256"]
    assert (out["test_size"], out["train_size"]) == (5, 256)  # the images scored now


def test_a_run_without_scores_gets_no_training_size_from_other_data(tmp_path: Path) -> None:
    digits = np.zeros((3, 28, 28), np.uint8)
    ds = data.Dataset("custom", digits, digits[:, 0, 0], digits, digits[:, 0, 0], str(tmp_path),
                      False)
    info = {"dataset_source": "mnist", "dataset_is_sample": False}  # config.json, no size
    out = evaluated_data(info, None, ds, tmp_path / "run")  # and no checkpoint says it
    assert out["train_size"] is None and out["tested_sha256"]  # not this folder's 3 images
    same = evaluated_data({**info, "dataset_source": str(tmp_path)}, None, ds, tmp_path / "run")
    assert same["train_size"] == 3 and "tested_sha256" not in same
