"""Tests for aejax.multihost: the coordinator address and process flags are checked, a
coordinator that never answers is one error, and a cluster launcher's variables are read."""

from __future__ import annotations

import logging
import socket
import time

import jax
import pytest

from aejax import multihost


def test_a_coordinator_that_never_answers_is_one_error_not_an_abort(monkeypatch) -> None:
    with socket.socket() as probe:  # a port nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.setattr(multihost, "JOIN_TIMEOUT", 1)
    started = time.monotonic()
    with pytest.raises(ValueError, match=rf"--coordinator 127.0.0.1:{port}: nothing answered "
                                         r"within 1 s; start process 0 there first"):
        multihost.initialize(f"127.0.0.1:{port}", 2, 1)
    assert time.monotonic() - started < 10
    with socket.create_server(("127.0.0.1", 0)) as server:  # something listens: no wait
        multihost.wait_for(f"127.0.0.1:{server.getsockname()[1]}", 1)
    if socket.has_ipv6:
        with socket.create_server(("::1", 0), family=socket.AF_INET6) as server:
            multihost.wait_for(f"[::1]:{server.getsockname()[1]}", 1)  # JAX's form for IPv6


@pytest.mark.parametrize("address,want", [
    ("hostA:1234", ("hostA", 1234)), ("10.0.0.1:80", ("10.0.0.1", 80)),
    ("[::1]:1234", ("::1", 1234)), ("[fe80::1]:65535", ("fe80::1", 65535))])
def test_coordinator_addresses_are_host_and_port(address: str, want: tuple[str, int]) -> None:
    assert multihost.host_port(address) == want


@pytest.mark.parametrize("address", ["nohost", ":1234", "h:0", "h:65536", "h:\u00b2", "h:x"])
def test_bad_coordinator_addresses_name_the_flag(address: str) -> None:
    with pytest.raises(ValueError, match="--coordinator must be HOST:PORT with a port in"):
        multihost.host_port(address)


def test_a_cluster_launchers_variables_are_read_and_checked(monkeypatch, caplog) -> None:
    for name in multihost.SLURM_VARS:
        monkeypatch.setenv(name, "0")
    monkeypatch.delenv("OMPI_MCA_orte_hnp_uri", raising=False)
    for tasks, several in (("1", False), ("2", True)):
        monkeypatch.setenv("SLURM_NTASKS", tasks)
        assert multihost.launched_as_several_processes() is several
    for bad in ("abc", "\u00b2"):  # a superscript two is a digit to str.isdigit, not to int
        monkeypatch.setenv("SLURM_NTASKS", bad)
        with pytest.raises(ValueError, match=rf"SLURM_NTASKS must be a number of tasks, got "
                                             rf"'{bad}'"):
            multihost.launched_as_several_processes()
    monkeypatch.setenv("SLURM_NTASKS", "2")
    joined = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda **kw: joined.append(kw))
    monkeypatch.setattr(jax, "process_count", lambda: 2)
    with caplog.at_level(logging.INFO, logger="aejax.multihost"):
        assert multihost.initialize() is True
    assert joined == [{"initialization_timeout": multihost.JOIN_TIMEOUT}]
    assert "joining the processes a cluster launcher started" in caplog.text


def test_only_a_whole_launch_counts_as_several_processes(monkeypatch) -> None:
    for name in multihost.SLURM_VARS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("OMPI_MCA_orte_hnp_uri", raising=False)
    assert multihost.launched_as_several_processes() is False
    assert multihost.initialize() is False  # a single process: nothing to join
    # an sbatch script's own shell has a job and a task count, but srun has not started tasks
    monkeypatch.setenv("SLURM_JOB_ID", "7")
    monkeypatch.setenv("SLURM_NTASKS", "4")
    assert multihost.launched_as_several_processes() is False
    monkeypatch.setenv("OMPI_MCA_orte_hnp_uri", "1234.0;tcp://10.0.0.1:5000")  # under mpirun
    assert multihost.launched_as_several_processes() is True


def test_the_flags_join_process_0_at_once_and_the_others_once_it_answers(monkeypatch) -> None:
    joined, waited = [], []
    monkeypatch.setattr(jax.distributed, "initialize",
                        lambda *args, **kw: joined.append((args, kw)))
    monkeypatch.setattr(multihost, "wait_for", lambda *args: waited.append(args))
    assert multihost.initialize("hostA:1234", 3, 0) is True
    assert waited == []  # process 0 starts the coordinator itself: nothing to wait for
    assert multihost.initialize("hostA:1234", 3, 2) is True
    assert waited == [("hostA:1234", multihost.JOIN_TIMEOUT)]
    assert joined == [(("hostA:1234", 3, pid), {"initialization_timeout": multihost.JOIN_TIMEOUT})
                      for pid in (0, 2)]


def test_waiting_for_the_coordinator_retries_until_the_timeout(monkeypatch) -> None:
    now, tries = [100.0], []

    def refused(address, timeout):
        tries.append(now[0])
        raise ConnectionRefusedError(111, "Connection refused")

    monkeypatch.setattr(multihost.time, "monotonic", lambda: now[0])
    monkeypatch.setattr(multihost.time, "sleep", lambda s: now.__setitem__(0, now[0] + s))
    monkeypatch.setattr(multihost.socket, "create_connection", refused)
    with pytest.raises(ValueError, match="nothing answered within 1 s"):
        multihost.wait_for("hostA:1234", 1)
    assert tries == [100.0, 100.5, 101.0]  # every half second, until a second has passed
    tries.clear()
    answers = iter([ConnectionRefusedError(111, "refused"), None])

    def late(address, timeout):  # process 0 starts listening a moment after this one asks
        tries.append(address)
        if error := next(answers):
            raise error
        return socket.socket()

    monkeypatch.setattr(multihost.socket, "create_connection", late)
    multihost.wait_for("hostA:1234", 60)
    assert tries == [("hostA", 1234)] * 2


def test_a_process_id_outside_the_count_is_refused_before_joining(monkeypatch) -> None:
    joined = []
    monkeypatch.setattr(jax.distributed, "initialize", lambda *args, **kw: joined.append(args))
    monkeypatch.setattr(multihost, "wait_for", lambda *args: joined.append(args))
    for pid in (2, -1):  # not a wait of JOIN_TIMEOUT for a coordinator that never counts it
        with pytest.raises(ValueError, match=rf"^--process-id must be in 0..1 \(--num-processes "
                                             rf"2\), got {pid}$"):
            multihost.initialize("hostA:1234", 2, pid)
    assert joined == []
    assert multihost.initialize("hostA:1234", 2, 1) is True  # the last one
