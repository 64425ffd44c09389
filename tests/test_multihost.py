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
