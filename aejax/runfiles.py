"""What a run writes into its folder: the files, whether it saved anything, and deleting it."""

from __future__ import annotations

import contextlib
import shutil
from pathlib import Path

from aejax import checkpoint, crosseval
from aejax.jsonio import read_run_config

PARAMS_FILE = crosseval.PARAMS  # the trained parameters (aejax.paramsfile)
RUN_FILES = ("config.json", "metrics.json", PARAMS_FILE, "train_loss.npy", "figure.png",
             "loss.png", "correlation.png", "per_class.png")  # what a run writes, checkpoints aside


def is_run(path: Path) -> bool:
    """Whether ``path`` holds a run: a config.json as ``experiment.run`` writes it."""
    try:
        read_run_config(path / "config.json")
    except (OSError, ValueError):
        return False
    return True


def saved_anything(path: Path) -> bool:
    """Whether the run in ``path`` saved a checkpoint or results (more than its config.json)."""
    return has_checkpoint(path) or any((path / name).exists() for name in RUN_FILES[1:])


def has_checkpoint(path: Path) -> bool:
    """Whether the run in ``path`` saved a checkpoint (a finished ``<step>/`` folder)."""
    return bool(checkpoint.finished_steps(path / checkpoint.DIRNAME))


def forget_results(path: Path) -> None:
    """Delete the results a resumed run's earlier session saved (metrics.json, params.msgpack)
    before its config.json is rewritten: a run stopped before the new ones are written (a Ctrl-C,
    a kill, a full disk) is then one that ``--resume`` finishes, never old scores or parameters
    under the new config, which compare.py and evaluate.py would take for the new run's."""
    for name in ("metrics.json", PARAMS_FILE):
        (path / name).unlink(missing_ok=True)


def written(path: Path) -> list[Path]:
    """What a run wrote into ``path``: its files and checkpoint folders, nothing else."""
    checkpoints = path / checkpoint.DIRNAME
    steps = sorted(checkpoints.iterdir()) if checkpoints.is_dir() else []
    return ([path / name for name in RUN_FILES if (path / name).exists()]
            + [step for step in steps  # Orbax's <step>/ folders and their unfinished twins
               if step.is_dir() and step.name.split(checkpoint.TMP_SUFFIX)[0].isdigit()])


def clear(path: Path) -> None:
    """Delete what an earlier run wrote into ``path`` (its files and checkpoints), nothing else;
    config.json last, so that a clear cut short leaves a run (that saved nothing), not files
    that no run owns."""
    config = path / RUN_FILES[0]
    for item in written(path):
        if item.is_dir():
            shutil.rmtree(item)
        elif item != config:
            item.unlink()
    with contextlib.suppress(OSError):
        (path / checkpoint.DIRNAME).rmdir()  # kept if anything else is in it
    config.unlink(missing_ok=True)
