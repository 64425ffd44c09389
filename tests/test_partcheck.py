"""Tests for aejax.partcheck: broken custom parts refused in one line that names them."""

from __future__ import annotations

import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import evaluate, loop, occlusion, partcheck, parts, train
from aejax.parts import Parts
from tests.test_parts import CFG, images_u8, numpy_bars, patch, untrained


def test_a_model_or_occlusion_leaving_0_1_is_refused_before_training() -> None:
    class Linear(nn.Module):
        features: int = 784

        @nn.compact
        def __call__(self, x: jax.Array) -> jax.Array:
            return nn.Dense(self.features)(x)

    x = images_u8(32)
    with pytest.raises(ValueError, match=r"the model \S*Linear\(features=784\) returned values in "
                                         r"\[-\d.*\] on training images; images and "
                                         r"reconstructions must lie in \[0, 1\]"):
        loop.fit(CFG, x, progress=False, parts=Parts(model=Linear()))
    seven = functools.partial(lambda key, images, v: (jnp.full_like(images, v),
                                                      jnp.ones(images.shape, bool)), v=7.0)
    with pytest.raises(ValueError, match=r"the occlusion functools.partial\(.*, v=7.0\) returned "
                                         r"values in \[7, 7\]"):
        loop.fit(CFG, x, progress=False, parts=Parts(occlude=seven))
    model, params = untrained()
    with pytest.raises(ValueError, match=r"the occlusion functools.partial\(.*, v=7.0\) returned "
                                         r"values in \[7, 7\] on the test images; images and "
                                         r"reconstructions must lie in \[0, 1\]"):
        evaluate.evaluate(CFG, model, params, x[:10], np.arange(10), occlude=seven)
    linear = Linear()  # at evaluation too, the error names the part
    weights = linear.init(jax.random.key(0), jnp.zeros((1, 784)))["params"]
    with pytest.raises(ValueError, match=r"the model \S*Linear\(features=784\) \(clean "
                                         r"reconstructions\) returned values in \[-\d.*\] on the "
                                         r"test images"):
        evaluate.evaluate(CFG, linear, weights, x[:10], np.arange(10))


def nan_bars(key: jax.Array, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    occluded, mask = occlusion.occlude(key, images, return_mask=True)
    return jnp.where(mask, jnp.nan, occluded), mask


def test_an_occlusion_writing_nan_is_refused_as_such() -> None:
    x = images_u8(32)  # (8, 784) with 75+ NaNs: XLA:CPU's min and max skip them
    with pytest.raises(ValueError, match=r"the occlusion \S*nan_bars returned \d+ NaN or infinite "
                                         "values on training images"):
        loop.fit(CFG, x, progress=False, parts=Parts(occlude=nan_bars))
    model, params = untrained()
    with pytest.raises(ValueError, match=r"the occlusion \S*nan_bars returned \d+ NaN or "
                                         r"infinite values on the test images; images and "
                                         r"reconstructions"):
        evaluate.evaluate(CFG, model, params, x[:10], np.arange(10), occlude=nan_bars)


def images_first(images: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    return patch(key, images)


@pytest.mark.parametrize("occlude,error", [(numpy_bars, "TracerArrayConversionError"),
                                           (images_first, r"\w+Error")])
def test_an_occlusion_that_fails_compiled_is_refused_before_training(
        occlude: Any, error: str, monkeypatch: pytest.MonkeyPatch) -> None:
    numpy_bars(jax.random.key(0), jnp.zeros((2, 784)))  # eagerly it works
    trained = []
    monkeypatch.setattr(loop, "run_epochs", lambda *args: trained.append(args))
    with pytest.raises(ValueError, match=(
            rf"the occlusion \S*\.{occlude.__name__} failed when called compiled, as "
            rf"occlude\(key, images\) with a jax.random key and training images shaped \(8, 784\) "
            rf"\(occlusions must be key-first and jit-compatible\): {error}: ")):
        loop.fit(CFG, images_u8(32), progress=False, parts=Parts(occlude=occlude))  # train: none
    assert not trained


def numpy_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Runs eagerly, but not under jit (numpy on traced values)."""
    return jnp.asarray(np.mean(np.square(np.asarray(pred) - np.asarray(target))))


def raising_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
    raise RuntimeError("a bug of its own")


class NumpyModel(nn.Module):
    """Runs eagerly (numpy on its output), but not under jit."""

    features: int = 784

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return jnp.asarray(np.asarray(nn.sigmoid(nn.Dense(self.features)(x))))


class NumpyAfterInit(nn.Module):
    """Initialises under jit, and runs eagerly, but its traced forward pass fails."""

    features: int = 784

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        y = nn.sigmoid(nn.Dense(self.features)(x))
        return y if self.is_initializing() else jnp.asarray(np.asarray(y))


@pytest.mark.parametrize("custom,error", [
    (Parts(loss=numpy_loss), r"the loss \S*\.numpy_loss failed under jax.jit .*: "
                             "TracerArrayConversionError: "),
    (Parts(loss=raising_loss), r"the loss \S*\.raising_loss failed under jax.jit .*: "
                               "RuntimeError: a bug of its own$"),
    (Parts(model=NumpyModel()), r"the model \S*NumpyModel\(features=784\) failed under jax.jit "
                                r"\(training traces models and losses with their gradients: they "
                                r"must be jit-compatible and differentiable\): "
                                "TracerArrayConversionError: "),
    (Parts(model=NumpyAfterInit()), r"the model \S*NumpyAfterInit\(features=784\) failed under "
                                    "jax.jit .*: TracerArrayConversionError: "),
])
def test_a_model_or_loss_that_fails_under_jit_is_one_error_naming_it(
        custom: Parts, error: str, monkeypatch: pytest.MonkeyPatch) -> None:
    numpy_loss(jnp.zeros((2, 784)), jnp.zeros((2, 784)))  # eagerly they work
    NumpyModel().apply(NumpyModel().init(jax.random.key(0), jnp.zeros((1, 784))),
                       jnp.zeros((2, 784)))
    trained = []
    monkeypatch.setattr(loop, "run_epochs", lambda *args: trained.append(args))
    with pytest.raises(parts.PartError, match=error):  # not JAX's traceback from the step
        loop.fit(CFG, images_u8(32), progress=False, parts=custom)
    assert not trained


def masked_loss(pred: jax.Array, target: jax.Array, occluded: jax.Array) -> jax.Array:
    """Wants the occluded input too, which a loss is not given."""
    return jnp.mean((pred - target) ** 2 * (occluded != target))


class TrainFlag(nn.Module):
    """Wants a train flag, which a model is not given."""

    features: int = 784

    @nn.compact
    def __call__(self, x: jax.Array, train: bool) -> jax.Array:
        return nn.sigmoid(nn.Dense(self.features)(x))


@pytest.mark.parametrize("custom,error", [
    (Parts(loss=masked_loss), r"^the loss \S*\.masked_loss cannot be called as "
                              r"loss\(reconstruction, target\) \(missing a required argument: "
                              r"'occluded'\): a loss gets the reconstruction and the clean "
                              r"target only \(not the occluded input or the mask\)$"),
    (Parts(model=TrainFlag()), r"^the model \S*TrainFlag\(features=784\) cannot be called as "
                               r"model\.apply\(\{\"params\": params\}, images\) \(missing a "
                               r"required argument: 'train'\): a model takes the images alone "
                               r"\(no train flag or rng: no dropout, no batch statistics\)$"),
])
def test_a_model_or_loss_wanting_other_arguments_is_told_how_it_is_called(
        custom: Parts, error: str, monkeypatch: pytest.MonkeyPatch) -> None:
    trained = []
    monkeypatch.setattr(loop, "run_epochs", lambda *args: trained.append(args))
    with pytest.raises(parts.PartError, match=error):
        loop.fit(CFG, images_u8(32), progress=False, parts=custom)
    assert not trained


class EncodeOnly(nn.Module):
    """Has a compact method, but no ``__call__`` for ``apply`` to run."""

    features: int = 784

    @nn.compact
    def encode(self, x: jax.Array) -> jax.Array:
        return nn.sigmoid(nn.Dense(self.features)(x))


def test_a_model_without_call_is_told_that_apply_runs_call(monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    trained = []
    monkeypatch.setattr(loop, "run_epochs", lambda *args: trained.append(args))
    with pytest.raises(parts.PartError, match=r"^the model \S*EncodeOnly\(features=784\) has no "
                       r"__call__ method, which model\.apply\(\{\"params\": params\}, images\) "
                       r"runs: define __call__\(self, images\)$"):  # not "None is not callable"
        loop.fit(CFG, images_u8(32), progress=False, parts=Parts(model=EncodeOnly()))
    assert not trained


def test_a_model_output_of_another_shape_is_refused_naming_the_model() -> None:
    class Classifier(nn.Module):
        features: int = 784

        @nn.compact
        def __call__(self, x: jax.Array) -> jax.Array:
            return nn.sigmoid(nn.Dense(10)(x))

    message = (r"the model \S*Classifier\(features=784\) returned shape \((\d+), 10\) for images "
               r"shaped \(\1, 784\): a reconstruction must be shaped like its input")
    with pytest.raises(ValueError, match=message):  # checked before training
        loop.fit(CFG, images_u8(32), progress=False, parts=Parts(model=Classifier()))
    tx = train.make_optimizer(CFG)
    state = train.create_state(jax.random.key(0), Classifier(), tx)
    with pytest.raises(ValueError, match=message):  # and when the step is traced
        train.make_train_step(CFG, Classifier(), tx)(state, jnp.asarray(images_u8(8)),
                                                     jax.random.key(1))
    with pytest.raises(ValueError, match=message):  # and in evaluation
        evaluate.evaluate(CFG, Classifier(), state.params, images_u8(4), np.arange(4))


def test_a_model_with_integer_reconstructions_is_refused_naming_the_model() -> None:
    class Thresholded(nn.Module):  # in [0, 1], but with no gradient: training would not move
        features: int = 784

        @nn.compact
        def __call__(self, x: jax.Array) -> jax.Array:
            return (nn.Dense(self.features)(x) > 0).astype(jnp.int32)

    message = (r"^the model \S*Thresholded\(features=784\) returned int32 reconstructions: "
               r"they must be floats in \[0, 1\] \(end the model with a sigmoid\)")
    with pytest.raises(parts.PartError, match=message):  # before training
        loop.fit(CFG, images_u8(32), progress=False, parts=Parts(model=Thresholded()))
    tx = train.make_optimizer(CFG)
    state = train.create_state(jax.random.key(0), Thresholded(), tx)
    with pytest.raises(parts.PartError, match=message):  # when the step is traced
        train.make_train_step(CFG, Thresholded(), tx)(state, jnp.asarray(images_u8(8)),
                                                      jax.random.key(1))
    with pytest.raises(parts.PartError, match=message):  # and in evaluation
        evaluate.evaluate(CFG, Thresholded(), state.params, images_u8(4), np.arange(4))


@pytest.mark.parametrize("dtype", [jnp.bool_, jnp.complex64])
def test_boolean_or_complex_reconstructions_are_refused_as_integer_ones_are(dtype) -> None:
    images = jnp.full((2, 4), 0.5)
    partcheck.check_reconstruction(untrained, images, images)  # floats of the input's shape
    with pytest.raises(parts.PartError, match=f"returned {jnp.dtype(dtype)} reconstructions: "
                                              "they must be floats"):
        partcheck.check_reconstruction(untrained, images, images.astype(dtype))


@jax.custom_vjp
def no_backward(x: jax.Array) -> jax.Array:
    """The identity, whose backward pass fails: fine forward, fails differentiated."""
    return x


def _no_backward_bwd(res: Any, g: jax.Array) -> tuple[jax.Array]:
    raise RuntimeError("no backward here")


no_backward.defvjp(lambda x: (x, None), _no_backward_bwd)


def forward_only_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
    return jnp.mean(jnp.square(no_backward(pred) - target))


class ForwardOnly(nn.Module):
    features: int = 784

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return no_backward(nn.sigmoid(nn.Dense(self.features)(x)))


@pytest.mark.parametrize("custom,who", [(Parts(loss=forward_only_loss), "the loss"),
                                        (Parts(model=ForwardOnly()), "the model")])
def test_a_model_or_loss_that_fails_only_differentiated_is_one_error_naming_it(
        custom: Parts, who: str, monkeypatch: pytest.MonkeyPatch) -> None:
    trained = []
    monkeypatch.setattr(loop, "run_epochs", lambda *args: trained.append(args))
    with pytest.raises(parts.PartError, match=f"^{who} .* failed under jax.jit .*: RuntimeError: "
                                              "no backward here$"):
        loop.fit(CFG, images_u8(32), progress=False, parts=custom)
    assert not trained


def test_pixels_are_checked_against_both_ends_of_0_1_exactly() -> None:
    from aejax.partcheck import outside_pixels

    assert outside_pixels(jnp.array([0.0, 0.5, 1.0])) is None
    # not "values in [0, 1]": the digits shown never round a value back into the range
    assert outside_pixels(jnp.array([0.0, 1.0005])) == "values in [0, 1.000499963760376]"
    assert outside_pixels(jnp.array([-1e-4, 1.0])) == "values in [-0.0001, 1]"
    assert outside_pixels(jnp.ones(3)) is None and outside_pixels(jnp.zeros(3)) is None


def test_an_occlusion_returning_more_than_two_arrays_is_refused() -> None:
    def three(key: jax.Array, images: jax.Array) -> tuple[jax.Array, ...]:
        return images, images > 0, images  # one too many for training to unpack

    with pytest.raises(parts.PartError, match=r"must return \(occluded, mask\) shaped like its "
                                              r"images \(2, 4\); .* returned \(\(2, 4\), "
                                              r"\(2, 4\), \(2, 4\)\)$"):
        partcheck.occlude_checked(three, jax.random.key(0), jnp.zeros((2, 4)))


def test_infinite_pixels_are_counted_as_nans_are() -> None:
    values = jnp.array([0.5, jnp.inf, -jnp.inf, jnp.nan])  # not "values in [-inf, inf]"
    assert partcheck.outside_pixels(values) == "3 NaN or infinite values"


def float_mask(key: jax.Array, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    return images, jnp.zeros_like(images)


def test_a_contract_broken_compiled_is_said_as_such_not_as_a_failed_call() -> None:
    with pytest.raises(parts.PartError, match=r"^an occlusion's mask must be boolean; "
                                              r"\S*float_mask returned float32\b"):
        partcheck.occlude_compiled(float_mask, jax.random.key(0), jnp.zeros((2, 4)))


def test_a_parts_error_is_named_by_its_first_line() -> None:
    err = RuntimeError("  shapes differ\n  (8, 784) and (8, 10)\n")
    assert partcheck.first_line(err) == "RuntimeError: shapes differ"
    assert partcheck.first_line(KeyError()) == "KeyError: "


def per_pixel_loss(pred: jax.Array, target: jax.Array) -> jax.Array:
    return jnp.square(pred - target)  # forgot the mean: not a scalar


def test_a_loss_that_is_not_a_scalar_is_told_so_before_training(monkeypatch: pytest.MonkeyPatch
                                                                  ) -> None:
    trained = []
    monkeypatch.setattr(loop, "run_epochs", lambda *args: trained.append(args))
    with pytest.raises(ValueError, match=r"^a loss must return a scalar; \S*per_pixel_loss "
                                         r"returned shape \(8, 784\)"):  # not "failed under jit"
        loop.fit(CFG, images_u8(32), progress=False, parts=Parts(loss=per_pixel_loss))
    assert not trained
