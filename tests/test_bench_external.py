"""Tests for aejax.bench_external: compile times, train.py's timing and children's peak memory."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from aejax import bench_external, bench_report


def test_compile_times_cold_and_warm_in_fresh_processes() -> None:
    times = bench_external.compile_times(8, num_examples=64)
    assert times["cold"] > 0 and times["warm"] > 0
    (cold_before, cold_after), (warm_before, warm_after) = times["files"].values()
    assert cold_before == 0 and cold_after > 0  # cold: an empty folder, filled by the compile
    assert warm_before == warm_after == cold_after  # warm: everything read from it, nothing new


def test_train_script_is_timed_with_its_peak_memory(small_idx_dir, tmp_path: Path) -> None:
    # --data-root: the decoded-data cache in tmp_path, not in data/cache/ of the checkout
    (run,) = bench_external.train_script(["--data-dir", str(small_idx_dir), "--epochs", "1",
                                          "--batch-size", "64", "--data-root",
                                          str(tmp_path / "root")], runs=1)
    assert list((tmp_path / "root" / "cache").glob("custom-*.npz"))
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
