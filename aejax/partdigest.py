"""Digests of what each custom part computes, recorded in checkpoints so that a resume notices a
part edited under the same name (``resumable``)."""

from __future__ import annotations

import hashlib
from typing import Any

import jax
import numpy as np

from aejax.parts import Parts


DIGEST_VERSION = 3  # how ``digests`` are computed; digests of another version are not compared
# (3: the constants of nested jaxprs on JAX 0.11+, whose Jaxpr holds them; 2 missed them there)


def digests(parts: Parts, model: Any, params: Any, batch: jax.ShapeDtypeStruct,
            key: jax.Array) -> dict[str, str]:
    """A digest of what each custom part computes: the SHA-256 of its jaxpr and constants for a
    training batch shaped like ``batch`` (with ``params``, ``key``; the loss gets the model's
    output type), so that a resume notices a part changed under the same name.

    The jaxpr (of the model's and the loss's gradients too, so custom_vjp/custom_jvp rules
    count) holds the operations and constants (those of nested jaxprs too), not the source:
    comments and formatting do not count, a changed formula or constant does (and so may another
    JAX version); the Python inside a ``pure_callback`` does not. A part that cannot be traced or
    hashed gets no digest (training reports why a part cannot be traced when it compiles the
    step).
    """
    def apply(p: Any, x: jax.Array) -> jax.Array:
        return model.apply({"params": p}, x)

    def model_and_grad(p: Any, x: jax.Array) -> Any:  # the backward too: custom_vjp rules
        return jax.value_and_grad(lambda q: jax.numpy.sum(apply(q, x)))(p)

    def traced(part: str) -> Any:  # with the gradient where it can be taken, else forward only
        if part == "occlude":
            return jax.make_jaxpr(parts.occlude)(key, batch)
        if part == "model":
            with_grad, forward, args = model_and_grad, apply, (params, batch)
        else:
            with_grad, forward = jax.value_and_grad(parts.loss), parts.loss
            args = (jax.eval_shape(apply, params, batch), batch)
        try:
            return jax.make_jaxpr(with_grad)(*args)
        except TypeError:  # integer outputs or parameters: no gradient to trace
            return jax.make_jaxpr(forward)(*args)

    out = {}
    for part in ("model", "loss", "occlude"):
        if getattr(parts, part) is None:
            continue
        try:
            closed = traced(part)
            digest = hashlib.sha256(str(closed).encode())
            for const in constants(closed):  # arrays print as shapes only: hash their values
                digest.update(np.asarray(const).tobytes())
        except Exception:  # noqa: BLE001 (untraceable, or constants not all on this process)
            continue
        out[part] = digest.hexdigest()[:16]
    return out


def constants(closed: Any) -> list[Any]:
    """The constants of a closed jaxpr and of every jaxpr nested in its equations (a jitted
    helper's closure, a scan's body, ...), keys as their raw data."""
    found, todo, seen = [], [closed], set()
    while todo:
        item = todo.pop()
        if id(item) in seen:  # a helper called many times is one shared jaxpr: walk it once
            continue
        seen.add(id(item))
        if not (hasattr(item, "jaxpr") or hasattr(item, "eqns")):  # an equation's other params
            continue
        inner = getattr(item, "jaxpr", item)
        found.extend(getattr(item, "consts", ()))  # a ClosedJaxpr's; JAX 0.11's Jaxpr has them
        if inner is not item:  # a ClosedJaxpr (JAX < 0.11): its Jaxpr holds the equations
            todo.append(inner)
        elif hasattr(item, "eqns"):  # a Jaxpr
            for eqn in item.eqns:
                for value in eqn.params.values():
                    todo.extend(value if isinstance(value, (tuple, list)) else [value])
    return [jax.random.key_data(c) if jax.dtypes.issubdtype(jax.numpy.result_type(c),
                                                           jax.dtypes.prng_key) else c
            for c in found]
