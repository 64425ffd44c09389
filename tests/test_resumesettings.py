"""Tests for aejax.resumesettings: a resumed run keeps its checkpoint's config, interval and keep
(from train.py and from Python), and a relative data folder it cannot find is named."""

from __future__ import annotations

import contextlib
import dataclasses
import json
from pathlib import Path

import pytest

from aejax import checkpoint, data, experiment, loop, resumesettings
from aejax.config import Config
from tests.test_experiment import load_script


def test_resume_keeps_the_runs_checkpoint_interval_and_keep(small_idx_dir: Path, tmp_path: Path,
                                                             no_figures: None) -> None:
    cfg = Config(data_dir=str(small_idx_dir), data_root=str(tmp_path / "root"), epochs=1)
    run = tmp_path / "run"
    experiment.run(cfg, run, progress=False, checkpoint_every=3, keep=7)
    meta = resumesettings.resume_meta(run)
    assert resumesettings.checkpoint_options(meta, None, None) == (3, 7)
    assert resumesettings.checkpoint_options(meta, 5, None) == (5, 7)
    assert resumesettings.checkpoint_options({}, None, None) == (0, 3)
    script = load_script("train")
    assert script.main(["--workdir", str(run), "--resume", "--epochs", "2", "--no-progress",
                        "--no-compile-cache"]) == 0
    steps = sorted(int(p.name) for p in (run / checkpoint.DIRNAME).iterdir())
    assert steps == [4, 6, 8, 10, 12, 16]  # chunk ends past each 3rd step, epoch ends; keep 7
    assert json.loads((run / "config.json").read_text())["config"]["epochs"] == 2  # rewritten
    experiment.run(dataclasses.replace(cfg, epochs=3), run, progress=False, resume=True)
    assert resumesettings.checkpoint_options(resumesettings.resume_meta(run), None, None) == (3, 7)
    steps = sorted(int(p.name) for p in (run / checkpoint.DIRNAME).iterdir())
    assert steps == [8, 10, 12, 16, 18, 22, 24]  # from Python too: the run's own interval, keep


def test_resuming_from_another_folder_names_the_runs_relative_data_dir(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    meta = {"config": json.loads(Config(data_dir="../mnist").to_json())}
    monkeypatch.chdir(tmp_path)  # no ../mnist from here
    with pytest.raises(ValueError, match=r"the run was trained with --data-dir \.\./mnist, "
                                         r"relative to the folder it was trained in"):
        resumesettings.resume_config(meta, {}, tmp_path / "run")
    given = resumesettings.resume_config(meta, {"data_dir": "elsewhere"}, tmp_path / "run")
    assert given.data_dir == "elsewhere"  # a new --data-dir: data.load says if it is missing


def test_resume_config_reuses_the_checkpoint_config(
        small_idx_dir: Path, tmp_path: Path) -> None:
    cfg = Config(data_dir=str(small_idx_dir), data_root=str(tmp_path / "root"), epochs=1,
                 hidden=(64, 16), seed=3, batch_size=64)
    x = data.load(cfg.dataset, data_dir=cfg.data_dir, data_root=cfg.data_root).train_images
    run = tmp_path / "run"
    with contextlib.closing(checkpoint.Checkpointer(run / checkpoint.DIRNAME)) as ckpt:
        loop.fit(cfg, x.reshape(len(x), -1), progress=False, checkpoints=ckpt)
    meta = resumesettings.resume_meta(run)
    assert (resumesettings.resume_config(meta, {"epochs": 4}, run)
            == dataclasses.replace(cfg, epochs=4))
    with pytest.raises(ValueError, match=r"hidden=\[64, 16\] \(now \[128, 50\]\)"):
        resumesettings.resume_config(meta, {"hidden": (128, 50)}, run)  # a default given explicitly


def test_checkpoint_every_0_given_on_resume_is_kept_not_taken_for_absent() -> None:
    meta = {"checkpoint_every": 3, "keep": 7}  # the run checkpointed every 3rd step
    assert resumesettings.checkpoint_options(meta, 0, None) == (0, 7)  # epoch ends only, now


def test_resuming_a_missing_folder_or_a_file_says_there_is_nothing_to_resume(
        tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="does not exist, so there is nothing to resume"):
        resumesettings.resume_meta(tmp_path / "gone")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match="is a file, not a run folder"):
        resumesettings.resume_meta(tmp_path / "file")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["file"]  # and nothing created
