"""Tests for aejax.bench_report: the rows, the roofline, the progress bar and the table."""

from __future__ import annotations

import json
import sys
import types

import jax
import pytest

from aejax import bench_external, bench_report, roofline, torch_baseline
from tests.test_bench import IMAGES


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


def test_the_default_roofline_matmul_is_larger_on_a_gpu(monkeypatch) -> None:
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")
    assert bench_report.default_roofline_size() == 1024
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")  # 1024 would time its launch
    assert bench_report.default_roofline_size() == 8192


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


def test_a_pytorch_that_fails_to_import_is_skipped_with_its_reason(tmp_path, monkeypatch) -> None:
    # installed but broken (a missing shared library, a NumPy ABI mismatch): no traceback
    (tmp_path / "torch").mkdir()
    (tmp_path / "torch" / "__init__.py").write_text(
        "raise OSError('libtorch_cpu.so: cannot open shared object file')\n")
    for name in [m for m in sys.modules if m == "torch" or m.startswith("torch.")]:
        monkeypatch.delitem(sys.modules, name)  # restored afterwards
    monkeypatch.syspath_prepend(str(tmp_path))
    opts = bench_report.Options(batch_sizes=(8,), loop_steps=1, repeats=1, roofline_size=32,
                                compile=False, progress=False)
    result = bench_report.run(IMAGES, opts)
    assert result["torch_skipped"] == ("PyTorch cannot be imported (OSError: libtorch_cpu.so: "
                                       "cannot open shared object file)")
    assert [r["variant"] for r in result["training"]] == ["scan", "loop"]
    assert "torch" not in result["machine"]
