"""Tests for aejax.bench_flags: scripts/bench.py's flags, refused in one line or passed on to
the measurements."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from aejax import bench_flags, bench_report
from tests.test_experiment import load_script


def test_train_py_gets_the_data_folder_as_an_absolute_path(small_idx_dir: Path,
                                                            monkeypatch) -> None:
    seen = {}

    def options(**kwargs):
        seen.update(kwargs)
        raise KeyboardInterrupt  # stop before any measurement

    monkeypatch.setattr(bench_report, "Options", options)
    monkeypatch.chdir(small_idx_dir.parent)  # train.py runs from the repository root instead
    code = load_script("bench").main(["--train-script", "--data-dir", "small", "--no-progress"])
    assert code == 130 and seen["train_script_args"] == ["--data-dir", str(small_idx_dir)]


def test_sizes_and_counts_named_twice_are_measured_once(tmp_path, monkeypatch) -> None:
    swept = []

    def sweep(devices, batch_sizes, steps):
        swept.append((devices, batch_sizes))
        return [{"devices": 1, "batch_size": 8, "images_per_second": 1.0}]

    monkeypatch.setattr(bench_report.scaling, "sweep", sweep)
    out = tmp_path / "bench.json"
    code = load_script("bench").main(["--batch-sizes", "8,16,8", "--scaling", "1,1", "--steps",
                                      "2", "--repeats", "1", "--roofline-size", "256",
                                      "--num-images", "64", "--no-compile", "--no-torch",
                                      "--data-dir", "", "--no-progress", "--out", str(out)])
    assert code == 0 and swept == [((1,), (8, 16))]
    rows = json.loads(out.read_text())["training"]
    assert [(r["batch_size"], r["variant"]) for r in rows] == [
        (8, "scan"), (8, "loop"), (16, "scan"), (16, "loop")]


@pytest.mark.parametrize("argv,message", [
    (["--repeats", "0"], "argument --repeats: expected a positive integer, got '0'"),
    (["--steps", "-5"], "argument --steps: expected a positive integer, got '-5'"),
    (["--roofline-size", "big"],
     "argument --roofline-size: expected a positive integer, got 'big'"),
    (["--scaling", "0"], "argument --scaling: expected comma-separated positive integers, got '0'"),
    (["--roofline-size", "3"], "argument --roofline-size: expected at least 256 (a smaller "
                               "matmul times its launch, not the arithmetic), got '3'"),
    (["--out", ""], "--out is empty; give a file name such as bench.json"),
    (["--batch-sizes", "32", "--scaling", "3", "--steps", "1", "--repeats", "1", "--no-torch",
      "--no-compile", "--roofline-size", "256", "--no-progress"],
     "--scaling 3: batch size 32 is not divisible by 3 devices (each device takes an equal share "
     "of every global batch); use --batch-sizes that are multiples of 3, such as 33"),
    (["--batch-sizes", "32,0"],
     "argument --batch-sizes: expected comma-separated positive integers, got '32,0'"),
    (["--batch-sizes", "128"],
     "batch size must be between 1 and the training set size (64), got 128"),
    (["--out", "no/such/folder/b.json"], "--out no/such/folder/b.json: its folder does not exist"),
])
def test_bench_script_refuses_bad_flags_in_one_line(argv, message, tmp_path, monkeypatch,
                                                    capsys) -> None:
    monkeypatch.chdir(tmp_path)
    try:
        code = load_script("bench").main(["--num-images", "64", "--data-dir", "", *argv])
    except SystemExit as exit_:  # argparse errors
        code = exit_.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == [f"bench.py: error: {message}"]


def test_a_broken_aejax_mnist_dir_is_named_as_the_source_of_the_folder(tmp_path, monkeypatch,
                                                                        capsys) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("AEJAX_MNIST_DIR", str(tmp_path / "gone"))
    argv = ["--no-torch", "--no-compile", "--no-progress"]
    assert load_script("bench").main(argv) == 2  # the folder came from the environment
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"bench.py: error: data folder {tmp_path / 'gone'} "
                                               "does not exist: ")
    assert err[0].endswith("; the folder is AEJAX_MNIST_DIR's: fix it, or unset it to time "
                           "random images")
    assert load_script("bench").main([*argv, "--data-dir", str(tmp_path / "gone")]) == 2
    assert "AEJAX_MNIST_DIR" not in capsys.readouterr().err  # given: the flag is the source


def test_bench_script_passes_its_flags_on_to_the_measurements(monkeypatch) -> None:
    seen = {}

    def options(**kwargs):
        seen.update(kwargs)
        raise KeyboardInterrupt  # stop before any measurement

    monkeypatch.setattr(bench_report, "Options", options)
    code = load_script("bench").main(["--batch-sizes", "8,16", "--steps", "7", "--repeats", "3",
                                      "--roofline-size", "300", "--scaling", "1,2", "--no-torch",
                                      "--no-compile", "--no-progress", "--data-dir", ""])
    assert code == 130 and seen == {
        "batch_sizes": (8, 16), "loop_steps": 7, "torch_steps": 7, "repeats": 3, "torch": False,
        "roofline_size": 300, "compile": False, "scaling_devices": (1, 2),
        "train_script_args": None, "progress": False}
    load_script("bench").main(["--data-dir", ""])
    assert (seen["torch"], seen["compile"], seen["progress"]) == (True, True, True)
    assert seen["roofline_size"] == bench_report.default_roofline_size()  # not None: not given


def test_parse_takes_the_data_folder_from_the_environment_only_when_not_given(
        monkeypatch: pytest.MonkeyPatch) -> None:
    parser = bench_flags.parser("bench.py", None)
    monkeypatch.setenv("AEJAX_MNIST_DIR", "/data/mnist")
    args = bench_flags.parse(parser, [])
    assert (args.data_dir, args.data_dir_from_env) == ("/data/mnist", True)
    args = bench_flags.parse(parser, ["--data-dir", "mine"])
    assert (args.data_dir, args.data_dir_from_env) == ("mine", False)
    monkeypatch.delenv("AEJAX_MNIST_DIR")
    args = bench_flags.parse(parser, ["--batch-sizes", "64,32,64", "--scaling", "2,1,2"])
    assert (args.data_dir, args.data_dir_from_env) == (None, False)
    assert (args.batch_sizes, args.scaling) == ((64, 32), (2, 1))  # first-named order kept


def test_data_dir_help_says_how_to_time_random_images_under_aejax_mnist_dir(
        monkeypatch: pytest.MonkeyPatch) -> None:
    # with AEJAX_MNIST_DIR set, leaving the flag out times MNIST: --help must name the way out
    parser = bench_flags.parser("bench.py", None)
    action = next(a for a in parser._actions if "--data-dir" in a.option_strings)
    assert "'' for random images" in action.help and "$AEJAX_MNIST_DIR" in action.help
    monkeypatch.setenv("AEJAX_MNIST_DIR", "/data/mnist")
    assert bench_report.images(bench_flags.parse(parser, ["--data-dir", ""]).data_dir, 8)[1] == (
        "random uint8 8x784")


def test_num_images_with_a_data_folder_is_refused_rather_than_ignored(monkeypatch,
                                                                      capsys) -> None:
    # it counts random images only: with a folder, 60,000 MNIST images would be timed instead
    parser = bench_flags.parser("bench.py", None)
    monkeypatch.setenv("AEJAX_MNIST_DIR", "/data/mnist")
    for argv, source in [
            ([], "AEJAX_MNIST_DIR (/data/mnist): unset it (or pass --data-dir '') to time random "
                 "images, or drop --num-images"),
            (["--data-dir", "mine"], "--data-dir mine: drop one of the two")]:
        with pytest.raises(SystemExit) as exit_:
            bench_flags.parse(parser, ["--num-images", "2048", *argv])
        assert exit_.value.code == 2 and capsys.readouterr().err.strip().splitlines()[-1] == (
            f"bench.py: error: --num-images counts random images, but the images come from "
            f"{source}")
    assert bench_flags.parse(parser, ["--num-images", "2048", "--data-dir", ""]).num_images == 2048
    assert bench_flags.parse(parser, ["--data-dir", ""]).num_images == 60000
    assert bench_flags.parse(parser, []).num_images == 60000  # MNIST's own count, not this
