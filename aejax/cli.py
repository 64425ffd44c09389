"""Command-line parsing: one flag per config field, and errors as one line, never a traceback."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any, NoReturn

import jax

from aejax.config import ORIENTATIONS, TRAIN_OCCLUSIONS, Config
from aejax.parallel import parse_devices, together
from aejax.parts import Parts
from aejax.parts import load as load_parts

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
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
    """``--devices`` and the multi-process flags (``aejax.parallel``)."""
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
    values = {f.name: getattr(args, f.name) for f in dataclasses.fields(Config)}
    if isinstance(values["hidden"], str):
        values["hidden"] = int_list(values["hidden"])
    return Config(**values)


@contextlib.contextmanager
def run_folder(args: argparse.Namespace) -> Iterator[str]:
    """``--workdir``, or a new folder reserved for this run (``default_workdir``), removed again
    if the run leaves it empty. A run of several processes must be given one: each would pick
    its own; checked in every process together, as one may lack it alone."""

    def need_workdir() -> None:
        if not args.workdir and jax.process_count() > 1:
            raise ValueError("a run of several processes needs --workdir: the same folder for "
                             "all, on a file system they all see")

    together(need_workdir, "checking the flags")
    if args.workdir:
        yield args.workdir
        return
    from aejax import rundir  # with Orbax: only train.py needs it, not compare.py's start-up

    made_root = not os.path.isdir(rundir.RUNS)
    path = rundir.default_workdir(config_from_args(args))
    try:
        yield path
    finally:
        for folder in [path, rundir.RUNS] if made_root else [path]:
            with contextlib.suppress(OSError):  # only if empty: the run left nothing there
                os.rmdir(folder)


def summary_line(workdir: str, m: dict[str, Any]) -> str:
    """train.py's last line: the run's folder, losses, test MSEs and speed (``m``: its metrics)."""
    test = m["test"]
    return (f"{workdir}: train loss {m['train']['final_loss']:.5f} | test MSE clean "
            f"{test['clean']['mse']:.5f}, occluded input {test['occluded_input']['mse']:.5f}, "
            f"reconstructed {test['occluded']['mse']:.5f} | "
            f"{m['train']['steps_per_second']:.0f} steps/s, {m['total_seconds']:.1f} s")


def backend_problem() -> str | None:
    """Why JAX cannot start its backend (say ``JAX_PLATFORMS=cuda`` without a GPU), else None."""
    try:
        jax.devices()
    except (AssertionError, RuntimeError) as err:  # jax 0.10 raises a bare AssertionError
        detail = str(err).strip().splitlines()
        reason = f" ({detail[0]})" if detail else ""
        return (f"JAX cannot start the platform {jax.config.jax_platforms!r}{reason}: for a GPU "
                "install jax[cuda12] on a machine with one, or choose another platform "
                "(JAX_PLATFORMS, or bench.py's --device)")
    return None


def out_of_memory(message: str) -> bool:
    """Whether a JAX runtime error says that an allocation failed."""
    return "RESOURCE_EXHAUSTED" in message or "out of memory" in message.lower()


def show_info_logs() -> None:
    """Log INFO and above to stderr as ``LEVEL logger: message``.

    ``logging.basicConfig(level=INFO)`` alone is not enough: importing Orbax logs through absl,
    which has already called ``basicConfig()`` (a stderr handler, the root at WARNING).
    """
    logging.basicConfig(format=LOG_FORMAT)  # nothing, if the root has a handler already
    root = logging.getLogger()
    root.setLevel(logging.INFO)
    for handler in root.handlers:
        if type(handler) is logging.StreamHandler:  # basicConfig's, ours or absl's
            handler.setFormatter(logging.Formatter(LOG_FORMAT))


def run_main(main: Callable[[], int], prog: str, *,
             oom_hint: str = "lower --batch-size, --hidden or --occlusion-bars") -> int:
    """Run ``main``, turning expected failures into one line on stderr and exit code 2;
    ``oom_hint`` ends the line for an allocation that failed (what the script's user can lower)."""
    show_info_logs()
    logging.getLogger("jax").setLevel(logging.WARNING)  # hide "Unable to initialize backend"
    try:
        return main()
    except KeyboardInterrupt:
        print(f"{prog}: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the output piped into a reader that has stopped (`| head`)
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # no error at exit
        return 141  # as a shell reports a process killed by SIGPIPE
    except MemoryError as err:  # a host (NumPy) allocation, e.g. bench.py --num-images 10**12
        if os.environ.get("AEJAX_DEBUG"):
            traceback.print_exc()
        reason = str(err)[:160] or "a host allocation failed"
        print(f"{prog}: error: out of memory ({reason}); {oom_hint}", file=sys.stderr)
        return 2
    except (ValueError, OSError) as err:
        if os.environ.get("AEJAX_DEBUG"):  # developers: the full traceback too
            traceback.print_exc()
        print(f"{prog}: error: {err}", file=sys.stderr)
        return 2
    except (AssertionError, RuntimeError) as err:
        if os.environ.get("AEJAX_DEBUG"):
            raise
        if isinstance(err, jax.errors.JaxRuntimeError) and out_of_memory(str(err)):
            print(f"{prog}: error: out of memory ({str(err).splitlines()[0][:160]}); {oom_hint}",
                  file=sys.stderr)
            return 2
        problem = backend_problem()  # only a backend that cannot start is the user's to fix
        if problem is None:
            raise
        print(f"{prog}: error: {problem}", file=sys.stderr)
        return 2


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
