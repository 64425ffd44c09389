"""Data parallelism with ``jax.sharding``: the device mesh, placement.

Training is data parallel over a 1-D mesh whose axis is ``"data"``. Parameters, optimizer state,
the noise key and the uint8 training set are replicated on every device (MNIST's 60,000 x 784
bytes are 47 MB per device); the epoch's batch order (steps, global batch) is sharded along the
batch axis, so every device gathers its own share of each global batch from its local copy and
only gradients (and the loss) cross devices. The math is single-device training with the same
global batch, up to the order of floating-point sums.

Several processes (hosts) join one runtime (``aejax.multihost``): every process runs the
same program on identical host values (same seed, same data), and each fills only the devices
it owns (``jax.make_array_from_callback``), so the mesh spans every process's devices.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import AxisType, Mesh, NamedSharding, PartitionSpec

from aejax.occlusion import is_integer

T = TypeVar("T")

AXIS = "data"


def parse_devices(value: int | str) -> int | str:
    """``--devices`` value (the flag's text, or a count given from Python): ``all`` or a
    positive count; ValueError for anything else."""
    if value == "all":
        return value
    count = int(value) if isinstance(value, str) and value.isdecimal() else value
    if not is_integer(count) or count < 1:
        raise ValueError(f"--devices must be a positive number or 'all', got {value!r}")
    return int(count)


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
    own = [[d for d in everything if d.process_index == p] for p in range(procs)]
    chosen = [d for mine in own for d in mine[:per]]
    if len(chosen) < devices:  # else a smaller mesh than asked for, silently
        fewest = min(map(len, own))
        raise ValueError(f"--devices {devices} takes {per} devices of each of the {procs} "
                         f"processes, and one has only {fewest}; use --devices "
                         f"{fewest * procs} or all")
    return chosen


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


def check_same(values: dict[str, Any], what: str, fix: str) -> None:
    """ValueError in every process unless each of ``values`` (JSON-able, by name) is the same in
    all processes: a seed that differs would mix two runs silently, an epoch count or a workdir
    that differs would leave the processes waiting on each other for ever."""
    if jax.process_count() == 1:
        return
    names = sorted(values)
    mine = np.array([_digest(values[name]) for name in names], np.uint32)
    every = np.asarray(multihost_utils.process_allgather(mine)).reshape(-1, len(names))
    differ = every != every[0]
    if differ.any():
        proc = int(np.flatnonzero(differ.any(axis=1))[0])
        which = ", ".join(name for name, d in zip(names, differ[proc]) if d)
        raise ValueError(f"{what} differ between process 0 and process {proc} ({which}); {fix}")


def _digest(value: Any) -> int:
    text = json.dumps(value, sort_keys=True, default=str).encode()
    return int.from_bytes(hashlib.sha256(text).digest()[:4], "little")


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
