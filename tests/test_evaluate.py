"""Tests for aejax.evaluate: the one-program evaluation against its pieces computed one by one."""

from __future__ import annotations

import logging

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import data, evaluate, metrics, parts, train
from aejax.config import Config
from tests.conftest import cpu, synthetic_digits
from tests.test_metrics import metrics_atol
from tests.test_partcheck import TrainFlag

N = 2 * metrics.CHUNK + 50  # two whole chunks and a remainder


@pytest.fixture(scope="module")
def setup() -> tuple[Config, object, dict, np.ndarray, np.ndarray]:
    """A config, a freshly initialised model and N synthetic test digits with labels."""
    cfg = Config(occlusion_bars=2, occlusion_orientation="random", eval_seed=3)
    model = train.make_model(cfg)
    params = train.create_state(jax.random.key(0), model, train.make_optimizer(cfg)).params
    images, labels = synthetic_digits(N, seed=5)
    return cfg, model, params, images, labels


def test_evaluate_equals_reconstruct_all_and_each_metric_function(setup) -> None:
    with jax.default_device(cpu()):  # bit for bit there; on an H100 4% of pixels differ (<8e-6)
        evaluate_equals_its_parts(*setup)


def evaluate_equals_its_parts(cfg: Config, model: object, params: dict, images: np.ndarray,
                              labels: np.ndarray) -> None:
    """``evaluate``'s one program gives ``reconstruct_all``'s arrays and each metric's values."""
    params = jax.device_put(params, cpu())  # the module's fixture made them on the default device
    test, arrays = evaluate.evaluate(cfg, model, params, images, labels)
    clean = evaluate.to_float(images.reshape(N, -1))  # as evaluate converts
    np.testing.assert_allclose(clean, images.reshape(N, -1) / 255.0, rtol=1e-7)
    expected = evaluate.reconstruct_all(model, params, clean, evaluate.eval_key(cfg),
                                        parts.bars(cfg))
    assert list(arrays) == list(expected) + ["labels", "per_image"]
    for name, value in expected.items():
        np.testing.assert_array_equal(arrays[name], value, err_msg=name)
    mask = expected["mask"]
    assert list(arrays["per_image"]) == list(evaluate.COMPARISONS)
    summaries = {}
    for comparison, pred in evaluate.compared(expected).items():
        separate = {"mse": metrics.mse(clean, pred), "psnr": metrics.psnr(clean, pred),
                    "ssim": metrics.ssim(clean, pred), "corr": metrics.corr(clean, pred),
                    "corr_nonzero": metrics.corr_nonzero(clean, pred),
                    "on_bar_mse": metrics.masked_mse(clean, pred, mask),
                    "off_bar_mse": metrics.masked_mse(clean, pred, ~mask)}
        values = arrays["per_image"][comparison]
        assert list(values) == list(separate)
        for name, want in separate.items():
            assert values[name].dtype == np.float64 and values[name].shape == (N,)
            np.testing.assert_allclose(values[name], want, rtol=1e-6, atol=metrics_atol(name),
                                       err_msg=f"{comparison} {name}")
        summaries[comparison] = {name: np.asarray(v, np.float64) for name, v in separate.items()}
    assert np.all(arrays["per_image"]["occluded_input"]["off_bar_mse"] == 0.0)  # exactly
    want = evaluate.summary(summaries, labels)
    assert jax.tree.structure(test) == jax.tree.structure(want)
    np.testing.assert_allclose(jax.tree.leaves(test), jax.tree.leaves(want), rtol=1e-6, atol=1e-7)


def test_nan_parameters_are_refused_like_per_image_refuses_nan_predictions(setup) -> None:
    cfg, model, params, images, labels = setup
    nan_params = jax.tree.map(lambda p: np.full_like(p, np.nan), params)
    with pytest.raises(ValueError, match=f"pred contain {N * 784} NaN or infinite values"):
        evaluate.evaluate(cfg, model, nan_params, images, labels)


def test_reconstruct_all_does_not_compile_again_for_new_parameters(setup) -> None:
    cfg, model, params, images, _ = setup
    clean = jnp.asarray(images[:8].reshape(8, -1), jnp.float32) / 255.0
    doubled = jax.tree.map(lambda p: 2 * p, params)
    evaluate.reconstruct_all(model, params, clean, evaluate.eval_key(cfg), parts.bars(cfg))
    before = evaluate.reconstruct._cache_size()
    out = evaluate.reconstruct_all(model, doubled, clean, evaluate.eval_key(cfg),
                                   parts.bars(cfg))
    assert evaluate.reconstruct._cache_size() == before
    np.testing.assert_allclose(out["recon_clean"], model.apply({"params": doubled}, clean),
                               rtol=1e-6)


def test_the_eval_key_reuses_no_training_key_and_takes_every_seed(setup) -> None:
    _, model, params, images, labels = setup
    for seed in (0, 7):
        root = train.root_keys(seed)
        used = jnp.stack([jax.random.key_data(root[k]) for k in ("init", "data", "noise")])
        ours = evaluate.eval_key(Config(seed=seed, eval_seed=seed))
        # nor do the keys the bars draw from (occlusion.sample_bars splits it): key(seed) itself
        # would split into the init and data keys
        for k in (ours, *jax.random.split(ours)):
            k = np.asarray(jax.random.key_data(k))
            assert not np.any(np.all(np.asarray(used) == k[None], axis=-1))  # own key
    for eval_seed in (2**31, 2**32 - 1):  # beyond int32: the key is made outside the program
        test, _ = evaluate.evaluate(Config(eval_seed=eval_seed), model, params, images[:20],
                                    labels[:20])
        assert np.isfinite(test["occluded"]["mse"])
    same = [evaluate.eval_key(Config(seed=s, eval_seed=5)) for s in (0, 9)]
    other = evaluate.eval_key(Config(eval_seed=6))
    data = [np.asarray(jax.random.key_data(k)) for k in (*same, other)]
    assert np.array_equal(data[0], data[1]) and not np.array_equal(data[0], data[2])


def test_each_comparison_scores_its_own_reconstruction_against_the_clean_image(setup) -> None:
    cfg, model, params, images, labels = setup
    with jax.default_device(cpu()):
        params = jax.device_put(params, cpu())
        _, arrays = evaluate.evaluate(cfg, model, params, images, labels)
        clean = images.reshape(N, -1).astype(np.float32) / 255
        occluded = arrays["occluded_input"]  # checked against the key's bars elsewhere
        want = {"clean": model.apply({"params": params}, clean),  # built here, not by evaluate
                "occluded_input": occluded,
                "occluded": model.apply({"params": params}, occluded)}
    assert set(want) == set(evaluate.COMPARISONS)
    for name, pred in want.items():
        mse = np.mean(np.square(np.asarray(pred, np.float64) - clean), axis=1)
        np.testing.assert_allclose(arrays["per_image"][name]["mse"], mse, rtol=1e-5,
                                   err_msg=name)


def every_other(key: jax.Array, clean: jax.Array) -> tuple[jax.Array, jax.Array]:
    """The default bars on even images only: odd images come back untouched (mask all False)."""
    occluded, mask = parts.bars(Config())(key, clean)
    even = (jnp.arange(clean.shape[0]) % 2 == 0)[:, None]
    return jnp.where(even, occluded, clean), mask & even


def untouched(key: jax.Array, clean: jax.Array) -> tuple[jax.Array, jax.Array]:
    return clean, jnp.zeros(clean.shape, bool)


def whitened(key: jax.Array, clean: jax.Array) -> tuple[jax.Array, jax.Array]:
    return jnp.ones_like(clean), jnp.ones(clean.shape, bool)


@pytest.mark.parametrize("occlude,metric,count,means", [
    (every_other, "on_bar_mse", 5, "left out of its means"),
    (untouched, "on_bar_mse", 10, "so its test means are NaN"),
    (whitened, "off_bar_mse", 10, "so its test means are NaN"),
])
def test_images_with_an_empty_or_full_mask_are_nan_and_warned_about(
        setup, caplog, occlude, metric: str, count: int, means: str) -> None:
    cfg, model, params, images, labels = setup
    with caplog.at_level(logging.WARNING, logger="aejax.evaluate"):
        test, arrays = evaluate.evaluate(cfg, model, params, images[:10], labels[:10],
                                         occlude=occlude)
    what = "no occluded pixel" if metric == "on_bar_mse" else "every pixel occluded"
    constant = ([CONSTANT.format("occluded_input", 10, "so its test means are NaN")]
                if occlude is whitened else [])
    assert caplog.messages == [f"{count} of 10 test images have {what} (the occlusion's mask): "
                               f"their {metric} is undefined, NaN, {means}", *constant]
    undefined = ~np.asarray(arrays["mask"]).any(axis=1) if metric == "on_bar_mse" else \
        np.asarray(arrays["mask"]).all(axis=1)
    assert undefined.sum() == count
    for comparison in evaluate.COMPARISONS:
        values = arrays["per_image"][comparison][metric]
        np.testing.assert_array_equal(np.isnan(values), undefined)
        if count < 10:
            assert test[comparison][metric] == pytest.approx(values[~undefined].mean())
        else:
            assert np.isnan(test[comparison][metric])


CONSTANT = ("test.{0}: {1} of 10 test images are constant or compared with a constant image: "
            "their corr is undefined, NaN, {2}")


def test_constant_reconstructions_have_no_correlation_and_are_warned_about(setup,
                                                                          caplog) -> None:
    cfg, model, params, images, labels = setup
    last = sorted(params)[-1]  # the output layer: all-zero weights give 0.5 everywhere
    params = {**params, last: jax.tree.map(jnp.zeros_like, params[last])}
    images = images[:10].copy()
    images[3] = 0  # a blank test image: no correlation with anything, the occluded input's too
    images[5] = np.where(images[5] > 0, 255, 0)  # ink all 255 (as MNIST's test image 9051):
    # corr_nonzero undefined in every comparison, which is not warned about
    with caplog.at_level(logging.WARNING, logger="aejax.evaluate"):
        test, arrays = evaluate.evaluate(cfg, model, params, images, labels[:10])
    assert caplog.messages == [CONSTANT.format("clean", 10, "so its test means are NaN"),
                               CONSTANT.format("occluded_input", 1, "left out of its means"),
                               CONSTANT.format("occluded", 10, "so its test means are NaN")]
    for name in evaluate.COMPARISONS:
        for metric in ("corr", "corr_nonzero"):
            values = arrays["per_image"][name][metric]
            assert np.isnan(values[3]) and (np.isnan(test[name][metric]) or name ==
                                            "occluded_input")
    assert np.isnan(arrays["per_image"]["occluded_input"]["corr_nonzero"][5])
    assert not np.isnan(arrays["per_image"]["occluded_input"]["corr"][5])
    assert test["occluded_input"]["corr"] == pytest.approx(
        np.delete(arrays["per_image"]["occluded_input"]["corr"], 3).mean())


def test_the_real_mnist_test_set_is_evaluated_without_a_warning(mnist_dir, tmp_path,
                                                               caplog) -> None:
    cfg = Config()  # test image 9051 has corr_nonzero NaN in every comparison: no news
    ds = data.load("mnist", data_dir=mnist_dir, data_root=tmp_path, test_only=True)
    model = train.make_model(cfg)
    params = train.create_state(jax.random.key(0), model, train.make_optimizer(cfg)).params
    with caplog.at_level(logging.WARNING, logger="aejax.evaluate"):
        _, arrays = evaluate.evaluate(cfg, model, params, ds.test_images, ds.test_labels)
    assert [r.getMessage() for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert np.isnan(arrays["per_image"]["occluded"]["corr_nonzero"][9051])


def test_the_config_bars_are_not_warned_about(setup, caplog) -> None:
    cfg, model, params, images, labels = setup
    with caplog.at_level(logging.WARNING, logger="aejax.evaluate"):
        evaluate.evaluate(cfg, model, params, images[:10], labels[:10])
    assert caplog.messages == []


def numpy_rows(key: jax.Array, clean: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Runs eagerly (numpy on its images), but not under jit."""
    mask = np.asarray(clean) > 2  # never: an empty mask
    return clean, jnp.asarray(mask)


def images_first(clean: jax.Array, key: jax.Array) -> tuple[jax.Array, jax.Array]:
    mask = jax.random.bernoulli(key, 0.1, clean.shape)  # the images as its key
    return jnp.where(mask, 1.0, clean), mask


@pytest.mark.parametrize("occlude,error", [(numpy_rows, "TracerArrayConversionError"),
                                           (images_first, r"\w+Error")])
def test_an_occlusion_that_fails_compiled_is_one_error_naming_it(setup, occlude, error) -> None:
    cfg, model, params, images, labels = setup
    with pytest.raises(parts.PartError, match=(  # as in training, not JAX's traceback
            rf"the occlusion \S*\.{occlude.__name__} failed when called compiled, as "
            rf"occlude\(key, images\) with a jax.random key and test images shaped \(8, 784\) "
            rf"\(occlusions must be key-first and jit-compatible\): {error}: ")):
        evaluate.evaluate(cfg, model, params, images[:10], labels[:10], occlude=occlude)


def test_a_model_wanting_a_train_flag_is_told_how_evaluation_calls_it(setup) -> None:
    cfg, _, _, images, labels = setup
    model = TrainFlag()
    params = model.init(jax.random.key(0), jnp.zeros((1, 784)), True)["params"]
    with pytest.raises(parts.PartError, match=(  # as in training, not JAX's traceback
            r"^the model \S*TrainFlag\(features=784\) cannot be called as "
            r"model\.apply\(\{\"params\": params\}, images\) \(missing a required argument: "
            r"'train'\): a model takes the images alone")):
        evaluate.evaluate(cfg, model, params, images[:10], labels[:10])


def test_parameters_of_another_model_are_refused_naming_the_difference(setup) -> None:
    cfg, model, params, images, labels = setup
    other = train.make_model(Config(hidden=(64, 50)))
    wrong = train.create_state(jax.random.key(0), other, train.make_optimizer(cfg))
    state = train.create_state(jax.random.key(0), model, train.make_optimizer(cfg))
    head = r"^the parameters given do not fit the model \S*Autoencoder\(.*\) \("
    for given, diff in ((wrong.params, r"dense_0/bias: \(64,\) given, \(128,\) built; "
                                       r"dense_0/kernel: \(784, 64\) given, \(784, 128\) "
                                       r"built and 4 more"),
                        ({"params": params}, r"dense_0/bias is not given; dense_0/kernel is not "
                                             r"given and \d+ more"),
                        (state, "not a parameter tree")):
        with pytest.raises(ValueError, match=head + diff + r"\): give the params it was "
                                                           r"trained with \(state\.params\)$"):
            evaluate.evaluate(cfg, model, given, images[:10], labels[:10])


def test_labels_that_are_not_whole_numbers_are_refused_before_any_work(setup) -> None:
    cfg, model, params, images, labels = setup
    fractional = labels[:10] + 0.25  # would have been merged into per_class's str(int(label))
    with pytest.raises(ValueError, match=r"^labels must be whole numbers"):
        evaluate.evaluate(cfg, model, params, images[:10], fractional)


def first_pixels(key: jax.Array, clean: jax.Array) -> tuple[jax.Array, jax.Array]:
    mask = jnp.zeros(clean.shape, bool).at[:, :8].set(True)
    return jnp.where(mask, 1.0, clean), mask


def test_a_custom_occlusion_is_not_refused_for_the_config_bars_image_size() -> None:
    cfg = Config()
    model = train.make_model(cfg, 16 * 16)
    params = train.create_state(jax.random.key(0), model, train.make_optimizer(cfg)).params
    images, labels = synthetic_digits(10, seed=5, side=16)
    with pytest.raises(ValueError, match="must lie inside the image"):  # the config's bars
        evaluate.evaluate(cfg, model, params, images, labels)
    test, arrays = evaluate.evaluate(cfg, model, params, images, labels, occlude=first_pixels)
    assert np.asarray(arrays["mask"]).sum() == 10 * 8 and np.isfinite(test["occluded"]["mse"])


def test_evaluate_under_jit_is_one_error_naming_the_traceable_one(setup) -> None:
    cfg, model, params, images, labels = setup
    with pytest.raises(ValueError, match=r"^evaluate\.evaluate returns NumPy arrays, so it "
                                         r"cannot run under jit, vmap or grad: call "
                                         r"evaluate\.evaluate_arrays \(unchecked\) there"):
        jax.jit(lambda p: evaluate.evaluate(cfg, model, p, images[:10], labels[:10])[0])(params)


def test_each_digits_scores_are_those_of_its_own_test_images(setup) -> None:
    cfg, model, params, images, labels = setup
    test, arrays = evaluate.evaluate(cfg, model, params, images, labels)
    assert not np.array_equal(labels, np.sort(labels))  # unsorted: a misalignment would show
    for digit in np.unique(labels):
        mse = arrays["per_image"]["occluded"]["mse"][labels == digit]
        got = test["per_class"][str(digit)]
        assert got["count"] == len(mse)
        assert got["occluded"]["mse"] == pytest.approx(np.mean(mse), rel=1e-6)
