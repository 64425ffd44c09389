"""Checkpoints of the full training state with Orbax (``aejax.resumable`` checks a resume).

A checkpoint is ``<workdir>/checkpoints/<step>/`` with two items: ``state`` (the ``TrainState``
pytree: step, parameters, Adam state) and ``meta`` (JSON: the position in the run, the config,
a fingerprint of the training images, the custom parts' names and digests, every loss so far
and the training time so far). Orbax
writes each one into a temporary folder and renames it when complete, so a process killed at
any moment leaves the previous checkpoints usable. The random stream needs no saving: the epoch
order is ``fold_in(data_key, epoch)`` and the noise ``fold_in(noise_key, step)``, so the seed in
the config and the step in the state are the RNG's position.
"""

from __future__ import annotations

import contextlib
import gc
import json
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import jax
import numpy as np
import orbax.checkpoint as ocp
from jax.experimental import multihost_utils

from aejax import orbax_quiet, resumable, sigint
from aejax.config import Config
from aejax.occlusion import is_integer
from aejax.partdigest import DIGEST_VERSION
from aejax.parts import Parts
from aejax.shapes import mismatch

DIRNAME = "checkpoints"
TMP_SUFFIX = ".orbax-checkpoint-tmp"  # Orbax writes <step><TMP_SUFFIX>... and renames it when done


class Checkpointer:
    """Saves ``fit``'s state into ``directory`` every ``every`` steps and at epoch ends."""

    def __init__(self, directory: str | Path, *, every: int = 0, keep: int = 3,
                 resume: bool = False, tidy: bool = True) -> None:
        """``tidy``: delete half-written checkpoints first; only the Checkpointer that trains
        should (a reader could otherwise delete the save in progress of a live run)."""
        check_options(every, keep)
        orbax_quiet.say_once("absl", "Failed to json parse Metadata file")  # each reader logs it
        orbax_quiet.quiet_failed_saves()  # a failed save: our one line says it, not Orbax's logs
        orbax_quiet.quiet_abandoned_reads()  # ... nor the writes it abandons
        self.directory, self.every, self.keep, self.resume = Path(directory), every, keep, resume
        self.parts: dict[str, Any] = {}  # the custom parts of the last save, for its error
        if tidy:
            remove_partial(self.directory)
        # Orbax's own clean-up runs in a background thread, and two managers opened one after the
        # other (reading the config to resume, then training) would race to delete the same folder.
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, cleanup_tmp_directories=False)
        self.manager = ocp.CheckpointManager(self.directory.absolute(), options=options,
                                             item_names=("state", "meta"))

    def due(self, before: int, after: int) -> bool:
        """Whether a chunk from global step ``before`` to ``after`` crossed a multiple of every."""
        return self.every > 0 and before // self.every != after // self.every

    def save(self, state: Any, *, cfg: Config, data: dict[str, Any], steps: int,
             losses: np.ndarray, seconds: float, parts: dict[str, Any] | None = None,
             digests: dict[str, str] | None = None, devices: int = 1) -> None:
        """Start writing ``state`` with its meta (every process takes part; ends in background).

        ``parts``: ``Parts.describe()`` of the run's custom parts (None: the original's);
        ``digests``: ``partdigest.digests`` of them; ``devices``: how many it trains on (train.py
        resumes on as many)."""
        step = len(losses)
        meta = {"step": step, "epoch": step // steps, "offset": step % steps,
                "steps_per_epoch": steps, "config": json.loads(cfg.to_json()), "data": data,
                "parts": parts or Parts().describe(), "parts_digests": digests or {},
                "parts_digests_version": DIGEST_VERSION,
                "jax_version": jax.__version__,
                "loss": losses.tolist(), "train_seconds": seconds, "checkpoint_every": self.every,
                "keep": self.keep, "devices": devices}
        self.parts = meta["parts"]
        with self.failed_save(), sigint.held():  # failed: the previous save's error, or this one's
            self.manager.save(step, args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), meta=ocp.args.JsonSave(meta)))

    @contextlib.contextmanager
    def failed_save(self) -> Iterator[None]:
        """Turn a save that failed (a full disk, a read-only or locked folder: an OSError, or
        TensorStore's ValueError ``RESOURCE_EXHAUSTED: ...``, raised in Orbax's background and met
        at the next save or wait) into one ValueError saying which checkpoint is kept and how to
        go on, once the failed save's other threads have ended (left running, they report the
        interpreter's shutdown after that error)."""
        try:
            yield
        except (OSError, ValueError) as err:
            if not orbax_quiet.failed_write(err):
                raise
            orbax_quiet.join_orbax_threads()
            what = (f"{err.strerror or err}" + (f": {err.filename}" if err.filename else "")
                    if isinstance(err, OSError) else orbax_quiet.os_error(str(err)))
            steps = finished_steps(self.directory)
            hint = resumable.resume_hint(self.directory.parent, self.parts)
            kept = (f"the last good checkpoint (step {steps[-1]}) is kept: free some space (or "
                    f"fix the folder's permissions), then {hint} continues from it" if steps else
                    "no checkpoint was saved before it: free some space (or fix the folder's "
                    "permissions), then start the run again")
            raise ValueError(f"could not save a checkpoint in {self.directory} ({what}); "
                             f"{kept}") from None

    def load_latest(self, like: Any, cfg: Config, data: dict[str, Any], steps: int,
                    parts: dict[str, Any] | None = None, digests: dict[str, str] | None = None
                    ) -> tuple[Any, np.ndarray, float]:
        """The latest state, every loss so far and the training time, once checked against cfg
        (and, with ``digests``, warning about custom parts changed under the same name)."""
        step, meta = self.latest()
        resumable.check_resumable(step, meta, cfg, data, steps, self.directory, parts)
        state = self.restore(step, like)  # other shapes are refused before any warning
        if digests is not None:
            resumable.warn_changed_parts(meta, digests, self.directory)
        return state, np.asarray(meta["loss"], np.float32), float(meta["train_seconds"])

    def latest(self) -> tuple[int, dict[str, Any]]:
        """The newest checkpoint's step and ``meta`` item (ValueError if there is none)."""
        step = self.manager.latest_step()
        if step is None:
            raise ValueError(no_checkpoint_message(self.directory))
        with self.damaged(step):
            got = self.manager.restore(step, args=ocp.args.Composite(meta=ocp.args.JsonRestore()))
            if not isinstance(got.meta, dict) or "config" not in got.meta:
                raise ValueError("its meta item is not the one train.py writes")
        return step, got.meta

    @contextlib.contextmanager
    def damaged(self, step: int) -> Iterator[None]:
        """Turn Orbax's and TensorStore's errors on a broken checkpoint into one ValueError."""
        orbax_quiet.quiet_abandoned_reads()  # before the reads start: a late one may fail anytime
        try:
            yield
        except Exception as err:  # KeyError, FileNotFoundError, TensorStore's ValueError, ...
            gc.collect()  # report (and drop) the abandoned reads already unreachable now
            detail = " ".join(str(err).split(" See full TensorStore details")[0].split())
            if len(detail) > 200:  # at a word, and marked as cut
                detail = detail[:200].rsplit(" ", 1)[0] + " ..."
            earlier = [s for s in self.manager.all_steps() if s < step]
            advice = (f"delete that folder to resume from the checkpoint before it (step "
                      f"{max(earlier)}), or start again" if earlier else
                      "no checkpoint before it is left: start again (--overwrite)")
            raise ValueError(f"checkpoint {self.directory / str(step)} is damaged "
                             f"({type(err).__name__}: {detail}); {advice}") from None

    def restore(self, step: int, like: Any) -> Any:
        """The state saved at ``step``, placed like ``like`` (same shapes, dtypes, shardings).

        ValueError if its arrays are not ``like``'s (a custom model whose code changed under the
        same name), naming the first differences, or if the checkpoint is damaged."""
        abstract = jax.tree.map(
            lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), like)
        with self.damaged(step):
            saved = ocp.StandardCheckpointHandler().metadata(self.directory.absolute()
                                                             / str(step) / "state").tree
        diff = mismatch(saved, like)
        if diff:
            raise ValueError(f"checkpoint {self.directory / str(step)} holds other arrays than "
                             f"the model builds ({diff}): the model's code has changed since the "
                             "run was trained; restore that code, or start a new run under a new "
                             "model name")
        with self.damaged(step):
            got = self.manager.restore(step, args=ocp.args.Composite(
                state=ocp.args.StandardRestore(abstract)))
        return got.state

    def wait(self) -> None:
        """Block until the last save, which Orbax finishes in the background, is on disk."""
        with self.failed_save(), sigint.held():
            self.manager.wait_until_finished()

    def kept(self) -> str:
        """Which checkpoint survives a failed run, for its error message."""
        self.wait()
        step = self.manager.latest_step()
        if step is None:
            return "no checkpoint was saved before it"
        return f"the last good checkpoint (step {step}) is kept in {self.directory}"

    def close(self) -> None:
        """Wait for the last write to finish (a Ctrl-C meanwhile acts once it has)."""
        with sigint.held():
            self.wait()
            self.manager.close()


def finished_steps(directory: Path) -> list[int]:
    """The steps of the finished checkpoints (``<step>/`` folders) in ``directory``, in order."""
    if not directory.is_dir():
        return []
    return sorted(int(p.name) for p in directory.iterdir() if p.is_dir() and p.name.isdecimal())


def remove_partial(directory: Path) -> None:
    """Delete what a kill during a save left (Orbax's unfinished ``*.orbax-checkpoint-tmp*``)."""
    if jax.process_index() == 0 and directory.is_dir():
        for path in directory.glob(f"*{TMP_SUFFIX}*"):
            shutil.rmtree(path, ignore_errors=True)
    if jax.process_count() > 1:  # nobody opens the folder while process 0 is still deleting
        multihost_utils.sync_global_devices("aejax: partial checkpoints removed")


def check_options(every: int, keep: int) -> None:
    """Refuse a negative checkpoint interval or keeping fewer than one checkpoint, and either
    when it is not an integer (from Python: ``checkpoint_every=1e3`` failed deep in training)."""
    for flag, value in (("--checkpoint-every", every), ("--keep", keep)):
        if not is_integer(value):
            raise ValueError(f"{flag} must be an integer, got {value!r}")
    if every < 0:
        raise ValueError(f"--checkpoint-every must be >= 0 (0: at epoch ends only), got {every}")
    if keep < 1:
        raise ValueError(f"--keep must be >= 1, got {keep}")


def no_checkpoint_message(directory: Path) -> str:
    """What to say when ``--resume`` finds nothing to resume."""
    return (f"--resume: no checkpoint in {directory} (the run stopped before its first one); "
            "start it again without --resume: a run that saved nothing starts over in place")


def latest_meta(directory: str | Path) -> dict[str, Any]:
    """The ``meta`` item of the newest checkpoint in ``directory`` (ValueError if none)."""
    path = Path(directory)
    if not path.is_dir():
        raise ValueError(no_checkpoint_message(path))
    with contextlib.closing(Checkpointer(path, tidy=False)) as checkpointer:
        return checkpointer.latest()[1]


def all_finite(tree: Any) -> bool:
    """Whether every element of every array in ``tree`` is finite (NaN and inf are not)."""
    return all(bool(np.isfinite(np.asarray(x)).all()) for x in jax.tree.leaves(tree))
