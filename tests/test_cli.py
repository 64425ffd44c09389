"""Tests for aejax.cli: what every script's main shows on stderr, and the run folder it picks."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from aejax import cli, flags

ROOT = Path(__file__).resolve().parents[1]

SCRIPT = """
import logging
import orbax.checkpoint  # logs through absl, which sets up the root logger at WARNING
from aejax import cli
cli.run_main(lambda: logging.getLogger("aejax.data").info("60000 train images") or 0, "p")
"""


def test_info_lines_are_shown_even_after_orbax_set_up_logging() -> None:
    done = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stderr.splitlines() == ["INFO aejax.data: 60000 train images"]


def test_the_summary_line_puts_each_number_after_its_name() -> None:
    m = {"train": {"final_loss": 0.1, "steps_per_second": 500.0}, "total_seconds": 12.5,
         "test": {"clean": {"mse": 0.2}, "occluded_input": {"mse": 0.3}, "occluded": {"mse": 0.4}}}
    assert cli.summary_line("runs/a", m) == (
        "runs/a: train loss 0.10000 | test MSE clean 0.20000, occluded input 0.30000, "
        "reconstructed 0.40000 | 500 steps/s, 12.5 s")


def test_a_reserved_run_folder_is_removed_when_the_run_leaves_it_empty(
        tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    parser = flags.OneLineParser()
    flags.add_config_flags(parser)
    parser.add_argument("--workdir")
    with cli.run_folder(parser.parse_args(["--seed", "3"])) as refused:
        assert Path(refused).is_dir() and refused.startswith("runs/mnist-none-s3-")
    assert not Path("runs").exists()  # as if never made, runs/ included
    with cli.run_folder(parser.parse_args([])) as trained:
        (Path(trained) / "config.json").write_text("{}")
    assert Path(trained).is_dir()
    with cli.run_folder(parser.parse_args(["--workdir", "mine"])) as given:
        assert given == "mine" and not Path("mine").exists()  # train.py creates it
    monkeypatch.setattr(cli.jax, "process_count", lambda: 2)
    monkeypatch.setattr(cli, "together", lambda fn, what: fn())  # one real process: no collective
    with pytest.raises(ValueError, match="a run of several processes needs --workdir"):
        with cli.run_folder(parser.parse_args([])):
            pass


def test_a_failed_host_allocation_is_one_line_saying_what_to_lower(capsys) -> None:
    def allocate(message: str) -> int:
        raise MemoryError(message)

    huge = "Unable to allocate 8.0 TiB"
    assert cli.run_main(lambda: allocate(huge), "p", oom_hint="lower N") == 2
    assert capsys.readouterr().err == ("p: error: out of memory (Unable to allocate 8.0 TiB); "
                                       "lower N\n")
    assert cli.run_main(lambda: allocate(""), "p", oom_hint="lower N") == 2  # bytearray's: none
    assert capsys.readouterr().err == ("p: error: out of memory (a host allocation failed); "
                                       "lower N\n")
