"""Tests for aejax.oldrun: the run --overwrite sets aside, put back or deleted, after a kill too."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

from aejax import checkpoint, oldrun, runfiles
from aejax.config import Config
from tests.test_runfiles import make_run, tree_of


def test_set_aside_and_settle_put_an_old_run_back_only_if_nothing_new_was_saved(
        tmp_path: Path) -> None:
    def tree(path: Path) -> list[str]:
        return sorted(p.relative_to(path).as_posix() for p in path.rglob("*"))

    run = make_run(tmp_path / "run", results=True, steps=("4", "8", "12.orbax-checkpoint-tmp-3"))
    (run / "notes.txt").write_text("mine")
    before = tree(run)
    oldrun.set_aside(run)
    assert tree(run) == [".replaced", ".replaced/checkpoints", ".replaced/checkpoints/12.orbax-"
                         "checkpoint-tmp-3", ".replaced/checkpoints/4", ".replaced/checkpoints/8",
                         ".replaced/config.json", ".replaced/metrics.json", "notes.txt"]
    (run / "config.json").write_text("{}")  # the new run's, which then fails at once
    (run / checkpoint.DIRNAME / "2.orbax-checkpoint-tmp-1").mkdir(parents=True)
    oldrun.settle(run, failed=True)
    assert tree(run) == before
    oldrun.set_aside(run)
    (run / checkpoint.DIRNAME / "2").mkdir(parents=True)  # the new run saved a checkpoint
    oldrun.settle(run, failed=True)
    assert tree(run) == ["checkpoints", "checkpoints/2", "notes.txt"]
    oldrun.set_aside(run)
    assert tree(run) == [".replaced", ".replaced/checkpoints", ".replaced/checkpoints/2",
                         "notes.txt"]
    oldrun.settle(run, failed=False)  # the new run ended
    assert tree(run) == ["notes.txt"]
    oldrun.settle(run, failed=True)  # nothing set aside: nothing to do
    assert tree(run) == ["notes.txt"]


def test_set_aside_moves_all_or_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(tmp_path / "run", results=True, steps=("4", "8"))
    before = sorted(p.relative_to(run).as_posix() for p in run.rglob("*"))
    rename, calls = Path.rename, []

    def failing(self: Path, target: Path) -> Path:
        calls.append(self)
        if len(calls) == 3:  # after config.json and metrics.json, at the first checkpoint
            raise OSError(5, "Input/output error")
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", failing)
    with pytest.raises(OSError, match="Input/output error"):
        oldrun.set_aside(run)
    assert sorted(p.relative_to(run).as_posix() for p in run.rglob("*")) == before


@pytest.mark.parametrize("new_checkpoint", [False, True])
def test_recover_settles_what_a_killed_overwrite_left(tmp_path: Path,
                                                      new_checkpoint: bool) -> None:
    run = make_run(tmp_path / "run", results=True, steps=("4",))
    oldrun.set_aside(run)  # then the new run wrote its config.json and was killed
    (run / "config.json").write_text(json.dumps({"config": json.loads(Config().to_json())}))
    if new_checkpoint:
        (run / checkpoint.DIRNAME / "2").mkdir(parents=True)
    oldrun.recover(run)
    assert not (run / oldrun.REPLACED).exists()
    steps = sorted(p.name for p in (run / checkpoint.DIRNAME).iterdir())
    assert steps == (["2"] if new_checkpoint else ["4"])  # the old run back only if none new
    assert (run / "metrics.json").exists() is not new_checkpoint


@pytest.mark.parametrize("cut", ["setting aside", "putting back"])
def test_recover_finishes_a_move_that_a_kill_cut_short(tmp_path: Path, cut: str) -> None:
    run = make_run(tmp_path / "run", results=True, steps=("4", "8"))
    before = tree_of(run)
    partial = run / (oldrun.REPLACING if cut == "setting aside" else oldrun.RESTORING)
    for item in runfiles.written(run)[:2]:  # config.json and metrics.json moved, then killed
        oldrun.move(item, run, partial)
    oldrun.recover(run)
    assert tree_of(run) == before


def test_a_put_back_that_fails_half_way_is_finished_later_not_deleted(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    run = make_run(tmp_path / "run", results=True, steps=("4", "8"))
    before = tree_of(run)
    rename, calls = Path.rename, []

    def failing(self: Path, target: Path) -> Path:
        calls.append(self)
        if len(calls) == 4:  # the .restoring rename, config.json, metrics.json, then this
            raise OSError(5, "Input/output error")
        return rename(self, target)

    with pytest.raises(ValueError, match="out of memory"):  # the new run's own error stands
        with contextlib.ExitStack() as held:
            oldrun.replace(run, held)
            (run / "config.json").write_text("{}")  # the new run's, which then fails
            monkeypatch.setattr(Path, "rename", failing)
            raise ValueError("out of memory")
    assert "could not settle the old run" in caplog.text
    monkeypatch.undo()
    oldrun.recover(run)  # the next train.py on the folder
    assert tree_of(run) == before


def refuse(*args: object, **kwargs: object) -> None:
    """``shutil.rmtree`` on a folder that cannot be deleted."""
    raise PermissionError(13, "Permission denied")


def test_a_finished_run_whose_old_one_cannot_be_deleted_only_warns(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog) -> None:
    run = make_run(tmp_path / "run", results=True)
    with contextlib.ExitStack() as held:
        oldrun.replace(run, held)
        (run / "metrics.json").write_text("{}")  # the new run's results
        monkeypatch.setattr(oldrun.shutil, "rmtree", refuse)
    assert "could not settle the old run" in caplog.text  # and no error: the run succeeded
    monkeypatch.undo()
    oldrun.recover(run)  # later: the new run saved results, so the old one goes
    assert tree_of(run) == ["metrics.json"]


@pytest.mark.parametrize("n", [1, 2, 3])
def test_a_ctrl_c_just_after_a_move_while_setting_aside_loses_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, n: int) -> None:
    run = make_run(tmp_path / "run", results=True, steps=("4", "8"))
    before = tree_of(run)
    rename, calls = Path.rename, []

    def interrupted(self: Path, target: Path) -> Path:
        moved = rename(self, target)
        calls.append(self)
        if len(calls) == n:  # the move is done, its bookkeeping not yet
            raise KeyboardInterrupt
        return moved

    monkeypatch.setattr(Path, "rename", interrupted)
    with pytest.raises(KeyboardInterrupt):
        oldrun.set_aside(run)
    assert tree_of(run) == before


def test_a_kill_half_way_through_setting_aside_loses_nothing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    run = make_run(tmp_path / "run", results=True, steps=("4", "8"))
    before = tree_of(run)
    rename, calls = Path.rename, []

    def killed(self: Path, target: Path) -> Path:
        calls.append(self)
        if len(calls) == 3:  # config.json and metrics.json moved, then a SIGKILL: no clean-up
            raise SystemExit("killed")
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", killed)
    monkeypatch.setattr(oldrun, "put_back", lambda side, path: None)  # what a kill never runs
    with pytest.raises(SystemExit):
        oldrun.set_aside(run)
    monkeypatch.undo()
    oldrun.recover(run)  # the next train.py on the folder
    assert tree_of(run) == before
