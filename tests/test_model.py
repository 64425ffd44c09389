"""Tests for aejax.model: sizes, parameter count, output range and the two initialisations."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax.model import Autoencoder, count_params, init_params


def test_default_model_has_214594_parameters_and_mirrored_layers() -> None:
    params = init_params(jax.random.key(0), Autoencoder())
    assert count_params(params) == 214_594
    shapes = [params[f"dense_{i}"]["kernel"].shape for i in range(4)]
    assert shapes == [(784, 128), (128, 50), (50, 128), (128, 784)]


@pytest.mark.parametrize("hidden", [(64,), (256, 64, 16)])
def test_configurable_sizes(hidden: tuple[int, ...]) -> None:
    model = Autoencoder(features=100, hidden=hidden)
    params = init_params(jax.random.key(0), model)
    widths = [100, *hidden, *hidden[-2::-1], 100]
    expected = sum(a * b + b for a, b in zip(widths[:-1], widths[1:]))
    assert count_params(params) == expected
    assert model.apply({"params": params}, jnp.ones((3, 100))).shape == (3, 100)


def test_output_is_a_probability_per_pixel() -> None:
    model = Autoencoder()
    params = init_params(jax.random.key(1), model)
    x = jax.random.uniform(jax.random.key(2), (5, 784))
    y = np.asarray(model.apply({"params": params}, x))
    assert y.shape == (5, 784) and y.min() > 0.0 and y.max() < 1.0


def test_torch_init_is_uniform_within_fan_in_bound_and_flax_init_differs() -> None:
    torch_params = init_params(jax.random.key(0), Autoencoder())
    for layer in torch_params.values():
        bound = layer["kernel"].shape[0] ** -0.5
        for leaf in (layer["kernel"], layer["bias"]):
            assert float(jnp.max(jnp.abs(leaf))) <= bound
            assert float(jnp.std(leaf)) == pytest.approx(bound / np.sqrt(3), rel=0.15)
    flax_params = init_params(jax.random.key(0), Autoencoder(init_scheme="flax"))
    assert all(float(jnp.abs(v["bias"]).max()) == 0.0 for v in flax_params.values())
    for layer in flax_params.values():  # LeCun-normal: std 1/sqrt(fan_in), not torch's uniform
        fan_in = layer["kernel"].shape[0]
        assert float(jnp.std(layer["kernel"])) == pytest.approx(fan_in ** -0.5, rel=0.1)


def test_torch_init_reaches_the_fan_in_bound_itself() -> None:
    # the largest of n uniform draws falls short of the bound by about bound / n: a bound of
    # 1/sqrt(fan_in + 1) (or any a little smaller) leaves every kernel further short than 20 / n
    for layer in init_params(jax.random.key(0), Autoencoder()).values():
        kernel = layer["kernel"]
        bound = kernel.shape[0] ** -0.5
        assert float(jnp.max(jnp.abs(kernel))) >= bound * (1 - 20 / kernel.size)


def test_unknown_init_scheme_is_rejected() -> None:
    with pytest.raises(ValueError, match="init must be one of"):
        init_params(jax.random.key(0), Autoencoder(init_scheme="xavier"))


def test_forward_is_relu_on_every_hidden_layer_then_sigmoid() -> None:
    model = Autoencoder(features=36, hidden=(16, 4))
    params = init_params(jax.random.key(3), model)
    p = jax.tree.map(lambda a: np.asarray(a, np.float64), params)  # NumPy broadcasts the biases
    x = np.asarray(jax.random.uniform(jax.random.key(4), (5, 36)), np.float64)
    h = x
    for i in range(3):  # 36 -> 16 -> 4 (the code) -> 16, each followed by ReLU
        h = np.maximum(h @ p[f"dense_{i}"]["kernel"] + p[f"dense_{i}"]["bias"], 0)
    out = 1 / (1 + np.exp(-(h @ p["dense_3"]["kernel"] + p["dense_3"]["bias"])))
    np.testing.assert_allclose(model.apply({"params": params}, x.astype(np.float32)), out,
                               rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("features", [0, -3])
def test_a_model_taking_no_pixels_is_one_error_not_a_traceback(features: int) -> None:
    with pytest.raises(ValueError, match=rf"^a model needs a positive integer 'features' "
                                         rf"attribute \(pixels per image\); Autoencoder has "
                                         rf"{features}$"):
        init_params(jax.random.key(0), Autoencoder(features=features))


@pytest.mark.parametrize("hidden", [(0,), (128, -1), (2.5,), 8, "128", (True,)])
def test_hidden_sizes_that_are_not_positive_integers_are_one_error(hidden: object) -> None:
    # Config checks its own; a model built in Python (parts.Parts(model=...)) got a
    # ZeroDivisionError (torch init of a 0-wide layer), an MLIRError or a TypeError
    with pytest.raises(ValueError, match="Autoencoder's hidden sizes must be a sequence of "
                                         "integers >= 1"):
        Autoencoder(hidden=hidden)
