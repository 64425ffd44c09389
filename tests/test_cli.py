"""Tests for aejax.cli: what every script's main shows on stderr."""

from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

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


def test_flags_that_custom_parts_replace_are_warned_about(caplog) -> None:
    import flax.linen as nn

    from aejax import cli
    from aejax.parts import Parts

    class Model(nn.Module):
        features: int = 784

    with caplog.at_level(logging.WARNING, logger="aejax.cli"):
        cli.warn_unused({"hidden": (64, 16), "epochs": 2}, Parts(model=Model()))
        cli.warn_unused({"hidden": (64, 16)}, Parts())  # the original model: it is used
    assert caplog.messages == ["--hidden changes nothing here: the custom parts replace what it "
                               "sets"]


def test_devices_help_says_n_counts_every_process_devices() -> None:
    import argparse

    from aejax import cli

    parser = argparse.ArgumentParser()
    cli.add_parallel_flags(parser)
    (action,) = [a for a in parser._actions if "--devices" in a.option_strings]
    # parallel.select_devices takes N in all, N/P from each of P processes, not N per process
    assert "local" not in action.help
    assert "N devices in all" in action.help and "N/P of each" in action.help


def test_the_summary_line_puts_each_number_after_its_name() -> None:
    from aejax import cli

    m = {"train": {"final_loss": 0.1, "steps_per_second": 500.0}, "total_seconds": 12.5,
         "test": {"clean": {"mse": 0.2}, "occluded_input": {"mse": 0.3}, "occluded": {"mse": 0.4}}}
    assert cli.summary_line("runs/a", m) == (
        "runs/a: train loss 0.10000 | test MSE clean 0.20000, occluded input 0.30000, "
        "reconstructed 0.40000 | 500 steps/s, 12.5 s")
