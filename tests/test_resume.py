"""End-to-end resume: ``scripts/train.py`` killed (SIGKILL) or stopped (SIGINT, SIGTERM) at random
moments and resumed ends with the parameters of an uninterrupted run, bit for bit; a data-parallel
run resumes onto its mesh; and every refusal of ``--resume`` is one line, never a traceback."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import pytest

from aejax import checkpoint, data, loop, paramsfile, parallel, runfiles, train
from aejax.config import Config
from tests.conftest import synthetic_digits, write_idx_dataset
from tests.test_experiment import load_script

ROOT = Path(__file__).resolve().parents[1]
CFG = Config(epochs=3, batch_size=16, train_occlusion="mixed")
FLAGS = ["--epochs", "3", "--batch-size", "16", "--train-occlusion", "mixed",
         "--checkpoint-every", "10", "--keep", "2", "--no-progress"]
TIMEOUT = 240


def child_env(tmp: Path, devices: int = 1) -> dict[str, str]:
    """This environment with this checkout first on the path and a private compile cache."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "JAX_PLATFORMS": "cpu",
            "AEJAX_JAX_CACHE": str(tmp / "jax-cache"),
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={devices}"}


def saved_steps(run: Path) -> list[int]:
    """The complete checkpoints in ``run`` (Orbax renames a folder to its step when done)."""
    folder = run / checkpoint.DIRNAME
    if not folder.exists():
        return []
    return sorted(int(p.name) for p in folder.iterdir() if p.name.isdigit())


def wait_for_checkpoint_after(run: Path, step: int, proc: subprocess.Popen) -> int:
    """Poll until ``proc`` has written a checkpoint past ``step``; return its step."""
    deadline = time.monotonic() + TIMEOUT  # a guard against a hang, not a timing assertion
    while time.monotonic() < deadline:
        steps = saved_steps(run)
        if steps and steps[-1] > step:
            return steps[-1]
        if proc.poll() is not None:
            pytest.fail(f"training ended (code {proc.returncode}) before a new checkpoint: "
                        f"{proc.communicate()[1][-2000:]}")
        time.sleep(0.02)
    pytest.fail("no new checkpoint appeared")


def test_killed_and_interrupted_runs_resume_to_bit_identical_parameters(tmp_path: Path) -> None:
    folder = write_idx_dataset(tmp_path / "data", n_train=1600, n_test=32)
    cmd = [sys.executable, str(ROOT / "scripts" / "train.py"), "--data-dir", str(folder),
           "--data-root", str(tmp_path / "root"), "--workdir", str(tmp_path / "run"), *FLAGS]
    env, run, rng = child_env(tmp_path), tmp_path / "run", random.Random()
    last = 0
    for attempt, sig in enumerate([signal.SIGKILL, signal.SIGINT, signal.SIGTERM]):
        proc = subprocess.Popen(cmd + (["--resume"] if attempt else []), env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        last = wait_for_checkpoint_after(run, last, proc)
        delay = rng.uniform(0.0, 0.4)
        time.sleep(delay)
        proc.send_signal(sig)
        _, err = proc.communicate(timeout=TIMEOUT)
        where = f"attempt {attempt}, {sig.name} {delay:.3f} s after step {last}"
        if sig != signal.SIGKILL:  # Ctrl-C, or a scheduler's SIGTERM: saved, then stopped
            line = err.strip().splitlines()[-1]
            word = "interrupted" if sig == signal.SIGINT else "terminated"
            assert proc.returncode == 128 + sig, (where, err)
            assert line.startswith(f"train.py: {word}: saved step ") and "--resume" in line
            assert int(line.split("saved step ")[1].split()[0]) == saved_steps(run)[-1]
            assert "Traceback" not in err
        else:
            assert proc.returncode == -signal.SIGKILL, (where, err)
        last = saved_steps(run)[-1]
        assert last < CFG.epochs * 100, where  # stopped before the end (100 steps per epoch)
    done = subprocess.run(cmd + ["--resume"], env=env, text=True, capture_output=True,
                          timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    ds = data.load("mnist", data_dir=str(folder), data_root=str(tmp_path / "root"))
    ref, history = loop.fit(dataclasses.replace(CFG, data_dir=str(folder)),
                             ds.train_images.reshape(1600, -1), progress=False)
    params = paramsfile.load(run / runfiles.PARAMS_FILE)
    for a, b in zip(jax.tree.leaves(params), jax.tree.leaves(parallel.fetch(ref.params)),
                    strict=True):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(np.load(run / "train_loss.npy"), history["loss"])


def resume_on_a_mesh(directory: str) -> None:
    """Run in a 4-device subprocess: a resumed data-parallel fit matches an uninterrupted one."""
    mesh = parallel.make_mesh(4)
    x = synthetic_digits(256, 0)[0].reshape(256, -1)
    cfg = Config(epochs=2, batch_size=32, train_occlusion="mixed")
    ref, _ = loop.fit(cfg, x, progress=False, mesh=mesh)
    with contextlib.closing(checkpoint.Checkpointer(directory, every=3)) as ckpt:
        loop.fit(dataclasses.replace(cfg, epochs=1), x, progress=False, mesh=mesh,
                  checkpoints=ckpt)
    with contextlib.closing(checkpoint.Checkpointer(directory, resume=True)) as ckpt:
        like = parallel.put(train.create_state(jax.random.key(1), train.make_model(cfg),
                                               train.make_optimizer(cfg)),
                            parallel.replicated(mesh))
        restored = ckpt.restore(ckpt.latest()[0], like)
        assert all(leaf.sharding == parallel.replicated(mesh) for leaf in jax.tree.leaves(restored))
        state, _ = loop.fit(cfg, x, progress=False, mesh=mesh, checkpoints=ckpt)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(ref), strict=True):
        np.testing.assert_array_equal(parallel.fetch(a), parallel.fetch(b))


def test_a_data_parallel_run_resumes_onto_its_mesh(tmp_path: Path) -> None:
    code = f"from tests.test_resume import resume_on_a_mesh; resume_on_a_mesh({str(tmp_path)!r})"
    done = subprocess.run([sys.executable, "-c", code], env=child_env(tmp_path, devices=4),
                          cwd=ROOT, capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A workdir holding the checkpoints (steps 8 and 16) of a two-epoch run on a dataset like
    ``small_idx_dir``'s, trained once for the module: tests change copies of it."""
    tmp = tmp_path_factory.mktemp("trained")
    run, folder = tmp / "run", write_idx_dataset(tmp / "small")
    cfg = Config(data_dir=str(folder), data_root=str(tmp / "root"), epochs=2)
    x = data.load(cfg.dataset, data_dir=cfg.data_dir, data_root=cfg.data_root).train_images
    with contextlib.closing(checkpoint.Checkpointer(run / checkpoint.DIRNAME)) as ckpt:
        loop.fit(cfg, x.reshape(len(x), -1), progress=False, checkpoints=ckpt)
    return run


@pytest.fixture
def saved_run(trained_run: Path, tmp_path: Path) -> Path:
    """This test's own copy of ``trained_run``, in ``tmp_path``."""
    return Path(shutil.copytree(trained_run, tmp_path / "run"))


@pytest.mark.parametrize("argv,message", [
    (["--resume"], "--resume needs --workdir RUN"),
    (["--resume", "--workdir", "{tmp}/nowhere"], "--resume: workdir {tmp}/nowhere does not exist"),
    (["--resume", "--workdir", "{tmp}"],  # no run's, nor a checkpoint: not "start it again"
     "--resume continues a run, but workdir {tmp} holds other files (no config.json written by "
     "train.py); choose another --workdir"),
    (["--resume", "--workdir", "{other}/train-images-idx3-ubyte.gz"],
     "--resume: workdir {other}/train-images-idx3-ubyte.gz is a file, not a run folder"),
    (["--resume", "--hidden", "64", "--workdir", "{run}"],
     "cannot resume from {run}/checkpoints: it was trained with hidden=[128, 50] (now [64])"),
    (["--resume", "--epochs", "1", "--workdir", "{run}"],
     "its checkpoint is at step 16 (2 epochs trained), past the --epochs 1 asked for; "
     "raise --epochs"),
    (["--resume", "--data-dir", "{other}", "--workdir", "{run}"],
     "it was trained on other training images (256 images"),
    (["--resume", "--data-dir", "{small}", "--workdir", "{run}"],  # 20 x 20: not a bar error
     "it was trained on other training images (256 images"),
    (["--resume", "--overwrite", "--workdir", "{run}"], "choose one"),
    (["--workdir", "{run}"], "already holds a run; pass --resume to continue it, --overwrite"),
    (["--checkpoint-every", "-1", "--workdir", "{tmp}/new"], "--checkpoint-every must be >= 0"),
])
def test_resume_errors_are_one_line(argv: list[str], message: str, saved_run: Path,
                                    small_idx_dir: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture) -> None:
    other = write_idx_dataset(tmp_path / "other", seed=7)
    small = write_idx_dataset(tmp_path / "small20", side=20)
    names = {"tmp": tmp_path, "run": saved_run, "other": other, "small": small}
    (saved_run / "config.json").write_text("{}")  # what the refused command must leave alone
    args = ["--data-dir", str(small_idx_dir), "--data-root", str(tmp_path / "root"),
            "--no-progress", "--no-compile-cache", *[a.format(**names) for a in argv]]
    try:
        code = load_script("train").main(args)
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert message.format(**names) in err[-1] and err[-1].startswith("train.py: error: ")
    assert not any("Traceback" in line for line in err)
    assert not (tmp_path / "new").exists()  # a refused run leaves no folder behind
    assert (saved_run / "config.json").read_text() == "{}"  # nor a rewritten config.json


def test_a_sample_trained_run_found_with_the_full_data_says_why_it_cannot_resume(
        saved_run: Path, small_idx_dir: Path, tmp_path: Path,
        capsys: pytest.CaptureFixture) -> None:
    info = {"config": json.loads(Config(data_dir=str(small_idx_dir)).to_json()),
            "dataset_is_sample": True}  # as a run trained offline without files writes it
    (saved_run / "config.json").write_text(json.dumps(info))
    other = write_idx_dataset(tmp_path / "other", seed=7)  # the full data, found now
    code = load_script("train").main(["--data-dir", str(other), "--data-root",
                                      str(tmp_path / "root"), "--no-progress",
                                      "--no-compile-cache", "--resume", "--workdir",
                                      str(saved_run)])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err[-1] == (
        f"train.py: error: cannot resume from {saved_run / 'checkpoints'}: it was trained on the "
        "5,000-digit MNIST sample (no MNIST files were found then), and the full data is found "
        f"now ({other}); the sample is only used where none is, so train the full data in a new "
        "--workdir")


@pytest.mark.parametrize("damage,earlier", [("no meta", True), ("empty step folder", True),
                                            ("no meta", False)])
def test_a_damaged_checkpoint_is_one_line_naming_it(damage: str, earlier: bool, saved_run: Path,
                                                    small_idx_dir: Path, tmp_path: Path,
                                                    capsys: pytest.CaptureFixture) -> None:
    step = saved_run / checkpoint.DIRNAME / "16"
    if not earlier:
        shutil.rmtree(saved_run / checkpoint.DIRNAME / "8")
    if damage == "no meta":
        shutil.rmtree(step / "meta")
    else:
        for item in list(step.iterdir()):
            shutil.rmtree(item) if item.is_dir() else item.unlink()
    args = ["--data-dir", str(small_idx_dir), "--data-root", str(tmp_path / "root"),
            "--no-progress", "--no-compile-cache", "--resume", "--workdir", str(saved_run)]
    code = load_script("train").main(args)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and not any("Traceback" in line for line in err)
    assert err[-1].startswith(f"train.py: error: checkpoint {step} is damaged (")
    assert err[-1].endswith("delete that folder to resume from the checkpoint before it (step "
                            "8), or start again" if earlier else
                            "no checkpoint before it is left: start again (--overwrite)")
    assert len(err[-1]) < 600  # Orbax's message is cut at a word, not mid-JSON


def test_a_checkpoint_missing_its_array_data_is_one_line_and_nothing_after(
        saved_run: Path, small_idx_dir: Path, tmp_path: Path) -> None:
    step = saved_run / checkpoint.DIRNAME / "16"
    shutil.rmtree(step / "state" / "ocdbt.process_0")  # Orbax fails one read, abandons the rest
    (saved_run / "config.json").write_text("{}")  # what the refused command must leave alone
    cmd = [sys.executable, str(ROOT / "scripts" / "train.py"), "--data-dir", str(small_idx_dir),
           "--data-root", str(tmp_path / "root"), "--no-progress", "--no-compile-cache",
           "--resume", "--workdir", str(saved_run)]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2
    lines = [line for line in done.stderr.splitlines()
             if not line.startswith(("WARNING aejax.", "INFO aejax."))]  # the data's own lines
    assert len(lines) == 1, done.stderr[:3000]  # none of the abandoned reads' ~100 lines after it
    assert lines[0].startswith(f"train.py: error: checkpoint {step} is damaged (Exception: "
                               "Encountered error")
    assert "TensorStore details" not in lines[0]
    assert (saved_run / "config.json").read_text() == "{}"  # found in fit: not rewritten either
