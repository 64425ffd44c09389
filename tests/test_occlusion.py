"""Tests for aejax.occlusion: vectorized masks against a plain loop with the original semantics."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import occlusion
from tests.conftest import x64


def loop_occlude(images_NxHxW: np.ndarray, starts_NxK: np.ndarray, horizontal_NxK: np.ndarray,
                 width: int = 1, value: float = 1.0) -> np.ndarray:
    """The original's Python loop, generalised to several bars and a width."""
    out = images_NxHxW.copy()
    for i in range(out.shape[0]):
        for s, h in zip(starts_NxK[i], horizontal_NxK[i]):
            if h:
                out[i, s:s + width, :] = value
            else:
                out[i, :, s:s + width] = value
    return out


def images(n: int = 16, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).uniform(0, 0.9, (n, 28, 28)).astype(np.float32)


def test_original_semantics_match_loop() -> None:
    key, x = jax.random.key(3), images()
    starts, horizontal = occlusion.sample_bars(key, len(x))
    expected = np.zeros_like(x)
    for i in range(len(x)):  # the original's loop, written from its description
        s = int(starts[i, 0])
        if i % 2 == 0:
            expected[i] = x[i]; expected[i, s, :] = 1.0
        else:
            expected[i] = x[i]; expected[i, :, s] = 1.0
    np.testing.assert_array_equal(np.asarray(occlusion.occlude(key, jnp.asarray(x))), expected)
    np.testing.assert_array_equal(np.asarray(horizontal[:, 0]), np.arange(len(x)) % 2 == 0)


@pytest.mark.parametrize("orientation", ["alternate", "horizontal", "vertical", "random"])
@pytest.mark.parametrize("width,num_bars,value", [(1, 1, 1.0), (3, 2, 0.5)])
def test_generalised_options_match_loop(orientation: str, width: int, num_bars: int,
                                        value: float) -> None:
    key, x = jax.random.key(7), images(32)
    kwargs = dict(low=4, high=18, orientation=orientation, num_bars=num_bars)
    starts, horizontal = occlusion.sample_bars(key, len(x), **kwargs)
    rows = np.asarray(horizontal)
    want = {"alternate": np.broadcast_to((np.arange(32) % 2 == 0)[:, None], rows.shape),
            "horizontal": np.ones_like(rows), "vertical": np.zeros_like(rows)}
    if orientation in want:
        np.testing.assert_array_equal(rows, want[orientation])
    else:  # random: both orientations occur
        assert 0.2 < rows.mean() < 0.8
    expected = loop_occlude(x, np.asarray(starts), rows, width, value)
    got = occlusion.occlude(key, jnp.asarray(x), width=width, value=value, **kwargs)
    np.testing.assert_array_equal(np.asarray(got), expected)


def test_flat_and_square_shapes_agree_and_mask_matches() -> None:
    key, x = jax.random.key(1), images(8)
    square = occlusion.occlude(key, jnp.asarray(x))
    flat, mask = occlusion.occlude(key, jnp.asarray(x.reshape(8, 784)), return_mask=True)
    assert flat.shape == (8, 784) and mask.shape == (8, 784) and mask.dtype == bool
    np.testing.assert_array_equal(np.asarray(flat).reshape(8, 28, 28), np.asarray(square))
    np.testing.assert_array_equal(np.asarray(mask).sum(axis=1), np.full(8, 28))  # one 28-px bar
    np.testing.assert_array_equal(np.asarray(flat)[np.asarray(mask)], 1.0)


def test_jit_and_vmap_agree_with_eager() -> None:
    keys = jax.random.split(jax.random.key(0), 4)
    x = jnp.asarray(images(4 * 6).reshape(4, 6, 784))
    eager = np.stack([np.asarray(occlusion.occlude(k, xi)) for k, xi in zip(keys, x)])
    jitted = jax.jit(occlusion.occlude)(keys[0], x[0])
    vmapped = jax.vmap(occlusion.occlude)(keys, x)
    np.testing.assert_array_equal(np.asarray(jitted), eager[0])
    np.testing.assert_array_equal(np.asarray(vmapped), eager)


def test_start_distribution_covers_10_to_20_uniformly() -> None:
    starts, _ = occlusion.sample_bars(jax.random.key(0), 22_000)
    values, counts = np.unique(np.asarray(starts), return_counts=True)
    np.testing.assert_array_equal(values, np.arange(10, 21))
    assert np.all(np.abs(counts - 2000) < 200), counts  # 11 equally likely values


def test_random_orientations_are_fair_coins_drawn_from_a_key_of_their_own() -> None:
    key, shape = jax.random.key(11), (20_000, 2)
    starts, horizontal = occlusion.sample_bars(key, shape[0], orientation="random", num_bars=2)
    assert abs(float(np.mean(horizontal)) - 0.5) < 0.01  # 40,000 fair coins: sd 0.0025
    start_key, orient_key = jax.random.split(key)  # one key each: orientations are not the starts'
    np.testing.assert_array_equal(starts, jax.random.randint(start_key, shape, 10, 21, jnp.int32))
    np.testing.assert_array_equal(horizontal,
                                  jax.random.bernoulli(orient_key, jnp.float32(0.5), shape))


def test_a_fixed_start_a_black_bar_and_an_empty_batch_are_allowed() -> None:
    key, x = jax.random.key(2), images(4)
    got = occlusion.occlude(key, jnp.asarray(x), low=14, high=14, value=0.0)  # low == high
    want = loop_occlude(x, np.full((4, 1), 14), (np.arange(4) % 2 == 0)[:, None], value=0.0)
    np.testing.assert_array_equal(np.asarray(got), want)
    assert occlusion.occlusion_mask(key, 0).shape == (0, 28, 28)
    assert occlusion.occlude(key, jnp.zeros((0, 784))).shape == (0, 784)


def test_the_limits_of_the_bar_geometry_are_allowed() -> None:
    key, x = jax.random.key(2), jnp.asarray(images(2))
    for edge in (0.0, 1.0):  # pixels at either end of [0, 1] (255 / 255: MNIST has them)
        assert occlusion.occlude(key, jnp.full((2, 784), edge)).shape == (2, 784)
    whole = occlusion.occlude(key, x, width=28, low=0, high=0, value=0.5)  # as wide as the image
    np.testing.assert_array_equal(np.asarray(whole), np.full((2, 28, 28), 0.5, np.float32))
    mask = occlusion.occlusion_mask(key, 2, num_bars=occlusion.MAX_BARS)  # as many as allowed
    starts, horizontal = occlusion.sample_bars(key, 2, num_bars=occlusion.MAX_BARS)
    np.testing.assert_array_equal(np.asarray(mask), loop_occlude(
        np.zeros((2, 28, 28), bool), np.asarray(starts), np.asarray(horizontal), value=True))


def test_different_keys_give_different_masks() -> None:
    a = occlusion.occlusion_mask(jax.random.key(0), 64)
    b = occlusion.occlusion_mask(jax.random.key(1), 64)
    assert a.shape == (64, 28, 28) and not np.array_equal(np.asarray(a), np.asarray(b))


@pytest.mark.parametrize("kwargs,message", [
    (dict(width=0), "width must be >= 1"),
    (dict(low=20, high=27, width=2),
     r"range 20\.\.27 with width 2 must lie inside the image: a bar reaches pixel 28, but "
     r"28-pixel images allow starts up to 26"),
    (dict(width=30), r"occlusion width 30 is wider than the image \(28 pixels\)"),
    (dict(low=-1), r"range -1\.\.20 must satisfy 0 <= low <= high"),
    (dict(low=15, high=12), r"range 15\.\.12 must satisfy 0 <= low <= high"),
    (dict(num_bars=0), "number of bars must be in 1..1000, got 0"),
    (dict(num_bars=1001), "number of bars must be in 1..1000, got 1001"),
    (dict(orientation="diagonal"), "orientation must be one of .*got 'diagonal'"),
    (dict(value=float("nan")), r"occlusion value must be a pixel value in \[0, 1\], got nan"),
    (dict(value=2.0), r"occlusion value must be a pixel value in \[0, 1\], got 2.0"),
    (dict(value=-0.5), r"occlusion value must be a pixel value in \[0, 1\], got -0.5"),
    (dict(value=np.array([5.0])), r"occlusion value must be a scalar, got shape \(1,\)"),
    (dict(value=True), r"occlusion value must be a pixel value in \[0, 1\], not a bool \(True\)"),
    (dict(width=2.5), "occlusion width must be an integer, got 2.5"),
    (dict(low=10.5), "occlusion low must be an integer, got 10.5"),
    (dict(num_bars=True), "occlusion num_bars must be an integer, got True"),
])
def test_bad_arguments_raise_clear_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        occlusion.occlude(jax.random.key(0), jnp.asarray(images(2)), **kwargs)


def test_bars_outside_small_images_and_negative_counts_are_refused() -> None:
    with pytest.raises(ValueError, match="must lie inside the image.*allow starts up to 15"):
        occlusion.occlusion_mask(jax.random.key(0), 2, height=16, width=16)
    with pytest.raises(ValueError, match="number of images must be >= 0, got -1"):
        occlusion.occlusion_mask(jax.random.key(0), -1)


def test_bars_are_checked_only_against_the_side_they_start_in() -> None:
    key, wide = jax.random.key(0), jnp.zeros((2, 16, 28))  # columns reach 20, rows could not
    _, mask = occlusion.occlude(key, wide, orientation="vertical", return_mask=True)
    assert mask.shape == (2, 16, 28) and bool(jnp.all(mask.sum(axis=(1, 2)) == 16))
    for orientation in ("horizontal", "alternate", "random"):
        with pytest.raises(ValueError, match="16-pixel images allow starts up to 15"):
            occlusion.occlude(key, wide, orientation=orientation)


@pytest.mark.parametrize("x,message", [
    (np.zeros((784,), np.float32),
     r"rank 1 shape \(784,\) \(one flat image\? pass it as a batch, images\[None\]\)$"),
    (np.zeros((780,), np.float32), r"rank 1 shape \(780,\)$"),
    (np.zeros((2, 1, 28, 28), np.float32), "rank 4"),
    (np.zeros((2, 780), np.float32), "square number of pixels, got 780$"),
    (np.zeros((28, 28), np.float32),
     r"square number of pixels, got 28 \(one 28 x 28 image\? pass it as a batch, images\[None\]\)"),
    (np.zeros((2, 784), np.uint8),
     r"got dtype uint8: scale integer images to \[0, 1\], e\.g\. x / 255"),
    (np.zeros((2, 784), np.int32), "got dtype int32: scale integer images"),
    (np.full((2, 784), np.nan, np.float32), "contain 1568 NaN or infinite values; replace them"),
    (np.r_[np.zeros((1, 784)), np.full((1, 784), np.inf)].astype(np.float32),
     "contain 784 NaN or infinite values"),
    (np.full((2, 784), 255.0, np.float32),
     r"scaled to \[0, 1\], got values in \[255, 255\]: divide 0\.\.255 pixels by 255"),
    (np.full((2, 784), -0.5, np.float32), r"scaled to \[0, 1\], got values in \[-0\.5, -0\.5\]"),
    (np.r_[np.zeros((1, 784)), np.full((1, 784), 1.01)].astype(np.float32),
     r"scaled to \[0, 1\], got values in \[0, 1\.01\]"),  # just above 1 is refused too
])
def test_bad_images_raise_clear_errors(x: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        occlusion.occlude(jax.random.key(0), x)


def test_value_checks_are_skipped_while_tracing() -> None:
    x = jnp.full((2, 784), 0.5)
    occluded = jax.jit(lambda v, x: occlusion.occlude(jax.random.key(0), x, value=v))(0.25, x)
    assert set(np.unique(np.asarray(occluded)).tolist()) == {0.25, 0.5}
    with pytest.raises(ValueError, match="dtype int32"):  # shapes and dtypes are still checked
        jax.jit(lambda x: occlusion.occlude(jax.random.key(0), x))(jnp.zeros((2, 784), jnp.int32))


def test_traced_bar_geometry_is_refused_with_what_to_do() -> None:
    x, key = jnp.zeros((2, 784)), jax.random.key(0)
    with pytest.raises(ValueError, match="occlusion low must be a Python int, not a traced value: "
                                         "mark it static under jit"):
        jax.vmap(lambda lo: occlusion.occlude(key, x, low=lo))(jnp.array([10, 11]))
    with pytest.raises(ValueError, match="occlusion width must be a Python int, not a traced"):
        jax.jit(lambda w: occlusion.occlude(key, x, width=w))(2)
    with pytest.raises(ValueError, match="occlusion num_bars must be a Python int, not a traced"):
        jax.jit(lambda n: occlusion.occlude(key, x, num_bars=n))(2)  # named as it is passed
    with pytest.raises(ValueError, match="return_mask must be a Python bool, not a traced value: "
                                         "mark it static under jit"):
        jax.jit(occlusion.occlude)(key, x, return_mask=True)
    _, mask = jax.jit(occlusion.occlude, static_argnames="return_mask")(key, x, return_mask=True)
    np.testing.assert_array_equal(mask, occlusion.occlude(key, x, return_mask=True)[1])
    with pytest.raises(ValueError, match="occlusion image count must be a Python int"):
        jax.jit(occlusion.occlusion_mask)(key, 4)
    static = jax.jit(occlusion.occlusion_mask, static_argnums=1)(key, 4)  # what the message says
    np.testing.assert_array_equal(static, occlusion.occlusion_mask(key, 4))


def test_occlusion_mask_image_sides_are_static_integers_like_the_bar_geometry() -> None:
    key = jax.random.key(0)
    mask = jax.jit(occlusion.occlusion_mask, static_argnums=1)  # the image sides left traced
    with pytest.raises(ValueError, match="occlusion image height must be a Python int, not a "
                                         "traced value: mark it static under jit"):
        mask(key, 4, height=28, width=28)
    with pytest.raises(ValueError, match="occlusion image width must be an integer, got 28.5"):
        occlusion.occlusion_mask(key, 4, width=28.5)  # else a mask 29 columns wide
    static = jax.jit(occlusion.occlusion_mask, static_argnames=("num_images", "height", "width"))
    np.testing.assert_array_equal(static(key, num_images=4, height=22, width=np.int64(24)),
                                  occlusion.occlusion_mask(key, 4, height=22, width=24))


def test_concrete_integer_scalar_arrays_are_bar_geometry_like_python_ints() -> None:
    x, key = jnp.zeros((4, 784)), jax.random.key(0)
    want = occlusion.occlude(key, x, width=2, low=5, num_bars=2)
    for width, low, bars in ((jnp.int32(2), jnp.array(5), np.array(2)),
                             (np.int64(2), np.uint8(5), jnp.int8(2))):
        np.testing.assert_array_equal(occlusion.occlude(key, x, width=width, low=low,
                                                        num_bars=bars), want)
        np.testing.assert_array_equal(jax.jit(lambda x: occlusion.occlude(
            key, x, width=width, low=low, num_bars=bars))(x), want)  # constants, not traced
    for bad in (jnp.float32(2), jnp.array(True), np.array([2])):
        with pytest.raises(ValueError, match="^occlusion width must be an integer, got "):
            occlusion.occlude(key, x, width=bad)


@pytest.mark.parametrize("orientation", ["alternate", "random"])
def test_the_same_key_draws_the_same_bars_with_x64_enabled(orientation: str) -> None:
    key = jax.random.key(0)
    starts, horizontal = occlusion.sample_bars(key, 16, orientation=orientation, num_bars=2)
    with x64():
        starts64, horizontal64 = occlusion.sample_bars(key, 16, orientation=orientation,
                                                       num_bars=2)
    assert starts64.dtype == jnp.int32
    np.testing.assert_array_equal(starts, starts64)
    np.testing.assert_array_equal(horizontal, horizontal64)


def test_swapped_arguments_are_told_the_key_comes_first_and_lists_are_taken() -> None:
    key, x = jax.random.key(0), images(4)
    with pytest.raises(ValueError, match=r"occlude takes the key first: occlude\(key, images\)"):
        occlusion.occlude(x, key)
    np.testing.assert_array_equal(occlusion.occlude(key, x.tolist()),
                                  occlusion.occlude(key, jnp.asarray(x)))


@pytest.mark.parametrize("key,got", [
    (0, "int 0"), ([0, 0], r"list \[0, 0\]"),
    (np.zeros(2, np.int32), r"an array of dtype int32 shaped \(2,\)"),
    (np.zeros((2, 784), np.float32), r"an array of dtype float32 shaped \(2, 784\)"),
    (np.uint32(3), r"an array of dtype uint32 shaped \(\)"),  # was JAX's "invalid PRNG key data"
    (np.zeros(3, np.uint32), r"an array of dtype uint32 shaped \(3,\)"),
    (jax.random.split(jax.random.key(0)), r"an array of dtype key<fry> shaped \(2,\)"),
])
def test_a_seed_or_other_non_key_first_is_told_to_make_a_key(key: object, got: str) -> None:
    with pytest.raises(ValueError, match=r"the occlusion's first argument must be a jax\.random "
                                         rf"key, e\.g\. jax\.random\.key\(seed\), got {got}$"):
        occlusion.occlude(key, jnp.asarray(images(2)))


def test_legacy_uint32_keys_draw_what_their_typed_keys_draw() -> None:
    x, legacy = jnp.asarray(images(6)), jax.random.PRNGKey(4)
    typed = jax.random.wrap_key_data(legacy)
    want = np.asarray(occlusion.occlude(typed, x))
    np.testing.assert_array_equal(occlusion.occlude(legacy, x), want)
    np.testing.assert_array_equal(jax.jit(occlusion.occlude)(legacy, x), want)
    np.testing.assert_array_equal(jax.vmap(occlusion.occlude)(legacy[None], x[None])[0], want)


def test_a_vmap_over_single_flat_images_is_told_to_keep_a_batch_axis() -> None:
    keys, x = jax.random.split(jax.random.key(0), 3), jnp.asarray(images(3).reshape(3, 784))
    with pytest.raises(ValueError, match=r"got rank 1 shape \(784,\) \(one flat image\? pass it "
                                         r"as a batch, images\[None\]\)"):
        jax.vmap(occlusion.occlude)(keys, x)
    rows = jax.vmap(lambda k, im: occlusion.occlude(k, im[None], return_mask=True)[1][0])(keys, x)
    np.testing.assert_array_equal(np.asarray(rows).reshape(3, 28, 28).all(axis=2).sum(axis=1),
                                  np.ones(3))  # what the hint says: one row each (rows only)


def test_float64_numpy_images_are_occluded_without_a_dtype_warning(recwarn) -> None:
    x = images(4).astype(np.float64)  # what x / 255 gives in NumPy
    got = occlusion.occlude(jax.random.key(0), x, value=0.5)
    assert [str(w.message) for w in recwarn] == []
    assert got.dtype == jnp.result_type(jnp.asarray(x))  # float32, or float64 with x64 on
    np.testing.assert_array_equal(got, occlusion.occlude(jax.random.key(0), jnp.asarray(x),
                                                         value=0.5))


@pytest.mark.parametrize("dtype", [jnp.float16, jnp.bfloat16])
def test_half_precision_images_stay_half_precision(dtype) -> None:
    x = jnp.asarray(images(4), dtype)
    got = occlusion.occlude(jax.random.key(0), x, value=np.float32(0.5))
    assert got.dtype == dtype  # a float32 value takes the images' dtype, not float32
    traced = jax.jit(lambda v: occlusion.occlude(jax.random.key(0), x, value=v))(
        jnp.float32(0.5))
    assert traced.dtype == dtype
    np.testing.assert_array_equal(np.asarray(got, np.float32), np.asarray(traced, np.float32))
