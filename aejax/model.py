"""The MLP autoencoder (Flax Linen): 784-128-50-128-784, ReLU hidden layers, sigmoid output."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from aejax.occlusion import is_integer

INITS: tuple[str, ...] = ("torch", "flax")


def torch_uniform(fan_in: int) -> nn.initializers.Initializer:
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's ``nn.Linear`` default for weights, biases."""
    bound = fan_in ** -0.5

    def init(key: jax.Array, shape: Sequence[int], dtype: Any = jnp.float32) -> jax.Array:
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


class Autoencoder(nn.Module):
    """A fully connected autoencoder whose decoder mirrors the encoder.

    ``hidden=(128, 50)`` gives 784 -> 128 -> 50 -> 128 -> 784 (214,594 parameters). Every hidden
    layer, the code included, is followed by ReLU; the output by a sigmoid, so reconstructions lie
    in [0, 1] like the pixels. ``init_scheme="torch"`` (default) initialises like the PyTorch
    original; ``"flax"`` uses Flax's defaults (LeCun-normal weights, zero biases).
    """

    features: int = 784
    hidden: tuple[int, ...] = (128, 50)  # a list is taken too, and kept as a tuple
    init_scheme: str = "torch"

    def __post_init__(self) -> None:
        hidden = self.hidden  # checked here, as Config checks its own: a 0 ended in 0 ** -0.5
        if not isinstance(hidden, (str, bytes)) and isinstance(hidden, Iterable):
            hidden = tuple(hidden)  # a list, an array or a generator
        if not isinstance(hidden, tuple) or not all(is_integer(h) and h >= 1 for h in hidden):
            raise ValueError(f"the Autoencoder's hidden sizes must be a sequence of integers "
                             f">= 1, got {self.hidden!r}")
        object.__setattr__(self, "hidden", hidden)  # a tuple: hashable, for jit's static args
        super().__post_init__()

    def dense(self, x: jax.Array, width: int, index: int) -> jax.Array:
        """One Dense layer with the chosen initialisation."""
        if self.init_scheme == "torch":
            uniform = torch_uniform(x.shape[-1])
            return nn.Dense(width, kernel_init=uniform, bias_init=uniform, name=f"dense_{index}")(x)
        if self.init_scheme == "flax":
            return nn.Dense(width, name=f"dense_{index}")(x)
        raise ValueError(f"init must be one of {INITS}, got {self.init_scheme!r}")

    @nn.compact
    def __call__(self, x_BxD: jax.Array) -> jax.Array:
        widths = list(self.hidden) + list(self.hidden[-2::-1])
        for i, w in enumerate(widths):
            x_BxD = nn.relu(self.dense(x_BxD, w, i))
        return nn.sigmoid(self.dense(x_BxD, self.features, len(widths)))


def features_of(model: Any, expected: int) -> Any:
    """The model's ``features`` (pixels per image it takes); ValueError, with the field to add,
    for a model without one."""
    if not hasattr(model, "features"):
        raise ValueError(f"the model {type(model).__name__} has no 'features' attribute (the "
                         f"pixels per image it takes): give it a field features: int = {expected}")
    return model.features


def init_params(key: jax.Array, model: nn.Module) -> dict:
    """Initialise the parameter pytree for one flat input of ``model.features`` pixels (any
    Linen module with an integer ``features`` attribute, see ``aejax.parts``)."""
    features = getattr(model, "features", None)
    if not is_integer(features) or features < 1:
        raise ValueError(f"a model needs a positive integer 'features' attribute (pixels per "
                         f"image); {type(model).__name__} has {features!r}")
    variables = model.init(key, jnp.zeros((1, int(features))))
    if extra := sorted(set(variables) - {"params"}):
        raise ValueError(f"the model {type(model).__name__} keeps {', '.join(extra)} besides its "
                         "params: models here are deterministic functions of their params (no "
                         "batch statistics)")
    return variables["params"]


def count_params(params: dict) -> int:
    """Total number of scalar parameters in a pytree."""
    return sum(x.size for x in jax.tree.leaves(params))
