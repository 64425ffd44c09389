"""The whole benchmark: every section measured in one run, saved as JSON, shown as a short table.

Training rows (scan, loop, torch at each batch size) are measured in this process, beside the
matmul roofline, so every ratio compares numbers taken minutes apart on the same machine, with
the load average recorded before and after.
"""

from __future__ import annotations

import dataclasses
import logging
import resource
import statistics
import subprocess
import sys
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from tqdm.auto import tqdm

from aejax import bench, bench_external, machine, roofline, scaling, torch_baseline
from aejax.config import Config, check_batch_size

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Options:
    """What to measure, and how long."""

    batch_sizes: Sequence[int] = (32, 256, 1024)
    loop_steps: int = 300
    torch_steps: int = 300
    repeats: int = 10
    roofline_size: int = 1024
    torch: bool = True
    compile: bool = True
    train_script_args: Sequence[str] | None = None  # None: skip scripts/train.py
    scaling_devices: Sequence[int] = ()  # empty: skip the device-count sweep
    scaling_steps: int = 200
    progress: bool = True  # a progress bar on stderr


MIN_ROOFLINE_SIZE = 256  # smaller matmuls time the launch, not the arithmetic: 3 gave 665075%


def default_roofline_size() -> int:
    """The roofline matmul's side: 1024 on a CPU; 8192 on a GPU, where 1024 takes microseconds."""
    return 8192 if jax.default_backend() == "gpu" else 1024


def training_rows(images_u8: np.ndarray, opts: Options, gflops: float,
                  torch_device: str, bar: Any) -> list[dict[str, Any]]:
    """scan, loop and torch steps/s at every batch size, with % of roofline and ratio to torch.

    ``bar`` (tqdm) advances by one for each batch size's set-up and for each of its turns.
    """
    rows = []
    for batch in opts.batch_sizes:
        bar.set_description(f"batch {batch}: compile, warm up")
        s = bench.setup(Config(batch_size=batch), images_u8.shape[1])
        runners = {"scan": bench.scan_runner(s, images_u8),
                   "loop": bench.loop_runner(s, images_u8, opts.loop_steps)}
        if opts.torch:
            runners["torch"] = torch_baseline.runner(images_u8, batch, opts.torch_steps,
                                                     device=torch_device)
        bar.update()
        bar.set_description(f"batch {batch}: {opts.repeats} turns")
        turns = bench.interleaved(runners, opts.repeats, after_turn=bar.update)
        best = {name: max(v) for name, v in turns.items()}
        median = {name: statistics.median(v) for name, v in turns.items()}
        for name, sps in best.items():
            rows.append({"variant": name, "batch_size": batch, "steps_per_second": sps,
                         "steps_per_second_median": median[name],
                         "steps_per_second_turns": turns[name],
                         "images_per_second": sps * batch, "steps_timed": runners[name].steps,
                         "percent_of_roofline": roofline.percent_of_roofline(
                             sps, s.num_params, batch, gflops),
                         "ratio_to_torch": sps / best["torch"] if opts.torch else None,
                         "ratio_to_torch_median": (median[name] / median["torch"]
                                                   if opts.torch else None),
                         **runners[name].info})
    return rows


def run(images_u8: np.ndarray, opts: Options) -> dict[str, Any]:
    """Measure every requested section; return one JSON-ready dict.

    Child processes (compile times, train.py, scaling) inherit the environment, so set
    ``JAX_PLATFORMS`` there to keep them on the same platform.

    Args:
      images_u8: training images (N, D), uint8.
      opts: what to measure.
    """
    for batch in opts.batch_sizes:  # before any measurement, not minutes into it
        check_batch_size(Config(batch_size=batch), len(images_u8))
    result: dict[str, Any] = {"machine": machine.machine(),
                              "load_average_start": machine.load_average()}
    gpu = result["machine"]["backend"] == "gpu"
    skipped = torch_baseline.problem(cuda=gpu) if opts.torch else "--no-torch"
    if skipped is None:
        import torch

        result["machine"]["torch"] = torch.__version__
    else:
        result["torch_skipped"] = skipped
        opts = dataclasses.replace(opts, torch=False)
    sections = [opts.compile, opts.train_script_args is not None, bool(opts.scaling_devices)]
    total = 2 + len(opts.batch_sizes) * (1 + opts.repeats) + sum(sections)
    with tqdm(total=total, desc="roofline", unit="part", disable=not opts.progress,
              leave=False) as bar:
        before = roofline.matmul_gflops(opts.roofline_size)
        bar.update()
        torch_device = "cuda" if gpu else "cpu"
        rows = training_rows(images_u8, opts, before, torch_device, bar)
        bar.set_description("roofline")
        after = roofline.matmul_gflops(opts.roofline_size)  # the best of both: load only slows
        bar.update()
        gflops = max(before, after)
        result["roofline"] = {"matmul_size": opts.roofline_size, "dtype": "float32",
                              "gflops": gflops, "gflops_before": before, "gflops_after": after}
        for r in rows:
            r["percent_of_roofline"] *= before / gflops
        result["training"] = rows
        result.update(child_sections(opts, bar, len(images_u8)))
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # kilobytes; bytes on macOS
    result["bench_peak_rss_mb"] = peak / (2**20 if sys.platform == "darwin" else 1024)
    if gpu:
        result["device_peak_mb"] = device_peaks(opts.torch)
    result["load_average_end"] = machine.load_average()
    return result


def device_peaks(torch: bool) -> dict[str, float | None]:
    """Peak GPU memory of this process's JAX and PyTorch work, in MB (None where not reported)."""
    stats = jax.devices()[0].memory_stats() or {}
    peaks: dict[str, float | None] = {"jax": stats.get("peak_bytes_in_use")}
    if torch:
        import torch as pt

        peaks["torch"] = pt.cuda.max_memory_allocated()
    return {k: v / 2**20 if v is not None else None for k, v in peaks.items()}


def child_sections(opts: Options, bar: Any, num_images: int) -> dict[str, Any]:
    """The sections measured in fresh processes: compile times (of the chunk the ``scan`` rows
    run on ``num_images`` images), train.py, scaling.

    A section whose process fails is recorded as ``<section>_error`` (one line), so that it
    does not cost the measurements already made."""
    todo = {"compile": (opts.compile, "compile times (fresh processes)",
                        lambda: bench_external.compile_times(opts.batch_sizes[0],
                                                             num_examples=num_images)),
            "train_script": (opts.train_script_args is not None, "scripts/train.py, twice",
                             lambda: bench_external.train_script(opts.train_script_args)),
            "scaling": (bool(opts.scaling_devices), "scaling over devices",
                        lambda: scaling.sweep(opts.scaling_devices, opts.batch_sizes,
                                              opts.scaling_steps))}
    out: dict[str, Any] = {}
    for name, (wanted, description, measure) in todo.items():
        if not wanted:
            continue
        bar.set_description(description)
        try:
            out[name] = measure()
        except (RuntimeError, ValueError, LookupError, OSError,  # the child's output unreadable
                subprocess.TimeoutExpired) as err:
            out[f"{name}_error"] = failure_line(err)
            log.warning("%s failed: %s", description, out[f"{name}_error"])
        bar.update()
    return out


def failure_line(err: Exception) -> str:
    """A child process's failure in one line: what failed, and its last line of stderr."""
    if isinstance(err, subprocess.TimeoutExpired):
        return f"no result within {err.timeout:.0f} s"
    if not isinstance(err, RuntimeError):  # its output could not be read
        return f"unreadable result ({type(err).__name__}: {err})"
    head, _, stderr = str(err).partition("\n")
    last = [line.strip() for line in stderr.splitlines() if line.strip()]
    return f"{head.rstrip(':')}: {last[-1]}" if last else head


def failed_sections(result: dict[str, Any]) -> list[str]:
    """The child sections of ``run``'s result that failed."""
    return [k.removesuffix("_error") for k in result if k.endswith("_error")]


def table(result: dict[str, Any]) -> str:
    """A short human-readable summary of ``run``'s result."""
    m = result["machine"]
    lines = [f"{m['backend']} ({m['device_kind']}; {m['cpu']}, {m['cpu_count']} cores), "
             f"load average {result['load_average_start']} -> {result['load_average_end']}",
             f"roofline: {result['roofline']['matmul_size']}^2 float32 matmul, "
             f"{result['roofline']['gflops']:.1f} GFLOP/s",
             "best of each variant's turns (median of the turns in brackets):",
             "| batch | variant | steps/s | images/s | % roofline | vs torch |",
             "|---|---|---|---|---|---|"]
    for r in result["training"]:
        ratio = (f"{r['ratio_to_torch']:.2f}x ({r['ratio_to_torch_median']:.2f}x)"
                 if r["ratio_to_torch"] else "-")
        lines.append(f"| {r['batch_size']} | {r['variant']} | {r['steps_per_second']:,.0f} "
                     f"({r['steps_per_second_median']:,.0f}) | "
                     f"{r['images_per_second']:,.0f} | {r['percent_of_roofline']:.1f}% | {ratio} |")
    if "compile" in result:
        c = result["compile"]
        lines.append(f"compile (one batch-{result['training'][0]['batch_size']} chunk): "
                     f"cold {c['cold']:.2f} s, warm {c['warm']:.2f} s (persistent cache)")
    if "torch_skipped" in result:
        lines.append(f"no PyTorch rows: {result['torch_skipped']}")
    for r in result.get("train_script", []):
        rss = f"{r['peak_rss_mb']:.0f} MB" if r["peak_rss_mb"] is not None else "not reported"
        data = (f"{r['train_size']:,} training images" if "train_size" in r else "")
        if r.get("is_sample"):
            data += ", the small sample, not the full data: pass --data-dir"
        lines.append(f"scripts/train.py run {r['run']}: {r['wall_seconds']:.1f} s wall, "
                     f"peak RSS {rss}" + (f" ({data})" if data else ""))
    if result.get("scaling"):
        lines += ["images/s against device count (speed-up):", scaling.table(result["scaling"])]
    for name in failed_sections(result):
        lines.append(f"{name.replace('_', ' ')}: FAILED, {result[name + '_error']}")
    lines.append(f"this process's peak RSS: {result['bench_peak_rss_mb']:.0f} MB")
    for who, mb in result.get("device_peak_mb", {}).items():
        lines.append(f"peak GPU memory ({who}): " + (f"{mb:.0f} MB" if mb is not None else "-"))
    return "\n".join(lines)


def images(data_dir: str | None, num: int = 60000, features: int = 784) -> tuple[np.ndarray, str]:
    """MNIST's training images from ``data_dir``, else random uint8 images of MNIST's size.

    Dense training costs the same whatever the pixels are, so random images time the same.
    """
    if data_dir:
        from aejax import data

        ds = data.load("mnist", data_dir=data_dir)
        return ds.train_images.reshape(len(ds.train_images), -1), f"MNIST ({ds.source})"
    rng = np.random.default_rng(0)
    return rng.integers(0, 256, (num, features), np.uint8), f"random uint8 {num}x{features}"
