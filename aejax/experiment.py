"""One run end to end: load data, train, evaluate, and write every result into a workdir."""

from __future__ import annotations

import contextlib
import importlib
import json
import logging
import os
import shutil
import threading
import time
from pathlib import Path
from typing import Any

import flax.serialization
import jax
import numpy as np
from jax.experimental import multihost_utils

from aejax import checkpoint, data, evaluate, loop, parallel, train
from aejax.config import Config, check_data
from aejax.jsonio import read_run_config, write_json
from aejax.model import init_params
from aejax.parts import Parts

log = logging.getLogger(__name__)
PARAMS_FILE = "params.msgpack"
DEFAULT_EVERY, DEFAULT_KEEP = 0, 3  # checkpoints at epoch ends only; the latest three kept
RUN_FILES = ("config.json", "metrics.json", PARAMS_FILE, "train_loss.npy", "figure.png",
             "loss.png", "correlation.png", "per_class.png")  # what run writes, checkpoints aside


def prepare_workdir(workdir: str | os.PathLike, *, overwrite: bool = False,
                    resume: bool = False) -> Path:
    """Create the run folder; refuse a file, or an existing run without ``resume``/``overwrite``.

    ``resume`` needs the folder of an earlier run. A run that stopped before it saved anything
    (no checkpoint, no results: it failed or was interrupted early) may be started again in
    place. With ``overwrite`` nothing is deleted yet: ``run`` clears the old run
    (``clear_run``) only once the new one's data has been checked.
    """
    path = Path(workdir)
    if path.exists() and not path.is_dir():
        raise ValueError(f"workdir {path} is a file, not a folder; choose another --workdir")
    if resume and overwrite:
        raise ValueError("--resume continues the run in --workdir and --overwrite replaces it; "
                         "choose one")
    if resume and not path.is_dir():
        raise ValueError(nothing_to_resume(path))
    if path.is_dir() and any(path.iterdir()) and not resume:
        if not overwrite and saved_anything(path):
            raise ValueError(f"workdir {path} already holds a run; pass --resume to continue it, "
                             "--overwrite to replace it, or choose another --workdir")
        if not is_run(path):
            flag = "--overwrite replaces a run, but " if overwrite else ""
            raise ValueError(f"{flag}workdir {path} holds other files (no config.json written by "
                             "train.py); choose another --workdir")
    try:
        path.mkdir(parents=True, exist_ok=True)
        probe = path / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as err:
        raise ValueError(f"workdir {path} is not writable ({err.strerror})") from None
    return path


def is_run(path: Path) -> bool:
    """Whether ``path`` holds a run: a config.json as ``run`` writes it."""
    try:
        read_run_config(path / "config.json")
    except (OSError, ValueError):
        return False
    return True


def saved_anything(path: Path) -> bool:
    """Whether the run in ``path`` saved a checkpoint or results (more than its config.json)."""
    steps = path / checkpoint.DIRNAME
    has_checkpoint = steps.is_dir() and any(p.is_dir() and p.name.isdigit() for p in steps.iterdir())
    return has_checkpoint or any((path / name).exists() for name in RUN_FILES[1:])


def lock_workdir(path: Path, held: contextlib.ExitStack) -> None:
    """Hold an exclusive lock on the run folder until ``held`` closes; ValueError if another
    process holds it (a run training there). No lock where ``fcntl`` is missing (Windows)."""
    try:
        import fcntl
    except ImportError:
        return
    fd = os.open(path, os.O_RDONLY)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ValueError(f"workdir {path} is in use: another train.py is running there; wait "
                         "for it to finish, or choose another --workdir") from None
    held.callback(os.close, fd)  # closing the folder releases the lock


def clear_run(path: Path) -> None:
    """Delete what an earlier run wrote into ``path`` (its files and checkpoints), nothing else."""
    for name in RUN_FILES:
        (path / name).unlink(missing_ok=True)
    checkpoints = path / checkpoint.DIRNAME
    if checkpoints.is_dir():
        for step in checkpoints.iterdir():  # Orbax's <step>/ folders and their unfinished twins
            if step.is_dir() and step.name.split(checkpoint.TMP_SUFFIX)[0].isdigit():
                shutil.rmtree(step)
        with contextlib.suppress(OSError):
            checkpoints.rmdir()  # kept if anything else is in it


def nothing_to_resume(path: Path) -> str:
    """The error for ``--resume`` with a workdir that does not exist (or is a file)."""
    if path.exists():
        return f"--resume: workdir {path} is a file, not a run folder; give the run's folder"
    return (f"--resume: workdir {path} does not exist, so there is nothing to resume; start the "
            "run without --resume")


def resume_config(workdir: str | os.PathLike, given: dict[str, Any]) -> Config:
    """The config to resume ``workdir`` with: its checkpoint's, updated by ``given`` values.

    Raises ValueError when there is no checkpoint, or when ``given`` changes more than
    ``checkpoint.RESUMABLE`` (where the data is read from, the number of epochs).
    """
    if not Path(workdir).is_dir():
        raise ValueError(nothing_to_resume(Path(workdir)))
    if parallel.is_main_process():  # a live run's folder: "in use", not what its files say
        with contextlib.ExitStack() as held:
            lock_workdir(Path(workdir), held)
    directory = Path(workdir) / checkpoint.DIRNAME
    saved = checkpoint.latest_meta(directory)["config"]
    cfg = Config.from_dict({**saved, **given})
    checkpoint.check_config(saved, cfg, directory)
    return cfg


def checkpoint_options(workdir: str | os.PathLike | None, every: int | None,
                       keep: int | None) -> tuple[int, int]:
    """``--checkpoint-every`` and ``--keep``: as given, else (to resume ``workdir``) the run's own
    from its latest checkpoint, else the defaults (0: epoch ends only; 3)."""
    saved = {}
    if workdir is not None and (every is None or keep is None):
        saved = checkpoint.latest_meta(Path(workdir) / checkpoint.DIRNAME)
    every = every if every is not None else int(saved.get("checkpoint_every", DEFAULT_EVERY))
    return every, keep if keep is not None else int(saved.get("keep", DEFAULT_KEEP))


def save_params(params: Any, path: str | os.PathLike) -> None:
    """Write a parameter pytree as msgpack."""
    Path(path).write_bytes(flax.serialization.msgpack_serialize(jax.tree.map(np.asarray, params)))


def load_params(path: str | os.PathLike, model: Any = None) -> Any:
    """Read a parameter pytree written by ``save_params``; with ``model``, check that it fits.

    ValueError if the file is damaged, or if its shapes are not the model's (a config.json that
    does not belong to this params.msgpack).
    """
    try:
        params = flax.serialization.msgpack_restore(Path(path).read_bytes())
    except Exception as err:  # msgpack raises several types of its own on damaged bytes
        raise ValueError(f"{path} is damaged ({type(err).__name__}: {err}); restore it or "
                         "train again") from None
    if model is not None:
        want = jax.eval_shape(lambda: init_params(jax.random.key(0), model))
        if not isinstance(params, dict) or shapes(params) != shapes(want):
            what = (f"hidden={list(model.hidden)}" if hasattr(model, "hidden")
                    else type(model).__name__)
            raise ValueError(f"{path} does not fit the model of this run's config.json "
                             f"({what}): the two files do not belong together")
    return params


def shapes(tree: Any) -> Any:
    """The tree with every array replaced by its shape."""
    return jax.tree.map(np.shape, tree)


def train_metrics(history: dict[str, Any], batch_size: int) -> dict[str, Any]:
    """Summary of training: final (last-epoch mean) loss, per-epoch losses and speed."""
    losses, per_epoch = history["loss"], history["steps_per_epoch"]
    epoch_loss = losses.reshape(-1, per_epoch).mean(axis=1)
    steps_per_second = len(losses) / history["train_seconds"]
    return {"final_loss": float(epoch_loss[-1]), "epoch_loss": epoch_loss.tolist(),
            "steps": int(len(losses)), "seconds": history["train_seconds"],
            "compile_seconds": history["compile_seconds"],
            "steps_per_second": steps_per_second,
            "images_per_second": steps_per_second * batch_size}


def run(cfg: Config, workdir: str | os.PathLike, *, progress: bool = True,
        overwrite: bool = False, resume: bool = False, checkpoint_every: int = DEFAULT_EVERY,
        keep: int = DEFAULT_KEEP, mesh: jax.sharding.Mesh | None = None,
        parts: Parts = Parts()) -> dict[str, Any]:
    """Train and evaluate one configuration, writing config, metrics, figures and parameters.

    Args:
      cfg: the run's configuration.
      workdir: the folder for the results (created; never silently overwritten).
      progress: show a progress bar while training.
      overwrite: allow replacing the results of an earlier run in ``workdir``.
      resume: continue the run in ``workdir`` from its latest checkpoint.
      checkpoint_every: also checkpoint every this many steps (0: only at epoch ends).
      keep: how many of the latest checkpoints to keep in ``workdir/checkpoints``.
      mesh: train data parallel over this device mesh (``aejax.parallel``); in a multi-process
        run every process calls ``run`` (and writes its part of the checkpoints); only process 0
        writes the other files.
      parts: a custom model, loss or occlusion (``aejax.parts``), used in training and
        evaluation and named in config.json; the default is the original's.
    """
    started = time.perf_counter()
    checkpoint.check_options(checkpoint_every, keep)  # before anything is written
    for field in parts.ambiguous():
        log.warning("the custom %s is named %s, a name that other parts share: resuming and "
                    "compare.py cannot tell them apart (define it with def at module level)",
                    field, parts.describe()[field])
    writer = parallel.is_main_process()
    path = Path(workdir)
    with contextlib.ExitStack() as held:  # the workdir lock, from start() on
        ds = start(cfg, path, writer=writer, overwrite=overwrite, resume=resume, mesh=mesh,
                   held=held, parts=parts)
        x_train = ds.train_images.reshape(len(ds.train_images), -1)
        if jax.process_count() > 1:  # the others wait until process 0 has prepared the folder
            multihost_utils.sync_global_devices("aejax: workdir ready")
        ckpt = checkpoint.Checkpointer(path / checkpoint.DIRNAME, every=checkpoint_every,
                                       keep=keep, resume=resume)
        if writer:  # matplotlib takes ~0.4 s to import: let it load while the device trains
            threading.Thread(target=importlib.import_module, args=("aejax.plots",),
                             daemon=True).start()
        with contextlib.closing(ckpt):
            state, history = loop.fit(cfg, x_train, progress=progress and writer, mesh=mesh,
                                       checkpoints=ckpt, parts=parts)
        if writer and resume:  # the data paths and devices of this session
            write_json(run_info(cfg, ds, mesh, parts), path / "config.json")
        params = parallel.fetch(state.params)  # host copies: evaluation runs on the local device
        if writer:  # kept even if the evaluation fails
            save_params(params, path / PARAMS_FILE)
            np.save(path / "train_loss.npy", history["loss"])
        model = train.make_model(cfg, x_train.shape[1]) if parts.model is None else parts.model
        test, arrays = evaluate.evaluate(cfg, model, params, ds.test_images, ds.test_labels,
                                         occlude=parts.occlude)
        metrics = {"train": train_metrics(history, cfg.batch_size), "test": test,
                   "data": data_info(ds)}
        if not writer:
            return metrics
        from aejax import plots  # imported by the thread above (or now, if it has not finished)

        plots.evaluation_figures(arrays, test, path)
        plots.loss_curve(history["loss"], history["steps_per_epoch"], path / "loss.png")
        metrics["total_seconds"] = time.perf_counter() - started
        write_json(metrics, path / "metrics.json")
        return metrics


def start(cfg: Config, path: Path, *, writer: bool, overwrite: bool, resume: bool,
          mesh: jax.sharding.Mesh | None, held: contextlib.ExitStack,
          parts: Parts = Parts()) -> data.Dataset:
    """Lock and check the workdir, check the data and (to resume) the checkpoint, then write a
    new run's config.json (``run`` rewrites a resumed run's once its state is restored and
    trained); the lock is held until ``held`` closes.

    Nothing is deleted or written before every check has passed, and a workdir this call
    created is removed again if one fails, so a refused command leaves the disk as it was.
    """
    new_folder = writer and not path.exists()
    try:
        if writer:  # a live run's folder is "in use", whatever it holds: lock it first
            existed = path.is_dir()
            if existed:
                lock_workdir(path, held)
            prepare_workdir(path, overwrite=overwrite, resume=resume)
            if not existed:
                lock_workdir(path, held)
        ds = data.load(cfg.dataset, data_dir=cfg.data_dir, data_root=cfg.data_root)
        check_data(cfg, *ds.train_images.shape)
        if mesh is not None:
            parallel.check_batch(cfg.batch_size, mesh)
        if resume:
            x = ds.train_images.reshape(len(ds.train_images), -1)
            with contextlib.closing(checkpoint.Checkpointer(path / checkpoint.DIRNAME,
                                                            tidy=False)) as ckpt:
                checkpoint.check_resumable(*ckpt.latest(), cfg, checkpoint.fingerprint(x),
                                           len(x) // cfg.batch_size, ckpt.directory,
                                           parts.describe())
    except BaseException:
        if new_folder and path.is_dir() and not any(path.iterdir()):
            path.rmdir()
        raise
    if writer and not resume:  # a resumed run's config.json is rewritten once it has restored
        if overwrite or is_run(path):  # is_run here: a run that saved nothing starts over
            clear_run(path)  # so that no old file or checkpoint mixes with the new run's
        write_json(run_info(cfg, ds, mesh, parts), path / "config.json")
    return ds


def data_info(ds: data.Dataset) -> dict[str, Any]:
    """Where the data came from and how much of it there was."""
    return {"source": ds.source, "is_sample": ds.is_sample,
            "train_size": len(ds.train_images), "test_size": len(ds.test_images)}


def run_info(cfg: Config, ds: data.Dataset, mesh: jax.sharding.Mesh | None = None,
             parts: Parts = Parts()) -> dict[str, Any]:
    """The config plus what is needed to interpret the run later."""
    return {"config": json.loads(cfg.to_json()), "parts": parts.describe(),
            "dataset_source": ds.source,
            "dataset_is_sample": ds.is_sample, "jax_version": jax.__version__,
            "backend": jax.default_backend(), "devices": [str(d) for d in jax.devices()],
            **parallel.describe(mesh)}
