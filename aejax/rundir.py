"""A run's folder: its default name, the checks before anything is written there, the claim on it
(a lock) and undoing a run that saved nothing (what a run writes: ``aejax.runfiles``;
``--overwrite``: ``aejax.oldrun``)."""

from __future__ import annotations

import contextlib
import logging
import os
import time
from pathlib import Path

from aejax import checkpoint, crosseval, runlock
from aejax.config import Config
from aejax.jsonio import read_run_config
from aejax.oldrun import REPLACED, recover
from aejax.parts import spec_in
from aejax.runfiles import PARAMS_FILE, clear, has_checkpoint, is_run, saved_anything

RUNS = "runs"  # where runs go without --workdir

log = logging.getLogger(__name__)


def prepare(workdir: str | os.PathLike, *, overwrite: bool = False, resume: bool = False
            ) -> Path:
    """Create the run folder; refuse a file, a folder of other files (``check_holds_run``), or
    an existing run without ``resume``/``overwrite``.

    ``resume`` needs the folder of an earlier run. A run that stopped before it saved anything
    (no checkpoint, no results: it failed or was interrupted early) may be started again in
    place. With ``overwrite`` nothing is touched yet: ``experiment.run`` sets the old run aside
    (``oldrun.replace``) only once the new one's data has been checked.
    """
    path = Path(workdir)
    if path.exists() and not path.is_dir():
        raise ValueError(f"workdir {path} is a file, not a folder; choose another --workdir")
    if resume and overwrite:
        raise ValueError("--resume continues the run in --workdir and --overwrite replaces it; "
                         "choose one")
    if resume and not path.is_dir():
        raise ValueError(nothing_to_resume(path))
    if not overwrite:
        crosseval.check_workdir(path, resume=resume)
    check_holds_run(path, overwrite=overwrite, resume=resume)
    checkpoints = path / checkpoint.DIRNAME
    if checkpoints.exists() and not checkpoints.is_dir():  # Orbax would time out, then hang
        raise ValueError(f"workdir {path} holds a file named {checkpoints.name}, where train.py "
                         "keeps its checkpoint folders: move or delete it, or choose another "
                         "--workdir")
    if not (resume or overwrite) and saved_anything(path):
        raise ValueError(f"workdir {path} already holds a run; pass --resume to continue it, "
                         "--overwrite to replace it, or choose another --workdir")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"workdir {path} is not writable ({err.strerror})") from None
    return path


def default_workdir(cfg: Config, root: str = RUNS) -> str:
    """Create and return ``runs/<dataset>-<train occlusion>-s<seed>-<timestamp>``, or the first
    free one of ``...-2``, ``...-3`` (runs started in the same second, e.g. a parallel sweep);
    created at once, so that no other process can take the same one."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    name = f"{root}/{cfg.dataset}-{cfg.train_occlusion}-s{cfg.seed}-{stamp}"
    n = 1
    while True:
        candidate = name if n == 1 else f"{name}-{n}"
        try:
            os.mkdir(candidate)
            return candidate
        except FileExistsError:
            n += 1
        except FileNotFoundError:  # no runs/ yet, or another train.py removed an empty one
            os.makedirs(root, exist_ok=True)


def claim(path: Path, held: contextlib.ExitStack, *, overwrite: bool, resume: bool) -> None:
    """Lock the run folder until ``held`` closes (first: a live run's folder is "in use",
    whatever it holds), settle what a killed ``--overwrite`` left there, then ``prepare`` it.

    A folder that is new or empty once locked is left as it was if the run ends (fails, or is
    interrupted) before it saves anything: what it wrote is removed, and the folders it made,
    while the lock is still held, so that no other run's files can be touched."""
    made = [p for p in [path, *path.parents] if not p.exists()]  # the outermost last
    if made and not resume:  # created, then locked, before anything is written into it
        with contextlib.suppress(OSError):  # a file in the way, no permission: prepare says so
            path.mkdir(parents=True, exist_ok=True)
    if path.is_dir():
        runlock.lock(path, held)
        recover(path)
    try:
        prepare(path, overwrite=overwrite, resume=resume)
    except BaseException:  # refused: the folders it made go again (still empty, still locked)
        remove_empty(made)
        raise
    if not any(path.iterdir()):  # closed before the lock: runs first
        held.callback(abandon, path, made)


def abandon(path: Path, made: list[Path]) -> None:
    """Undo a run that saved nothing in ``path`` (``claim``): delete what it wrote, then the
    folders in ``made`` (innermost first) that are empty. A run that saved anything is kept."""
    if not path.is_dir() or saved_anything(path):
        return
    try:
        clear(path)
    except OSError as err:  # what is left is a run that saved nothing: the next run reuses it
        log.warning("could not remove what the run wrote in %s (%s)", path, err)
        return
    remove_empty(made)


def remove_empty(folders: list[Path]) -> None:
    """Remove ``folders`` (innermost first) while they are empty."""
    for folder in folders:
        try:
            folder.rmdir()
        except OSError:  # not empty (something else is there now), or gone
            return


def check_holds_run(path: Path, *, overwrite: bool = False, resume: bool = False) -> None:
    """ValueError if folder ``path`` holds files but no run: a run is a config.json as train.py
    writes it or a checkpoint, which ``resume`` reads without it and ``overwrite`` sets aside with
    the rest of what a run wrote (a plain run's "already holds a run" offers both). File names
    alone (a figure.png, a metrics.json) are no run."""
    if not path.is_dir() or not any(path.iterdir()) or is_run(path) or has_checkpoint(path):
        return
    flag = ("--overwrite replaces a run, but " if overwrite else
            "--resume continues a run, but " if resume else "")
    raise ValueError(f"{flag}workdir {path} holds other files (no config.json written by "
                     "train.py); choose another --workdir")


def check_resumable(path: Path) -> None:
    """ValueError if the run in ``path`` saved results but has no checkpoint left (deleted since):
    ``--resume`` has nothing to start from, and its usual advice, to start again without it, would
    find a run there."""
    if has_checkpoint(path) or not saved_anything(path):
        return
    again = (f"evaluate.py --workdir {path} evaluates its parameters again; "
             if (path / PARAMS_FILE).is_file() else "")
    raise ValueError(f"--resume: the run in {path} has no checkpoint left (deleted after it "
                     f"saved its results), so nothing to resume from: {again}train.py --workdir "
                     f"{path} --overwrite trains it again")


def finish_hint(path: Path) -> str:
    """What finishes the run in ``path``, which has a config.json but no metrics.json (and is not
    training now), for the messages that find it unfinished."""
    params, checkpointed = (path / PARAMS_FILE).is_file(), has_checkpoint(path)
    if not (params or checkpointed):
        if (path / REPLACED).is_dir():  # only a train.py on the folder puts it back (recover)
            return (f"; a killed --overwrite stopped before it saved anything, the run it "
                    f"replaces set aside in {path / REPLACED}: train.py --workdir {path} "
                    "--overwrite trains it again (any train.py on the folder first puts that "
                    "run back)")
        if saved_anything(path):  # its figures or losses, the parameters deleted since
            return (f"; its parameters and checkpoints are gone: train it again, train.py "
                    f"--workdir {path} --overwrite")
        return f"; it stopped before it saved anything: train it again, train.py --workdir {path}"
    try:
        info = read_run_config(path / "config.json")
    except ValueError:
        info = {}
    custom = isinstance(info.get("parts"), dict) and any(info["parts"].values())
    parts = f" --parts {spec_in(info)}" if custom else ""
    if not checkpointed:  # checkpoints deleted: --resume has nothing to resume from
        return f"; its evaluation did not finish: evaluate.py --workdir {path}{parts} finishes it"
    done = ("its evaluation did not finish" if params else "its training stopped before the end")
    return f"; {done}: train.py --workdir {path} --resume{parts} finishes it"


def nothing_to_resume(path: Path) -> str:
    """The error for ``--resume`` with a workdir that does not exist (or is a file)."""
    if path.exists():
        return f"--resume: workdir {path} is a file, not a run folder; give the run's folder"
    return (f"--resume: workdir {path} does not exist, so there is nothing to resume; start the "
            "run without --resume")


def check_data_dir_here(data_dir: str | None) -> None:
    """ValueError when a run's own relative ``--data-dir`` (to resume or evaluate it from another
    folder than it was trained in, without a new ``--data-dir``) is not found from here."""
    if data_dir and not Path(data_dir).is_absolute() and not Path(data_dir).exists():
        raise ValueError(f"the run was trained with --data-dir {data_dir}, relative to the folder "
                         f"it was trained in, and there is no {data_dir} here ({Path.cwd()}): the "
                         "run was trained in another folder, or its data has moved since; pass "
                         "--data-dir with the folder of its IDX files")
