"""Command-line flags: one per config field, typed and checked as argparse parses them."""

from __future__ import annotations

import argparse
import dataclasses
import logging
from collections.abc import Sequence
from typing import Any, NoReturn

from aejax.config import ORIENTATIONS, TRAIN_OCCLUSIONS, Config
from aejax.parallel import parse_devices
from aejax.parts import Parts
from aejax.parts import load as load_parts

CHOICES: dict[str, Sequence[str]] = {
    "dataset": ("mnist", "fashion_mnist", "kmnist"),
    "train_occlusion": TRAIN_OCCLUSIONS,
    "occlusion_orientation": ORIENTATIONS,
    "init_scheme": ("torch", "flax"),
}
HELP: dict[str, str] = {
    "dataset": "dataset name",
    "data_dir": "a folder holding the four MNIST-format IDX files (.gz or not); without it the "
                "dataset is read from --data-root, or downloaded there",
    "data_root": "the data folder: downloads and decoded cache",
    "hidden": "encoder widths, comma-separated; the decoder mirrors them",
    "init_scheme": "parameter initialisation: torch (the original's) or flax",
    "train_occlusion": "none: clean inputs (the original); all: occluded inputs; "
                       "mixed: each input occluded with probability 0.5",
    "eval_seed": "seed of the fixed test-set occlusion",
    "epochs": "passes over the training set",
    "batch_size": "images per training step",
    "learning_rate": "Adam's learning rate",
    "seed": "seed of the initialisation, the batch order and the training occlusions",
    "occlusion_width": "bar width in pixels",
    "occlusion_value": "the bars' pixel value (1.0: white, as in the original)",
    "occlusion_low": "lowest row or column a bar starts at",
    "occlusion_high": "highest row or column a bar starts at (inclusive)",
    "occlusion_orientation": "alternate: rows for even images, columns for odd (the original); "
                             "horizontal; vertical; random",
    "occlusion_bars": "bars per image, drawn independently (1..1000)",
}


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose errors are a single line on stderr."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message}\n")


def int_list(text: str) -> tuple[int, ...]:
    """Parse '128,50' into (128, 50); the values are checked where they are used (``Config``)."""
    try:
        return tuple(int(t) for t in text.split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, got {text!r}")


def nonempty(text: str) -> str:
    """An argparse type: any text but an empty one (``--data-dir ''`` would silently mean none)."""
    if not text:
        raise argparse.ArgumentTypeError("expected a value, got an empty string; leave the flag "
                                         "out for its default")
    return text


def positive_int(text: str) -> int:
    """An argparse type: an integer >= 1."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {text!r}")
    return value


def positive_int_list(text: str) -> tuple[int, ...]:
    """An argparse type: '32,256' into (32, 256), every value >= 1."""
    values = int_list(text)
    if min(values) < 1:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated positive integers, got {text!r}")
    return values


def add_config_flags(parser: argparse.ArgumentParser, only: Sequence[str] | None = None, *,
                     default: str | None = None) -> None:
    """Add ``--field-name`` for every Config field (or those in ``only``), typed by its default.

    With ``default`` (its help text), the flags default to None: left out, the field is another
    config's (a run's own, for evaluate.py).
    """
    for field in dataclasses.fields(Config):
        if only is not None and field.name not in only:
            continue
        value = field.default
        kwargs: dict[str, Any] = {"default": value, "help": HELP.get(field.name, "")}
        if field.name in CHOICES:
            kwargs["choices"] = CHOICES[field.name]
        if isinstance(value, tuple):
            kwargs["type"] = int_list
            kwargs["default"] = ",".join(map(str, value))
        elif value is None or isinstance(value, str):
            kwargs["type"] = nonempty
        else:
            kwargs["type"] = type(value)
        if default is not None:
            kwargs["default"] = None
            kwargs["help"] = f"{kwargs['help']} (default: {default})".lstrip()
        elif value is not None:
            kwargs["help"] = f"{kwargs['help']} (default: {kwargs['default']})".lstrip()
        parser.add_argument("--" + field.name.replace("_", "-"), **kwargs)


def devices_flag(text: str) -> int | str:
    """``--devices``: a positive count or ``all``."""
    try:
        return parse_devices(text)
    except ValueError as err:
        raise argparse.ArgumentTypeError(str(err))


def add_parallel_flags(parser: argparse.ArgumentParser) -> None:
    """``--devices`` and the multi-process flags (``aejax.parallel``, ``aejax.multihost``)."""
    parser.add_argument("--devices", type=devices_flag, metavar="N|all",
                        help="shard each global batch over N devices in all (with P processes, "
                             "the first N/P of each), or over every device of every process "
                             "(default: 1; with --resume, as many as the run trained on)")
    parser.add_argument("--coordinator", metavar="HOST:PORT",
                        help="multi-process run: process 0's address (with --num-processes and "
                             "--process-id; SLURM/Open MPI launches are detected without them)")
    parser.add_argument("--num-processes", type=int, help="multi-process run: process count")
    parser.add_argument("--process-id", type=int, help="multi-process run: this process's index")


def config_from_args(args: argparse.Namespace) -> Config:
    """The Config the parsed flags describe (ValueError for impossible values)."""
    return Config(**{f.name: getattr(args, f.name) for f in dataclasses.fields(Config)})


def add_parts_flag(parser: argparse.ArgumentParser, doing: str) -> None:
    """``--parts MODULE:NAME``: custom parts (``aejax.parts.load``) for ``doing``."""
    parser.add_argument("--parts", metavar="MODULE:NAME", type=nonempty,
                        help=f"{doing} with custom parts: NAME = Parts(model=..., loss=..., "
                             "occlude=...) in MODULE, imported with the current folder on the "
                             "path (e.g. myparts:PARTS for ./myparts.py)")


def parts_from_args(args: argparse.Namespace) -> Parts:
    """The parts ``--parts`` names (``aejax.parts.load``); the original's without it."""
    return load_parts(args.parts) if args.parts else Parts()


def add_checkpoint_flags(parser: argparse.ArgumentParser) -> None:
    """``--resume``, ``--checkpoint-every`` and ``--keep`` (``aejax.checkpoint``)."""
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --workdir from its latest checkpoint (its "
                             "config is reused; only --epochs and the data paths may change)")
    parser.add_argument("--checkpoint-every", type=int, default=None, metavar="STEPS",
                        help="also checkpoint every STEPS steps, at the end of the chunk that "
                             "reaches them (default: 0, only at the end of every epoch; with "
                             "--resume, the run's own)")
    parser.add_argument("--keep", type=int, default=None, metavar="K",
                        help="keep the latest K checkpoints (default: 3; with --resume, the "
                             "run's own)")


def warn_unused(given: dict[str, Any], parts: Parts) -> None:
    """Warn about flags ``given`` explicitly that the custom ``parts`` replace (a custom model's
    ``--hidden``): config.json records them as ``unused_config``, but they change nothing."""
    if unused := [k for k in parts.unused() if k in given]:
        flags = ", ".join(f"--{k.replace('_', '-')}" for k in unused)
        logging.getLogger(__name__).warning(
            "%s changes nothing here: the custom parts replace what it sets", flags)


def given_config(parser: argparse.ArgumentParser, argv: list[str] | None) -> dict[str, Any]:
    """The config fields that ``argv`` sets explicitly (those left at their defaults are absent)."""
    names = [f.name for f in dataclasses.fields(Config)]
    unset = object()  # argparse only fills in defaults for attributes the namespace lacks
    probe = parser.parse_args(argv, argparse.Namespace(**dict.fromkeys(names, unset)))
    return {name: getattr(probe, name) for name in names if getattr(probe, name) is not unset}
