"""Tests for aejax.runfiles: which folders hold a run, whether it saved anything, and clearing
only what a run wrote."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aejax import checkpoint, rundir, runfiles
from aejax.config import Config


def make_run(path: Path, *, results: bool = False, steps: tuple[str, ...] = ()) -> Path:
    """A folder as a run leaves it: config.json, maybe metrics.json and checkpoint folders."""
    path.mkdir(parents=True)
    (path / "config.json").write_text(json.dumps({"config": json.loads(Config().to_json())}))
    if results:
        (path / "metrics.json").write_text("{}")
    for step in steps:
        (path / checkpoint.DIRNAME / step).mkdir(parents=True)
    return path


def tree_of(path: Path) -> list[str]:
    """Every path under ``path``, relative to it."""
    return sorted(p.relative_to(path).as_posix() for p in path.rglob("*"))


def test_a_run_is_a_config_json_and_saved_anything_needs_results_or_a_checkpoint(
        tmp_path: Path) -> None:
    bare = make_run(tmp_path / "bare", steps=("8.orbax-checkpoint-tmp-1",))  # killed early
    assert runfiles.is_run(bare) and not runfiles.saved_anything(bare)
    assert runfiles.saved_anything(make_run(tmp_path / "saved", steps=("8",)))
    assert runfiles.saved_anything(make_run(tmp_path / "done", results=True))
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "config.json").write_text("[1, 2]")  # not one train.py wrote
    assert not runfiles.is_run(tmp_path / "other") and not runfiles.is_run(tmp_path / "none")


def test_clear_deletes_only_what_a_run_writes(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", results=True, steps=("4", "8", "12.orbax-checkpoint-tmp-3"))
    for name in runfiles.RUN_FILES:
        (run / name).write_text("x")
    (run / "notes.txt").write_text("mine")
    (run / checkpoint.DIRNAME / "model.pt").write_text("mine too")
    runfiles.clear(run)
    assert sorted(p.relative_to(run).as_posix() for p in run.rglob("*")) == [
        "checkpoints", "checkpoints/model.pt", "notes.txt"]
    runfiles.clear(make_run(tmp_path / "only", steps=("4",)))
    assert not (tmp_path / "only" / checkpoint.DIRNAME).exists()  # an emptied folder goes too


def test_a_clear_cut_short_leaves_a_run_that_saved_nothing(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    run = tmp_path / "run"
    (run / checkpoint.DIRNAME / f"1875{checkpoint.TMP_SUFFIX}-1").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"config": {}}))

    def fail(path, *args, **kwargs):
        raise OSError("cannot remove")

    monkeypatch.setattr(runfiles.shutil, "rmtree", fail)
    with pytest.raises(OSError, match="^cannot remove$"):
        runfiles.clear(run)
    assert (run / "config.json").exists()  # deleted last: still a run, not stray files
    monkeypatch.undo()
    assert rundir.prepare(run) == run  # which the next run starts over in place


def test_forget_results_deletes_the_scores_and_parameters_only(tmp_path: Path) -> None:
    run = make_run(tmp_path / "run", results=True, steps=("4",))
    (run / runfiles.PARAMS_FILE).write_bytes(b"old")  # a resumed run's earlier session's
    (run / "figure.png").write_bytes(b"old")
    runfiles.forget_results(run)
    assert tree_of(run) == ["checkpoints", "checkpoints/4", "config.json", "figure.png"]
    runfiles.forget_results(run)  # nothing left to delete: no error
