"""Benchmarks that need a fresh Python process: compile time cold and warm, and train.py itself.

Cold compile: a new process compiles one training chunk with an empty persistent compilation cache
folder; warm: a second new process compiles it again with that folder, now filled. The end-to-end
run starts ``scripts/train.py`` and records its wall time and peak resident memory (the child's
own ``VmHWM``, which it reports as it exits).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]

COMPILE_CODE = """
import json, os, sys, time
start = time.perf_counter()
def cache_files(): return sum(len(files) for _, _, files in os.walk(sys.argv[1]))
before = cache_files()  # the cold run's folder is empty, the warm run's filled
import jax, jax.numpy as jnp
from aejax import compile_cache, loop, schedule, train
from aejax.config import Config
compile_cache.enable(sys.argv[1])
cfg = Config(batch_size=int(sys.argv[2]))
num, steps = int(sys.argv[3]), int(sys.argv[3]) // cfg.batch_size
model, tx = train.make_model(cfg), train.make_optimizer(cfg)
keys = train.root_keys(cfg.seed)
state = train.create_state(keys["init"], model, tx)
images = jax.ShapeDtypeStruct((num, 784), jnp.uint8)
length = schedule.chunk_plan(steps)[0][1]
t = time.perf_counter()
loop.compile_chunk(train.make_train_step(cfg, model, tx), length, state, images, steps, cfg,
                    keys["noise"])
print(json.dumps({"compile_seconds": time.perf_counter() - t,
                  "process_seconds": time.perf_counter() - start,
                  "cache_files_before": before, "cache_files_after": cache_files()}))
"""


# Runs a script and reports its peak RSS from VmHWM, which, unlike a child's ru_maxrss, does not
# include the memory of the (possibly large) benchmark process it was forked from.
PEAK_MARK = "AEJAX_PEAK_RSS_KB"
SCRIPT_WRAPPER = f"""
import atexit, runpy, sys
def report():
    try:
        with open('/proc/self/status') as f:
            kb = next(line.split()[1] for line in f if line.startswith('VmHWM'))
    except (OSError, StopIteration):
        return
    print('{PEAK_MARK}', kb, file=sys.stderr)
atexit.register(report)
sys.argv = sys.argv[1:]
runpy.run_path(sys.argv[0], run_name='__main__')
"""


def child_env() -> dict[str, str]:
    """This environment (``JAX_PLATFORMS`` included) with the project importable."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path}


def run_child(args: Sequence[str], *, env: dict[str, str]) -> tuple[str, float, float | None]:
    """Run a command; return its stdout, wall seconds and peak RSS in MB (raise if it fails).

    The peak is the child's own ``VmHWM`` when it reports one (``SCRIPT_WRAPPER``), else None:
    its ``ru_maxrss`` would also count what it inherited from this process at fork.
    """
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out, tempfile.TemporaryFile("w+") as err:
        proc = subprocess.Popen(list(args), stdout=out, stderr=err, env=env, cwd=ROOT, text=True)
        try:
            _, status, _ = os.wait4(proc.pid, 0)
        except BaseException:
            proc.kill()
            raise
        proc.returncode = os.waitstatus_to_exitcode(status)
        seconds = time.perf_counter() - start
        out.seek(0), err.seek(0)
        stdout, stderr = out.read(), err.read()
    if proc.returncode != 0:
        shown = ["<code>" if i and args[i - 1] == "-c" else a for i, a in enumerate(args)]
        raise RuntimeError(f"{' '.join(shown)} failed ({proc.returncode}):\n{stderr[-2000:]}")
    marks = [line.split()[1] for line in stderr.splitlines() if line.startswith(PEAK_MARK)]
    return stdout, seconds, int(marks[-1]) / 1024 if marks else None  # kilobytes to MB


def compile_times(batch_size: int, *, num_examples: int = 60000) -> dict[str, Any]:
    """Seconds to compile one training chunk, with an empty and then a filled cache folder
    (``cold``, ``warm``), and the folder's file counts before and after each (``files``)."""
    env = child_env()
    result: dict[str, Any] = {"files": {}}
    with tempfile.TemporaryDirectory(prefix="aejax-jax-cache-") as cache:
        for name in ("cold", "warm"):
            args = [sys.executable, "-c", COMPILE_CODE, cache, str(batch_size), str(num_examples)]
            stdout, _, _ = run_child(args, env=env)
            child = json.loads(stdout.strip().splitlines()[-1])
            result[name] = child["compile_seconds"]
            result["files"][name] = [child["cache_files_before"], child["cache_files_after"]]
    return result


def train_script(args: Sequence[str] = (), *, runs: int = 2) -> list[dict[str, Any]]:
    """Wall time and peak RSS of ``scripts/train.py ARGS`` run ``runs`` times in a row.

    The first run fills the data and compilation caches if they were empty; later runs show the
    steady state. Each run writes into a temporary folder that is removed afterwards.
    """
    env = child_env()
    rows = []
    for i in range(runs):
        with tempfile.TemporaryDirectory(prefix="aejax-bench-run-") as workdir:
            cmd = [sys.executable, "-c", SCRIPT_WRAPPER, str(ROOT / "scripts" / "train.py"),
                   "--workdir", workdir, "--overwrite", "--no-progress", *args]
            stdout, seconds, rss_mb = run_child(cmd, env=env)
            info = json.loads((Path(workdir) / "config.json").read_text())
        rows.append({"run": i + 1, "wall_seconds": seconds, "peak_rss_mb": rss_mb,
                     "data": info["dataset_source"], "is_sample": info["dataset_is_sample"],
                     "train_size": info["dataset_train_size"],
                     "summary": stdout.strip().splitlines()[-1] if stdout.strip() else ""})
    return rows
