"""The checks that custom parts keep their contract: an occlusion returns (occluded, mask) shaped
like its images, a model returns reconstructions shaped like its inputs, both stay in [0, 1].

Training and evaluation run them while tracing (``occlude_checked``, ``check_reconstruction``);
``loop.fit`` runs ``check_ranges`` on a few training images, and ``check_traced`` on the model
and loss, before it trains. Each failure is a ``PartError`` that names the part.
"""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable
from typing import Any

import flax.errors
import jax

from aejax.parts import OccludeFn, PartError, name


def occlude_checked(occlude: OccludeFn, key: jax.Array, clean: jax.Array
                    ) -> tuple[jax.Array, jax.Array]:
    """``occlude(key, clean)``; ValueError (at trace time) unless it returned (occluded, mask)
    shaped like ``clean``, with a boolean mask."""
    out = occlude(key, clean)
    shape = tuple(clean.shape)
    if not isinstance(out, tuple) and hasattr(out, "shape"):  # occlusion.occlude's default
        raise PartError(f"an occlusion must return a tuple (occluded, mask); {name(occlude)} "
                        f"returned one array shaped {tuple(out.shape)} (occlusion.occlude "
                        f"returns the mask too with return_mask=True)")
    if (not isinstance(out, tuple) or len(out) != 2
            or any(tuple(getattr(a, "shape", ())) != shape for a in out)):
        got = (tuple(getattr(a, "shape", type(a).__name__) for a in out) if isinstance(out, tuple)
               else getattr(out, "shape", type(out).__name__))
        raise PartError(f"an occlusion must return (occluded, mask) shaped like its images "
                        f"{shape}; {name(occlude)} returned {got!r}")
    if out[1].dtype != bool:
        raise PartError(f"an occlusion's mask must be boolean; {name(occlude)} returned "
                        f"{out[1].dtype}")
    if not jax.numpy.issubdtype(out[0].dtype, jax.numpy.floating):
        raise PartError(f"an occlusion must return float images in [0, 1]; {name(occlude)} "
                        f"returned {out[0].dtype}")
    return out


def check_reconstruction(model: Any, images: jax.Array, recon: Any) -> None:
    """ValueError (at trace time) unless the model returned a float array shaped like its
    input (integer reconstructions have no gradient: training would never move the params)."""
    if tuple(getattr(recon, "shape", ())) != tuple(images.shape):
        raise PartError(f"the model {name(model)} returned shape "
                        f"{getattr(recon, 'shape', type(recon).__name__)} for images shaped "
                        f"{tuple(images.shape)}: a reconstruction must be shaped like its input")
    if not jax.numpy.issubdtype(recon.dtype, jax.numpy.floating):
        raise PartError(f"the model {name(model)} returned {recon.dtype} reconstructions: they "
                        "must be floats in [0, 1] (end the model with a sigmoid)")


def check_ranges(model: Any, params: Any, clean: jax.Array, occlude: OccludeFn,
                 key: jax.Array) -> None:
    """ValueError, before training, unless the occlusion and the model (with ``params``) keep
    a few training images ``clean`` (N, D) in [0, 1], as the metrics and figures assume.

    The occlusion runs compiled, as in training and evaluation: with ``--train-occlusion none``
    training never calls it, and one that cannot be traced would fail only in the evaluation.
    """
    occluded, _ = occlude_compiled(occlude, key, clean)
    try:
        recon = model.apply({"params": params}, clean)
    except flax.errors.FlaxError as err:  # wants a dropout key, mutable batch statistics, ...
        raise PartError(f"the model {name(model)} cannot run on its params alone "
                        f"({str(err).splitlines()[0][:160]}): models here are deterministic "
                        "functions of their params (no dropout, no batch statistics)") from None
    check_reconstruction(model, clean, recon)
    checks = ((f"the occlusion {name(occlude)}", occluded), (f"the model {name(model)}", recon))
    for who, values in checks:
        if problem := outside_pixels(values):
            raise PartError(f"{who} returned {problem} on training images; images and "
                            "reconstructions must lie in [0, 1] (end a model with a sigmoid, "
                            "write pixel values in an occlusion)")


def outside_pixels(values: jax.Array) -> str | None:
    """What keeps ``values`` from being pixels in [0, 1] (NaNs counted: XLA:CPU's min and max
    of a large array skip them), or None."""
    values = jax.numpy.asarray(values)  # reduced where it lies: only three numbers come back
    if bad := int(values.size - jax.numpy.count_nonzero(jax.numpy.isfinite(values))):
        return f"{bad} NaN or infinite values"
    if not values.size:
        return None
    low, high = float(jax.numpy.min(values)), float(jax.numpy.max(values))
    return None if 0.0 <= low <= high <= 1.0 else f"values in [{shown(low)}, {shown(high)}]"


def shown(value: float) -> str:
    """``value`` in 4 significant digits, unless they would round it into [0, 1] or out of it
    (1.0005 is not shown as 1): then in full."""
    text = f"{value:.4g}"
    return text if (0.0 <= value <= 1.0) == (0.0 <= float(text) <= 1.0) else repr(value)


def occlude_compiled(occlude: OccludeFn, key: jax.Array, clean: jax.Array,
                     images: str = "training images") -> tuple[jax.Array, jax.Array]:
    """``occlude_checked`` under ``jax.jit``; ValueError naming the occlusion and how it is
    called (on ``images``) if it fails there (not key-first, not jit-compatible, ...)."""
    try:
        return jax.jit(functools.partial(occlude_checked, occlude))(key, clean)
    except PartError:
        raise
    except Exception as err:  # the user's code: say which part and how it was called
        raise PartError(f"the occlusion {name(occlude)} failed when called compiled, as "
                        f"occlude(key, images) with a jax.random key and {images} shaped "
                        f"{tuple(clean.shape)} (occlusions must be key-first and jit-compatible):"
                        f" {first_line(err)}") from err


def check_traced(model: Any, loss: Any, params: Any, batch: jax.ShapeDtypeStruct) -> None:
    """PartError, before training, if the custom model or loss (None: the default) fails
    traced with its gradient, as the training step calls it (numpy on traced values, an
    exception of its own): one line naming it, not JAX's traceback from deep in the step."""
    def forward(p: Any, x: jax.Array) -> jax.Array:
        return model.apply({"params": p}, x)

    def total(p: Any, x: jax.Array) -> jax.Array:
        return jax.numpy.sum(forward(p, x))

    if model is not None:
        out = traced(f"the model {name(model)}", lambda: jax.eval_shape(forward, params, batch))
        if is_float_like(out, batch.shape):  # else the step's own check says what is wrong
            traced(f"the model {name(model)}",
                   lambda: jax.eval_shape(jax.grad(total), params, batch))
    if loss is not None:
        out = traced(f"the loss {name(loss)}", lambda: jax.eval_shape(loss, batch, batch))
        if is_float_like(out, ()):
            traced(f"the loss {name(loss)}", lambda: jax.eval_shape(jax.grad(loss), batch, batch))


def check_signatures(model: Any, loss: Any) -> None:
    """PartError, before training, if the custom model or loss (None: the default) cannot be
    called as training calls them: ``model.apply({"params": p}, images)`` (no train flag, no
    rng) and ``loss(reconstruction, target)`` (not the occluded input or the mask)."""
    calls = (("model", model, getattr(model, "__call__", None), 1,
              'model.apply({"params": params}, images)',
              "a model takes the images alone (no train flag or rng: no dropout, no batch "
              "statistics)"),
             ("loss", loss, loss, 2, "loss(reconstruction, target)",
              "a loss gets the reconstruction and the clean target only (not the occluded "
              "input or the mask)"))
    for kind, part, fn, count, how, why in calls:
        if part is None:
            continue
        if fn is None:  # a module without __call__: apply has no method to run
            raise PartError(f"the {kind} {name(part)} has no __call__ method, which {how} runs: "
                            "define __call__(self, images)")
        try:
            inspect.signature(fn).bind(*[None] * count)
        except TypeError as err:
            raise PartError(f"the {kind} {name(part)} cannot be called as {how} ({err}): "
                            f"{why}") from None
        except ValueError:  # no signature to read (a builtin): tracing will tell
            pass


def is_float_like(out: Any, shape: tuple[int, ...]) -> bool:
    """Whether a traced output is one float array of ``shape``."""
    return (isinstance(out, jax.ShapeDtypeStruct) and tuple(out.shape) == tuple(shape)
            and jax.numpy.issubdtype(out.dtype, jax.numpy.floating))


def traced(who: str, run: Callable[[], Any]) -> Any:
    """``run()``; a PartError naming ``who`` if it fails (ValueErrors, already one line, pass)."""
    try:
        return run()
    except ValueError:
        raise
    except Exception as err:  # the user's code: say which part, in one line
        raise PartError(f"{who} failed under jax.jit (training traces models and losses with "
                        f"their gradients: they must be jit-compatible and differentiable): "
                        f"{first_line(err)}") from err


def first_line(err: BaseException) -> str:
    """The error raised by a user's part, in one line: its type and its message's first line."""
    return f"{type(err).__name__}: {(str(err).strip().splitlines() or [''])[0]}"
