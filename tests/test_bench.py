"""Tests for the benchmark harness on a tiny configuration (what it measures, not how fast)."""

from __future__ import annotations

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

from aejax import bench, bench_external, bench_report, roofline, torch_baseline, train
from aejax.config import Config
from aejax.model import count_params, init_params
from tests.test_experiment import load_script

IMAGES = np.random.default_rng(0).integers(0, 256, (64, 784), np.uint8)
ROOT = Path(__file__).resolve().parents[1]
needs_torch = pytest.mark.skipif(not torch_baseline.available(), reason="PyTorch not installed")


def test_step_flops_and_percent_follow_the_6pb_rule() -> None:
    assert roofline.step_flops(214_594, 32) == 6 * 214_594 * 32
    # 1000 steps/s of 6 * 1e6 * 10 FLOPs = 60 GFLOP/s, which is 50% of 120 GFLOP/s
    assert roofline.percent_of_roofline(1000, 1_000_000, 10, 120.0) == pytest.approx(50.0)


def test_matmul_roofline_is_positive_and_finite() -> None:
    gflops = roofline.matmul_gflops(64, repeats=2)
    assert np.isfinite(gflops) and gflops > 0


@pytest.mark.skipif(jax.default_backend() != "cpu", reason="a bound for CPUs")
def test_the_roofline_waits_for_its_matmuls() -> None:
    # timing only the dispatch (tens of microseconds) would claim tens of TFLOP/s at n = 1024
    assert roofline.matmul_gflops(1024, repeats=2) < 5_000


def test_runners_train_and_report_their_step_counts() -> None:
    s = bench.setup(Config(batch_size=8), 784)
    scan, loop = bench.scan_runner(s, IMAGES), bench.loop_runner(s, IMAGES, 3, warmup=1)
    assert scan.steps == 64 // 8 and loop.steps == 3
    assert scan.info["compile_seconds"] > 0
    speeds = bench.interleaved({"scan": scan, "loop": loop}, repeats=3)
    assert set(speeds) == {"scan", "loop"}
    assert all(len(v) == 3 and min(v) > 0 for v in speeds.values())
    # the timed calls donate their own copies: the shared initial state stays usable
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), s.state.params,
                 bench.setup(Config(batch_size=8), 784).state.params)


@needs_torch
def test_torch_model_matches_the_flax_model_given_the_same_weights() -> None:
    import torch

    params = init_params(jax.random.key(0), train.make_model(Config()))
    model = torch_baseline.make_model()
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    assert sum(p.numel() for p in model.parameters()) == count_params(params) == 214_594
    with torch.no_grad():
        for i, layer in enumerate(linears):
            layer.weight.copy_(torch.tensor(np.asarray(params[f"dense_{i}"]["kernel"]).T))
            layer.bias.copy_(torch.tensor(np.asarray(params[f"dense_{i}"]["bias"])))
        x = IMAGES[:5].astype(np.float32) / 255
        expected = train.make_model(Config()).apply({"params": params}, x)
        np.testing.assert_allclose(model(torch.as_tensor(x)).numpy(), expected, atol=1e-5)


@needs_torch
def test_torch_runner_trains_on_batches_of_its_size_against_the_input(monkeypatch) -> None:
    import torch

    seen, targets = [], []

    class RecordingMSE(torch.nn.MSELoss):
        def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            targets.append(target)
            seen.append((tuple(pred.shape), tuple(target.shape)))
            return super().forward(pred, target)

    inputs = []
    make_model = torch_baseline.make_model

    def recording_model(*args):
        model = make_model(*args)
        model.register_forward_pre_hook(lambda _, x: inputs.append(x[0]))
        return model

    monkeypatch.setattr(torch.nn, "MSELoss", RecordingMSE)
    monkeypatch.setattr(torch_baseline, "make_model", recording_model)
    r = torch_baseline.runner(IMAGES, 8, 30, warmup=1)
    r.run()
    assert r.info["num_params"] == 214_594 and r.info["threads"] >= 1
    assert r.steps == 30 and len(seen) == len(inputs) == 31
    assert set(seen) == {((8, 784), (8, 784))}  # batches of 8
    assert len({x.numpy().tobytes() for x in inputs}) == 64 // 8  # every batch in turn
    assert all(torch.equal(t, x) for t, x in zip(targets, inputs))  # the target is the input
    pixels = {tuple(row) for row in IMAGES.astype(np.float32) / 255}
    assert all(tuple(row) in pixels for x in inputs for row in x.numpy())  # real images in [0, 1]


def test_loop_runner_steps_on_batches_of_its_size() -> None:
    s = bench.setup(Config(batch_size=8), 784)
    shapes = []

    def recording_step(state, batch, key):
        shapes.append(batch.shape)  # at trace time: the shape every call compiles for
        return s.step_fn(state, batch, key)

    r = bench.loop_runner(dataclasses.replace(s, step_fn=recording_step), IMAGES, 3, warmup=1)
    r.run()
    assert shapes == [(8, 784)]


def test_report_rows_ratios_and_table() -> None:
    opts = bench_report.Options(batch_sizes=(8, 16), loop_steps=2, torch_steps=2, repeats=3,
                                roofline_size=64, compile=False)
    result = bench_report.run(IMAGES, opts)
    rows = result["training"]
    variants = ["scan", "loop"] + (["torch"] if torch_baseline.available() else [])
    assert [(r["batch_size"], r["variant"]) for r in rows] == [
        (b, v) for b in (8, 16) for v in variants]
    gflops = result["roofline"]["gflops"]
    assert gflops == max(result["roofline"]["gflops_before"], result["roofline"]["gflops_after"])
    for r in rows:
        turns = r["steps_per_second_turns"]
        assert len(turns) == 3 and r["steps_per_second"] == max(turns)
        assert min(turns) <= r["steps_per_second_median"] <= max(turns)
        assert r["images_per_second"] == pytest.approx(r["steps_per_second"] * r["batch_size"])
        # the scan times whole epochs (64 images), loop and torch their --steps
        assert r["steps_timed"] == (64 // r["batch_size"] if r["variant"] == "scan" else 2)
        assert r["percent_of_roofline"] == pytest.approx(roofline.percent_of_roofline(
            r["steps_per_second"], 214_594, r["batch_size"], gflops))
        torch_row = next((t for t in rows if t["variant"] == "torch"
                          and t["batch_size"] == r["batch_size"]), None)
        if torch_row is not None:  # each variant against the torch row of its own batch size
            assert r["ratio_to_torch"] == pytest.approx(r["steps_per_second"]
                                                        / torch_row["steps_per_second"])
            assert r["ratio_to_torch_median"] == pytest.approx(
                r["steps_per_second_median"] / torch_row["steps_per_second_median"])
    text = bench_report.table(result)
    assert "| batch | variant |" in text
    table_rows = [line for line in text.splitlines()
                  if line.startswith("| ") and "batch" not in line]
    assert len(table_rows) == len(rows)
    for line, r in zip(table_rows, rows):  # the table shows the JSON's numbers
        cells = [c.strip() for c in line.strip("|").split("|")]
        assert cells[:2] == [str(r["batch_size"]), r["variant"]]
        assert cells[2] == (f"{r['steps_per_second']:,.0f} "
                            f"({r['steps_per_second_median']:,.0f})")
        assert cells[4] == f"{r['percent_of_roofline']:.1f}%"
    json.dumps(result)


def test_compile_times_cold_and_warm_in_fresh_processes() -> None:
    times = bench_external.compile_times(8, num_examples=64)
    assert times["cold"] > 0 and times["warm"] > 0
    (cold_before, cold_after), (warm_before, warm_after) = times["files"].values()
    assert cold_before == 0 and cold_after > 0  # cold: an empty folder, filled by the compile
    assert warm_before == warm_after == cold_after  # warm: everything read from it, nothing new


def test_compile_times_are_of_the_chunk_the_scan_runs(monkeypatch) -> None:
    asked = []
    monkeypatch.setattr(bench_external, "compile_times",
                        lambda batch, **kwargs: asked.append((batch, kwargs)) or {"cold": 1.0,
                                                                                "warm": 1.0})
    opts = bench_report.Options(batch_sizes=(16, 8), loop_steps=1, repeats=1, roofline_size=32,
                                torch=False, progress=False)
    result = bench_report.run(IMAGES, opts)
    # 64 images, not MNIST's 60,000: a chunk of 4 steps, as the scan's (a batch over 60,000,
    # from more random images, compiled a chunk of no steps)
    assert asked == [(16, {"num_examples": 64})]
    assert "compile (one batch-16 chunk): cold 1.00 s" in bench_report.table(result)


def test_train_script_is_timed_with_its_peak_memory(small_idx_dir) -> None:
    (run,) = bench_external.train_script(["--data-dir", str(small_idx_dir), "--epochs", "1",
                                          "--batch-size", "64"], runs=1)
    assert run["wall_seconds"] > 0 and run["peak_rss_mb"] > 50
    assert "train loss" in run["summary"]
    assert (run["data"], run["is_sample"], run["train_size"]) == (str(small_idx_dir), False, 256)
    sample = {**run, "run": 2, "is_sample": True, "train_size": 4000}  # the sample's training set
    result = {"machine": {"backend": "cpu", "device_kind": "cpu", "cpu": "x", "cpu_count": 2},
              "load_average_start": 0, "load_average_end": 0, "training": [],
              "roofline": {"matmul_size": 64, "gflops": 1.0}, "train_script": [run, sample],
              "bench_peak_rss_mb": 1.0}
    lines = bench_report.table(result).splitlines()
    assert lines[-3].endswith(" (256 training images)")
    assert lines[-2].endswith(" (4,000 training images, the small sample, not the full data: "
                              "pass --data-dir)")


def test_a_childs_peak_memory_is_its_own_not_the_benchmarks(tmp_path: Path) -> None:
    held = np.ones(300 * 2**20 // 8)  # 300 MB in this process, which the child is forked from
    script = tmp_path / "small.py"
    script.write_text("print('small')\n")
    env = bench_external.child_env()
    stdout, _, rss = bench_external.run_child(
        [sys.executable, "-c", bench_external.SCRIPT_WRAPPER, str(script)], env=env)
    assert stdout.strip() == "small" and 5 < rss < 150 and held.sum() > 0
    _, _, unreported = bench_external.run_child([sys.executable, str(script)], env=env)
    assert unreported is None  # no VmHWM report: unknown, not the inherited ru_maxrss


def test_failing_child_raises_with_its_stderr() -> None:
    with pytest.raises(RuntimeError, match="boom") as failed:
        bench_external.run_child(["python", "-c", "raise SystemExit('boom')"],
                                 env=bench_external.child_env())
    assert str(failed.value).startswith("python -c <code> failed (1):\n")  # not the code itself
    assert "raise SystemExit" not in str(failed.value)


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


def test_bench_script_prints_the_table_and_writes_json(tmp_path, capsys) -> None:
    out = tmp_path / "bench.json"
    argv = ["--batch-sizes", "8", "--steps", "2", "--repeats", "2", "--roofline-size", "256",
            "--num-images", "64", "--no-compile", "--data-dir", ""]
    code = load_script("bench").main([*argv, "--out", str(out)])
    assert code == 0
    printed = capsys.readouterr()
    assert "| 8 | scan |" in printed.out and "random uint8 64x784" in printed.out
    written = json.loads(out.read_text())
    assert written["training"][0]["variant"] == "scan" and written["data"] == "random uint8 64x784"
    assert "roofline" in printed.err  # the progress bar
    assert load_script("bench").main([*argv, "--no-progress"]) == 0
    assert capsys.readouterr().err == ""


def test_an_unusable_cache_folder_names_no_flag_bench_lacks(tmp_path, monkeypatch,
                                                            caplog) -> None:
    (tmp_path / "file").write_text("")
    monkeypatch.setenv("AEJAX_JAX_CACHE", str(tmp_path / "file" / "cache"))

    def stop(*args):
        raise KeyboardInterrupt  # stop before any measurement

    monkeypatch.setattr(bench_report, "run", stop)
    before = jax.config.jax_compilation_cache_dir
    with caplog.at_level(logging.WARNING, logger="aejax.compile_cache"):
        code = load_script("bench").main(["--num-images", "64", "--data-dir", "", "--no-progress"])
    assert code == 130 and "no compilation cache: cannot create" in caplog.text
    assert "--no-compile-cache" not in caplog.text  # train.py's and evaluate.py's flag only
    assert jax.config.jax_compilation_cache_dir == before


def test_a_failing_child_section_is_recorded_and_the_rest_kept(tmp_path, monkeypatch,
                                                               capsys) -> None:
    def fail(devices, batch_sizes, steps):  # e.g. a device count the machine cannot give
        raise RuntimeError("2 device(s), batch 8 failed:\nTraceback (most recent call last):\n"
                           "  ...\nValueError: --devices 2 asks for more devices\n")

    monkeypatch.setattr(bench_report.scaling, "sweep", fail)
    out = tmp_path / "bench.json"
    code = load_script("bench").main(["--batch-sizes", "8", "--steps", "2", "--repeats", "1",
                                      "--roofline-size", "256", "--num-images", "64",
                                      "--no-compile", "--no-torch", "--data-dir", "",
                                      "--no-progress", "--scaling", "1,2", "--out", str(out)])
    printed = capsys.readouterr()
    assert code == 1 and "| 8 | scan |" in printed.out
    line = "2 device(s), batch 8 failed: ValueError: --devices 2 asks for more devices"
    assert f"scaling: FAILED, {line}" in printed.out
    assert printed.err.strip().splitlines()[-1] == "bench.py: error: scaling failed (see the table)"
    written = json.loads(out.read_text())
    assert written["scaling_error"] == line and written["training"][0]["variant"] == "scan"
    timeout = subprocess.TimeoutExpired(["python"], 600)
    assert bench_report.failure_line(timeout) == "no result within 600 s"
    assert bench_report.failure_line(IndexError("list index out of range")) == (
        "unreadable result (IndexError: list index out of range)")


def test_scaling_counts_beyond_a_gpus_devices_are_refused_before_any_work(monkeypatch) -> None:
    from aejax import scaling

    scaling.check_counts((1, 2, 4))  # the CPU platform makes as many as asked
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(jax, "device_count", lambda: 1)
    with pytest.raises(ValueError, match=r"^--scaling 1,2: the gpu backend has 1 device\(s\), "
                                         r"and only the CPU can be split into more \(--device "
                                         r"cpu\); use counts up to 1$"):
        scaling.check_counts((1, 2))
    scaling.check_counts((1,))


def test_scaling_counts_must_divide_every_batch_size_before_any_work(monkeypatch) -> None:
    from aejax import scaling

    scaling.check_counts((1, 2, 4), (32, 256))
    with pytest.raises(ValueError, match=r"^--scaling 1,3: batch size 32 is not divisible by 3 "
                                         r"devices \(each device takes an equal share of every "
                                         r"global batch\); use --batch-sizes that are multiples "
                                         r"of 3, such as 33,48$"):
        scaling.check_counts((1, 3), (32, 48))
    measured = []
    monkeypatch.setattr(scaling, "measure", lambda *args: measured.append(args))
    with pytest.raises(ValueError, match=r"^--scaling 2,3,5: batch sizes 32,50 are not divisible "
                                         r"by 3 or 5 devices .*multiples of 30, such as 30,60$"):
        scaling.sweep((2, 3, 5), (32, 50), 4)  # no pair left out in silence
    assert measured == []
    with pytest.raises(ValueError, match=r"multiples of 64, such as 64$"):
        scaling.check_batches((1, 64), (8,))  # never a batch of 0


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


def test_the_progress_bar_names_each_part_and_ends_full(monkeypatch) -> None:
    class Bar:
        """Records what bench_report tells tqdm."""

        def __init__(self, total: int, desc: str, **kwargs) -> None:
            self.total, self.n, self.descriptions = total, 0, [desc]
            bars.append(self)

        def __enter__(self) -> Bar:
            return self

        def __exit__(self, *exc) -> None:
            pass

        def update(self, n: int = 1) -> None:
            self.n += n

        def set_description(self, desc: str) -> None:
            self.descriptions.append(desc)

    bars: list[Bar] = []
    monkeypatch.setattr(bench_report, "tqdm", Bar)
    opts = bench_report.Options(batch_sizes=(8, 16), loop_steps=2, repeats=3, roofline_size=32,
                                torch=False, compile=False)
    result = bench_report.run(IMAGES, opts)
    (bar,) = bars
    assert result["torch_skipped"] == "--no-torch"
    assert "no PyTorch rows: --no-torch" in bench_report.table(result)
    assert bar.n == bar.total == 2 + 2 * (1 + 3)  # the roofline twice; per batch set-up + turns
    assert bar.descriptions == ["roofline", "batch 8: compile, warm up", "batch 8: 3 turns",
                                "batch 16: compile, warm up", "batch 16: 3 turns", "roofline"]


def test_on_a_gpu_jax_matmuls_are_full_float32_like_pytorchs(monkeypatch) -> None:
    monkeypatch.delenv("JAX_DEFAULT_MATMUL_PRECISION", raising=False)
    monkeypatch.delenv("XLA_PYTHON_CLIENT_PREALLOCATE", raising=False)
    monkeypatch.setenv("JAX_PLATFORMS", "")
    before, platforms = jax.config.jax_default_matmul_precision, jax.config.jax_platforms
    try:
        bench_report.use_platform("cpu")  # children inherit the choice
        assert os.environ["JAX_PLATFORMS"] == "cpu"
        bench_report.use_platform()  # this machine's backend (CPU): precision left alone
        assert jax.config.jax_default_matmul_precision == before
        assert os.environ["XLA_PYTHON_CLIENT_PREALLOCATE"] == "false"
        monkeypatch.setattr(jax, "default_backend", lambda: "gpu")  # a GPU, without --device
        bench_report.use_platform()
        assert jax.config.jax_default_matmul_precision == "highest"
        assert os.environ["JAX_DEFAULT_MATMUL_PRECISION"] == "highest"  # children inherit it
    finally:
        jax.config.update("jax_default_matmul_precision", before)
        jax.config.update("jax_platforms", platforms)


def test_the_default_roofline_matmul_is_larger_on_a_gpu(monkeypatch) -> None:
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    assert bench_report.default_roofline_size() == 1024
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")  # 1024 would time its launch
    assert bench_report.default_roofline_size() == 8192


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
    argv = ["--num-images", "64", "--no-torch", "--no-compile", "--no-progress"]
    assert load_script("bench").main(argv) == 2  # the folder came from the environment
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith(f"bench.py: error: data folder {tmp_path / 'gone'} "
                                               "does not exist: ")
    assert err[0].endswith("; the folder is AEJAX_MNIST_DIR's: fix it, or unset it to time "
                           "random images")
    assert load_script("bench").main([*argv, "--data-dir", str(tmp_path / "gone")]) == 2
    assert "AEJAX_MNIST_DIR" not in capsys.readouterr().err  # given: the flag is the source

def test_bench_script_names_its_own_flags_when_memory_runs_out(tmp_path, monkeypatch,
                                                              capsys) -> None:
    monkeypatch.chdir(tmp_path)  # a roofline matmul of 10^6 x 10^6 float32s: 4 TB each
    code = load_script("bench").main(["--num-images", "64", "--data-dir", "", "--batch-sizes",
                                      "32", "--roofline-size", "1000000", "--no-torch",
                                      "--no-compile", "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1 and err[0].startswith("bench.py: error: out of memory (")
    assert err[0].endswith("; lower --batch-sizes, --roofline-size or --num-images")


def test_bench_script_too_many_random_images_is_one_line(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.chdir(tmp_path)  # 10^12 images of 784 bytes: more than any address space holds
    code = load_script("bench").main(["--num-images", str(10**12), "--data-dir", "",
                                      "--batch-sizes", "32", "--no-torch", "--no-compile",
                                      "--no-progress"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and err == ["bench.py: error: out of memory (Unable to allocate 713. TiB for "
                                 "an array with shape (1000000000000, 784) and data type uint8); "
                                 "lower --batch-sizes, --roofline-size or --num-images"]


@pytest.mark.skipif(any(importlib.util.find_spec(m) for m in ("jax_cuda12_plugin",
                                                              "jax_cuda13_plugin")),
                    reason="a CUDA plugin is installed")
def test_bench_script_without_a_gpu_says_so_in_one_line() -> None:
    # a fresh process: choosing the platform must happen before JAX starts a backend
    done = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench.py"), "--device", "gpu",
                           "--no-torch", "--data-dir", ""], capture_output=True, text=True,
                          env={**os.environ, "JAX_PLATFORMS": ""}, timeout=120)
    assert done.returncode == 2, done.stderr
    assert done.stderr.strip().splitlines() == [
        "bench.py: error: JAX cannot start the platform 'cuda': for a GPU install jax[cuda12] on "
        "a machine with one, or choose another platform (JAX_PLATFORMS, or bench.py's --device)"]


def fake_clock(*ticks: float) -> types.SimpleNamespace:
    """A ``time`` module whose ``perf_counter`` returns ``ticks`` in turn."""
    return types.SimpleNamespace(perf_counter=iter(ticks).__next__)


def test_the_roofline_is_2n3_flops_over_the_fastest_run(monkeypatch) -> None:
    monkeypatch.setattr(roofline, "time", fake_clock(0.0, 0.5, 1.0, 1.25, 2.0, 3.0))
    # timed runs of 0.5, 0.25 and 1 s: the fastest counts, 2 n^3 FLOPs each
    assert roofline.matmul_gflops(256, repeats=3) == pytest.approx(2 * 256**3 / 0.25 / 1e9)


def test_interleaved_turns_are_steps_over_seconds_with_one_update_per_turn(monkeypatch) -> None:
    monkeypatch.setattr(bench, "time", fake_clock(0.0, 0.5, 1.0, 3.0, 3.0, 3.25, 4.0, 5.0))
    ran, updates = [], []
    runners = {name: bench.Runner(lambda name=name: ran.append(name), steps)
               for name, steps in (("a", 10), ("b", 4))}
    speeds = bench.interleaved(runners, 2, after_turn=lambda: updates.append(len(ran)))
    assert speeds == {"a": [20.0, 40.0], "b": [2.0, 4.0]} and updates == [2, 4]


def test_the_scan_runner_times_its_compile_and_warms_up_before_the_turns(monkeypatch) -> None:
    epochs = []
    run_epoch = bench.loop.run_epoch
    monkeypatch.setattr(bench.loop, "run_epoch", lambda *a: epochs.append(a[-1]) or run_epoch(*a))
    monkeypatch.setattr(bench, "time", fake_clock(1.0, 3.5))  # around the chunks' compilation
    r = bench.scan_runner(bench.setup(Config(batch_size=2), 784), np.vstack([IMAGES, IMAGES[:5]]))
    assert r.steps == 69 // 2  # whole batches only, in chunks of 16, 16 and 2 steps
    assert r.info == {"compile_seconds": 2.5} and epochs == [0]  # warmed up: one epoch run
    r.run()
    assert epochs == [0, 0]  # every turn epoch 0's order


def test_the_loop_runner_warms_up_and_steps_through_shuffled_batches() -> None:
    s = bench.setup(Config(batch_size=8), 784)
    seen = []

    def recording_step(state, batch, key):
        jax.debug.callback(lambda b: seen.append(np.asarray(b)), batch, ordered=True)
        return s.step_fn(state, batch, key)

    r = bench.loop_runner(dataclasses.replace(s, step_fn=recording_step), IMAGES, 6, warmup=4)
    jax.effects_barrier()
    assert len(seen) == 4  # the warm-up steps, before any turn
    r.run()
    jax.effects_barrier()
    rows = {row.tobytes(): i for i, row in enumerate(IMAGES)}
    order = [rows[row.tobytes()] for batch in seen for row in batch]
    # 10 steps over 8 batches of 8: a shuffled order, wrapping around after every image
    assert len(seen) == 10 and sorted(order[:64]) == list(range(64)) and order[64:] == order[:16]
    assert order[:64] != list(range(64))


@needs_torch
def test_torch_runner_steps_adam_once_per_batch_and_waits_for_the_device(monkeypatch) -> None:
    import torch

    calls, synced = [], []

    class RecordingAdam(torch.optim.Adam):
        def zero_grad(self, *args, **kwargs):
            calls.append("zero_grad")
            return super().zero_grad(*args, **kwargs)

        def step(self, *args, **kwargs):
            calls.append(("step", self.defaults["lr"]))
            return super().step(*args, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", RecordingAdam)
    monkeypatch.setattr(torch_baseline, "synchronize", synced.append)
    r = torch_baseline.runner(IMAGES, 8, 3, warmup=2)
    assert calls == ["zero_grad", ("step", 1e-3)] * 2 and synced == ["cpu"]
    r.run()
    assert calls == ["zero_grad", ("step", 1e-3)] * 5 and synced == ["cpu", "cpu"]
    # the same seed, the same start: the loss after the warm-up repeats
    again = torch_baseline.runner(IMAGES, 8, 3, warmup=2).info["warmup_last_loss"]
    assert r.info["warmup_last_loss"] == again


@needs_torch
def test_torch_waits_for_any_cuda_device_and_needs_one_for_cuda(monkeypatch) -> None:
    import torch

    synced = []
    monkeypatch.setattr(torch.cuda, "synchronize", synced.append)
    for device in ("cpu", "cuda", "cuda:1"):
        torch_baseline.synchronize(device)
    assert synced == ["cuda", "cuda:1"]
    for seen in (False, True):
        monkeypatch.setattr(torch.cuda, "is_available", lambda seen=seen: seen)
        assert torch_baseline.available() and torch_baseline.available(cuda=True) is seen


def test_compile_times_reads_each_childs_compile_seconds_from_one_cache(monkeypatch) -> None:
    children = iter([(1.5, 0, 3), (0.25, 3, 3)])  # compile seconds, cache files before, after
    calls = []

    def child(args, *, env):
        calls.append(args)
        seconds, before, after = next(children)
        return (json.dumps({"compile_seconds": seconds, "process_seconds": 9.0,
                            "cache_files_before": before, "cache_files_after": after}),
                10.0, None)

    monkeypatch.setattr(bench_external, "run_child", child)
    times = bench_external.compile_times(16, num_examples=64)
    assert times == {"cold": 1.5, "warm": 0.25, "files": {"cold": [0, 3], "warm": [3, 3]}}
    (cold, warm) = calls
    assert cold == warm and cold[-3:][1:] == ["16", "64"]  # the same cache folder, both times


def test_a_childs_reported_peak_is_read_in_mb() -> None:
    code = f"import sys; print('{bench_external.PEAK_MARK}', 3072, file=sys.stderr)"
    _, _, rss = bench_external.run_child([sys.executable, "-c", code],
                                         env=bench_external.child_env())
    assert rss == 3.0  # 3072 kB


def test_train_script_runs_twice_with_its_args_and_reads_each_runs_config(monkeypatch) -> None:
    calls = []

    def child(args, *, env):
        calls.append(args)
        workdir = Path(args[args.index("--workdir") + 1])
        (workdir / "config.json").write_text(json.dumps({
            "dataset_source": "mnist", "dataset_is_sample": False, "dataset_train_size": 60000}))
        return f"loading\ntrain loss 0.0{len(calls)}\n", 5.0 * len(calls), 100.0 * len(calls)

    monkeypatch.setattr(bench_external, "run_child", child)
    rows = bench_external.train_script(["--epochs", "1"])
    assert rows == [{"run": i, "wall_seconds": 5.0 * i, "peak_rss_mb": 100.0 * i, "data": "mnist",
                     "is_sample": False, "train_size": 60000, "summary": f"train loss 0.0{i}"}
                    for i in (1, 2)]
    assert all(args[-2:] == ["--epochs", "1"] and args[3].endswith("train.py") for args in calls)


def test_scaling_throughput_trains_what_it_reports(monkeypatch) -> None:
    from aejax import scaling

    fitted = []

    def fit(cfg, images, *, progress, mesh):
        fitted.append((cfg.epochs, cfg.batch_size, images.shape, mesh.size))
        return None, {"train_seconds": 2.0}

    monkeypatch.setattr(scaling.loop, "fit", fit)
    monkeypatch.setattr(scaling.parallel, "make_mesh", lambda n: types.SimpleNamespace(size=n))
    row = scaling.throughput(2, 16, 4, epochs=3)
    assert fitted == [(3, 16, (64, 784), 2)]  # 3 epochs of 4 steps of 16 on 2 devices
    assert (row["devices"], row["steps"], row["seconds"]) == (2, 12, 2.0)
    assert row["images_per_second"] == 12 * 16 / 2.0


def test_a_failing_scaling_child_raises_with_its_stderr(monkeypatch) -> None:
    from aejax import scaling

    seen = []

    def run(args, **kwargs):
        seen.append(kwargs["env"]["XLA_FLAGS"])
        return subprocess.CompletedProcess(args, 1, "", "Traceback\nValueError: no devices\n")

    monkeypatch.setattr(scaling.subprocess, "run", run)
    with pytest.raises(RuntimeError, match=r"^2 device\(s\), batch 16 failed:\nTraceback\n"
                                           r"ValueError: no devices\n$"):
        scaling.measure(2, 16, 4)
    assert seen[0].endswith("--xla_force_host_platform_device_count=2")


def test_the_scaling_table_orders_sizes_and_counts_and_compares_with_the_fewest() -> None:
    from aejax import scaling

    rows = [{"devices": n, "batch_size": b, "images_per_second": ips}
            for b, n, ips in ((64, 4, 300.0), (64, 2, 200.0), (32, 2, 50.0), (32, 4, 75.0))]
    assert scaling.table(rows).splitlines()[1:] == ["|---|---|---|",
                                                    "| 32 | 50 (1.00x) | 75 (1.50x) |",
                                                    "| 64 | 200 (1.00x) | 300 (1.50x) |"]
    assert scaling.table(rows).splitlines()[0] == "| global batch | 2 device(s) | 4 device(s) |"


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


def test_percent_of_roofline_is_against_the_better_of_the_two_rooflines(monkeypatch) -> None:
    rooflines = iter([100.0, 200.0])  # before and after the training rows
    monkeypatch.setattr(roofline, "matmul_gflops", lambda size: next(rooflines))
    opts = bench_report.Options(batch_sizes=(8,), loop_steps=2, repeats=1, roofline_size=64,
                                torch=False, compile=False, progress=False)
    result = bench_report.run(IMAGES, opts)
    assert result["roofline"]["gflops"] == 200.0
    for r in result["training"]:
        assert r["percent_of_roofline"] == pytest.approx(roofline.percent_of_roofline(
            r["steps_per_second"], 214_594, 8, 200.0))


def test_gpu_peaks_are_the_peak_bytes_in_mb(monkeypatch) -> None:
    stats = {"bytes_in_use": 2**20, "peak_bytes_in_use": 3 * 2**20}
    device = types.SimpleNamespace(memory_stats=lambda: stats)
    monkeypatch.setattr(jax, "devices", lambda: [device])
    assert bench_report.device_peaks(False) == {"jax": 3.0}
    monkeypatch.setattr(device, "memory_stats", lambda: None)  # a backend that reports none
    assert bench_report.device_peaks(False) == {"jax": None}


def test_pytorch_counts_as_available_wherever_it_imports() -> None:
    # not marked needs_torch: an available() that wrongly said no would skip every torch test
    assert torch_baseline.available() is (importlib.util.find_spec("torch") is not None)


@needs_torch
def test_torch_runner_without_a_warm_up_has_no_warm_up_loss() -> None:
    r = torch_baseline.runner(IMAGES, 8, 2, warmup=0)  # no steps yet: no loss to read
    assert r.info["warmup_last_loss"] is None
    r.run()
