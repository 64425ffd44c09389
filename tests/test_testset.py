"""Tests for aejax.testset: which test set an evaluation scored, for runs that recorded no digest
of their own."""

from __future__ import annotations

from pathlib import Path

import pytest

from aejax.testset import same_source


def test_runs_without_a_test_digest_are_matched_by_folder_or_registered_name(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    a, b = str(tmp_path / "a"), str(tmp_path / "b")
    assert same_source({"source": a, "folder": a}, {"source": a, "folder": a})
    assert not same_source({"source": a, "folder": a}, {"source": b, "folder": b})
    assert same_source({"source": "mnist"}, {"source": "mnist", "folder": None})
    monkeypatch.chdir(tmp_path)
    (tmp_path / "mine").mkdir()  # relative to wherever the run was trained: not known the same
    assert not same_source({"source": "mine"}, {"source": "mine", "folder": None})
