"""End-to-end smoke tests: a tiny run writes every result; the script's errors are one line."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib.util
import json
import logging
import os
import subprocess
import sys
import types
from pathlib import Path

import jax
import numpy as np
import pytest

from aejax import (checkpoint, data, experiment, oldrun, paramsfile, resumable, resumesettings,
                   runfiles, runlock, runrow, sigint)
from aejax.config import Config
from tests.test_jsonio import full_disk

ROOT = Path(__file__).resolve().parents[1]


def load_script(name: str):
    """Import scripts/<name>.py as a module (scripts/ is not a package)."""
    spec = importlib.util.spec_from_file_location(f"script_{name}", ROOT / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_run_writes_config_metrics_figures_and_params(small_idx_dir: Path, tmp_path: Path) -> None:
    cfg = Config(data_dir=str(small_idx_dir), data_root=str(tmp_path / "root"), epochs=2)
    metrics = experiment.run(cfg, tmp_path / "run", progress=False)
    run = tmp_path / "run"
    for name in ("config.json", "metrics.json", "figure.png", "loss.png", "params.msgpack"):
        assert (run / name).stat().st_size > 0, name
    saved = json.loads((run / "metrics.json").read_text())
    assert saved == json.loads(json.dumps(metrics))
    assert {"final_loss", "seconds", "steps_per_second"} <= set(saved["train"])
    test = saved["test"]
    assert test["occluded_input"]["mse"] > 0 and test["clean"]["mse"] > 0
    assert saved["train"]["epoch_loss"][1] < saved["train"]["epoch_loss"][0]
    assert saved["train"]["steps"] == 2 * (256 // 32)
    assert len(saved["test_occlusion_sha256"]) == 16
    info = json.loads((run / "config.json").read_text())
    assert Config.from_dict(info["config"]) == cfg
    params = paramsfile.load(run / "params.msgpack")
    assert params["dense_0"]["kernel"].shape == (784, 128)
    runfiles.clear(run)  # runfiles.RUN_FILES names every file a run writes: --overwrite moves all
    assert not any(run.iterdir())


def test_existing_run_is_not_overwritten(small_idx_dir: Path, tmp_path: Path) -> None:
    cfg = Config(data_dir=str(small_idx_dir), data_root=str(tmp_path / "root"), epochs=1)
    (tmp_path / "run").mkdir()  # a run: its config.json (a metrics.json alone is other files)
    (tmp_path / "run" / "config.json").write_text(json.dumps({"config": json.loads(cfg.to_json())}))
    (tmp_path / "run" / "metrics.json").write_text("{}")
    with pytest.raises(ValueError,
                       match="already holds a run; pass --resume to continue it, --overwrite"):
        experiment.run(cfg, tmp_path / "run", progress=False)
    (tmp_path / "mine").mkdir()
    (tmp_path / "mine" / "notes.txt").write_text("")
    with pytest.raises(ValueError, match=r"^workdir .*mine holds other files \(no config.json "
                                         r"written by train.py\); choose another --workdir$"):
        experiment.run(cfg, tmp_path / "mine", progress=False)


def test_overwrite_puts_the_old_run_back_if_the_new_one_fails_before_saving(
        small_idx_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = Config(data_dir=str(small_idx_dir), data_root=str(tmp_path / "root"), epochs=1)
    run = tmp_path / "run"
    experiment.run(cfg, run, progress=False)
    (run / "notes.txt").write_text("mine")
    old = {p.relative_to(run): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}
    huge = dataclasses.replace(cfg, hidden=(1_000_000_000,))  # 784 x 1e9 weights: out of memory
    with pytest.raises(jax.errors.JaxRuntimeError, match="(?i)out of memory"):
        experiment.run(huge, run, progress=False, overwrite=True)
    now = {p.relative_to(run): p.read_bytes() for p in sorted(run.rglob("*")) if p.is_file()}
    assert now == old and not (run / oldrun.REPLACED).exists()

    def failing(*args, **kwargs):  # after training: params.msgpack is saved, the run replaced
        raise ValueError("evaluation failed")

    monkeypatch.setattr(experiment.evaluate, "evaluate", failing)
    with pytest.raises(ValueError, match="evaluation failed"):
        experiment.run(dataclasses.replace(cfg, seed=1), run, progress=False, overwrite=True)
    assert not (run / "metrics.json").exists() and not (run / oldrun.REPLACED).exists()
    assert (run / runfiles.PARAMS_FILE).read_bytes() != old[Path(runfiles.PARAMS_FILE)]
    assert (run / "notes.txt").read_text() == "mine"  # not a run's file: never moved
    monkeypatch.undo()
    experiment.run(dataclasses.replace(cfg, seed=2), run, progress=False, overwrite=True)
    assert json.loads((run / "config.json").read_text())["config"]["seed"] == 2
    assert (run / "metrics.json").is_file() and not (run / oldrun.REPLACED).exists()


def test_the_next_command_on_a_folder_puts_back_the_run_a_killed_overwrite_set_aside(
        small_idx_dir: Path, tmp_path: Path) -> None:
    cfg = Config(data_dir=str(small_idx_dir), data_root=str(tmp_path / "root"), epochs=1)
    for command in ("run", "resume"):
        run = tmp_path / command
        experiment.run(cfg, run, progress=False)
        old = (run / "metrics.json").read_text()
        oldrun.set_aside(run)  # what a --overwrite killed before its first checkpoint leaves
        (run / "config.json").write_text(json.dumps({"config": json.loads(cfg.to_json())}))
        if command == "run":
            with pytest.raises(ValueError, match="already holds a run"):  # the old one, back
                experiment.run(cfg, run, progress=False)
        else:
            assert resumesettings.resume_meta(run)["step"] == 256 // 32  # the old run's checkpoint
        assert (run / "metrics.json").read_text() == old and not (run / oldrun.REPLACED).exists()


def test_a_run_that_saved_nothing_starts_over_in_place(small_idx_dir: Path,
                                                       tmp_path: Path) -> None:
    cfg = Config(data_dir=str(small_idx_dir), data_root=str(tmp_path / "root"), epochs=1)
    run = tmp_path / "run"  # what a run killed in its first epoch (or diverged at once) leaves
    (run / checkpoint.DIRNAME / "8.orbax-checkpoint-tmp-1").mkdir(parents=True)
    (run / "config.json").write_text(json.dumps({"config": json.loads(Config(seed=5).to_json())}))
    with pytest.raises(ValueError, match="no checkpoint in .* start it again without --resume"):
        resumesettings.resume_meta(run)
    experiment.run(cfg, run, progress=False)
    assert Config.from_dict(json.loads((run / "config.json").read_text())["config"]) == cfg
    assert (run / "metrics.json").is_file()
    assert sorted(p.name for p in (run / checkpoint.DIRNAME).iterdir()) == ["8"]


def test_a_workdir_in_use_is_refused_and_left_alone(small_idx_dir: Path, tmp_path: Path) -> None:
    cfg = Config(data_dir=str(small_idx_dir), data_root=str(tmp_path / "root"), epochs=1)
    run = tmp_path / "run"
    (run / checkpoint.DIRNAME / "8.orbax-checkpoint-tmp-1").mkdir(parents=True)  # a save going on
    (run / checkpoint.DIRNAME / "4").mkdir()  # and one it saved: "in use", not "holds a run"
    (run / "config.json").write_text(json.dumps({"config": json.loads(cfg.to_json())}))
    before = sorted(str(p) for p in run.rglob("*"))
    with contextlib.ExitStack() as held:  # as a live train.py holds it
        runlock.lock(run, held)
        with pytest.raises(ValueError, match="is in use"):  # what train.py --resume reads first
            resumesettings.resume_meta(run)
        for kwargs in ({}, {"resume": True}, {"overwrite": True}):
            with pytest.raises(ValueError, match=r"workdir .*run is in use: another train.py "
                                                 r"\(or evaluate.py, or compare.py\) is running "
                                                 "there"):
                experiment.run(cfg, run, progress=False, **kwargs)
    assert sorted(str(p) for p in run.rglob("*")) == before
    with pytest.raises(ValueError, match="already holds a run"):  # released: what it holds
        experiment.run(cfg, run, progress=False)


@pytest.mark.parametrize("argv,message", [
    (["--epochs", "0"], "epochs must be >= 1"),
    (["--epochs", "two"], "argument --epochs: invalid int value: 'two'"),
    (["--batch-size", "-3"], "batch size must be >= 1"),
    (["--learning-rate", "0"], "learning rate must be a positive normal float32"),
    (["--dataset", "cifar"], "argument --dataset: invalid choice: 'cifar'"),
    (["--hidden", "128,x"], "expected comma-separated integers"),
    (["--frobnicate"], "unrecognized arguments: --frobnicate"),
    (["--batch-size", "1000"], "between 1 and the training set size (256)"),
])
def test_bad_flags_exit_with_one_line(argv: list[str], message: str, small_idx_dir: Path,
                                      tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    script = load_script("train")
    args = ["--data-dir", str(small_idx_dir), "--data-root", str(tmp_path / "root"),
            "--workdir", str(tmp_path / "run"), "--no-progress", "--no-compile-cache", *argv]
    try:
        code = script.main(args)
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert message in err[-1] and err[-1].startswith("train.py: error: ")
    assert not any("Traceback" in line for line in err)


@pytest.mark.parametrize("hide", [False, True])
def test_the_progress_bar_shows_unless_hidden(hide: bool, small_idx_dir: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    args = ["--data-dir", str(small_idx_dir), "--data-root", str(tmp_path / "root"),
            "--workdir", str(tmp_path / "run"), "--epochs", "1"] + ["--no-progress"] * hide
    assert load_script("train").main(args) == 0
    err = capsys.readouterr().err
    assert ("train: 100%" in err) is not hide, err


def test_the_trained_parameters_are_kept_when_evaluation_fails(
        small_idx_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def failing(*args, **kwargs):
        raise ValueError("evaluation failed")

    monkeypatch.setattr(experiment.evaluate, "evaluate", failing)
    cfg = Config(data_dir=str(small_idx_dir), data_root=str(tmp_path / "root"), epochs=1)
    with pytest.raises(ValueError, match="evaluation failed"):
        experiment.run(cfg, tmp_path / "run", progress=False)
    params = paramsfile.load(tmp_path / "run" / runfiles.PARAMS_FILE)
    assert params["dense_0"]["kernel"].shape == (784, 128)
    assert len(np.load(tmp_path / "run" / "train_loss.npy")) == 256 // 32


def test_a_full_disk_leaves_nothing_half_written_that_blocks_the_folder_or_resume(
        small_idx_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cfg = Config(data_dir=str(small_idx_dir), data_root=str(tmp_path / "root"), epochs=1)
    run = tmp_path / "run"
    with monkeypatch.context() as patch:  # config.json, at the start: the new folder goes again
        full_disk(patch, "config.json")
        with pytest.raises(ValueError, match=(
                rf"^could not write {run / 'config.json'} \(No space left on device\): free some "
                r"space \(or fix the folder's permissions\), then start the run again$")):
            experiment.run(cfg, run, progress=False)
    assert not run.exists()
    run.mkdir()  # an empty folder given: left empty, not with a config.json.tmp refused later
    with monkeypatch.context() as patch:
        full_disk(patch, "config.json")
        with pytest.raises(ValueError, match="No space left on device"):
            experiment.run(cfg, run, progress=False)
    assert list(run.iterdir()) == []
    full_disk(monkeypatch, "params.msgpack")  # after training: the checkpoint is saved
    with pytest.raises(ValueError, match=(
            rf"^could not write {run / 'params.msgpack'} \(No space left on device\): free some "
            rf"space \(or fix the folder's permissions\), then --workdir {run} --resume finishes "
            rf"it: training is saved in {run / 'checkpoints'}$")):
        experiment.run(cfg, run, progress=False)
    monkeypatch.undo()
    assert sorted(p.name for p in run.iterdir()) == ["checkpoints", "config.json"]
    metrics = experiment.run(cfg, run, progress=False, resume=True)
    assert metrics["train"]["steps"] == 256 // 32 and (run / "metrics.json").is_file()


def test_a_ctrl_c_during_the_evaluation_says_that_resume_evaluates(
        small_idx_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def pressed(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(experiment.evaluate, "evaluate", pressed)
    cfg = Config(data_dir=str(small_idx_dir), data_root=str(tmp_path / "root"), epochs=1)
    run = tmp_path / "run"
    with pytest.raises(sigint.Interrupted, match=(
            rf"^interrupted during the evaluation; training is saved in {run / 'checkpoints'}: "
            rf"--workdir {run} --resume evaluates it$")):
        experiment.run(cfg, run, progress=False)
    monkeypatch.undo()
    metrics = experiment.run(cfg, run, progress=False, resume=True)  # as the message says
    assert metrics["train"]["steps"] == 256 // 32 and (run / "metrics.json").is_file()


def test_a_resumed_run_stopped_before_its_new_results_keeps_no_old_ones(
        small_idx_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def pressed(*args, **kwargs):
        raise KeyboardInterrupt

    cfg = Config(data_dir=str(small_idx_dir), data_root=str(tmp_path / "root"), epochs=1)
    run = tmp_path / "run"
    experiment.run(cfg, run, progress=False)
    monkeypatch.setattr(experiment.paramsfile, "save", pressed)  # stopped before any new result
    with pytest.raises(KeyboardInterrupt):
        experiment.run(dataclasses.replace(cfg, epochs=2), run, progress=False, resume=True)
    assert not (run / "metrics.json").exists() and not (run / runfiles.PARAMS_FILE).exists()
    monkeypatch.undo()
    monkeypatch.setattr(experiment.evaluate, "evaluate", pressed)  # a Ctrl-C, a kill, a full disk
    with pytest.raises(sigint.Interrupted, match="interrupted during the evaluation"):
        experiment.run(dataclasses.replace(cfg, epochs=2), run, progress=False, resume=True)
    monkeypatch.undo()
    # config.json says 2 epochs now: the 1-epoch scores must not sit under it (compare.py and
    # evaluate.py would show them as the 2-epoch run's); --resume finishes it
    assert json.loads((run / "config.json").read_text())["config"]["epochs"] == 2
    assert not (run / "metrics.json").exists()
    with pytest.raises(ValueError, match=r"no metrics.json; its evaluation did not finish: "
                                         rf"train.py --workdir {run} --resume finishes it$"):
        runrow.load_run(run)
    metrics = experiment.run(dataclasses.replace(cfg, epochs=2), run, progress=False,
                             resume=True)
    assert metrics["train"]["steps"] == 2 * 256 // 32
    assert json.loads((run / "metrics.json").read_text())["train"]["steps"] == 2 * 256 // 32


def test_resuming_a_finished_run_says_that_only_the_evaluation_runs(
        small_idx_dir: Path, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cfg = Config(data_dir=str(small_idx_dir), data_root=str(tmp_path / "root"), epochs=1)
    experiment.run(cfg, tmp_path / "run", progress=False)
    with caplog.at_level(logging.WARNING, logger="aejax.loop"):
        experiment.run(cfg, tmp_path / "run", progress=False, resume=True)
    assert "had already trained all 1 epochs (step 8): nothing left to train" in caplog.text


def test_script_runs_from_the_command_line(small_idx_dir: Path, tmp_path: Path) -> None:
    env = {**os.environ, "AEJAX_JAX_CACHE": str(tmp_path / "jax-cache")}
    cmd = [sys.executable, str(ROOT / "scripts" / "train.py"), "--data-dir", str(small_idx_dir),
           "--data-root", str(tmp_path / "root"), "--epochs", "1", "--workdir",
           str(tmp_path / "run"), "--train-occlusion", "mixed"]
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "test MSE clean" in done.stdout
    metrics = json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert np.isfinite(metrics["test"]["occluded"]["mse"])
    assert any((tmp_path / "jax-cache").iterdir())  # the compilation cache was written
    evaluated = subprocess.run(
        [sys.executable, str(ROOT / "scripts" / "evaluate.py"), "--workdir", str(tmp_path / "run")],
        capture_output=True, text=True, env={**env, "AEJAX_JAX_CACHE": str(tmp_path / "cache2")},
        cwd=tmp_path, timeout=300)
    assert evaluated.returncode == 0, evaluated.stderr
    assert any((tmp_path / "cache2").iterdir())  # evaluate.py uses the cache too
    missing = subprocess.run([*cmd[:2], "--data-dir", str(tmp_path / "nowhere"), "--workdir",
                              str(tmp_path / "run2")], capture_output=True, text=True, env=env,
                             cwd=tmp_path, timeout=300)
    assert missing.returncode == 2 and "Traceback" not in missing.stderr
    assert missing.stderr.strip().splitlines()[-1].startswith("train.py: error: ")


def test_train_metrics_summarise_the_last_epoch_and_count_images() -> None:
    losses = np.array([4.0, 2.0, 3.0, 1.0, 0.75, 0.25], np.float32)  # 3 epochs of 2 steps
    history = {"loss": losses, "steps_per_epoch": 2, "train_seconds": 3.0,
               "compile_seconds": 0.25}
    got = experiment.train_metrics(history, batch_size=16)
    assert got == {"final_loss": 0.5, "epoch_loss": [3.0, 2.0, 0.5], "steps": 6,
                   "seconds": 3.0, "compile_seconds": 0.25, "steps_per_second": 2.0,
                   "images_per_second": 32.0}


def test_the_test_set_digest_covers_images_and_labels() -> None:
    images, labels = np.zeros((4, 28, 28), np.uint8), np.arange(4, dtype=np.uint8)

    def digest(test_images: np.ndarray, test_labels: np.ndarray) -> str:
        ds = data.Dataset("custom", images, labels, test_images, test_labels, "here", False)
        return experiment.data_info(ds)["test_sha256"]

    same = digest(images, labels)
    assert same == digest(images.copy(), labels.copy())
    assert len({same, digest(images + 1, labels), digest(images, labels[::-1].copy())}) == 3


def test_the_training_images_are_digested_too() -> None:
    images, labels = np.zeros((4, 28, 28), np.uint8), np.arange(4, dtype=np.uint8)

    def digest(train_images: np.ndarray) -> str:
        ds = data.Dataset("custom", train_images, labels, images, labels, "here", False)
        return experiment.data_info(ds)["train_sha256"]

    assert digest(images) == digest(images.copy()) != digest(images + 1)  # one size, other data
    ds = data.Dataset("custom", images + 2, labels, images, labels, "here", False)
    saved = resumable.fingerprint(ds.train_images.reshape(4, -1))  # as loop.fit checkpoints it
    assert experiment.data_info(ds)["train_sha256"] == saved["sha256"][:16]  # one digest


def test_every_process_compares_all_flags_but_its_data_paths(monkeypatch, tmp_path: Path) -> None:
    compared = []
    monkeypatch.setattr(experiment.parallel, "check_same", lambda flags, *_: compared.append(flags))
    cfg = Config(data_dir="/host0/mnist", data_root="/host0/tfds")  # each host's own copy
    mesh = types.SimpleNamespace(size=4)  # only its size is compared (one CPU device here)
    experiment.check_same_run(cfg, tmp_path / "run", resume=True, overwrite=False, every=5,
                              keep=2, mesh=mesh, parts=experiment.Parts())
    flags = compared[0]
    assert "--data-dir" not in flags and "--data-root" not in flags
    assert flags["--seed"] == cfg.seed and flags["--workdir"] == str(tmp_path / "run")
    assert {k: flags[k] for k in ("--resume", "--overwrite", "--checkpoint-every", "--keep",
                                  "--devices")} == {"--resume": True, "--overwrite": False,
                                                    "--checkpoint-every": 5, "--keep": 2,
                                                    "--devices": 4}
    assert flags["--parts"] == experiment.Parts().describe()
