"""A run's trained parameters as one msgpack file (params.msgpack): written, read back, and
checked against the model they are meant for."""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import flax.serialization
import jax
import numpy as np

from aejax.jsonio import write_atomic
from aejax.model import init_params
from aejax.shapes import mismatch


def save(params: Any, path: str | os.PathLike) -> None:
    """Write a parameter pytree as msgpack, atomically (a failed write leaves no half a file,
    which ``load`` would call damaged)."""
    write_atomic(flax.serialization.msgpack_serialize(jax.tree.map(np.asarray, params)), path)


def load(path: str | os.PathLike, model: Any = None, *, custom: bool = False) -> Any:
    """Read a parameter pytree written by ``save``; with ``model``, check that it fits.

    ValueError if the file is damaged, or if its shapes are not the model's: a config.json that
    does not belong to this params.msgpack, or (``custom``: a model of ``aejax.parts``) a model
    whose code changed since the run was trained.
    """
    try:
        params = flax.serialization.msgpack_restore(Path(path).read_bytes())
    except Exception as err:  # msgpack raises several types of its own on damaged bytes
        raise ValueError(f"{path} is damaged ({type(err).__name__}: {err}); restore it or "
                         "train again") from None
    if model is not None:
        check(params, model, path, custom=custom)
    return params


def check(params: Any, model: Any, path: str | os.PathLike, *, custom: bool = False) -> None:
    """ValueError unless ``params`` (read from ``path``) have the shapes of ``model``'s (see
    ``load``)."""
    diff = difference(params, model)
    if diff and custom:
        raise ValueError(f"{path} does not fit the custom model {type(model).__name__} "
                         f"({diff}): its code has changed since the run was trained; "
                         "restore that code, or train a new run under a new model name")
    if diff:
        what = (f"hidden={list(model.hidden)}" if hasattr(model, "hidden")
                else type(model).__name__)
        raise ValueError(f"{path} does not fit the model of this run's config.json "
                         f"({what}; {diff}): the two files do not belong together")


def difference(params: Any, model: Any, *,
               words: tuple[str, str, str] = ("saved", "now", "now")) -> str | None:
    """How ``params`` differ from the parameter shapes ``model`` builds (``shapes.mismatch``,
    in its ``words``), "not a parameter tree" for anything but a mapping, or None if they fit."""
    if not isinstance(params, Mapping):
        return "not a parameter tree"
    return mismatch(params, jax.eval_shape(lambda: init_params(jax.random.key(0), model)),
                    words=words)


def input_width(params: Any) -> int | None:
    """The pixels per image the autoencoder's parameters take (its first layer's inputs), or
    None for parameters of another shape."""
    try:
        return int(np.shape(params["dense_0"]["kernel"])[0])
    except (KeyError, TypeError, IndexError):
        return None

