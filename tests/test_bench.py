"""Tests for aejax.bench (the runners, their interleaved turns) and scripts/bench.py (its table,
JSON, one-line errors and progress bar; its flags: test_bench_flags.py), on a tiny
configuration."""

from __future__ import annotations

import ast
import dataclasses
import importlib
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

from aejax import bench, bench_report, train
from aejax.config import Config
from tests.test_experiment import load_script

IMAGES = np.random.default_rng(0).integers(0, 256, (64, 784), np.uint8)
ROOT = Path(__file__).resolve().parents[1]


def test_runners_train_and_report_their_step_counts(monkeypatch) -> None:
    trained, wait = [], jax.block_until_ready

    def waited(x):  # each timed turn ends waiting for its state: the steps it has trained
        if isinstance(x, train.TrainState):
            trained.append(int(x.step))
        return wait(x)

    monkeypatch.setattr(jax, "block_until_ready", waited)
    s = bench.setup(Config(batch_size=8), 784)
    scan, loop = bench.scan_runner(s, IMAGES), bench.loop_runner(s, IMAGES, 3, warmup=1)
    assert scan.steps == 64 // 8 and loop.steps == 3
    assert scan.info["compile_seconds"] > 0
    speeds = bench.interleaved({"scan": scan, "loop": loop}, repeats=3)
    assert set(speeds) == {"scan", "loop"}
    assert all(len(v) == 3 and min(v) > 0 for v in speeds.values())
    # warm-ups (8 steps, 1 step), then turns of 8 and 3 steps each: every turn trains its steps
    assert trained == [8, 1, 16, 4, 24, 7, 32, 10]
    # the timed calls donate their own copies: the shared initial state stays usable
    jax.tree.map(lambda a, b: np.testing.assert_array_equal(a, b), s.state.params,
                 bench.setup(Config(batch_size=8), 784).state.params)


def test_loop_runner_steps_on_batches_of_its_size() -> None:
    s = bench.setup(Config(batch_size=8), 784)
    shapes = []

    def recording_step(state, batch, key):
        shapes.append(batch.shape)  # at trace time: the shape every call compiles for
        return s.step_fn(state, batch, key)

    r = bench.loop_runner(dataclasses.replace(s, step_fn=recording_step), IMAGES, 3, warmup=1)
    r.run()
    assert shapes == [(8, 784)]


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


@pytest.mark.parametrize("script", sorted((ROOT / "docs").glob("*.py")), ids=lambda p: p.name)
def test_the_docs_benchmark_scripts_call_only_what_the_library_has(script: Path) -> None:
    """BENCHMARKS.md's helper scripts run only on a GPU or by hand, so no test runs them: check
    that every ``module.name`` they take from aejax still exists (bench_report.use_platform
    moved to machine and left docs/gpu_unroll_sweep.py failing at its first line)."""
    tree = ast.parse(script.read_text())
    modules = {alias.asname or alias.name: importlib.import_module(f"aejax.{alias.name}")
               for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)
               and node.module == "aejax" for alias in node.names}
    missing = sorted(f"{node.value.id}.{node.attr}" for node in ast.walk(tree)
                     if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name)
                     and node.value.id in modules and not hasattr(modules[node.value.id],
                                                                  node.attr))
    assert not missing, f"{script.name} calls what aejax does not have: {missing}"


def test_an_out_file_that_cannot_be_written_is_kept_whole_and_named(tmp_path) -> None:
    """A write that fails part-way (here a file-size limit, as a full disk would) leaves an
    earlier --out file as it was and ends in one line naming it."""
    out = tmp_path / "bench.json"
    out.write_text("{}\n")  # an earlier run's file
    fake = {"machine": {"backend": "cpu", "device_kind": "cpu", "cpu": "x", "cpu_count": 1},
            "load_average_start": [0], "load_average_end": [0], "training": [],
            "roofline": {"matmul_size": 256, "gflops": 1.0}, "bench_peak_rss_mb": 1.0,
            "padding": "x" * 4096}  # more than the child may write
    code = ("import resource, sys; from aejax import bench_report; from tests.test_experiment "
            f"import load_script; bench_report.run = lambda images, opts: {fake!r}; "
            "resource.setrlimit(resource.RLIMIT_FSIZE, (1024, resource.RLIM_INFINITY)); "
            "sys.exit(load_script('bench').main(sys.argv[1:]))")
    done = subprocess.run([sys.executable, "-c", code, "--num-images", "64", "--data-dir", "",
                           "--no-progress", "--out", str(out)], capture_output=True, text=True,
                          cwd=ROOT, env={**os.environ, "AEJAX_JAX_CACHE": str(tmp_path / "jc")},
                          timeout=120)
    assert done.returncode == 2 and "| batch | variant |" in done.stdout
    assert done.stderr.strip().splitlines() == [
        f"bench.py: error: could not write {out} (File too large): free some space (or fix the "
        "folder's permissions), then run bench.py again (this run's numbers are in the table "
        "above)"]
    assert out.read_text() == "{}\n" and not list(tmp_path.glob("*.tmp"))  # no half file
