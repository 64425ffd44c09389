"""Tests for aejax.flags: the scripts' flags, parsed into a Config and its parts."""

from __future__ import annotations

import argparse
import logging

import pytest

from aejax import flags, registry
from aejax.parts import Parts


def test_given_config_holds_only_the_flags_on_the_command_line() -> None:
    parser = flags.OneLineParser()
    flags.add_config_flags(parser)
    given = flags.given_config(parser, ["--hidden", "128,50", "--epochs", "7", "--seed", "0"])
    assert given == {"hidden": (128, 50), "epochs": 7, "seed": 0}
    assert flags.given_config(parser, []) == {}


def test_flags_that_custom_parts_replace_are_warned_about(caplog) -> None:
    import flax.linen as nn

    class Model(nn.Module):
        features: int = 784

    with caplog.at_level(logging.WARNING, logger="aejax.flags"):
        flags.warn_unused({"hidden": (64, 16), "epochs": 2}, Parts(model=Model()))
        flags.warn_unused({"hidden": (64, 16)}, Parts())  # the original model: it is used
    assert caplog.messages == ["--hidden changes nothing here: the custom parts replace what it "
                               "sets"]


def test_devices_help_says_n_counts_every_process_devices() -> None:
    parser = argparse.ArgumentParser()
    flags.add_parallel_flags(parser)
    (action,) = [a for a in parser._actions if "--devices" in a.option_strings]
    # parallel.select_devices takes N in all, N/P from each of P processes, not N per process
    assert "local" not in action.help
    assert "N devices in all" in action.help and "N/P of each" in action.help


def test_every_dataset_is_a_choice_and_other_names_are_refused_as_parsed(capsys) -> None:
    parser = flags.OneLineParser(prog="p")
    flags.add_config_flags(parser)
    for name in registry.DATASETS:
        assert parser.parse_args(["--dataset", name]).dataset == name
    for flag, value in (("--train-occlusion", "some"), ("--init-scheme", "xavier"),
                        ("--occlusion-orientation", "diagonal")):
        with pytest.raises(SystemExit):  # argparse's error names the flag and its choices
            parser.parse_args([flag, value])
        assert f"p: error: argument {flag}: invalid choice: '{value}'" in capsys.readouterr().err
