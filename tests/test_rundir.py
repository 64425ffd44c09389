"""Tests for aejax.rundir: the checks before anything is written, the claim on the folder, and
the advice for a run that did not finish."""

from __future__ import annotations

import contextlib
import json
from pathlib import Path

import pytest

from aejax import checkpoint, oldrun, resumesettings, rundir, runfiles
from aejax.config import Config
from tests.test_runfiles import make_run, tree_of


@pytest.mark.parametrize("setup,kwargs,message", [
    (lambda p: p.write_text(""), {}, "is a file, not a folder; choose another --workdir"),
    (lambda p: None, {"resume": True, "overwrite": True}, "choose one"),
    (lambda p: None, {"resume": True}, "does not exist, so there is nothing to resume"),
    (lambda p: make_run(p, results=True), {}, "already holds a run; pass --resume"),
    (lambda p: (p.mkdir(), (p / "notes.txt").write_text("")), {}, "holds other files"),
    (lambda p: (p.mkdir(), (p / "notes.txt").write_text("")), {"overwrite": True},
     "--overwrite replaces a run, but workdir .* holds other files"),
    (lambda p: (p.mkdir(), (p / "figure.png").write_text("x")), {},  # a run's file name only
     r"^workdir .*run holds other files \(no config.json written by train.py\); choose another "
     "--workdir$"),
    (lambda p: (p.mkdir(), (p / "metrics.json").write_text("{}")), {}, "holds other files"),
    (lambda p: (p.mkdir(), (p / "figure.png").write_text("x")), {"overwrite": True},
     "--overwrite replaces a run, but workdir .* holds other files"),
    # a file where the checkpoints folder goes: Orbax timed out after 30 s, then hung for good
    *[(lambda p: (make_run(p, results=True), (p / checkpoint.DIRNAME).write_text("")), kwargs,
       r"^workdir .*run holds a file named checkpoints, where train.py keeps its checkpoint "
       r"folders: move or delete it, or choose another --workdir$")
      for kwargs in ({}, {"resume": True}, {"overwrite": True})],
])
def test_prepare_refuses_what_it_must_not_touch(tmp_path: Path, setup, kwargs: dict,
                                                message: str) -> None:
    path = tmp_path / "run"
    setup(path)
    before = sorted(tmp_path.rglob("*"))
    with pytest.raises(ValueError, match=message):
        rundir.prepare(path, **kwargs)
    assert sorted(tmp_path.rglob("*")) == before  # refused before anything was written


def test_prepare_creates_a_new_folder_and_reuses_one_that_saved_nothing(tmp_path: Path) -> None:
    assert rundir.prepare(tmp_path / "a" / "b") == tmp_path / "a" / "b"
    assert (tmp_path / "a" / "b").is_dir() and not any((tmp_path / "a" / "b").iterdir())
    bare = make_run(tmp_path / "bare")
    assert rundir.prepare(bare) == bare  # a run that saved nothing starts over in place
    done = make_run(tmp_path / "done", results=True, steps=("4",))
    assert rundir.prepare(done, overwrite=True) == done
    assert (done / "metrics.json").exists()  # overwrite deletes nothing yet: clear() does


def test_a_relative_data_dir_missing_here_is_named_with_the_current_folder(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (tmp_path / "mnist").mkdir()
    monkeypatch.chdir(tmp_path)
    for found in (None, "mnist", str(tmp_path / "mnist"), str(tmp_path / "absent")):
        rundir.check_data_dir_here(found)  # nothing, found here, or absolute (data.load says)
    with pytest.raises(ValueError, match=rf"trained with --data-dir \.\./mnist, relative to the "
                                         rf"folder it was trained in, and there is no \.\./mnist "
                                         rf"here \({tmp_path}\): the run was trained in another "
                                         rf"folder, or its data has moved since; pass --data-dir"):
        rundir.check_data_dir_here("../mnist")


def test_claim_leaves_a_new_or_empty_folder_as_it_was_if_the_run_saved_nothing(
        tmp_path: Path) -> None:
    nested = tmp_path / "nest" / "a" / "b"
    with contextlib.ExitStack() as held:
        rundir.claim(nested, held, overwrite=False, resume=False)
        (nested / "config.json").write_text("{}")
        (nested / checkpoint.DIRNAME).mkdir()
    assert not (tmp_path / "nest").exists()  # every folder it made, innermost first
    (tmp_path / "empty").mkdir()  # one the user made: kept, emptied again
    with contextlib.ExitStack() as held:
        rundir.claim(tmp_path / "empty", held, overwrite=False, resume=False)
        (tmp_path / "empty" / "config.json").write_text("{}")
    assert list((tmp_path / "empty").iterdir()) == []
    with contextlib.ExitStack() as held:  # a run that saved something is kept
        rundir.claim(tmp_path / "done", held, overwrite=False, resume=False)
        (tmp_path / "done" / "config.json").write_text("{}")
        (tmp_path / "done" / runfiles.PARAMS_FILE).write_bytes(b"")
    assert (tmp_path / "done" / runfiles.PARAMS_FILE).exists()


def test_a_claim_refused_as_in_use_touches_the_live_run_at_no_point(tmp_path: Path) -> None:
    live = tmp_path / "live"
    with contextlib.ExitStack() as first:
        rundir.claim(live, first, overwrite=False, resume=False)  # an empty folder, locked
        with pytest.raises(ValueError, match="is in use"):
            with contextlib.ExitStack() as second:
                rundir.claim(live, second, overwrite=False, resume=False)
        assert live.is_dir()  # the refused claim removed nothing
        (live / "config.json").write_text("{}")
        (live / runfiles.PARAMS_FILE).write_bytes(b"")
    assert (live / "config.json").exists()


@pytest.mark.parametrize("flags,message", [
    ([], ""), (["--resume"], "--resume continues a run, but "),
    (["--overwrite"], "--overwrite replaces a run, but ")])
def test_a_folder_with_a_run_file_name_but_no_config_json_is_other_files_for_every_flag(
        flags: list[str], message: str, small_idx_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    from tests.test_experiment import load_script

    other = tmp_path / "other"  # not "holds a run" (then, with --resume, "start it again
    other.mkdir()               # without --resume", which said "holds a run" again)
    (other / "figure.png").write_text("x")
    (other / "notes.txt").write_text("mine")
    code = load_script("train").main(["--data-dir", str(small_idx_dir), "--data-root",
                                      str(tmp_path / "root"), "--no-progress",
                                      "--no-compile-cache", "--epochs", "1", "--workdir",
                                      str(other), *flags])
    assert code == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"train.py: error: {message}workdir {other} holds other files (no config.json written by "
        "train.py); choose another --workdir")
    assert tree_of(other) == ["figure.png", "notes.txt"]  # nothing deleted, nothing written
    assert (other / "figure.png").read_text() == "x"


def test_a_resume_without_a_config_json_is_refused_only_without_a_checkpoint(
        tmp_path: Path) -> None:
    empty = tmp_path / "empty"  # nothing in it: no checkpoint, and a plain run may start there
    empty.mkdir()
    with pytest.raises(ValueError, match="no checkpoint in .* start it again without --resume"):
        resumesettings.resume_meta(empty)
    (empty / "figure.png").write_text("x")
    with pytest.raises(ValueError, match="--resume continues a run, but workdir .* holds other"):
        resumesettings.resume_meta(empty)
    saved = make_run(tmp_path / "saved", steps=("4",))
    (saved / "config.json").write_text("{}")  # damaged; --resume reads the checkpoint's own
    rundir.check_holds_run(saved, resume=True)
    rundir.check_holds_run(saved)  # and a plain run says "already holds a run" (test_resume)
    rundir.check_holds_run(saved, overwrite=True)  # which --overwrite then replaces


def test_overwrite_replaces_a_run_whose_config_json_is_gone_as_the_refusal_says(
        small_idx_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from tests.test_experiment import load_script

    train = load_script("train").main
    run = tmp_path / "run"
    flags = ["--data-dir", str(small_idx_dir), "--data-root", str(tmp_path / "root"),
             "--no-progress", "--no-compile-cache", "--epochs", "1", "--batch-size", "64",
             "--workdir", str(run)]
    assert train(flags) == 0
    (run / "config.json").unlink()  # a finished checkpoint is left: still a run
    (run / "notes.txt").write_text("mine")
    capsys.readouterr()
    assert train(flags) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == (
        f"train.py: error: workdir {run} already holds a run; pass --resume to continue it, "
        "--overwrite to replace it, or choose another --workdir")
    assert train([*flags, "--overwrite", "--seed", "1"]) == 0  # what the message offers works
    assert json.loads((run / "config.json").read_text())["config"]["seed"] == 1
    assert not (run / oldrun.REPLACED).exists() and (run / "notes.txt").read_text() == "mine"


def test_the_finish_hint_names_a_command_that_accepts_the_folder(tmp_path: Path) -> None:
    bare = make_run(tmp_path / "bare")  # stopped before it saved anything: starts over in place
    assert rundir.finish_hint(bare).endswith(f"train it again, train.py --workdir {bare}")
    rundir.prepare(bare)
    gone = make_run(tmp_path / "gone")  # its figures kept, parameters and checkpoints deleted
    (gone / "figure.png").write_bytes(b"")
    assert rundir.finish_hint(gone) == (f"; its parameters and checkpoints are gone: train it "
                                        f"again, train.py --workdir {gone} --overwrite")
    with pytest.raises(ValueError, match="already holds a run"):  # not in place: --overwrite
        rundir.prepare(gone)
    rundir.prepare(gone, overwrite=True)
    pruned = make_run(tmp_path / "pruned")  # parameters, checkpoints deleted: nothing to resume
    (pruned / runfiles.PARAMS_FILE).write_bytes(b"")
    assert rundir.finish_hint(pruned) == (f"; its evaluation did not finish: evaluate.py "
                                          f"--workdir {pruned} finishes it")
    with pytest.raises(ValueError, match="no checkpoint"):
        checkpoint.latest_meta(pruned / checkpoint.DIRNAME)
    (pruned / checkpoint.DIRNAME / "40").mkdir(parents=True)  # resumed, the losses are kept too
    assert rundir.finish_hint(pruned).endswith(f"train.py --workdir {pruned} --resume finishes it")


def test_the_finish_hint_after_a_killed_overwrite_names_overwrite(tmp_path: Path) -> None:
    def killed_overwrite(run: Path) -> Path:
        make_run(run, results=True, steps=("4",))
        oldrun.set_aside(run)  # then the new run wrote its config.json and was killed
        (run / "config.json").write_text(json.dumps({"config": json.loads(Config().to_json())}))
        return run

    run = killed_overwrite(tmp_path / "run")
    assert rundir.finish_hint(run) == (
        f"; a killed --overwrite stopped before it saved anything, the run it replaces set aside "
        f"in {run / oldrun.REPLACED}: train.py --workdir {run} --overwrite trains it again (any "
        f"train.py on the folder first puts that run back)")
    with contextlib.ExitStack() as held:  # what the hint offers is accepted
        rundir.claim(run, held, overwrite=True, resume=False)
    run = killed_overwrite(tmp_path / "other")
    with contextlib.ExitStack() as held, pytest.raises(ValueError, match="already holds a run"):
        rundir.claim(run, held, overwrite=False, resume=False)  # what the usual hint offered


def test_resuming_a_run_whose_checkpoints_were_deleted_names_what_works(tmp_path: Path) -> None:
    pruned = make_run(tmp_path / "pruned")  # finished, then its checkpoints deleted for space
    for name in (runfiles.PARAMS_FILE, "metrics.json", "figure.png"):
        (pruned / name).write_bytes(b"")
    with pytest.raises(ValueError, match=rf"^--resume: the run in {pruned} has no checkpoint left "
                                         r"\(deleted after it saved its results\), so nothing to "
                                         rf"resume from: evaluate.py --workdir {pruned} evaluates "
                                         rf"its parameters again; train.py --workdir {pruned} "
                                         "--overwrite trains it again$"):
        resumesettings.resume_meta(pruned)
    (pruned / runfiles.PARAMS_FILE).unlink()
    with pytest.raises(ValueError, match=r"nothing to resume from: train.py --workdir \S+ "
                                         "--overwrite trains it again$"):
        resumesettings.resume_meta(pruned)
    bare = make_run(tmp_path / "bare")  # stopped before it saved anything: the usual message
    with pytest.raises(ValueError, match="no checkpoint .*start it again without --resume"):
        resumesettings.resume_meta(bare)


def test_default_workdirs_differ_by_seed_and_are_reserved_at_once(tmp_path: Path,
                                                                   monkeypatch) -> None:
    monkeypatch.setattr(rundir.time, "strftime", lambda fmt: "20261127-224605")  # one second
    root = str(tmp_path / "runs")
    first = rundir.default_workdir(Config(seed=0), root)
    assert first == f"{root}/mnist-none-s0-20261127-224605" and Path(first).is_dir()
    assert rundir.default_workdir(Config(seed=1), root) == f"{root}/mnist-none-s1-20261127-224605"
    assert rundir.default_workdir(Config(seed=0), root) == first + "-2"  # taken: the next one
    assert rundir.default_workdir(Config(seed=0), root) == first + "-3"
