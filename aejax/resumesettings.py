"""What a resumed run takes from its latest checkpoint's ``meta``: the config, the checkpoint
interval and keep, and the device count, each unless a flag (or argument) gives it.

``resume_meta`` reads that meta once, after settling and checking the run folder; given ``{}``
(a new run), ``checkpoint_options`` and ``resume_mesh`` return the defaults. The checks that make
resuming safe are ``aejax.resumable``'s.
"""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

import jax

from aejax import checkpoint, crosseval, oldrun, parallel, resumable, rundir, runlock
from aejax.config import Config

DEFAULT_EVERY, DEFAULT_KEEP = 0, 3  # checkpoints at epoch ends only; the latest three kept


def resume_meta(workdir: str | os.PathLike) -> dict[str, Any]:
    """The meta item of the latest checkpoint of the run in ``workdir``, read once to resume it
    (``resume_config``, ``checkpoint_options``).

    Raises ValueError when the folder is missing, in use by a live run, or has no checkpoint.
    """
    def settle_folder() -> None:  # a live run's folder: "in use", not what its files say
        if not Path(workdir).is_dir():  # in every process: one may not see the others' folder
            raise ValueError(rundir.nothing_to_resume(Path(workdir)))
        if parallel.is_main_process():
            with contextlib.ExitStack() as held:
                runlock.lock(Path(workdir), held)
                oldrun.recover(Path(workdir))  # a killed --overwrite's old run, back if none saved

    def check_folder() -> None:
        crosseval.check_workdir(Path(workdir), resume=True)
        # files but no run: not "no checkpoint: start it again without --resume", refused as well
        rundir.check_holds_run(Path(workdir), resume=True)
        rundir.check_resumable(Path(workdir))  # results kept, checkpoints deleted

    # the others read it once it is settled
    parallel.together(settle_folder, "opening the run folder")
    parallel.together(check_folder, "opening the run folder")
    return checkpoint.latest_meta(Path(workdir) / checkpoint.DIRNAME)


def resume_config(meta: dict[str, Any], given: dict[str, Any],
                  workdir: str | os.PathLike) -> Config:
    """The config to resume ``workdir`` with: its checkpoint's (``meta``, from ``resume_meta``),
    updated by ``given`` values.

    Raises ValueError when ``given`` changes more than ``resumable.RESUMABLE`` (where the data
    is read from, the number of epochs).
    """
    saved = meta["config"]
    if "data_dir" not in given:  # the run's own, from wherever it was trained
        rundir.check_data_dir_here(saved.get("data_dir"))
    cfg = Config.from_dict({**saved, **given})
    resumable.check_config(saved, cfg, Path(workdir) / checkpoint.DIRNAME)
    return cfg


def checkpoint_options(meta: dict[str, Any], every: int | None,
                       keep: int | None) -> tuple[int, int]:
    """``--checkpoint-every`` and ``--keep``: as given, else the run's own from its latest
    checkpoint's ``meta`` (to resume it; ``{}`` for a new run), else the defaults (0: epoch ends
    only; 3)."""
    every = every if every is not None else int(meta.get("checkpoint_every", DEFAULT_EVERY))
    return every, keep if keep is not None else int(meta.get("keep", DEFAULT_KEEP))


def resume_mesh(meta: dict[str, Any], devices: int | str | None) -> jax.sharding.Mesh | None:
    """The mesh of ``--devices``: as given, else as many devices as the run to resume trained on
    (its latest checkpoint's ``meta``; ``{}`` for a new run: one)."""
    if devices is not None:
        return parallel.make_mesh(devices)
    own = int(meta.get("devices", 1))
    try:
        return parallel.make_mesh(own)
    except ValueError as err:
        raise ValueError(f"the run trained on {own} devices, and resumes on as many: {err}; "
                         "or give --devices to resume on another count") from None
