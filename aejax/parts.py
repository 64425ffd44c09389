"""The pluggable parts of a run: the model, the loss and the occlusion (None: the original's).

A research extension is a pure function or a Flax module handed to ``loop.fit``,
``experiment.run`` or ``evaluate.evaluate`` as ``Parts(...)``; nothing is patched or registered:

- ``loss(reconstruction_NxD, target_NxD) -> scalar``, differentiable (default: ``train.mse``);
- ``occlude(key, clean_NxD) -> (occluded_NxD, mask_NxD)``: key-first and pure, floats in [0, 1]
  in and out, the mask boolean (True where the image was changed); it occludes the training
  inputs (``--train-occlusion all`` or ``mixed``) and the test images (default: the config's
  bars, ``Bars``);
- ``model``: a Flax Linen module with a ``features`` attribute (pixels per image) that maps
  float images (N, features) to reconstructions of the same shape (default: ``Autoencoder``
  from the config).

Functions are traced into the compiled step, so they must be jit-compatible. They are compared
by identity, so pass the same object to reuse compiled programs; ``Parts.describe`` names them
in config.json and in checkpoints, and a run is resumed only with the same names.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax

from aejax import occlusion
from aejax.config import Config

LossFn = Callable[[jax.Array, jax.Array], jax.Array]
OccludeFn = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]


@dataclasses.dataclass(frozen=True)
class Bars:
    """``occlusion.occlude`` with fixed keyword arguments, as an ``OccludeFn``.

    Hashable by value, so equal configs share compiled programs.
    """

    kwargs: tuple[tuple[str, Any], ...]

    def __call__(self, key: jax.Array, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        return occlusion.occlude(key, images, return_mask=True, **dict(self.kwargs))


def bars(cfg: Config) -> Bars:
    """The config's bars (``--occlusion-*``; the defaults are the original's)."""
    return Bars(tuple(sorted(cfg.occlusion_kwargs().items())))


@dataclasses.dataclass(frozen=True)
class Parts:
    """The model, loss and occlusion a run plugs in; None keeps the original's."""

    model: Any = None
    loss: LossFn | None = None
    occlude: OccludeFn | None = None

    def describe(self) -> dict[str, str | None]:
        """A name for each custom part (None for the defaults), for config.json and checkpoints."""
        return {"model": None if self.model is None else model_name(self.model),
                "loss": name(self.loss), "occlude": name(self.occlude)}

    def custom(self) -> list[str]:
        """The fields that are not the original's."""
        return [k for k, v in self.describe().items() if v is not None]


def model_name(model: Any) -> str:
    """``module.Class(field=value, ...)`` of a Linen module (its dataclass fields)."""
    fields = (dataclasses.fields(model) if dataclasses.is_dataclass(model) else ())
    args = ", ".join(f"{f.name}={getattr(model, f.name)!r}" for f in fields
                     if f.name not in ("parent", "name"))
    return f"{type(model).__module__}.{type(model).__qualname__}({args})"


def name(fn: Callable | None) -> str | None:
    """``module.qualname`` of a function, else its repr; None for None."""
    if fn is None:
        return None
    qualname = getattr(fn, "__qualname__", None)
    return f"{fn.__module__}.{qualname}" if qualname else repr(fn)


def occlude_checked(occlude: OccludeFn, key: jax.Array, clean: jax.Array
                    ) -> tuple[jax.Array, jax.Array]:
    """``occlude(key, clean)``; ValueError (at trace time) unless it returned (occluded, mask)
    shaped like ``clean``, with a boolean mask."""
    out = occlude(key, clean)
    shape = tuple(clean.shape)
    if (not isinstance(out, tuple) or len(out) != 2
            or any(tuple(getattr(a, "shape", ())) != shape for a in out)):
        got = (tuple(getattr(a, "shape", type(a).__name__) for a in out) if isinstance(out, tuple)
               else getattr(out, "shape", type(out).__name__))
        raise ValueError(f"an occlusion must return (occluded, mask) shaped like its images "
                         f"{shape}; {name(occlude)} returned {got!r}")
    if out[1].dtype != bool:
        raise ValueError(f"an occlusion's mask must be boolean; {name(occlude)} returned "
                         f"{out[1].dtype}")
    return out
