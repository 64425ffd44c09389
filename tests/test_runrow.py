"""Tests for aejax.runrow: a run folder read for comparison, refused with its name where it is
not a finished run."""

from __future__ import annotations

import contextlib
import hashlib
import json
from pathlib import Path

import pytest

from aejax import runlock, runrow
from tests.test_compare import fake_run


def test_damaged_run_files_are_refused_with_their_name(tmp_path: Path) -> None:
    run = Path(fake_run(tmp_path / "run", 0.017))
    (run / "metrics.json").write_text("{\"test\": ")
    with pytest.raises(ValueError, match=r"metrics.json is not valid JSON \(.*\); it is damaged"):
        runrow.load_run(run)
    (run / "metrics.json").write_text("[]")
    with pytest.raises(ValueError, match="metrics.json holds a JSON list, not the object"):
        runrow.load_run(run)
    (run / "metrics.json").write_text("{}")
    (run / "config.json").write_text("{}")
    with pytest.raises(ValueError, match="config.json is not a config.json written by train.py"):
        runrow.load_run(run)


def test_a_missing_unfinished_or_training_run_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=f"{tmp_path / 'gone'} does not exist: give the run "):
        runrow.load_run(tmp_path / "gone")
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match=f"{tmp_path / 'file'} is not a folder"):
        runrow.load_run(tmp_path / "file")
    run = Path(fake_run(tmp_path / "run", 0.017))
    with contextlib.ExitStack() as held:  # as train.py --resume holds it: stale metrics.json
        runlock.lock(run, held)
        with pytest.raises(ValueError, match=r"run is in use: another train.py \(or evaluate.py, "
                                             r"or compare.py\) is running there; its "
                                             r"metrics.json is not final"):
            runrow.load_run(run)
    assert runrow.load_run(run)[1]["test"]["occluded"]["mse"] == 0.017  # released
    with contextlib.ExitStack() as held:  # another compare.py reading it: both may
        runlock.lock(run, held, shared=True)
        assert runrow.load_run(run)[1]["test"]["occluded"]["mse"] == 0.017
    (run / "metrics.json").unlink()
    with pytest.raises(ValueError, match="run is not a finished run: no metrics.json; it stopped "
                                         f"before it saved anything: train it again, train.py "
                                         f"--workdir {run}$"):
        runrow.load_run(run)
    (run / "checkpoints" / "40").mkdir(parents=True)  # a Ctrl-C during training
    with pytest.raises(ValueError, match="no metrics.json; its training stopped before the end: "
                                         f"train.py --workdir {run} --resume finishes it$"):
        runrow.load_run(run)
    (run / "params.msgpack").write_bytes(b"")  # a Ctrl-C during the evaluation
    with pytest.raises(ValueError, match="no metrics.json; its evaluation did not finish: "
                                         f"train.py --workdir {run} --resume finishes it$"):
        runrow.load_run(run)
    info = json.loads((run / "config.json").read_text())
    info.update(parts={"model": None, "loss": "myparts.bce", "occlude": None},
                parts_spec="myparts:PARTS")
    (run / "config.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match=f"--workdir {run} --resume --parts myparts:PARTS "
                                         "finishes it$"):
        runrow.load_run(run)
    with contextlib.ExitStack() as held:  # still training: that, not a hint
        runlock.lock(run, held)
        with pytest.raises(ValueError, match="is in use"):
            runrow.load_run(run)


def test_a_folder_without_a_config_json_gets_no_hint_to_finish_it(tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()  # not a run at all: no "train it again" as if it were one
    with pytest.raises(ValueError, match="empty is not a finished run: no config.json or "
                                         "metrics.json$"):
        runrow.load_run(tmp_path / "empty")
    run = Path(fake_run(tmp_path / "run", 0.017))
    (run / "config.json").unlink()
    with pytest.raises(ValueError, match="run is not a finished run: no config.json$"):
        runrow.load_run(run)


def test_what_scores_are_of_is_unknown_without_either_digest(tmp_path: Path) -> None:
    old = Path(fake_run(tmp_path / "old", 0.017))  # no test_occlusion_sha256: before 2026-11-28
    new = Path(fake_run(tmp_path / "new", 0.017, occluded="ab" * 8))
    assert runrow.load_run(new)[2] is None  # no params.msgpack
    for run in (old, new):
        (run / "params.msgpack").write_bytes(b"params")
    assert runrow.load_run(old)[2] is None  # so copies of it are not refused as one run's scores
    assert runrow.load_run(new)[2] == (hashlib.sha256(b"params").hexdigest()[:16], "ab" * 8)
