"""The pluggable parts of a run: the model, the loss and the occlusion (None: the original's).

A research extension is a pure function or a Flax module handed to ``loop.fit``,
``experiment.run`` or ``evaluate.evaluate`` as ``Parts(...)``; nothing is patched or registered:

- ``loss(reconstruction_NxD, target_NxD) -> scalar``, differentiable (default: ``train.mse``);
- ``occlude(key, clean_NxD) -> (occluded_NxD, mask_NxD)``: key-first and pure, floats in [0, 1]
  in and out, the mask boolean (True where the image was changed); it occludes the training
  inputs (``--train-occlusion all`` or ``mixed``) and the test images (default: the config's
  bars, ``Bars``);
- ``model``: a hashable Flax Linen module with a ``features`` attribute (pixels per image) that
  maps float images (N, features) to reconstructions of the same shape in [0, 1] (default:
  ``Autoencoder`` from the config).

Functions are traced into the compiled step, so they must be jit-compatible. They are compared
by identity, so pass the same object to reuse evaluation's compiled programs (training compiles
its chunks in every ``loop.fit``); ``Parts.describe`` names them
(``name``) in config.json and in checkpoints, and a run is resumed only with the same names.
``loop.fit`` checks the ranges (``partcheck.check_ranges``) before it trains, and checkpoints
record what each part computes (``partdigest.digests``).
"""

from __future__ import annotations

import dataclasses
import functools
import importlib
import inspect
import json
import os
import re
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import numpy as np

from aejax import occlusion
from aejax.config import Config
from aejax.data import array_sha256

LossFn = Callable[[jax.Array, jax.Array], jax.Array]
OccludeFn = Callable[[jax.Array, jax.Array], tuple[jax.Array, jax.Array]]
SHARED_NAME = re.compile(r"<lambda>|<locals>|(^|\W)__main__\.")  # names others share too


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
    # How --parts named them (``load``), recorded so that hints can repeat it; not compared.
    spec: str | None = dataclasses.field(default=None, compare=False)

    def __post_init__(self) -> None:
        model = self.model
        if isinstance(model, type):
            raise PartError(f"the model {name(model)} is a class: give an instance, "
                            f"{model.__name__}()")
        if model is not None and not (callable(getattr(model, "init", None))
                                      and callable(getattr(model, "apply", None))):
            raise PartError(f"the model {name(model)} is not a Flax Linen module (no init and "
                            "apply): see aejax.parts")
        for field in ("loss", "occlude"):
            if (part := getattr(self, field)) is not None and not callable(part):
                if isinstance(part, Parts):  # Parts(occlude=myparts.PATCH)
                    raise PartError(f"the {field} {name(part)} is not a function but parts: "
                                    f"give its .{field}")
                raise PartError(f"the {field} {part!r} is not a function: give the function "
                                "itself (e.g. a def at module level), not its name")
        for field in ("model", "loss", "occlude"):
            try:
                hash(getattr(self, field))
            except TypeError:
                raise PartError(f"the {field} {name(getattr(self, field))} is not hashable: "
                                "parts are static arguments of the compiled programs; give a "
                                "module tuple fields, not lists") from None

    def describe(self) -> dict[str, str | None]:
        """A name for each custom part (None for the defaults), for config.json and checkpoints."""
        return {"model": name(self.model), "loss": name(self.loss), "occlude": name(self.occlude)}

    def unused(self) -> list[str]:
        """The config fields that the custom parts replace: a custom model's ``hidden`` and
        ``init_scheme``, a custom occlusion's ``occlusion_*`` (config.json marks them)."""
        fields = ["hidden", "init_scheme"] if self.model is not None else []
        if self.occlude is not None:
            fields += [f"occlusion_{k}" for k in ("width", "value", "low", "high", "orientation",
                                                  "bars")]
        return fields

    def ambiguous(self) -> list[str]:
        """The custom parts whose names other parts share (lambdas, functions defined inside
        functions, anything defined in the script run as ``__main__``): resume and compare.py
        cannot tell those apart."""
        return [k for k, v in self.describe().items() if v and SHARED_NAME.search(v)]


def require(parts: Any) -> Parts:
    """``parts`` if it is a ``Parts``; PartError saying how to make one otherwise (a bare
    function or module, a dict)."""
    if not isinstance(parts, Parts):
        raise PartError(f"parts must be an aejax.parts.Parts, got {name(parts)}: wrap them, e.g. "
                        "Parts(occlude=fn), Parts(model=Model(), loss=fn)")
    return parts


def require_occlusion(occlude: Any) -> None:
    """PartError unless ``occlude`` is an occlusion function (or None, the config's bars)."""
    if occlude is not None and not callable(occlude):
        hint = ": pass its .occlude" if isinstance(occlude, Parts) else ""
        raise PartError(f"occlude must be a function (key, images) -> (occluded, mask), got "
                        f"{name(occlude)}{hint}")


def load(spec: str) -> Parts:
    """The ``Parts`` that ``MODULE:NAME`` names (``--parts`` of train.py and evaluate.py): the
    object NAME in MODULE, imported with the current folder on the module path.

    ValueError, in one line, if the spec is malformed, the module cannot be imported, or NAME is
    missing or not a ``Parts``.
    """
    module_name, colon, attr = spec.partition(":")
    if not (colon and module_name and attr.isidentifier()):
        raise ValueError(f"--parts takes MODULE:NAME, a Parts object in a module you can import "
                         f"(e.g. myparts:PARTS for PARTS = Parts(...) in ./myparts.py), "
                         f"got {spec!r}")
    if module_name.endswith(".py") or "/" in module_name or os.sep in module_name:
        stem = os.path.basename(module_name).removesuffix(".py")
        raise ValueError(f"--parts {spec}: MODULE is a module name, not a file or path: "
                         f"--parts {stem}:{attr}, run from the folder that holds {stem}.py")
    if not all(p.isidentifier() for p in module_name.split(".")):
        raise ValueError(f"--parts {spec}: {module_name} is not a module name Python can import "
                         "(letters, digits and _; packages joined by .): rename the file")
    if os.getcwd() not in sys.path and "" not in sys.path:  # python scripts/train.py: scripts/
        sys.path.append(os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as err:
        if err.name and (module_name + ".").startswith(err.name + "."):
            raise ValueError(f"--parts {spec}: no module named {err.name} in the current folder "
                             "or on the module path") from None
        raise ValueError(f"--parts {spec}: importing {module_name} failed ({err})") from None
    except Exception as err:  # the user's module raised: one line (AEJAX_DEBUG=1: traceback)
        raise ValueError(f"--parts {spec}: importing {module_name} failed "
                         f"({type(err).__name__}: {err})") from err
    missing = object()
    found = getattr(module, attr, missing)
    if not isinstance(found, Parts):
        what = f"no {attr}" if found is missing else f"{attr} of type {type(found).__name__}"
        where = getattr(module, "__file__", None) or module_name
        raise ValueError(f"--parts {spec}: {module_name} ({where}) has {what}, not an "
                         f"aejax.parts.Parts (define {attr} = Parts(model=..., loss=..., "
                         "occlude=...) there)")
    return dataclasses.replace(found, spec=spec)


def spec_in(info: dict[str, Any]) -> str:
    """The ``--parts`` a run's config.json (``info``) recorded, else a placeholder."""
    return info.get("parts_spec") or "MODULE:NAME"


def spec_of(workdir: str | os.PathLike) -> str:
    """``spec_in`` the config.json in ``workdir`` (the placeholder if it records none)."""
    return recorded_spec(workdir) or spec_in({})


def recorded_spec(workdir: str | os.PathLike) -> str | None:
    """The ``parts_spec`` of the config.json in ``workdir`` (None if it cannot be read)."""
    try:
        info = json.loads((Path(workdir) / "config.json").read_text())
    except (OSError, ValueError):
        return None
    return info.get("parts_spec") if isinstance(info, dict) else None


def name(part: Any) -> str | None:
    """A name for a part that is the same in every process (no memory addresses); None for None.

    A function (or a class, or any object with a ``__qualname__``): ``module.qualname``; a bound
    method: its object's name, then ``.method``; ``functools.partial(name, arguments)``; a
    dataclass instance (a Linen module): ``module.Class(field=value, ...)``; any other object:
    ``module.Class(attribute=value, ...)`` of its public attributes.
    """
    if part is None:
        return None
    if isinstance(part, functools.partial):
        args = [value_name(a) for a in part.args]
        args += [f"{k}={value_name(v)}" for k, v in part.keywords.items()]
        return f"functools.partial({', '.join([str(name(part.func)), *args])})"
    if inspect.ismethod(part):
        return f"{name(part.__self__)}.{part.__func__.__name__}"
    kind = type(part)
    if dataclasses.is_dataclass(part) and not isinstance(part, type):
        fields = ", ".join(f"{f.name}={value_name(getattr(part, f.name))}"
                           for f in dataclasses.fields(part) if f.name not in ("parent", "name"))
        return f"{kind.__module__}.{kind.__qualname__}({fields})"
    qualname = getattr(part, "__qualname__", None)
    if isinstance(qualname, str):
        return f"{getattr(part, '__module__', None) or kind.__module__}.{qualname}"
    state = {k: v for k, v in getattr(part, "__dict__", {}).items() if not k.startswith("_")}
    fields = ", ".join(f"{k}={value_name(v)}" for k, v in sorted(state.items()))
    return f"{kind.__module__}.{kind.__qualname__}" + (f"({fields})" if state else "")


def value_name(value: Any) -> str:
    """A field's or argument's value in a part's name: literals as ``repr``, else ``name``."""
    if value is None or isinstance(value, (bool, int, float, str, bytes)):
        return repr(value)
    if isinstance(value, np.generic):
        return repr(value.item())
    if isinstance(value, (np.ndarray, jax.Array)) and not isinstance(value, jax.core.Tracer):
        if jax.dtypes.issubdtype(value.dtype, jax.dtypes.prng_key):
            return f"key({array_name(np.asarray(jax.random.key_data(value)))})"
        if value.dtype != object:
            return array_name(np.asarray(value))
    if isinstance(value, (tuple, list)):
        inner = ", ".join(map(value_name, value))
        return f"[{inner}]" if isinstance(value, list) else f"({inner}{',' * (len(value) == 1)})"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {value_name(v)}" for k, v in value.items()) + "}"
    return str(name(value))


def array_name(value: np.ndarray) -> str:
    """An array argument by its values (``partial(fn, p=jnp.float32(0.1))`` named by 0.1, not
    by its type, which every value shares): a scalar as the number, a few values as a list,
    more by shape, dtype and a digest of their bytes."""
    if value.ndim == 0:
        return repr(value.item())
    if value.size <= 16:
        return f"array({value.tolist()!r}, {value.dtype})"
    return f"array(shape={value.shape}, {value.dtype}, sha256={array_sha256(value)[:16]})"


class PartError(ValueError):
    """A custom part broke its contract (shape, dtype, range); the message names the part."""
