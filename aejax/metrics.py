"""Per-image image-quality metrics (dm-pix where it has them).

Every metric takes a target and a prediction shaped (N, H*W) or (N, H, W), floats in [0, 1],
and returns one value per image (N,); ``aejax.summaries`` averages them.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import dm_pix as pix
import jax
import jax.numpy as jnp
import numpy as np

from aejax.occlusion import check_images

NONZERO_TOL = 1e-4  # the original's tolerance: a pixel counts if it exceeds this in both images
SSIM_WINDOW = 11  # dm-pix's default Gaussian window, pixels a side
SSIM_BATCH = 500  # images per SSIM chunk: keeps the filtered intermediates small on 10k images
CHUNK = 200  # images per step of ``per_image_all``: its intermediates stay in the CPU's cache
PSNR_MAX = 100.0  # dB: identical images (MSE 0) would be infinite and make the means inf or NaN
METRICS: tuple[str, ...] = ("mse", "psnr", "ssim", "corr", "corr_nonzero")
MASKED: tuple[str, ...] = ("on_bar_mse", "off_bar_mse")


def as_nhwc(images: jax.Array) -> jax.Array:
    """Images (N, H*W) with square images, or (N, H, W), as dm-pix's (N, H, W, 1)."""
    if images.ndim == 2:
        side = math.isqrt(images.shape[1])
        if side * side != images.shape[1]:
            raise ValueError(f"flat images must have a square number of pixels, got {images.shape}")
        return images.reshape(images.shape[0], side, side, 1)
    if images.ndim == 3:
        return images[..., None]
    raise ValueError(f"images must be shaped (N, H*W) or (N, H, W), got {images.shape}")


def check_shapes(target: jax.Array, pred: jax.Array, mask: jax.Array | None = None) -> None:
    """ValueError (while tracing: free at run time) unless target and pred are batches of the
    same shape, (N, D) or (N, H, W), and a mask is shaped like them: a single flat image would
    otherwise be scored as D one-pixel images, and other shapes broadcast."""
    for name, x in (("target", target), ("pred", pred)):
        if np.ndim(x) not in (2, 3):
            hint = " (one flat image? pass it as a batch, images[None])" if np.ndim(x) == 1 else ""
            raise ValueError(f"{name} must be shaped (N, H*W) or (N, H, W), got rank "
                             f"{np.ndim(x)} shape {np.shape(x)}{hint}")
    if np.shape(target) != np.shape(pred):
        raise ValueError(f"target and pred must have the same shape, got {np.shape(target)} and "
                         f"{np.shape(pred)}")
    if mask is not None and np.shape(mask) != np.shape(target):
        raise ValueError(f"mask must be shaped like the images {np.shape(target)}, got "
                         f"{np.shape(mask)}")


@jax.jit
def mse(target: jax.Array, pred: jax.Array) -> jax.Array:
    """Mean squared error per image."""
    check_shapes(target, pred)
    return pix.mse(as_nhwc(target), as_nhwc(pred))


@jax.jit
def psnr(target: jax.Array, pred: jax.Array) -> jax.Array:
    """Peak signal-to-noise ratio per image in dB, for pixels in [0, 1], capped at ``PSNR_MAX``.

    Identical images happen: with ``--occlusion-value 0`` a bar on an all-black row changes
    nothing, and dm-pix's PSNR of such a pair is infinite.
    """
    check_shapes(target, pred)
    return jnp.minimum(pix.psnr(as_nhwc(target), as_nhwc(pred)), PSNR_MAX)


@functools.partial(jax.jit, static_argnames="batch_size")
def ssim(target: jax.Array, pred: jax.Array, batch_size: int = SSIM_BATCH) -> jax.Array:
    """Structural similarity per image (dm-pix defaults: 11x11 Gaussian, sigma 1.5).

    Images under 11 pixels a side get the largest odd window that fits (dm-pix's 'valid'
    filtering would otherwise swap image and filter and return a meaningless value). Computed
    ``batch_size`` images at a time, so memory does not grow with the test set.
    """
    check_shapes(target, pred)
    return in_chunks(lambda ab: ssim_nhwc(*ab), (as_nhwc(target), as_nhwc(pred)), batch_size)


def ssim_nhwc(target: jax.Array, pred: jax.Array) -> jax.Array:
    """dm-pix's SSIM of (N, H, W, 1) images, its window cut to fit small images (``ssim``)."""
    side = min(target.shape[1:3])
    window = min(SSIM_WINDOW, side - 1 + side % 2)  # odd, so the window is centred
    return pix.ssim(target, pred, max_val=1.0, filter_size=window)


def _flat(images: jax.Array) -> jax.Array:
    return images.reshape(images.shape[0], -1)


@jax.jit
def weighted_corr(a: jax.Array, b: jax.Array, weight: jax.Array) -> jax.Array:
    """Pearson correlation per image over the pixels with non-zero weight (NaN if undefined).

    Half-precision images are correlated in float32: in float16 the product of the two sums of
    squares overflows from about 64x64 pixels, and r came out 0.
    """
    dtype = jnp.result_type(a.dtype, b.dtype, jnp.float32)
    a, b, w = _flat(a).astype(dtype), _flat(b).astype(dtype), _flat(weight).astype(dtype)
    n = jnp.sum(w, axis=1, keepdims=True)
    # shifted by each image's smallest counted pixel first: for a nearly constant image that
    # difference is exact, so its deviations are not lost in the rounding of a large mean; a
    # constant image's (0.1, 77/255: inexact means) are exactly 0, so its r is 0/0 = NaN
    a, b = unit_range(a - lowest(a, w), w), unit_range(b - lowest(b, w), w)
    da = a - jnp.sum(w * a, axis=1, keepdims=True) / n
    db = b - jnp.sum(w * b, axis=1, keepdims=True) / n
    cov = jnp.sum(w * da * db, axis=1)
    return cov / jnp.sqrt(jnp.sum(w * da * da, axis=1) * jnp.sum(w * db * db, axis=1))


def unit_range(x: jax.Array, weight: jax.Array) -> jax.Array:
    """Per image: the counted pixels of ``x`` (shifted, >= 0) scaled by a power of two into
    [0, 1), the others 0. r does not change, bit for bit, but the squares of tiny deviations
    (a saturated sigmoid's pixels near 1e-26) no longer underflow: r came out inf."""
    x = jnp.where(weight > 0, x, 0.0)
    _, exponent = jnp.frexp(jnp.max(x, axis=1, keepdims=True))  # 0 for an image of zeros
    return jnp.ldexp(x, -exponent)


def lowest(x: jax.Array, weight: jax.Array) -> jax.Array:
    """Per image: the smallest pixel with non-zero weight, (N, 1) (0 if none has)."""
    low = jnp.min(jnp.where(weight > 0, x, jnp.inf), axis=1, keepdims=True)
    return jnp.where(jnp.isfinite(low), low, 0.0)


@jax.jit
def corr(target: jax.Array, pred: jax.Array) -> jax.Array:
    """Pearson correlation per image over all pixels."""
    check_shapes(target, pred)
    return weighted_corr(target, pred, jnp.ones_like(target))


@jax.jit
def corr_nonzero(target: jax.Array, pred: jax.Array) -> jax.Array:
    """Correlation per image over pixels exceeding ``NONZERO_TOL`` in both (the original's)."""
    check_shapes(target, pred)
    return weighted_corr(target, pred, (target > NONZERO_TOL) & (pred > NONZERO_TOL))


@jax.jit
def masked_mse(target: jax.Array, pred: jax.Array, mask: jax.Array) -> jax.Array:
    """Mean squared error per image over the pixels where ``mask`` is True (NaN if none).

    Half-precision images are summed in float32: in float16 a count of more than 65,504 pixels
    is inf, and the error came out 0.
    """
    check_shapes(target, pred, mask)
    dtype = jnp.result_type(target.dtype, pred.dtype, jnp.float32)
    w = _flat(mask).astype(dtype)
    err = jnp.square(_flat(target).astype(dtype) - _flat(pred).astype(dtype))
    return jnp.sum(w * err, axis=1) / jnp.sum(w, axis=1)


def check_inputs(target: jax.Array, pred: jax.Array, mask: jax.Array | None = None) -> None:
    """Raise ValueError unless target and pred are same-shaped float images in [0, 1]."""
    check_images(target, "target")
    check_images(pred, "pred")
    check_shapes(target, pred)
    if target.size == 0:
        raise ValueError(f"target and pred hold no images (shape {target.shape})")
    if mask is not None and (mask.shape != target.shape or mask.dtype != bool):
        raise ValueError(f"mask must be boolean and shaped like the images {target.shape}, got "
                         f"{mask.dtype} {mask.shape}")


def all_metrics(target: jax.Array, pred: jax.Array,
                mask: jax.Array | None = None) -> dict[str, jax.Array]:
    """Every metric of one batch, unchecked and in one piece: the body ``per_image_all`` maps."""
    values = {"mse": mse(target, pred), "psnr": psnr(target, pred),
              "ssim": ssim_nhwc(as_nhwc(target), as_nhwc(pred)),
              "corr": corr(target, pred), "corr_nonzero": corr_nonzero(target, pred)}
    if mask is not None:
        values["on_bar_mse"] = masked_mse(target, pred, mask)
        values["off_bar_mse"] = masked_mse(target, pred, ~mask)
    return values


def in_chunks(fn: Callable[[Any], Any], xs: Any, size: int) -> Any:
    """``fn`` over the leading axis of the arrays in ``xs``, ``size`` rows per ``lax.map`` step.

    ``fn`` sees (size, ...) slices, not single rows under ``vmap`` (XLA fuses those far worse
    on CPU); rows left over after the last whole chunk go through one more call.
    """
    if size < 1:
        raise ValueError(f"chunk size must be >= 1, got {size}")
    n = jax.tree.leaves(xs)[0].shape[0]
    whole = n // size * size
    if whole == 0:
        return fn(xs)
    steps = jax.tree.map(lambda x: x[:whole].reshape(-1, size, *x.shape[1:]), xs)
    out = jax.tree.map(lambda y: y.reshape(whole, *y.shape[2:]), jax.lax.map(fn, steps))
    if whole == n:
        return out
    rest = fn(jax.tree.map(lambda x: x[whole:], xs))
    return jax.tree.map(lambda a, b: jnp.concatenate([a, b]), out, rest)


@functools.partial(jax.jit, static_argnames="chunk")
def per_image_all(target: jax.Array, preds: dict[str, jax.Array], mask: jax.Array | None = None,
                  chunk: int = CHUNK) -> dict[str, dict[str, jax.Array]]:
    """``{name: all_metrics(target, pred, mask)}`` for every prediction, as one program.

    Unchecked (see ``check_inputs``). One pass over ``chunk`` images at a time: intermediates stay
    small, and the predictions share the filtering of the target that SSIM needs.
    """
    def body(x: tuple[jax.Array, jax.Array | None, dict[str, jax.Array]]) -> dict[str, Any]:
        t, m, ps = x
        return {name: all_metrics(t, p, m) for name, p in ps.items()}

    return in_chunks(body, (target, mask, preds), chunk)


def to_numpy(values: dict[str, jax.Array]) -> dict[str, np.ndarray]:
    """Per-image metrics as float64 NumPy arrays, in the order of ``METRICS + MASKED``."""
    return {name: np.asarray(values[name], np.float64) for name in METRICS + MASKED
            if name in values}


def refuse_traced(who: str, instead: str, *arrays: Any) -> None:
    """ValueError, in one line, if any of ``arrays`` is traced: ``who`` returns NumPy arrays,
    which a transformation (``jit``, ``vmap``, ``grad``) cannot trace through."""
    if any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(arrays)):
        raise ValueError(f"{who} returns NumPy arrays, so it cannot run under jit, vmap or grad: "
                         f"call {instead} there")


def per_image(target: jax.Array, pred: jax.Array,
              mask: jax.Array | None = None) -> dict[str, np.ndarray]:
    """Every metric per image; with a mask also ``on_bar_mse`` and ``off_bar_mse``.

    Checked and NumPy: outside ``jit``/``vmap`` only (``per_image_all`` is the traceable one).
    """
    refuse_traced("metrics.per_image", "metrics.per_image_all (unchecked) or the metric "
                  "functions", target, pred, mask)
    check_inputs(target, pred, mask)
    return to_numpy(per_image_all(target, {"pred": pred}, mask)["pred"])
