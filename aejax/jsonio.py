"""JSON files of a run (config.json, metrics.json): written atomically, read with clear errors."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

# the fields that compare.py and evaluate.py read beyond the config and the metrics, and the JSON
# type a run writes there
LAYOUT: dict[str, dict[str, type]] = {
    "config.json": {"parts": dict, "unused_config": list, "evaluation": dict,
                    "evaluation.of": str, "evaluation.changes": dict,
                    "evaluation.params_sha256": str},
    "metrics.json": {"data": dict, "data.train_sha256": str, "data.tested_sha256": str,
                     "test_occlusion_sha256": str}}
JSON_TYPES = {dict: "object", list: "list", str: "string", bool: "boolean", int: "number",
              float: "number"}


def read_json(path: str | os.PathLike) -> dict[str, Any]:
    """A JSON object from a file a run wrote (ValueError naming the file if it is not one)."""
    try:
        obj = json.loads(Path(path).read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path} is not valid JSON ({err}); it is damaged: restore or delete "
                         "it") from None
    if not isinstance(obj, dict):
        raise ValueError(f"{path} holds a JSON {type(obj).__name__}, not the object a run "
                         "writes; it is damaged: restore or delete it")
    return obj


def write_json(obj: Any, path: str | os.PathLike, *, sort_keys: bool = True) -> None:
    """Pretty JSON, written atomically (keys sorted unless ``sort_keys`` is False)."""
    write_atomic((json.dumps(obj, indent=2, sort_keys=sort_keys) + "\n").encode(), path)


def write_atomic(payload: bytes, path: str | os.PathLike) -> None:
    """Write ``payload`` to ``path`` through ``<path>.tmp``, renamed when complete: a failed
    write (a full disk) leaves ``path`` as it was and no ``.tmp`` (which would make a new run's
    folder one of "other files", refused from then on)."""
    tmp = Path(f"{path}.tmp")
    try:
        tmp.write_bytes(payload)
        os.replace(tmp, path)
    except BaseException as err:
        tmp.unlink(missing_ok=True)
        if isinstance(err, OSError) and err.filename is None:  # a full disk, met at close
            raise OSError(err.errno, err.strerror, str(path)) from None
        raise


def read_run_config(path: str | os.PathLike) -> dict[str, Any]:
    """A run's config.json: a JSON object with a ``config`` object (ValueError naming the file)."""
    info = read_json(path)
    if not isinstance(info.get("config"), dict):
        raise ValueError(f"{path} is not a config.json written by train.py: it has no 'config'")
    return info


def check_layout(path: str | os.PathLike, tree: dict[str, Any]) -> None:
    """ValueError naming the file where a field of ``LAYOUT`` (absent or null: fine) holds
    another JSON type than a run writes there: a hand-edited or damaged file."""
    for dotted, kind in LAYOUT[Path(path).name].items():
        value = at(tree, dotted)
        if value is not None and not isinstance(value, kind):
            raise ValueError(f"{path}: {dotted} holds a JSON {JSON_TYPES[type(value)]}, not "
                             f"the {JSON_TYPES[kind]} a run writes; it is damaged: restore or "
                             "delete it")


def at(tree: Any, dotted: str, default: Any = None) -> Any:
    """``tree["a"]["b"]`` for ``"a.b"``; ``default`` where a level is missing or not an object."""
    for part in dotted.split("."):
        if not isinstance(tree, dict) or part not in tree:
            return default
        tree = tree[part]
    return tree
