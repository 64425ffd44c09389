"""JSON files of a run (config.json, metrics.json): written atomically, read with clear errors."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


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


def write_json(obj: Any, path: str | os.PathLike) -> None:
    """Pretty JSON, written atomically."""
    tmp = Path(f"{path}.tmp")
    tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)


def read_run_config(path: str | os.PathLike) -> dict[str, Any]:
    """A run's config.json: a JSON object with a ``config`` object (ValueError naming the file)."""
    info = read_json(path)
    if not isinstance(info.get("config"), dict):
        raise ValueError(f"{path} is not a config.json written by train.py: it has no 'config'")
    return info
