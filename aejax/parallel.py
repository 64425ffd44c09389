"""Data parallelism with ``jax.sharding``: joining a multi-host run, the device mesh, placement.

Training is data parallel over a 1-D mesh whose axis is ``"data"``. Parameters, optimizer state,
the noise key and the uint8 training set are replicated on every device (MNIST's 60,000 x 784
bytes are 47 MB per device); the epoch's batch order (steps, global batch) is sharded along the
batch axis, so every device gathers its own share of each global batch from its local copy and
only gradients (and the loss) cross devices. The math is single-device training with the same
global batch, up to the order of floating-point sums.

Several processes (hosts) join one runtime through ``jax.distributed``: every process runs the
same program on identical host values (same seed, same data), and each fills only the devices
it owns (``jax.make_array_from_callback``), so the mesh spans every process's devices.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

T = TypeVar("T")

log = logging.getLogger(__name__)
AXIS = "data"
JOIN_TIMEOUT = 300  # seconds a process waits for the others to join (JAX's default)
SLURM_VARS = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID",
              "SLURM_LOCALID")


def parse_devices(value: int | str) -> int | str:
    """``--devices`` value (the flag's text, or a count given from Python): ``all`` or a
    positive count; ValueError for anything else."""
    if value == "all":
        return value
    count = int(value) if isinstance(value, str) and value.isdigit() else value
    if not isinstance(count, (int, np.integer)) or isinstance(count, bool) or count < 1:
        raise ValueError(f"--devices must be a positive number or 'all', got {value!r}")
    return int(count)


def launched_as_several_processes() -> bool:
    """Whether a cluster launcher (SLURM's srun, Open MPI's mpirun) started several processes."""
    env = os.environ
    slurm = all(v in env for v in SLURM_VARS)
    if slurm and not (env["SLURM_NTASKS"].isascii() and env["SLURM_NTASKS"].strip().isdigit()):
        raise ValueError(f"SLURM_NTASKS must be a number of tasks, got {env['SLURM_NTASKS']!r} "
                         "(run under srun, or unset the SLURM_* variables)")
    return (slurm and int(env["SLURM_NTASKS"]) > 1) or "OMPI_MCA_orte_hnp_uri" in env


def initialize(coordinator: str | None = None, num_processes: int | None = None,
               process_id: int | None = None) -> bool:
    """Join a multi-process run when the flags or a cluster launcher ask for one.

    Must run before anything touches a JAX device. Returns whether ``jax.distributed`` started.

    Args:
      coordinator: ``HOST:PORT`` of process 0's coordinator service.
      num_processes: how many processes take part.
      process_id: this process's index, 0 .. num_processes - 1.
    """
    given = (coordinator, num_processes, process_id)
    if any(v is not None for v in given):
        if any(v is None for v in given):
            raise ValueError("--coordinator, --num-processes and --process-id go together: "
                             "give all three, or none (a cluster launcher's variables are used)")
        check_processes(coordinator, num_processes, process_id)
        log.info("process %d of %d: joining through %s (waiting up to %d s for the others)",
                 process_id, num_processes, coordinator, JOIN_TIMEOUT)
        if process_id != 0:  # JAX aborts the process (a C++ stack trace) when nobody answers
            wait_for(coordinator, JOIN_TIMEOUT)
        jax.distributed.initialize(coordinator, num_processes, process_id,
                                   initialization_timeout=JOIN_TIMEOUT)
    elif launched_as_several_processes():
        log.info("joining the processes a cluster launcher started (its variables name them; "
                 "waiting up to %d s for the others)", JOIN_TIMEOUT)
        jax.distributed.initialize(initialization_timeout=JOIN_TIMEOUT)  # reads the variables
    else:
        return False
    log.info("process %d of %d: %d local / %d global devices", jax.process_index(),
             jax.process_count(), jax.local_device_count(), jax.device_count())
    return True


def check_processes(coordinator: str, num_processes: int, process_id: int) -> None:
    """ValueError, naming the flag, for a coordinator that is not HOST:PORT or impossible counts."""
    host_port(coordinator)
    if num_processes < 1:
        raise ValueError(f"--num-processes must be >= 1, got {num_processes}")
    if not 0 <= process_id < num_processes:
        raise ValueError(f"--process-id must be in 0..{num_processes - 1} (--num-processes "
                         f"{num_processes}), got {process_id}")


def host_port(coordinator: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[IPv6]:PORT`` too) as (host, port); ValueError naming ``--coordinator``."""
    host, _, port = coordinator.rpartition(":")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    if not host or not (port.isascii() and port.isdigit()) or not 1 <= int(port) <= 65535:
        raise ValueError(f"--coordinator must be HOST:PORT with a port in 1..65535, got "
                         f"{coordinator!r}")
    return host, int(port)


def wait_for(coordinator: str, timeout: float) -> None:
    """Wait until something listens at ``coordinator`` (HOST:PORT); ValueError after ``timeout``
    seconds."""
    address = host_port(coordinator)
    deadline = time.monotonic() + timeout
    while True:
        try:
            socket.create_connection(address, timeout=5).close()
            return
        except OSError:
            if time.monotonic() >= deadline:
                raise ValueError(f"--coordinator {coordinator}: nothing answered within "
                                 f"{timeout:g} s; start process 0 there first, or check the host "
                                 "and port") from None
            time.sleep(0.5)


def select_devices(devices: int | str) -> list[jax.Device]:
    """The devices a ``--devices`` value names: all, or the first N/P of each of P processes
    (a value as ``parse_devices`` reads it; ValueError for anything else)."""
    devices = parse_devices(devices)
    everything = jax.devices()
    if devices == "all":
        return everything
    total, procs = len(everything), jax.process_count()
    if devices > total:
        backend = jax.default_backend()
        split = ("; or split the CPU into more: XLA_FLAGS=--xla_force_host_platform_device_count="
                 f"{devices} before the script" if backend == "cpu" else "")
        raise ValueError(f"--devices {devices} asks for more devices than the {total} {backend} "
                         f"device(s) JAX sees; use --devices all or fewer{split}")
    if devices % procs:
        raise ValueError(f"--devices {devices} must be a multiple of the {procs} processes "
                         "(each process uses the same number of its devices); try --devices all")
    per = devices // procs
    return [d for p in range(procs) for d in [d for d in everything if d.process_index == p][:per]]


def make_mesh(devices: int | str = 1) -> Mesh | None:
    """The 1-D ``"data"`` mesh over ``devices``; None for a single device (the plain path)."""
    chosen = select_devices(devices)
    if len(chosen) == 1:
        return None
    return Mesh(np.array(chosen), (AXIS,), axis_types=(AxisType.Auto,))


def check_mesh(mesh: Any) -> None:
    """Raise ValueError unless ``mesh`` is a Mesh or None (a device count, from Python, ended in
    an AttributeError once training had been prepared)."""
    if mesh is not None and not isinstance(mesh, Mesh):
        raise ValueError(f"mesh must be a jax.sharding.Mesh, e.g. parallel.make_mesh({mesh!r}), "
                         f"or None for one device; got {type(mesh).__name__} {mesh!r}"[:200])


def check_batch(batch_size: int, mesh: Mesh, *, resume: bool = False,
                num_train: int | None = None) -> None:
    """Refuse a global batch that does not split evenly over the mesh's devices; to ``resume``,
    whose batch size cannot change, or when no multiple fits in ``num_train`` images, name a
    device count that divides it instead."""
    n = mesh.size
    if not batch_size % n:
        return
    problem = (f"batch size {batch_size} is not divisible by the {n} devices: each device takes "
               "an equal share of every global batch")
    near = n * max(1, round(batch_size / n))
    if num_train is not None and near > num_train:  # never more than the training set
        near = num_train // n * n
    if not resume and near:
        raise ValueError(f"{problem}; use a multiple of {n} such as {near}")
    procs = jax.process_count()
    counts = [d for d in range(n, 0, -1) if not batch_size % d and not d % procs]
    verb = "resume" if resume else "train"
    advice = (f"{verb} on a count that divides it, such as --devices {counts[0]}" if counts else
              f"no count of devices in {procs} processes divides it: {verb} with fewer processes")
    why = ("the run's batch size cannot change on --resume" if resume else
           f"the {num_train} training images are fewer than the devices")
    raise ValueError(f"{problem}; {why}: {advice}")


def replicated(mesh: Mesh) -> NamedSharding:
    """Every device holds the whole array."""
    return NamedSharding(mesh, PartitionSpec())


def batch_sharded(mesh: Mesh) -> NamedSharding:
    """A (steps, batch) order split along the batch axis: each device holds its columns."""
    return NamedSharding(mesh, PartitionSpec(None, AXIS))


def put(tree: Any, sharding: NamedSharding) -> Any:
    """Place host-identical values on ``sharding``; each process fills only its own devices."""
    return jax.tree.map(lambda x: _put(x, sharding), tree)


def _put(x: Any, sharding: NamedSharding) -> jax.Array:
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):  # keys travel as their raw bits
        return jax.random.wrap_key_data(_put(jax.random.key_data(x), sharding),
                                        impl=jax.random.key_impl(x))
    host = np.asarray(x)
    return jax.make_array_from_callback(host.shape, sharding, lambda index: host[index])


def order_spec(mesh: Mesh, steps: int, batch_size: int) -> jax.ShapeDtypeStruct:
    """The abstract, batch-sharded epoch order, for ahead-of-time lowering."""
    return jax.ShapeDtypeStruct((steps, batch_size), np.int32, sharding=batch_sharded(mesh))


def fetch(tree: Any) -> Any:
    """Host NumPy copies of arrays that may span several processes; the same in every process."""
    return jax.tree.map(_fetch, tree)


def _fetch(x: Any) -> np.ndarray:
    if isinstance(x, jax.Array) and not (x.is_fully_addressable or x.is_fully_replicated):
        return np.asarray(multihost_utils.process_allgather(x, tiled=True))
    return np.asarray(x)


def together(fn: Callable[[], T], what: str) -> T:
    """``fn()`` in every process, then a collective: if it raised in any process, every process
    raises (its own error, or one naming the process that failed), instead of the others waiting
    at their next collective until JAX's deadline kills them. ``fn`` must run no collective
    itself: a process that fails early would pair this one with it."""
    if jax.process_count() == 1:
        return fn()
    try:
        result, error = fn(), None
    except BaseException as err:  # a Ctrl-C too: re-raised below, once the others have heard
        result, error = None, err
    failed = np.flatnonzero(multihost_utils.process_allgather(np.int32(error is not None)))
    if error is not None:
        raise error
    if failed.size:
        raise ValueError(f"{what} failed in process {failed[0]} (see its error)")
    return result


def is_main_process() -> bool:
    """Process 0 alone writes files (and prints) in a multi-process run."""
    return jax.process_index() == 0


def default_device() -> jax.Device:
    """Where arrays without a placement go: ``jax.default_device``'s device (or platform) when
    one is set, else this process's first device."""
    chosen = jax.config.jax_default_device
    if isinstance(chosen, str):
        return jax.local_devices(backend=chosen)[0]
    return chosen if chosen is not None else jax.local_devices()[0]


def describe(mesh: Mesh | None) -> dict[str, Any]:
    """What a run's config.json records about the devices it trains on."""
    devices = [default_device()] if mesh is None else list(mesh.devices.flat)
    return {"backend": devices[0].platform, "mesh_devices": [str(d) for d in devices],
            "processes": jax.process_count()}
