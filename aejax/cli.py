"""What every script's main shares: errors as one line, never a traceback; logs; the run folder."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import traceback
from collections.abc import Callable, Iterator
from typing import Any

import jax

from aejax.flags import config_from_args
from aejax.parallel import together

LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


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
