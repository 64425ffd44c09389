"""One run end to end: load data, train, evaluate, and write every result into a workdir."""

from __future__ import annotations

import contextlib
import dataclasses
import importlib
import io
import json
import logging
import os
import threading
import time
from pathlib import Path
from typing import Any

import jax
import numpy as np

from aejax import (checkpoint, data, evaluate, loop, oldrun, parallel, paramsfile, resumable,
                   resumesettings, rundir, runfiles, sigint, train, writable)
from aejax.config import Config, check_data
from aejax.jsonio import read_run_config, write_atomic, write_json
from aejax.parts import SHARED_NAME, Parts, recorded_spec, require

log = logging.getLogger(__name__)


def warn_ambiguous(parts: Parts) -> None:
    """Warn about each custom part whose name others share (``Parts.ambiguous``), saying whether
    the part itself or a function among its fields or arguments (a flax initializer) lacks one."""
    names = parts.describe()
    for field in parts.ambiguous():
        part_name = names[field]
        where = ("it" if SHARED_NAME.search(part_name.split("(", 1)[0]) else
                 "each function among its fields or arguments, flax's initializers too,")
        log.warning("the custom %s is named %s, a name that other parts share: resuming and "
                    "compare.py cannot tell them apart (define %s with def at module level, in "
                    "a module that the script imports)", field, part_name, where)


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
        overwrite: bool = False, resume: bool = False, checkpoint_every: int | None = None,
        keep: int | None = None, mesh: jax.sharding.Mesh | None = None,
        parts: Parts = Parts()) -> dict[str, Any]:
    """Train and evaluate one configuration, writing config, metrics, figures and parameters.

    Args:
      cfg: the run's configuration.
      workdir: the folder for the results (created; never silently overwritten).
      progress: show a progress bar while training.
      overwrite: allow replacing the results of an earlier run in ``workdir``.
      resume: continue the run in ``workdir`` from its latest checkpoint.
      checkpoint_every: also checkpoint every this many steps (0: only at epoch ends; None: the
        run's own when resuming, else 0).
      keep: how many of the latest checkpoints to keep in ``workdir/checkpoints`` (None: the
        run's own when resuming, else 3).
      mesh: train data parallel over this device mesh (``aejax.parallel``); in a multi-process
        run every process calls ``run`` (and writes its part of the checkpoints); only process 0
        writes the other files.
      parts: a custom model, loss or occlusion (``aejax.parts``), used in training and
        evaluation and named in config.json; the default is the original's.
    """
    started = time.perf_counter()
    require(parts)  # before the folder is touched
    parallel.check_mesh(mesh)
    if checkpoint_every is None or keep is None:
        meta = resumesettings.resume_meta(workdir) if resume else {}
        checkpoint_every, keep = resumesettings.checkpoint_options(meta, checkpoint_every, keep)
    checkpoint.check_options(checkpoint_every, keep)  # before anything is written
    warn_ambiguous(parts)
    writer = parallel.is_main_process()
    path = Path(workdir)
    check_same_run(cfg, path, resume=resume, overwrite=overwrite, every=checkpoint_every,
                   keep=keep, mesh=mesh, parts=parts)
    with contextlib.ExitStack() as held:  # the workdir lock, from start() on
        with sigint.defer_sigint():  # several processes: all stop together, at a chunk end
            ds = start(cfg, path, writer=writer, overwrite=overwrite, resume=resume, mesh=mesh,
                       held=held, parts=parts)
            x_train = ds.train_images.reshape(len(ds.train_images), -1)
            ckpt = checkpoint.Checkpointer(path / checkpoint.DIRNAME, every=checkpoint_every,
                                           keep=keep, resume=resume)
            if writer:  # matplotlib takes ~0.4 s to import: let it load while the device trains
                threading.Thread(target=importlib.import_module, args=("aejax.plots",),
                                 daemon=True).start()
            with contextlib.closing(ckpt):
                state, history = loop.fit(cfg, x_train, progress=progress and writer,
                                           mesh=mesh, checkpoints=ckpt, parts=parts)
        hint = resumable.resume_hint(path, parts.describe())
        finished = f"{hint} finishes it: training is saved in {path / checkpoint.DIRNAME}"
        with writable.writing(path, finished):
            if writer and resume:  # the data paths and devices of this session
                spec = parts.spec or recorded_spec(path)  # resumed from Python: its --parts
                runfiles.forget_results(path)
                write_json(run_info(cfg, ds, mesh, dataclasses.replace(parts, spec=spec)),
                           path / "config.json")
            params = parallel.fetch(state.params)  # host copies: evaluated on the local device
            metrics = finish(cfg, path, ds, params, history, parts, writer=writer)
            if writer:
                metrics["total_seconds"] = time.perf_counter() - started
                write_json(metrics, path / "metrics.json")
        return metrics


def finish(cfg: Config, path: Path, ds: data.Dataset, params: Any, history: dict[str, Any],
           parts: Parts, *, writer: bool) -> dict[str, Any]:
    """Save the parameters and losses, evaluate on the test set, draw the figures; return the
    metrics (only the ``writer`` process writes files)."""
    if writer:  # kept even if the evaluation fails
        paramsfile.save(params, path / runfiles.PARAMS_FILE)
        losses = io.BytesIO()
        np.save(losses, history["loss"])
        write_atomic(losses.getvalue(), path / "train_loss.npy")
    try:
        return report(cfg, path, ds, params, history, parts, writer=writer)
    except KeyboardInterrupt:  # training is saved (its last checkpoint): say how to finish
        raise sigint.Interrupted(
            f"interrupted during the evaluation; training is saved in {path / checkpoint.DIRNAME}"
            f": {resumable.resume_hint(path, parts.describe())} evaluates it") from None


def report(cfg: Config, path: Path, ds: data.Dataset, params: Any, history: dict[str, Any],
           parts: Parts, *, writer: bool) -> dict[str, Any]:
    """Evaluate the trained ``params`` on the test set and draw the figures; the metrics."""
    features = ds.train_images[0].size
    model = train.make_model(cfg, features) if parts.model is None else parts.model
    test, arrays = evaluate.evaluate(cfg, model, params, ds.test_images, ds.test_labels,
                                     occlude=parts.occlude)
    metrics = {"train": train_metrics(history, cfg.batch_size), "test": test,
               "test_occlusion_sha256": evaluate.occlusion_digest(arrays), "data": data_info(ds)}
    if writer:
        from aejax import plots  # imported by run's thread (or now, if it has not finished)

        plots.evaluation_figures(arrays, test, path)
        plots.loss_curve(history["loss"], history["steps_per_epoch"], path / "loss.png",
                         label=f"loss ({parts.describe()['loss']})" if parts.loss else "MSE loss")
    return metrics


def check_same_run(cfg: Config, path: Path, *, resume: bool, overwrite: bool, every: int,
                   keep: int, mesh: jax.sharding.Mesh | None, parts: Parts) -> None:
    """ValueError in every process unless all processes run the same config, workdir, devices,
    checkpoints and parts (only the data paths may differ: each host may keep its own copy)."""
    flags = {f"--{k.replace('_', '-')}": v for k, v in dataclasses.asdict(cfg).items()
             if k not in ("data_dir", "data_root")}
    flags |= {"--workdir": os.path.abspath(path), "--resume": resume, "--overwrite": overwrite,
              "--checkpoint-every": every, "--keep": keep, "--parts": parts.describe(),
              "--devices": 1 if mesh is None else mesh.size}
    parallel.check_same(flags, "the flags", "give every process the same flags (only --data-dir, "
                        "--data-root and --process-id may differ)")


def start(cfg: Config, path: Path, *, writer: bool, overwrite: bool, resume: bool,
          mesh: jax.sharding.Mesh | None, held: contextlib.ExitStack,
          parts: Parts = Parts()) -> data.Dataset:
    """Lock and check the workdir, check the data and (to resume) the checkpoint, then write a
    new run's config.json (``run`` rewrites a resumed run's once its state is restored and
    trained); the lock is held until ``held`` closes.

    Nothing is deleted or written before every check has passed, in every process, and a
    workdir that was new or empty is left as it was when ``held`` closes before the run saved
    anything (``rundir.claim``), so a refused or failed command leaves the disk as it was.
    """
    def checks() -> data.Dataset:  # no collective in here: a failing process skips the rest
        if writer:
            rundir.claim(path, held, overwrite=overwrite, resume=resume)
        ds = data.load(cfg.dataset, data_dir=cfg.data_dir, data_root=cfg.data_root)
        if not resume:  # resumed: the checkpoint's check says other data is other data, and
            check_data(cfg, *ds.train_images.shape)  # its own config fitted its own data
        if mesh is not None:
            parallel.check_batch(cfg.batch_size, mesh, resume=resume,
                                 num_train=len(ds.train_images))
        return ds

    ds = parallel.together(checks, "preparing the run")  # a refusal: claim undoes the folder
    if jax.process_count() > 1:  # each process fills its devices with its own copy
        parallel.check_same({"sha256": resumable.fingerprint(ds.train_images)},
                            "the training images", "give every process the same data")
    if resume:  # Orbax's collectives: only once every process has passed its checks
        check_checkpoint(cfg, path, ds, parts)
    if writer and not resume:  # a resumed run's config.json is rewritten once it has restored
        # no old file or checkpoint may mix with the new run's
        if overwrite and runfiles.saved_anything(path):  # back if the new run fails before saving
            oldrun.replace(path, held)
        elif runfiles.is_run(path):  # a run that saved nothing starts over
            runfiles.clear(path)
        with writable.writing(path, "start the run again"):
            write_json(run_info(cfg, ds, mesh, parts), path / "config.json")
    return ds


def check_checkpoint(cfg: Config, path: Path, ds: data.Dataset, parts: Parts) -> None:
    """ValueError unless the latest checkpoint in ``path`` can be resumed with ``cfg``, ``ds``'s
    training images and ``parts``."""
    x = ds.train_images.reshape(len(ds.train_images), -1)
    with contextlib.closing(checkpoint.Checkpointer(path / checkpoint.DIRNAME,
                                                    tidy=False)) as ckpt:
        step, meta = ckpt.latest()
        now = resumable.fingerprint(x)
        if meta["data"] != now and not ds.is_sample and trained_on_sample(path):
            raise ValueError(f"cannot resume from {ckpt.directory}: it was trained on the "
                             "5,000-digit MNIST sample (no MNIST files were found then), and "
                             f"the full data is found now ({ds.source}); the sample is only "
                             "used where none is, so train the full data in a new --workdir")
        resumable.check_resumable(step, meta, cfg, now, len(x) // cfg.batch_size,
                                  ckpt.directory, parts.describe())


def trained_on_sample(path: Path) -> bool:
    """Whether the run in ``path`` trained on the small sample, as its config.json says."""
    try:
        return bool(read_run_config(path / "config.json").get("dataset_is_sample"))
    except (OSError, ValueError):
        return False


def data_info(ds: data.Dataset) -> dict[str, Any]:
    """Where the data came from (``folder``: its absolute path, when it is a folder), how much
    of it there was, and digests of the training images and of the test set (images and
    labels), so that compare.py never averages runs on other data of the same size (the
    training images' is their checkpoints' ``resumable.fingerprint``, cut to 16 digits)."""
    folder = str(Path(ds.source).resolve()) if Path(ds.source).is_dir() else None
    return {"source": ds.source, "folder": folder, "is_sample": ds.is_sample,
            "train_size": len(ds.train_images), "test_size": len(ds.test_images),
            "train_sha256": ds.train_sha256[:16], "test_sha256": ds.test_sha256[:16]}


def run_info(cfg: Config, ds: data.Dataset, mesh: jax.sharding.Mesh | None = None,
             parts: Parts = Parts()) -> dict[str, Any]:
    """The config plus what is needed to interpret the run later."""
    dataset = {f"dataset_{k}": v for k, v in data_info(ds).items() if k != "test_size"}
    unused = parts.unused()
    return {"config": json.loads(cfg.to_json()), "parts": parts.describe(),
            **({"parts_spec": parts.spec} if parts.spec else {}),
            **({"unused_config": unused} if unused else {}), **dataset,
            "jax_version": jax.__version__, "devices": [str(d) for d in jax.devices()],
            **parallel.describe(mesh)}
