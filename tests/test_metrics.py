"""Tests for aejax.metrics against independent NumPy computations on small arrays."""

from __future__ import annotations

import dm_pix as pix
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from numpy.lib.stride_tricks import sliding_window_view

from aejax import metrics, occlusion, summaries


def random_pairs(n: int = 6, side: int = 16, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Targets in [0, 1] and noisy predictions clipped to [0, 1], float32 (N, side, side)."""
    rng = np.random.default_rng(seed)
    a = rng.uniform(0, 1, (n, side, side)).astype(np.float32)
    b = np.clip(a + rng.normal(0, 0.1, a.shape), 0, 1).astype(np.float32)
    return a, b


def numpy_ssim(a: np.ndarray, b: np.ndarray, size: int = 11, sigma: float = 1.5) -> float:
    """Wang et al.'s SSIM of one pair: Gaussian-weighted windows over the valid region, averaged."""
    g = np.exp(-0.5 * ((np.arange(size) - size // 2) / sigma) ** 2)
    w = np.outer(g, g) / np.outer(g, g).sum()
    wa, wb = (sliding_window_view(x.astype(np.float64), (size, size)) for x in (a, b))
    mean = lambda x: np.einsum("ijkl,kl->ij", x, w)  # noqa: E731
    mu_a, mu_b = mean(wa), mean(wb)
    var_a, var_b = mean(wa * wa) - mu_a**2, mean(wb * wb) - mu_b**2
    cov = mean(wa * wb) - mu_a * mu_b
    c1, c2 = 0.01**2, 0.03**2
    ssim_map = ((2 * mu_a * mu_b + c1) * (2 * cov + c2)
                / ((mu_a**2 + mu_b**2 + c1) * (var_a + var_b + c2)))
    return float(ssim_map.mean())


def test_mse_and_psnr_match_numpy_for_flat_and_square_images() -> None:
    a, b = random_pairs()
    expected_mse = np.mean((a.astype(np.float64) - b) ** 2, axis=(1, 2))
    expected_psnr = 10 * np.log10(1.0 / expected_mse)
    for x, y in ((a, b), (a.reshape(len(a), -1), b.reshape(len(b), -1))):
        np.testing.assert_allclose(metrics.mse(x, y), expected_mse, rtol=1e-5)
        np.testing.assert_allclose(metrics.psnr(x, y), expected_psnr, rtol=1e-5)


def test_psnr_of_identical_images_is_capped_so_the_means_stay_finite() -> None:
    a, b = random_pairs(n=4)
    b[1] = a[1]  # e.g. a black bar on an all-black row: nothing changed
    values = np.asarray(metrics.psnr(a, b))
    assert values[1] == metrics.PSNR_MAX
    assert np.all(values[[0, 2, 3]] < 30)  # the others are untouched
    assert np.all(np.isfinite(summaries.mean_std(values)))
    target = a[:1].copy()
    target[0, 3, 4] = 0.5
    near = target.copy()
    near[0, 3, 4] = 0.501  # one pixel off by 1e-3: ~84 dB, a real value below the cap
    want = 10 * np.log10(1.0 / np.mean((target.astype(np.float64) - near) ** 2))
    assert want > 80
    np.testing.assert_allclose(metrics.psnr(target, near), [want], rtol=1e-4)


def test_ssim_is_one_for_identical_images_and_matches_numpy() -> None:
    a, b = random_pairs(n=3)
    np.testing.assert_allclose(metrics.ssim(a, a), np.ones(3), atol=1e-5)
    expected = [numpy_ssim(x, y) for x, y in zip(a, b)]
    np.testing.assert_allclose(metrics.ssim(a, b), expected, atol=1e-4)
    assert np.all(np.asarray(metrics.ssim(a, b)) < 0.99)


def test_ssim_of_constant_images_is_the_luminance_term() -> None:
    # No variance anywhere, so SSIM reduces to (2 x y + c1) / (x^2 + y^2 + c1).
    x, y, c1 = 0.2, 0.6, 0.01**2
    a = np.full((1, 12, 12), x, np.float32)
    b = np.full((1, 12, 12), y, np.float32)
    np.testing.assert_allclose(metrics.ssim(a, b), [(2 * x * y + c1) / (x**2 + y**2 + c1)],
                               rtol=1e-4)


@pytest.mark.parametrize("side,window", [(8, 7), (7, 7), (3, 3)])
def test_ssim_of_images_under_11_pixels_uses_a_window_that_fits(side: int, window: int) -> None:
    a, b = (np.random.default_rng(s).random((3, side, side), np.float32) for s in (0, 1))
    expected = [numpy_ssim(x, y, size=window) for x, y in zip(a, b)]
    np.testing.assert_allclose(metrics.ssim(a, b), expected, atol=1e-4)  # dm-pix's default
    np.testing.assert_allclose(metrics.per_image(a, b)["ssim"], expected, atol=1e-4)  # swapped
    np.testing.assert_allclose(metrics.ssim(a, a), np.ones(3), atol=1e-5)


@pytest.mark.parametrize("call", [lambda a: metrics.ssim(a, a, batch_size=0),
                                  lambda a: metrics.per_image_all(a, {"x": a}, chunk=0)])
def test_chunk_sizes_below_one_are_refused(call) -> None:
    with pytest.raises(ValueError, match="size must be >= 1, got 0"):
        call(np.zeros((2, 28, 28), np.float32))


def test_ssim_in_chunks_equals_one_pass() -> None:
    a, b = random_pairs(n=7)
    chunked = metrics.ssim(a, b, batch_size=3)  # 7 = 3 + 3 + a remainder of 1
    whole = pix.ssim(jnp.asarray(a)[..., None], jnp.asarray(b)[..., None])
    np.testing.assert_allclose(chunked, whole, rtol=1e-5)


def test_corr_matches_numpy_corrcoef_and_hand_cases() -> None:
    a, b = random_pairs()
    expected = [np.corrcoef(x.ravel(), y.ravel())[0, 1] for x, y in zip(a, b)]
    np.testing.assert_allclose(metrics.corr(a, b), expected, rtol=1e-4)
    line = np.array([[0.1, 0.2, 0.3, 0.4]], np.float32)
    np.testing.assert_allclose(metrics.corr(line, 0.5 * line + 0.1), [1.0], rtol=1e-5)
    np.testing.assert_allclose(metrics.corr(line, 1 - line), [-1.0], rtol=1e-5)


def test_corr_of_nearly_constant_images_matches_float64() -> None:
    rng = np.random.default_rng(0)  # 0.3 plus a few ulps: a float32 mean would round them away
    a = (np.float32(0.3) + np.float32(3e-8) * rng.integers(0, 4, (4, 784))).astype(np.float32)
    b = (a + np.float32(3e-8) * rng.integers(0, 2, (4, 784))).astype(np.float32)
    want = [np.corrcoef(x, y)[0, 1] for x, y in zip(a.astype(np.float64), b.astype(np.float64))]
    np.testing.assert_allclose(metrics.corr(jnp.asarray(a), jnp.asarray(b)), want, rtol=1e-5)
    np.testing.assert_allclose(metrics.corr_nonzero(jnp.asarray(a), jnp.asarray(b)), want,
                               rtol=1e-5)


def test_corr_nonzero_of_nearly_constant_images_shifts_by_a_counted_pixel() -> None:
    # as above, but with pixels left out: a left-out 0 must not be the shift, or the counted
    # pixels' few-ulp deviations are lost in the rounding of their mean
    rng = np.random.default_rng(1)
    a = (np.float32(0.3) + np.float32(3e-8) * rng.integers(0, 4, (4, 784))).astype(np.float32)
    b = (a + np.float32(3e-8) * rng.integers(0, 2, (4, 784))).astype(np.float32)
    a[:, 0] = b[:, 1] = 0.0  # below the tolerance in one image: left out
    keep = (a > metrics.NONZERO_TOL) & (b > metrics.NONZERO_TOL)
    want = [np.corrcoef(x[k], y[k])[0, 1]
            for x, y, k in zip(a.astype(np.float64), b.astype(np.float64), keep)]
    np.testing.assert_allclose(metrics.corr_nonzero(jnp.asarray(a), jnp.asarray(b)), want,
                               rtol=1e-5)


def test_corr_of_a_collapsed_models_tiny_pixels_matches_float64() -> None:
    # A model whose sigmoid saturates (logits about -60) outputs pixels near 1e-26: their
    # squared deviations underflow float32, and r came out inf or -inf (a test mean of inf).
    rng = np.random.default_rng(0)
    a = rng.random((3, 784)).astype(np.float32)
    logits = rng.uniform(-65, -55, (3, 784))
    b = (1 / (1 + np.exp(-logits))).astype(np.float32)
    want = [np.corrcoef(x, y)[0, 1] for x, y in zip(a.astype(np.float64), b.astype(np.float64))]
    np.testing.assert_allclose(metrics.corr(a, b), want, rtol=1e-4)
    np.testing.assert_allclose(metrics.corr(b, a), want, rtol=1e-4)
    np.testing.assert_allclose(metrics.per_image(a, b)["corr"], want, rtol=1e-4)
    b[0] = a[1]  # one image of ordinary pixels in the batch: each image is scaled on its own
    want[0] = np.corrcoef(a[0].astype(np.float64), a[1].astype(np.float64))[0, 1]
    np.testing.assert_allclose(metrics.corr(a, b), want, rtol=1e-4)


@pytest.mark.parametrize("dtype,rtol", [(jnp.float16, 2e-3), (jnp.bfloat16, 2e-2)])
def test_half_precision_images_score_like_float32_ones(dtype, rtol: float) -> None:
    a, b = random_pairs(n=3, side=64)  # float16's sums of squares overflow from about 64x64
    a, b = (a > 0.5).astype(np.float32), np.clip(b, 0.05, 1).astype(np.float32)
    mask = np.zeros(a.shape, bool)
    mask[:, 20:23] = True
    want = metrics.per_image(a, b, mask)
    corr = [np.corrcoef(x.ravel(), y.ravel())[0, 1] for x, y in zip(a, b.astype(np.float64))]
    np.testing.assert_allclose(want["corr"], corr, rtol=1e-5)
    got = metrics.per_image(jnp.asarray(a, dtype), jnp.asarray(b, dtype), mask)
    for name in want:
        np.testing.assert_allclose(got[name], want[name], rtol=rtol, err_msg=name)


def test_masked_mse_of_float16_images_over_65504_pixels_is_not_zero() -> None:
    a, b = random_pairs(n=1, side=260)  # 67,600 pixels: more than float16's largest, 65,504
    mask = np.zeros(a.shape, bool)
    mask[:, 20:23] = True
    for m in (mask, ~mask):
        want = [np.mean((a[0][m[0]].astype(np.float64) - b[0][m[0]]) ** 2)]
        got = metrics.masked_mse(jnp.asarray(a, jnp.float16), jnp.asarray(b, jnp.float16), m)
        np.testing.assert_allclose(got, want, rtol=2e-3)


def test_corr_nonzero_keeps_only_pixels_above_the_tolerance_in_both() -> None:
    # Pixels 0 (zero in the original) and 1 (5e-5 in the reconstruction) are left out.
    original = np.array([[0.0, 0.3, 0.2, 0.5, 1.0, 0.7, 0.4, 0.9, 0.6]], np.float32)
    recon = np.array([[0.8, 5e-5, 0.3, 0.4, 0.9, 0.8, 0.2, 0.95, 0.5]], np.float32)
    keep = [2, 3, 4, 5, 6, 7, 8]
    expected = np.corrcoef(original[0, keep], recon[0, keep])[0, 1]
    np.testing.assert_allclose(metrics.corr_nonzero(original, recon), [expected], rtol=1e-5)
    all_pixels = np.corrcoef(original[0], recon[0])[0, 1]
    assert abs(expected - all_pixels) > 0.05  # the tolerance changes the answer here


def test_corr_nonzero_counts_pixels_just_above_the_tolerance() -> None:
    # 2e-4 (dark, but above the tolerance in both: counted) and 1e-4 itself (left out)
    original = np.array([[2e-4, 1e-4, 0.3, 0.2, 0.5, 0.9, 0.7]], np.float32)
    recon = np.array([[0.9, 0.6, 0.1, 0.3, 0.4, 0.8, 0.9]], np.float32)
    expected = np.corrcoef(original[0, [0, 2, 3, 4, 5, 6]], recon[0, [0, 2, 3, 4, 5, 6]])[0, 1]
    np.testing.assert_allclose(metrics.corr_nonzero(original, recon), [expected], rtol=1e-5)
    without = np.corrcoef(original[0, 2:], recon[0, 2:])[0, 1]
    assert abs(expected - without) > 0.05  # the dark pixel changes the answer here


def test_on_and_off_bar_mse_split_the_total_mse() -> None:
    a, b = random_pairs(n=8, side=28)
    mask = np.asarray(occlusion.occlusion_mask(jax.random.key(3), 8, num_bars=2))
    on, off = metrics.masked_mse(a, b, mask), metrics.masked_mse(a, b, ~mask)
    frac = mask.reshape(8, -1).mean(axis=1)
    np.testing.assert_allclose(frac * on + (1 - frac) * off, metrics.mse(a, b), rtol=1e-5)
    loop = [np.mean((a[i][mask[i]] - b[i][mask[i]]) ** 2) for i in range(8)]
    np.testing.assert_allclose(on, loop, rtol=1e-5)


def test_per_image_gives_every_metric_with_the_mask() -> None:
    a, b = random_pairs(n=4, side=28)
    mask = np.asarray(occlusion.occlusion_mask(jax.random.key(0), 4))
    values = metrics.per_image(a, b, mask)
    assert set(values) == set(metrics.METRICS + metrics.MASKED)
    assert all(v.shape == (4,) for v in values.values())
    assert set(metrics.per_image(a, b)) == set(metrics.METRICS)


def metrics_atol(name: str) -> float:
    """Float32 rounding allowed between two computations of a metric (NaN must match NaN).

    SSIM and correlations average terms of order 1, so a value near 0 keeps only an absolute
    accuracy; the errors (and PSNR) are compared relatively.
    """
    return 1e-6 if name in ("ssim", "corr", "corr_nonzero") else 0.0


def degenerate_pairs() -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Seven 16x16 pairs and masks; images 0-3 make some metric undefined (NaN), 4-6 do not."""
    a, b = random_pairs(n=7)
    mask = np.zeros(a.shape, bool)
    mask[:, 5] = True  # one row on the bar
    a[0] = b[0] = 0.5  # no variance: corr and corr_nonzero are undefined
    a[1, :, :] = 0.0
    a[1, 3, 4] = 0.7  # one pixel above the tolerance in both: corr_nonzero is undefined
    mask[2] = False  # nothing on the bar: on_bar_mse is undefined
    mask[3] = True  # everything on the bar: off_bar_mse is undefined
    return a, b, mask


def test_per_image_all_agrees_with_each_metric_function_nan_included() -> None:
    a, b, mask = degenerate_pairs()
    preds = {"b": b, "flipped": 1 - b}  # two predictions share the target's SSIM filtering
    fused = metrics.per_image_all(a, preds, mask, chunk=3)  # 7 = 3 + 3 + a remainder of 1
    for name, pred in preds.items():
        separate = {"mse": metrics.mse(a, pred), "psnr": metrics.psnr(a, pred),
                    "ssim": metrics.ssim(a, pred), "corr": metrics.corr(a, pred),
                    "corr_nonzero": metrics.corr_nonzero(a, pred),
                    "on_bar_mse": metrics.masked_mse(a, pred, mask),
                    "off_bar_mse": metrics.masked_mse(a, pred, ~mask)}
        assert set(fused[name]) == set(separate)
        for metric, expected in separate.items():
            np.testing.assert_allclose(fused[name][metric], expected, rtol=1e-6,
                                       atol=metrics_atol(metric), err_msg=f"{name} {metric}")
    nan = {m: np.flatnonzero(np.isnan(v)).tolist() for m, v in fused["b"].items()}
    assert nan == {"mse": [], "psnr": [], "ssim": [], "corr": [0], "corr_nonzero": [0, 1],
                   "on_bar_mse": [2], "off_bar_mse": [3]}


def test_per_image_gives_per_image_all_values_in_metric_order() -> None:
    a, b, mask = degenerate_pairs()
    values = metrics.per_image(a, b, mask)
    assert list(values) == list(metrics.METRICS + metrics.MASKED)
    fused = metrics.per_image_all(a, {"b": b}, mask)["b"]
    for name, v in values.items():
        assert v.dtype == np.float64
        np.testing.assert_array_equal(v, np.asarray(fused[name], np.float64))


@pytest.mark.parametrize("n", [1, 3, 5, 6])
def test_in_chunks_equals_one_call_for_any_remainder(n: int) -> None:
    rng = np.random.default_rng(n)
    xs = {"x": jnp.asarray(rng.normal(size=(n, 4))), "none": None,
          "y": jnp.asarray(rng.normal(size=(n, 2, 3)))}

    def fn(d: dict) -> tuple[jax.Array, jax.Array]:
        return jnp.sum(d["x"], axis=1), d["y"] * d["x"][:, :2, None]

    for got, want in zip(metrics.in_chunks(fn, xs, 3), fn(xs)):
        assert got.shape == want.shape
        np.testing.assert_allclose(got, want, rtol=1e-6)


def test_undefined_correlations_are_nan_and_skipped_in_means() -> None:
    flat = np.full((1, 16), 0.5, np.float32)  # no variance: r is undefined
    assert np.isnan(metrics.corr(flat, flat)[0])
    rng = np.random.default_rng(0)
    for value in (0.1, 0.3, 77 / 255):  # float32 means of these are inexact: still undefined
        const = np.full((2, 784), value, np.float32)
        other = rng.uniform(0, 1, (2, 784)).astype(np.float32)
        assert np.all(np.isnan(metrics.corr(const, other)))
        assert np.all(np.isnan(metrics.corr_nonzero(other, const)))


@pytest.mark.parametrize("change,message", [
    (lambda a, b, m: (a, b[:, :8]), r"same shape, got \(4, 16, 16\) and \(4, 8, 16\)"),
    (lambda a, b, m: (a[0, 0], b[0, 0]), r"target must be shaped .* got rank 1 shape \(16,\)"),
    (lambda a, b, m: ((a * 255).astype(np.uint8), b), "target must be floats .* dtype uint8: "
                                                      r"scale integer images to \[0, 1\]"),
    (lambda a, b, m: (a, b * 255), r"pred must be scaled to \[0, 1\], got values in"),
    (lambda a, b, m: (a, np.where(a > 0.5, np.nan, b)), "pred contain [0-9]+ NaN or infinite"),
    (lambda a, b, m: (a, b, m[:, 0]), r"mask must be boolean and shaped like the images"),
    (lambda a, b, m: (a, b, m.astype(np.float32)), "mask must be boolean .* got float32"),
    (lambda a, b, m: (a[:0], b[:0]), r"target and pred hold no images \(shape \(0, 16, 16\)\)"),
])
def test_per_image_refuses_bad_inputs_with_clear_errors(change, message: str) -> None:
    a, b = random_pairs(n=4)
    mask = np.zeros(a.shape, bool)
    with pytest.raises(ValueError, match=message):
        metrics.per_image(*change(a, b, mask))


@pytest.mark.parametrize("transform", [jax.jit, jax.vmap,
                                       lambda f: jax.grad(lambda a, b: f(a, b)["mse"].sum())])
def test_per_image_under_a_transformation_is_one_error_naming_the_traceable_one(transform
                                                                                ) -> None:
    a, b = random_pairs(n=4)
    with pytest.raises(ValueError, match=r"^metrics\.per_image returns NumPy arrays, so it "
                                         r"cannot run under jit, vmap or grad: call "
                                         r"metrics\.per_image_all \(unchecked\)"):
        transform(metrics.per_image)(a, b)


ONE_METRIC = {"mse": metrics.mse, "psnr": metrics.psnr, "ssim": metrics.ssim,
              "corr": metrics.corr, "corr_nonzero": metrics.corr_nonzero,
              "masked_mse": lambda a, b: metrics.masked_mse(a, b, a > 0.5)}


@pytest.mark.parametrize("name", list(ONE_METRIC))
def test_each_metric_refuses_one_image_or_unequal_shapes_in_one_line(name: str) -> None:
    a, b = random_pairs(n=4)
    flat_a, flat_b = a.reshape(4, -1), b.reshape(4, -1)
    with pytest.raises(ValueError, match=r"^target must be shaped \(N, H\*W\) or \(N, H, W\), "
                                         r"got rank 1 shape \(256,\) \(one flat image\? pass it "
                                         r"as a batch, images\[None\]\)"):
        ONE_METRIC[name](flat_a[0], flat_b[0])  # corr and masked_mse gave 256 values, all NaN
    with pytest.raises(ValueError, match=r"^target and pred must have the same shape, got "
                                         r"\(4, 16, 16\) and \(4, 8, 16\)"):
        ONE_METRIC[name](a, b[:, :8])


@pytest.mark.parametrize("name", list(ONE_METRIC))
def test_each_metric_maps_over_a_batch_of_batches(name: str) -> None:
    # the shape checks see each batch under vmap: (N, H, W), not one image or a stack
    a, b = random_pairs(n=12)
    stacked_a, stacked_b = a.reshape(3, 4, 16, 16), b.reshape(3, 4, 16, 16)
    got = jax.vmap(ONE_METRIC[name])(stacked_a, stacked_b)
    want = [ONE_METRIC[name](x, y) for x, y in zip(stacked_a, stacked_b, strict=True)]
    np.testing.assert_allclose(got, np.stack(want), rtol=1e-5, atol=1e-6)


def test_per_image_all_maps_over_a_batch_of_batches() -> None:
    a, b = random_pairs(n=12)
    stacked_a, stacked_b = a.reshape(3, 4, 16, 16), b.reshape(3, 4, 16, 16)
    got = jax.vmap(lambda x, y, m: metrics.per_image_all(x, {"p": y}, m))(
        stacked_a, stacked_b, stacked_a > 0.5)["p"]
    for i in range(3):
        want = metrics.per_image(a[4 * i:4 * i + 4], b[4 * i:4 * i + 4], a[4 * i:4 * i + 4] > 0.5)
        for metric, values in want.items():
            np.testing.assert_allclose(got[metric][i], values, rtol=1e-5, atol=1e-6)


def test_masked_mse_refuses_a_mask_of_another_shape_in_one_line() -> None:
    a, b = random_pairs(n=4)
    with pytest.raises(ValueError, match=r"^mask must be shaped like the images \(4, 16, 16\), "
                                         r"got \(1, 16, 16\)"):
        metrics.masked_mse(a, b, a[:1] > 0.5)  # broadcast silently before
