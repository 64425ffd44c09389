"""Joining a multi-host run through ``jax.distributed``, before anything touches a device.

The processes are named by the ``--coordinator``, ``--num-processes`` and ``--process-id`` flags,
or by a cluster launcher's variables (SLURM's srun, Open MPI's mpirun). Once joined, every process
runs the same program; the mesh over all their devices, and placement on it, are
``aejax.parallel``'s.
"""

from __future__ import annotations

import logging
import os
import socket
import time

import jax

log = logging.getLogger(__name__)
JOIN_TIMEOUT = 300  # seconds a process waits for the others to join (JAX's default)
SLURM_VARS = ("SLURM_JOB_ID", "SLURM_STEP_NODELIST", "SLURM_NTASKS", "SLURM_PROCID",
              "SLURM_LOCALID")


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
