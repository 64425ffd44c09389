"""Which test set an evaluation scored: the run's own, or another (told apart by content), as
metrics.json's ``data`` records it, so that compare.py never averages runs tested on others."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from aejax import checkpoint, data, experiment

# metrics.json ``data`` about the test set evaluated, when it is not the run's own
EVALUATED_ON = ("test_source", "test_folder", "test_is_sample", "tested_sha256")


def evaluated_data(info: dict[str, Any], trained: dict[str, Any] | None, ds: data.Dataset,
                   path: Path) -> dict[str, Any]:
    """metrics.json's ``data`` after evaluating again: the training set the run had (from its
    metrics.json, else its config.json and checkpoints) and the size of the test set evaluated
    now, with ``EVALUATED_ON`` when that is another test set than the run's own (by content:
    ``test_sha256`` is the run's own set, ``tested_sha256`` the one evaluated), so that
    compare.py keeps such runs apart."""
    now = experiment.data_info(ds)
    if not trained:  # its first evaluation failed: config.json says what it trained on
        trained = {"source": info.get("dataset_source", now["source"]),
                   "folder": info.get("dataset_folder"),
                   "is_sample": info.get("dataset_is_sample", now["is_sample"]),
                   "train_sha256": info.get("dataset_train_sha256"),
                   "test_sha256": info.get("dataset_test_sha256")}
        here = now["train_size"] or None  # 0: a folder with only the test files (test_only)
        trained["train_size"] = (info.get("dataset_train_size") or saved_train_size(path)
                                 or (here if same_source(trained, now) else None))
    out = {k: v for k, v in trained.items() if k not in EVALUATED_ON}
    out["test_size"] = now["test_size"]
    if out.get("test_sha256"):
        same = out["test_sha256"] == now["test_sha256"]
    else:  # a run from before the test set's digest was recorded
        same = same_source(out, now)
        out["test_sha256"] = now["test_sha256"] if same else None
    if not same:
        out.update(test_source=now["source"], test_folder=now["folder"],
                   test_is_sample=now["is_sample"], tested_sha256=now["test_sha256"])
    return out


def same_source(recorded: dict[str, Any], now: dict[str, Any]) -> bool:
    """Whether the data recorded at training (``source``, ``folder``) is the data read now, for
    runs that recorded no digest of their test set: the same absolute folder, or equal sources
    that are not relative paths (those were relative to wherever the run was trained)."""
    if recorded.get("folder") and now.get("folder"):
        return recorded["folder"] == now["folder"]
    source = recorded.get("source")
    if isinstance(source, str) and Path(source).is_absolute() and Path(source).exists():
        return now.get("folder") == str(Path(source).resolve())
    return source == now["source"] and not (isinstance(source, str) and Path(source).exists())


def saved_train_size(path: Path) -> int | None:
    """The number of training images in the run's latest checkpoint's meta, None without one."""
    try:
        return int(checkpoint.latest_meta(path / checkpoint.DIRNAME)["data"]["shape"][0])
    except (ValueError, KeyError, IndexError, TypeError):
        return None
