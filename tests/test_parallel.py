"""Tests for aejax.parallel: data-parallel training over forced CPU devices and two processes
matches single-device training on the same global batches; errors are one line.

Device counts are fixed when JAX starts, so every multi-device run is a subprocess of
``scripts/train.py`` with ``--xla_force_host_platform_device_count``; the single-device reference
runs in this process.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
import types
from collections.abc import Iterator
from pathlib import Path

import jax
import numpy as np
import pytest

from aejax import data, loop, paramsfile, parallel, runfiles, runlock
from aejax.config import Config
from tests.conftest import write_idx_dataset
from tests.test_experiment import load_script

ROOT = Path(__file__).resolve().parents[1]
FLAGS = ["--epochs", "2", "--batch-size", "32", "--train-occlusion", "mixed", "--no-progress"]
TIMEOUT = 240


@pytest.fixture(scope="module", autouse=True)
def compile_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A compilation cache private to this module's subprocesses (``AEJAX_JAX_CACHE``; FLAGS keep
    train.py's default, the cache on): a later run of the same programs on the same devices
    loads them rather than compiling them again. The first run of each still compiles."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("AEJAX_JAX_CACHE", str(tmp_path_factory.mktemp("jax-cache")))
        yield Path(os.environ["AEJAX_JAX_CACHE"])


@pytest.fixture(scope="module")
def dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 256/64-image synthetic IDX dataset shared by this module's runs."""
    return write_idx_dataset(tmp_path_factory.mktemp("parallel") / "data")


@pytest.fixture(scope="module")
def reference(dataset: Path, tmp_path_factory: pytest.TempPathFactory) -> dict[str, np.ndarray]:
    """Single-device parameters and losses for FLAGS, trained in this process."""
    root = tmp_path_factory.mktemp("root")
    cfg = Config(data_dir=str(dataset), data_root=str(root), epochs=2, batch_size=32,
                 train_occlusion="mixed")
    ds = data.load(cfg.dataset, data_dir=cfg.data_dir, data_root=cfg.data_root)
    state, history = loop.fit(cfg, ds.train_images.reshape(256, -1), progress=False)
    return {"params": parallel.fetch(state.params), "loss": history["loss"]}


def script_cmd(dataset: Path, tmp: Path, workdir: str, *extra: str) -> list[str]:
    """``scripts/train.py`` on the module's dataset with FLAGS."""
    return [sys.executable, str(ROOT / "scripts" / "train.py"), "--data-dir", str(dataset),
            "--data-root", str(tmp / "root"), "--workdir", str(tmp / workdir), *FLAGS, *extra]


def device_env(count: int) -> dict[str, str]:
    """This environment with ``count`` forced CPU devices and this checkout first on the path."""
    path = os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))
    return {**os.environ, "PYTHONPATH": path, "JAX_PLATFORMS": "cpu",
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={count}"}


def assert_matches_reference(run: Path, reference: dict[str, np.ndarray]) -> None:
    """Parameters and per-step losses of ``run`` equal the single-device ones up to float error."""
    params = paramsfile.load(run / runfiles.PARAMS_FILE)
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6),
                 params, reference["params"])
    np.testing.assert_allclose(np.load(run / "train_loss.npy"), reference["loss"], rtol=1e-5)


@pytest.fixture(scope="module")
def four_devices(dataset: Path, tmp_path_factory: pytest.TempPathFactory
                 ) -> tuple[Path, subprocess.CompletedProcess]:
    """The run folder and the process of train.py with FLAGS on 4 forced CPU devices: trained
    once for the module's tests (which change copies of it)."""
    tmp = tmp_path_factory.mktemp("four")
    cmd = script_cmd(dataset, tmp, "run", "--devices", "4")
    done = subprocess.run(cmd, capture_output=True, text=True, env=device_env(4), timeout=TIMEOUT)
    return tmp / "run", done


def test_four_devices_match_one_device(four_devices: tuple[Path, subprocess.CompletedProcess],
                                       reference: dict) -> None:
    run, done = four_devices
    assert done.returncode == 0, done.stderr
    assert_matches_reference(run, reference)
    info = json.loads((run / "config.json").read_text())
    assert len(info["mesh_devices"]) == 4 and info["processes"] == 1


def test_resume_trains_on_as_many_devices_as_the_run_did(dataset: Path, tmp_path: Path) -> None:
    def train(*extra: str, devices: int = 4) -> subprocess.CompletedProcess:
        return subprocess.run(script_cmd(dataset, tmp_path, "run", *extra), capture_output=True,
                              text=True, env=device_env(devices), timeout=TIMEOUT)

    assert (done := train("--devices", "2")).returncode == 0, done.stderr
    assert (done := train("--resume", "--epochs", "3")).returncode == 0, done.stderr
    info = json.loads((tmp_path / "run" / "config.json").read_text())
    assert len(info["mesh_devices"]) == 2  # not the default 1 of a new run
    done = train("--resume", "--epochs", "4", devices=1)
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1] == (
        "train.py: error: the run trained on 2 devices, and resumes on as many: --devices 2 asks "
        "for more devices than the 1 cpu device(s) JAX sees; use --devices all or fewer; or split "
        "the CPU into more: XLA_FLAGS=--xla_force_host_platform_device_count=2 before the script; "
        "or give --devices to resume on another count")
    done = train("--resume", "--epochs", "4", "--devices", "3")  # the batch is the run's own
    assert done.returncode == 2 and done.stderr.strip().splitlines()[-1] == (
        "train.py: error: batch size 32 is not divisible by the 3 devices: each device takes an "
        "equal share of every global batch; the run's batch size cannot change on --resume: "
        "resume on a count that divides it, such as --devices 2")
    assert (done := train("--resume", "--epochs", "4", "--devices", "1", devices=1)).returncode == 0


@pytest.mark.parametrize("extra,message", [
    (["--devices", "4", "--batch-size", "30"],
     "batch size 30 is not divisible by the 4 devices: each device takes an equal share"),
    (["--devices", "5"], "--devices 5 asks for more devices than the 4 cpu device(s)"),  # one more
])
def test_impossible_device_requests_fail_in_one_line(extra: list[str], message: str,
                                                     dataset: Path, tmp_path: Path) -> None:
    cmd = script_cmd(dataset, tmp_path, "run", *extra)
    done = subprocess.run(cmd, capture_output=True, text=True, env=device_env(4), timeout=TIMEOUT)
    last = done.stderr.strip().splitlines()[-1]
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert last.startswith("train.py: error: ") and message in last
    assert not (tmp_path / "run").exists()  # refused before a config.json (or a clear) happens


def test_overwrite_with_a_batch_the_devices_do_not_divide_keeps_the_old_run(
        four_devices: tuple[Path, subprocess.CompletedProcess], dataset: Path,
        tmp_path: Path) -> None:
    assert four_devices[1].returncode == 0, four_devices[1].stderr
    run = shutil.copytree(four_devices[0], tmp_path / "run")
    before = {p.name: p.stat().st_mtime_ns for p in run.iterdir()}
    cmd = script_cmd(dataset, tmp_path, "run", "--overwrite", "--devices", "4",
                     "--batch-size", "30")
    done = subprocess.run(cmd, capture_output=True, text=True, env=device_env(4), timeout=TIMEOUT)
    assert done.returncode == 2 and "is not divisible by the 4 devices" in done.stderr
    assert {p.name: p.stat().st_mtime_ns for p in run.iterdir()} == before


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run_processes(cmds: list[list[str]], env: dict[str, str], logs: Path) -> list[int]:
    """Start every command at once; wait for all (killing all on timeout); return exit codes."""
    logs.mkdir()
    procs = [subprocess.Popen(c, env=env, stdout=open(logs / f"{i}.out", "w"),
                              stderr=subprocess.STDOUT, text=True) for i, c in enumerate(cmds)]
    try:
        return [p.wait(timeout=TIMEOUT) for p in procs]
    except subprocess.TimeoutExpired:
        for p in procs:
            p.kill()
            p.wait()
        pytest.fail(f"processes still running after {TIMEOUT} s:\n{read_logs(logs)}")


def read_logs(logs: Path) -> str:
    """Every process's output, headed by its index."""
    return "\n".join(f"--- process {p.stem}:\n{p.read_text()[-3000:]}"
                     for p in sorted(logs.glob("*.out")))


def test_two_processes_match_one_device(dataset: Path, reference: dict, tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    cmds = [script_cmd(dataset, tmp_path, "run", "--devices", "all", "--coordinator", address,
                       "--num-processes", "2", "--process-id", str(i)) for i in range(2)]
    codes = run_processes(cmds, device_env(2), tmp_path / "logs")
    assert codes == [0, 0], read_logs(tmp_path / "logs")
    assert_matches_reference(tmp_path / "run", reference)
    assert (tmp_path / "run" / "checkpoints" / "16").is_dir()  # written by both, collectively
    info = json.loads((tmp_path / "run" / "config.json").read_text())
    assert len(info["mesh_devices"]) == 4 and info["processes"] == 2
    assert "train loss" not in (tmp_path / "logs" / "1.out").read_text()
    address = f"127.0.0.1:{free_port()}"  # resumed by both: process 0 settles the folder first
    cmds = [script_cmd(dataset, tmp_path, "run", "--devices", "all", "--coordinator", address,
                       "--num-processes", "2", "--process-id", str(i), "--resume", "--epochs",
                       "3") for i in range(2)]
    codes = run_processes(cmds, device_env(2), tmp_path / "resumed")
    assert codes == [0, 0], read_logs(tmp_path / "resumed")
    assert (tmp_path / "run" / "checkpoints" / "24").is_dir()
    with contextlib.ExitStack() as held:  # refused in process 0: both stop with one line
        runlock.lock(tmp_path / "run", held)
        codes = run_processes(cmds, device_env(2), tmp_path / "refused")
    errors = [[line for line in (tmp_path / "refused" / f"{i}.out").read_text().splitlines()
               if line.startswith("train.py: error:")] for i in range(2)]
    assert codes == [2, 2], read_logs(tmp_path / "refused")
    assert "is in use" in errors[0][0] and errors[1] == [
        "train.py: error: opening the run folder failed in process 0 (see its error)"]


def test_a_check_failing_in_one_process_stops_all_and_writes_nothing(dataset: Path,
                                                                     tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    missing = ["--data-dir", str(tmp_path / "missing")]  # process 1's data folder only
    cmds = [script_cmd(dataset, tmp_path, "run", "--devices", "all", "--coordinator", address,
                       "--num-processes", "2", "--process-id", str(i), *(missing * i))
            for i in range(2)]
    codes = run_processes(cmds, device_env(2), tmp_path / "logs")
    assert codes == [2, 2], read_logs(tmp_path / "logs")
    last = [[line for line in (tmp_path / "logs" / f"{i}.out").read_text().splitlines()
             if line.startswith("train.py:")][-1] for i in (0, 1)]  # Gloo logs lines of its own
    assert last[0] == "train.py: error: preparing the run failed in process 1 (see its error)"
    assert last[1].startswith(f"train.py: error: data folder {tmp_path / 'missing'} does not")
    assert not (tmp_path / "run").exists()  # process 0 wrote nothing, and removed its folder


def test_flags_refused_in_one_process_stop_all_and_write_nothing(dataset: Path,
                                                                  tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"  # refused before any folder or collective of the run
    cmds = [script_cmd(dataset, tmp_path, "run", "--devices", "all", "--coordinator", address,
                       "--num-processes", "2", "--process-id", str(i), *(["--keep", "0"] * i))
            for i in range(2)]
    codes = run_processes(cmds, device_env(2), tmp_path / "logs")
    assert codes == [2, 2], read_logs(tmp_path / "logs")
    errors = [[line for line in (tmp_path / "logs" / f"{i}.out").read_text().splitlines()
               if line.startswith("train.py:")] for i in (0, 1)]  # Gloo logs lines of its own
    assert errors == [["train.py: error: checking the flags failed in process 1 (see its error)"],
                      ["train.py: error: --keep must be >= 1, got 0"]]
    assert not (tmp_path / "run").exists()


@pytest.mark.parametrize("extra,what", [
    (["--seed", "7"], "the flags differ between process 0 and process 1 (--seed); give every "
                      "process the same flags"),  # trained a mix of two runs, silently
    (["--epochs", "3", "--workdir-suffix"], "the flags differ between process 0 and process 1 "
                                            "(--epochs, --workdir); give every process"),  # hung
    (["--data-dir", "other"], "the training images differ between process 0 and process 1"),
])
def test_processes_given_different_flags_or_data_stop_at_once(extra: list[str], what: str,
                                                              dataset: Path,
                                                              tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    if "other" in extra:
        extra[1] = str(write_idx_dataset(tmp_path / "other", seed=5))  # same shapes, other images
    suffix = "--workdir-suffix" in extra
    if suffix:
        extra.remove("--workdir-suffix")
    cmds = [script_cmd(dataset, tmp_path, "run2" if i and suffix else "run", "--devices", "all",
                       "--coordinator", address, "--num-processes", "2", "--process-id", str(i),
                       *(extra * i)) for i in range(2)]
    codes = run_processes(cmds, device_env(2), tmp_path / "logs")
    assert codes == [2, 2], read_logs(tmp_path / "logs")
    for i in range(2):
        last = [line for line in (tmp_path / "logs" / f"{i}.out").read_text().splitlines()
                if line.startswith("train.py:")]  # Gloo logs lines of its own
        assert len(last) == 1 and last[0].startswith(f"train.py: error: {what}"), last
    assert not (tmp_path / "run").exists() and not (tmp_path / "run2").exists()


def test_mesh_placement_and_fetch_on_one_device() -> None:
    assert parallel.make_mesh(1) is None and parallel.make_mesh("all") is None
    mesh = jax.sharding.Mesh(np.array(jax.devices()[:1]), (parallel.AXIS,))
    key = jax.random.key(7)
    placed = parallel.put({"key": key, "x": np.arange(6).reshape(2, 3)}, parallel.replicated(mesh))
    np.testing.assert_array_equal(jax.random.key_data(placed["key"]), jax.random.key_data(key))
    fetched = parallel.fetch({"x": placed["x"]})
    assert type(fetched["x"]) is np.ndarray  # a host copy, not the device array
    np.testing.assert_array_equal(fetched["x"], np.arange(6).reshape(2, 3))
    spec = jax.sharding.PartitionSpec(None, parallel.AXIS)  # jax.P, which JAX 0.6 lacks
    assert parallel.order_spec(mesh, 5, 8).sharding.spec == spec
    parallel.check_batch(32, types.SimpleNamespace(size=4))
    with pytest.raises(ValueError, match="use a multiple of 4 such as 32"):
        parallel.check_batch(30, types.SimpleNamespace(size=4))
    with pytest.raises(ValueError, match="use a multiple of 4 such as 4$"):  # never 0
        parallel.check_batch(1, types.SimpleNamespace(size=4))
    with pytest.raises(ValueError, match="cannot change on --resume: resume on a count that "
                                         "divides it, such as --devices 3$"):
        parallel.check_batch(33, types.SimpleNamespace(size=5), resume=True)


def test_a_device_count_given_from_python_is_checked_like_the_flag() -> None:
    # make_mesh(0) was an empty Mesh (then a ZeroDivisionError in check_batch), and "2" a
    # TypeError: the hint says int | str, so a count as text is read as --devices reads it
    assert parallel.make_mesh("1") is None
    for bad in (0, -1, "0", "two", "²", 1.5, True):  # "²".isdigit(), but int() refuses it
        with pytest.raises(ValueError, match=r"^--devices must be a positive number or 'all', "
                                             rf"got {re.escape(repr(bad))}$"):
            parallel.make_mesh(bad)


def test_a_suggested_batch_size_never_exceeds_the_training_set() -> None:
    six, eight = types.SimpleNamespace(size=6), types.SimpleNamespace(size=8)
    with pytest.raises(ValueError, match="use a multiple of 6 such as 4002$"):  # no limit known
        parallel.check_batch(4000, six)
    with pytest.raises(ValueError, match="use a multiple of 6 such as 3996$"):  # 4002 > 4000
        parallel.check_batch(4000, six, num_train=4000)
    with pytest.raises(ValueError, match="; the 5 training images are fewer than the devices: "
                                         "train on a count that divides it, such as --devices 5$"):
        parallel.check_batch(5, eight, num_train=5)


def test_each_process_takes_its_share_of_the_devices(monkeypatch: pytest.MonkeyPatch) -> None:
    fake = [types.SimpleNamespace(id=i, process_index=i // 4) for i in range(8)]  # 2 x 4 devices
    monkeypatch.setattr(jax, "devices", lambda: fake)
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    assert parallel.select_devices(4) == [fake[0], fake[1], fake[4], fake[5]]
    assert parallel.select_devices(8) == parallel.select_devices("all") == fake
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    with pytest.raises(ValueError, match=r"^--devices 9 asks for more devices than the 8 gpu "
                                         r"device\(s\) JAX sees; use --devices all or fewer$"):
        parallel.select_devices(9)
    monkeypatch.setattr(jax, "default_backend", lambda: "cpu")  # a CPU can be split: say how
    with pytest.raises(ValueError, match=r"8 cpu device\(s\) JAX sees; use --devices all or "
                                         r"fewer; or split the CPU into more: XLA_FLAGS=--xla_"
                                         r"force_host_platform_device_count=9 before the script$"):
        parallel.select_devices(9)
    with pytest.raises(ValueError, match=r"^--devices 3 must be a multiple of the 2 processes"):
        parallel.select_devices(3)
    uneven = fake[:5]  # process 1 has a single device: not a mesh of 3 for --devices 4
    monkeypatch.setattr(jax, "devices", lambda: uneven)
    assert parallel.select_devices(2) == [fake[0], fake[4]]
    with pytest.raises(ValueError, match=r"^--devices 4 takes 2 devices of each of the 2 processes"
                                         r", and one has only 1; use --devices 2 or all$"):
        parallel.select_devices(4)
    with pytest.raises(ValueError, match="resume on a count that divides it, such as --devices 2$"):
        parallel.check_batch(6, types.SimpleNamespace(size=4), resume=True)  # 3: not 2 x 1.5


def test_together_raises_in_every_process_once_all_have_run(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    sent, other = [], [0]  # what this process told the others; whether process 1 failed

    def allgather(failed: np.ndarray) -> np.ndarray:
        sent.append(int(failed))
        return np.array([int(failed), other[0]])

    monkeypatch.setattr(parallel.multihost_utils, "process_allgather", allgather)
    assert parallel.together(lambda: 5, "checking") == 5
    other[0] = 1
    with pytest.raises(ValueError, match=r"^checking failed in process 1 \(see its error\)$"):
        parallel.together(lambda: 5, "checking")

    def interrupted() -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):  # its own error, a Ctrl-C too, once the others heard
        parallel.together(interrupted, "checking")
    assert sent == [0, 0, 1]


def test_check_same_names_what_differs_in_another_process(
        monkeypatch: pytest.MonkeyPatch) -> None:
    values = {"--seed": 0, "--epochs": 2, "--workdir": "/runs/a"}
    parallel.check_same(values, "the flags", "fix it")  # one process: nothing to compare
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    others = [values]  # the values of processes 1, 2, ...

    def allgather(mine: np.ndarray) -> np.ndarray:
        theirs = [np.array([parallel._digest(o[k]) for k in sorted(o)], np.uint32) for o in others]
        return np.stack([mine, *theirs])

    monkeypatch.setattr(parallel.multihost_utils, "process_allgather", allgather)
    parallel.check_same(values, "the flags", "fix it")
    others[0] = {**values, "--seed": 7, "--workdir": "/runs/b"}
    with pytest.raises(ValueError, match=r"^the flags differ between process 0 and process 1 "
                                         r"\(--seed, --workdir\); fix it$"):
        parallel.check_same(values, "the flags", "fix it")
    monkeypatch.setattr(jax, "process_count", lambda: 3)  # the first that differs, and in what
    mine = {**values, "--seed": 7}  # its digest is above 2**31 - 1: not an int32
    others[:] = [{**mine, "--seed": 0}, {**mine, "--epochs": 3}]
    with pytest.raises(ValueError, match=r"^the flags differ between process 0 and process 1 "
                                         r"\(--seed\); fix it$"):
        parallel.check_same(mine, "the flags", "fix it")


DEFAULT_DEVICE_CODE = """
import jax, numpy as np
from aejax import parallel
first = parallel.describe(None)["mesh_devices"]
with jax.default_device(jax.devices()[1]):
    chosen = parallel.describe(None)["mesh_devices"], str(*jax.device_put(np.zeros(2)).devices())
with jax.default_device("cpu"):
    platform = parallel.describe(None)["mesh_devices"]
print(first, chosen, platform)
print(*jax.devices()[:2])
"""


def test_a_run_records_the_device_it_trains_on_under_jax_default_device() -> None:
    done = subprocess.run([sys.executable, "-c", DEFAULT_DEVICE_CODE], env=device_env(2),
                          capture_output=True, text=True, timeout=TIMEOUT)
    assert done.returncode == 0, done.stderr
    first, second = done.stdout.split("\n")[1].split()  # cpu:0 cpu:1; TFRT_CPU_0 ... in JAX 0.6
    assert done.stdout.split("\n")[0] == f"[{first!r}] ([{second!r}], {second!r}) [{first!r}]"


@pytest.mark.parametrize("argv,message", [
    (["--devices", "0"], "--devices must be a positive number or 'all', got '0'"),
    (["--devices", "two"], "--devices must be a positive number or 'all'"),
    (["--devices", "64"], "--devices 64 asks for more devices than the"),
    (["--coordinator", "127.0.0.1:1234"], "--coordinator, --num-processes and --process-id go"),
    (["--coordinator", "nohost", "--num-processes", "1", "--process-id", "0"],
     "--coordinator must be HOST:PORT with a port in 1..65535, got 'nohost'"),
    (["--coordinator", "nohost:99999", "--num-processes", "1", "--process-id", "0"],
     "--coordinator must be HOST:PORT"),
    (["--coordinator", "h:1234", "--num-processes", "0", "--process-id", "0"],
     "--num-processes must be >= 1, got 0"),
    (["--coordinator", "h:1234", "--num-processes", "2", "--process-id", "2"],
     "--process-id must be in 0..1 (--num-processes 2), got 2"),
])
def test_bad_parallel_flags_exit_with_one_line(argv: list[str], message: str, small_idx_dir: Path,
                                               tmp_path: Path, capsys: pytest.CaptureFixture
                                               ) -> None:
    args = ["--data-dir", str(small_idx_dir), "--data-root", str(tmp_path / "root"),
            "--workdir", str(tmp_path / "run"), "--no-progress", "--no-compile-cache", *argv]
    try:
        code = load_script("train").main(args)
    except SystemExit as exit_:
        code = exit_.code
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and message in err[-1] and err[-1].startswith("train.py: error: ")
    assert not (tmp_path / "run").exists()


def test_a_process_without_the_others_workdir_stops_all_at_once(dataset: Path,
                                                                 tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"  # process 1's command lacks --workdir
    cmds = [script_cmd(dataset, tmp_path, "run", "--devices", "all", "--coordinator", address,
                       "--num-processes", "2", "--process-id", str(i)) for i in range(2)]
    at = cmds[1].index("--workdir")
    del cmds[1][at:at + 2]
    codes = run_processes(cmds, device_env(2), tmp_path / "logs")
    assert codes == [2, 2], read_logs(tmp_path / "logs")
    errors = [[line for line in (tmp_path / "logs" / f"{i}.out").read_text().splitlines()
               if line.startswith("train.py:")] for i in (0, 1)]  # Gloo logs lines of its own
    assert errors == [["train.py: error: checking the flags failed in process 1 (see its error)"],
                      ["train.py: error: a run of several processes needs --workdir: the same "
                       "folder for all, on a file system they all see"]]
    assert not (tmp_path / "run").exists()


def test_a_resume_whose_folder_one_process_lacks_stops_all_at_once(dataset: Path,
                                                                   tmp_path: Path) -> None:
    (tmp_path / "run").mkdir()  # process 0's folder; process 1's (not shared, say) is missing
    address = f"127.0.0.1:{free_port()}"
    cmds = [script_cmd(dataset, tmp_path, "run" if i == 0 else "elsewhere", "--devices", "all",
                       "--coordinator", address, "--num-processes", "2", "--process-id", str(i),
                       "--resume") for i in range(2)]
    codes = run_processes(cmds, device_env(2), tmp_path / "logs")
    assert codes == [2, 2], read_logs(tmp_path / "logs")  # not process 0 left waiting for 1
    errors = [[line for line in (tmp_path / "logs" / f"{i}.out").read_text().splitlines()
               if line.startswith("train.py:")] for i in (0, 1)]  # Gloo logs lines of its own
    assert errors[0] == ["train.py: error: opening the run folder failed in process 1 (see its "
                         "error)"]
    assert errors[1] == [f"train.py: error: --resume: workdir {tmp_path / 'elsewhere'} does not "
                         "exist, so there is nothing to resume; start the run without --resume"]


def test_a_ctrl_c_in_one_process_before_training_stops_all_at_the_first_chunk(
        dataset: Path, tmp_path: Path) -> None:
    address = f"127.0.0.1:{free_port()}"
    cmds = [script_cmd(dataset, tmp_path, "run", "--devices", "all", "--coordinator", address,
                       "--num-processes", "2", "--process-id", str(i), "--epochs", "300")
            for i in range(2)]
    logs = tmp_path / "logs"
    logs.mkdir()
    procs = [subprocess.Popen(c, env=device_env(2), stdout=open(logs / f"{i}.out", "w"),
                              stderr=subprocess.STDOUT) for i, c in enumerate(cmds)]
    try:
        deadline = time.monotonic() + TIMEOUT
        while "256 train / 64 test" not in (logs / "1.out").read_text():  # data loaded: not yet
            assert time.monotonic() < deadline and procs[1].poll() is None, read_logs(logs)
            time.sleep(0.05)  # training, where process 1 alone used to stop, leaving 0 waiting
        procs[1].send_signal(signal.SIGINT)
        codes = [p.wait(timeout=TIMEOUT) for p in procs]
    finally:
        for p in procs:
            p.kill()
            p.wait()
    assert codes == [130, 130], read_logs(logs)
    last = [(logs / f"{i}.out").read_text().strip().splitlines()[-1] for i in range(2)]
    assert last[0] == last[1] and last[0].startswith("train.py: interrupted: saved step "), last
