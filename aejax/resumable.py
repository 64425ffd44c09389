"""The checks that make resuming a checkpoint safe: the same config (but for ``RESUMABLE``
fields), the same training images, the same custom parts, and no more epochs than asked for.

Each takes the checkpoint's ``meta`` item (``checkpoint.Checkpointer.save``) and refuses with a
one-line ValueError naming the checkpoint's folder and what differs; a custom part changed under
its old name is only warned about (``partdigest.digests``), since its name still matches.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import jax
import numpy as np

from aejax.config import Config
from aejax.data import array_sha256
from aejax.partdigest import DIGEST_VERSION
from aejax.parts import spec_of

log = logging.getLogger(__name__)

# Fields that may change when a run is resumed: where the data is read from, and how long to train.
RESUMABLE = ("data_dir", "data_root", "epochs")


def check_resumable(step: int, meta: dict[str, Any], cfg: Config, data: dict[str, Any],
                    steps: int, directory: str | Path, parts: dict[str, Any] | None = None
                    ) -> None:
    """Refuse to resume the checkpoint (``step``, ``meta``) with another config, other training
    images (``fingerprint``), other custom parts (``Parts.describe()``; None: the original's),
    or fewer epochs than it has already trained."""
    check_config(meta["config"], cfg, directory)
    check_data(meta["data"], data, directory)
    check_parts(meta.get("parts") or {}, parts or {}, directory)  # absent: the original's
    if step > cfg.epochs * steps:
        epochs, left = divmod(step, steps)
        trained = plural(epochs, "epoch") + (f" and {plural(left, 'step')}" if left else "")
        raise ValueError(f"cannot resume from {directory}: its checkpoint is at step {step} "
                         f"({trained} trained), past the --epochs {cfg.epochs} asked for; "
                         "raise --epochs")


def check_config(saved: dict[str, Any], cfg: Config, directory: str | Path) -> None:
    """Refuse to resume a checkpoint with a config that differs beyond ``RESUMABLE`` fields."""
    now = json.loads(cfg.to_json())
    changed = [k for k in sorted(set(saved) | set(now))
               if k not in RESUMABLE and saved.get(k) != now.get(k)]
    if changed:
        diffs = ", ".join(f"{k}={saved.get(k)!r} (now {now.get(k)!r})" for k in changed)
        raise ValueError(f"cannot resume from {directory}: it was trained with {diffs}; leave "
                         "those flags out, or start a new --workdir")


def check_parts(saved: dict[str, Any], now: dict[str, Any], directory: str | Path) -> None:
    """Refuse to resume a checkpoint with another model, loss or occlusion (``aejax.parts``)."""
    changed = [k for k in sorted(set(saved) | set(now)) if saved.get(k) != now.get(k)]
    if changed:
        diffs = ", ".join(f"{k}={saved.get(k) or 'the default'} (now {now.get(k) or 'the default'})"
                          for k in changed)
        advice = ("leave --parts out: it was trained with the original's parts"
                  if not any(saved.values()) else "resume it with the same parts (train.py's "
                  f"--parts {spec_of(Path(directory).parent)}, or from Python Parts(...) as when "
                  "it started)")
        raise ValueError(f"cannot resume from {directory}: it was trained with {diffs}; {advice}")


def warn_changed_parts(meta: dict[str, Any], digests: dict[str, str],
                       directory: str | Path) -> None:
    """Warn for each custom part that has its checkpoint's name but computes something else
    (``partdigest.digests``): an edited function resumed under the same name would mix the two."""
    if meta.get("parts_digests_version") != DIGEST_VERSION:  # computed otherwise, or not at all
        return
    saved = meta.get("parts_digests") or {}
    then, now = meta.get("jax_version"), jax.__version__
    for part in sorted(set(saved) & set(digests)):
        if saved[part] != digests[part]:
            why = (f" (or JAX, {then} then and {now} now)" if then != now else "")
            noun = "an occlusion" if part == "occlude" else f"a {part}"
            log.warning("resuming %s with %s named %s as before, whose computation has "
                        "changed since%s: the run will mix both; rename a changed part and "
                        "start a new run to keep them apart", directory, noun,
                        meta["parts"][part], why)


def resume_hint(workdir: Path, parts: dict[str, str | None]) -> str:
    """How to resume the run in ``workdir``: train.py's flags, and with custom ``parts`` the same
    parts again, by ``--parts`` (as its config.json recorded it) or from Python."""
    if any(parts.values()):
        return (f"--workdir {workdir} --resume --parts {spec_of(workdir)} with the same parts (or "
                "resume=True and the same Parts(...) from Python)")
    return f"--workdir {workdir} --resume"


def fingerprint(images_u8: np.ndarray) -> dict[str, Any]:
    """Shape and SHA-256 of the training images, to recognise the same data on resume."""
    return {"shape": list(images_u8.shape), "sha256": array_sha256(images_u8)}


def check_data(saved: dict[str, Any], now: dict[str, Any], directory: str | Path) -> None:
    """Refuse to resume on training images other than the checkpoint's (see ``fingerprint``)."""
    if saved != now:
        raise ValueError(f"cannot resume from {directory}: it was trained on other training "
                         f"images ({saved['shape'][0]} images, sha256 {saved['sha256'][:12]}) "
                         f"than these ({now['shape'][0]} images, sha256 {now['sha256'][:12]}); "
                         "point --data-dir/--dataset at the run's data, or start a new --workdir")


def plural(n: int, noun: str) -> str:
    """``1 epoch``, ``2 epochs``."""
    return f"{n} {noun}{'s' * (n != 1)}"
