"""Occlusion ("noise") as pure, key-first functions with vectorized masks.

The original experiment draws, for the image at index ``i`` of a batch, a start ``s`` uniformly
in 10..20 and sets row ``s`` (even ``i``) or column ``s`` (odd ``i``) to 1.0. Here the same is
built from a ``jax.random`` key without Python loops, so it works under ``jit`` and ``vmap``.
"""

from __future__ import annotations

import functools
import math
from typing import Literal

import jax
import jax.numpy as jnp
import numpy as np

Orientation = Literal["alternate", "horizontal", "vertical", "random"]
ORIENTATIONS: tuple[str, ...] = ("alternate", "horizontal", "vertical", "random")
MAX_BARS = 1000  # bars per image: far more than cover every start; each costs memory per image


def image_hw(shape: tuple[int, ...]) -> tuple[int, int]:
    """Height and width of a batch shaped (N, H*W) with square images, or (N, H, W)."""
    if len(shape) == 3:
        return shape[1], shape[2]
    if len(shape) == 2:
        side = math.isqrt(shape[1])
        if side * side != shape[1] or side == 0:
            hint = (f" (one {shape[0]} x {shape[1]} image? pass it as a batch, images[None])"
                    if shape[0] == shape[1] else "")
            raise ValueError(f"flat images must have a square number of pixels, got "
                             f"{shape[1]}{hint}")
        return side, side
    one = len(shape) == 1 and shape[0] > 0 and math.isqrt(shape[0]) ** 2 == shape[0]
    hint = " (one flat image? pass it as a batch, images[None])" if one else ""
    raise ValueError(
        f"images must be shaped (N, H*W) or (N, H, W), got rank {len(shape)} shape {shape}{hint}"
    )


def is_integer(value: object) -> bool:
    """True for Python and NumPy integers (not bools)."""
    return isinstance(value, (int, np.integer)) and not isinstance(value, bool)


def concrete_int(value: object) -> object:
    """A concrete integer scalar array (``jnp.int32(2)``, ``np.array(2)``) as a Python int;
    anything else as it is, for ``check_static`` to judge."""
    if (isinstance(value, (np.ndarray, jax.Array)) and not isinstance(value, jax.core.Tracer)
            and value.ndim == 0 and np.issubdtype(value.dtype, np.integer)):
        return int(value)
    return value


def check_static(**values: object) -> None:
    """Raise ValueError unless every value is a Python (or NumPy) integer, not a traced one.

    Bar geometry fixes array shapes and masks, so it must be known when a function is traced:
    under ``jit`` pass it as a static argument, under ``vmap`` keep it out of the mapped axes.
    """
    for name, value in values.items():
        if isinstance(value, jax.core.Tracer):
            raise ValueError(f"occlusion {name} must be a Python int, not a traced value: mark it "
                             "static under jit (static_argnames) and do not vmap over it")
        if not is_integer(value):
            raise ValueError(f"occlusion {name} must be an integer, got {value!r}")


def check_bars(size: int, *, width: int, low: int, high: int, num_bars: int,
               orientation: str) -> None:
    """Raise ValueError if bars of this geometry do not fit in a ``size``-pixel side."""
    check_static(width=width, low=low, high=high, num_bars=num_bars)
    if width < 1:
        raise ValueError(f"occlusion width must be >= 1, got {width}")
    if not 1 <= num_bars <= MAX_BARS:
        raise ValueError(f"number of bars must be in 1..{MAX_BARS}, got {num_bars}")
    if orientation not in ORIENTATIONS:
        raise ValueError(f"orientation must be one of {ORIENTATIONS}, got {orientation!r}")
    if width > size:
        raise ValueError(f"occlusion width {width} is wider than the image ({size} pixels)")
    if not 0 <= low <= high:
        raise ValueError(f"occlusion start range {low}..{high} must satisfy 0 <= low <= high")
    if high + width > size:
        raise ValueError(
            f"occlusion start range {low}..{high} with width {width} must lie inside the "
            f"image: a bar reaches pixel {high + width - 1}, but {size}-pixel images allow "
            f"starts up to {size - width}"
        )


def bar_sides(orientation: str, height: int, width: int) -> tuple[int, ...]:
    """The image sides bars of ``orientation`` must fit in: rows start within the height,
    columns within the width; alternating or random bars need both."""
    return {"horizontal": (height,), "vertical": (width,)}.get(orientation, (height, width))


def sample_bars(key: jax.Array, num_images: int, *, low: int = 10, high: int = 20,
                orientation: Orientation = "alternate",
                num_bars: int = 1) -> tuple[jax.Array, jax.Array]:
    """Draw bar starts (int32, N x K, uniform in low..high inclusive) and orientations.

    Returns ``(starts_NxK, horizontal_NxK)``; ``horizontal`` True means a row is covered.
    """
    start_key, orient_key = jax.random.split(key)
    starts_NxK = jax.random.randint(start_key, (num_images, num_bars), low, high + 1,
                                    dtype=jnp.int32)  # the same draws under jax_enable_x64
    shape = (num_images, num_bars)
    if orientation == "alternate":
        horizontal_NxK = jnp.broadcast_to((jnp.arange(num_images) % 2 == 0)[:, None], shape)
    elif orientation == "horizontal":
        horizontal_NxK = jnp.ones(shape, bool)
    elif orientation == "vertical":
        horizontal_NxK = jnp.zeros(shape, bool)
    elif orientation == "random":
        horizontal_NxK = jax.random.bernoulli(orient_key, jnp.float32(0.5), shape)
    else:
        raise ValueError(f"orientation must be one of {ORIENTATIONS}, got {orientation!r}")
    return starts_NxK, horizontal_NxK


def bars_mask(starts_NxK: jax.Array, horizontal_NxK: jax.Array, *, height: int, width: int,
              bar_width: int = 1) -> jax.Array:
    """Boolean mask (N, H, W) covering every bar: rows ``s..s+bar_width-1`` or columns.

    A pixel is covered when its row is in a horizontal bar or its column in a vertical one, so
    the K bars are reduced per side first: memory O(N K (H + W)), not O(N K H W).
    """
    s_NxKx1 = starts_NxK[..., None]
    rows_1x1xH = jnp.arange(height)[None, None, :]
    cols_1x1xW = jnp.arange(width)[None, None, :]
    in_rows_NxKxH = (rows_1x1xH >= s_NxKx1) & (rows_1x1xH < s_NxKx1 + bar_width)
    in_cols_NxKxW = (cols_1x1xW >= s_NxKx1) & (cols_1x1xW < s_NxKx1 + bar_width)
    rows_NxH = jnp.any(in_rows_NxKxH & horizontal_NxK[..., None], axis=1)
    cols_NxW = jnp.any(in_cols_NxKxW & ~horizontal_NxK[..., None], axis=1)
    return rows_NxH[:, :, None] | cols_NxW[:, None, :]


def check_key(key: object) -> None:
    """Raise ValueError unless ``key`` is one ``jax.random`` key: typed (``jax.random.key``) or
    legacy uint32 data (``jax.random.PRNGKey``), not a seed or a batch of keys."""
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jax.dtypes.issubdtype(dtype, jax.dtypes.prng_key):
        if np.shape(key) == ():
            return
    elif dtype is not None and np.dtype(dtype) == np.uint32:
        if np.shape(key) == raw_key_shape(jax.config.jax_default_prng_impl):
            return
    got = (f"{type(key).__name__} {key!r}"[:60] if dtype is None
           else f"an array of dtype {dtype} shaped {tuple(np.shape(key))}")
    raise ValueError(f"the occlusion's first argument must be a jax.random key, e.g. "
                     f"jax.random.key(seed), got {got}")


@functools.cache
def raw_key_shape(impl: str) -> tuple[int, ...]:
    """The shape of one legacy uint32 key of this PRNG implementation ((2,) for threefry)."""
    return jax.eval_shape(lambda: jax.random.key_data(jax.random.key(0, impl=impl))).shape


def occlusion_mask(key: jax.Array, num_images: int, *, height: int = 28, width: int = 28,
                   bar_width: int = 1, low: int = 10, high: int = 20,
                   orientation: Orientation = "alternate", num_bars: int = 1) -> jax.Array:
    """Sample a boolean occlusion mask (N, H, W); the defaults are the original experiment."""
    check_key(key)
    num_images, height, width, bar_width, low, high, num_bars = map(
        concrete_int, (num_images, height, width, bar_width, low, high, num_bars))
    check_static(**{"image count": num_images, "image height": height, "image width": width})
    if num_images < 0:
        raise ValueError(f"number of images must be >= 0, got {num_images}")
    for size in bar_sides(orientation, height, width):
        check_bars(size, width=bar_width, low=low, high=high, num_bars=num_bars,
                   orientation=orientation)
    starts, horizontal = sample_bars(key, num_images, low=low, high=high,
                                     orientation=orientation, num_bars=num_bars)
    return bars_mask(starts, horizontal, height=height, width=width, bar_width=bar_width)


def check_images(images: jax.Array | np.ndarray, name: str = "images") -> None:
    """Raise ValueError for images that are not float pixels in [0, 1] of a supported shape."""
    try:
        image_hw(tuple(images.shape))
    except ValueError as err:
        raise ValueError(str(err).replace("images", name, 1)) from None
    if not jnp.issubdtype(images.dtype, jnp.floating):
        raise ValueError(f"{name} must be floats scaled to [0, 1], got dtype {images.dtype}: "
                         "scale integer images to [0, 1], e.g. x / 255")
    if isinstance(images, jax.core.Tracer):
        return  # values are unknown while tracing; shapes and dtypes were checked above
    values = np.asarray(images)
    if bad := int(np.size(values) - np.count_nonzero(np.isfinite(values))):
        raise ValueError(f"{name} contain {bad} NaN or infinite values; replace them "
                         "(e.g. np.nan_to_num) or drop those images")
    if values.size and (values.min() < 0.0 or values.max() > 1.0):
        raise ValueError(f"{name} must be scaled to [0, 1], got values in "
                         f"[{values.min():.4g}, {values.max():.4g}]: divide 0..255 pixels by 255")


def check_value(value: float | jax.Array) -> None:
    """Raise ValueError unless the occlusion value is a scalar, and for a concrete one outside
    [0, 1] (NaN included); a traced scalar (under ``jit`` or ``vmap``) passes unchecked."""
    if np.ndim(value) != 0:
        raise ValueError(f"occlusion value must be a scalar, got shape {np.shape(value)}")
    if isinstance(value, (bool, np.bool_)):
        raise ValueError(f"occlusion value must be a pixel value in [0, 1], not a bool ({value})")
    if isinstance(value, jax.core.Tracer):
        return
    if not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"occlusion value must be a pixel value in [0, 1], got {value}")


def occlude(key: jax.Array, images: jax.Array, *, width: int = 1,
            value: float | jax.Array = 1.0, low: int = 10, high: int = 20,
            orientation: Orientation = "alternate", num_bars: int = 1,
            return_mask: bool = False) -> jax.Array | tuple[jax.Array, jax.Array]:
    """Occlude a batch of images with bars; the defaults are the original experiment.

    Args:
      key: a ``jax.random`` key.
      images: floats in [0, 1], shaped (N, H*W) or (N, H, W).
      width: bar width in pixels.
      value: the value written into occluded pixels.
      low, high: the inclusive range of bar starts.
      orientation: ``alternate`` (even index: row, odd: column), ``horizontal``, ``vertical``
        or ``random``. ``alternate`` follows the position in the batch, as the original does:
        a batch of one (or a ``vmap`` over single images) gets rows only.
      num_bars: bars per image, drawn independently (they may coincide).
      return_mask: also return the boolean mask, shaped like ``images``.

    The geometry (``width``, ``low``, ``high``, ``orientation``, ``num_bars``: integers, or
    concrete integer scalar arrays) and ``return_mask`` must be static under ``jit``; ``value``
    may be traced.
    """
    if isinstance(return_mask, jax.core.Tracer):
        raise ValueError("occlude's return_mask must be a Python bool, not a traced value: mark "
                         "it static under jit (static_argnames)")
    if not hasattr(images, "shape"):  # a list of images
        images = jnp.asarray(images, jnp.float32)
    if jax.dtypes.issubdtype(images.dtype, jax.dtypes.prng_key):
        raise ValueError("occlude takes the key first: occlude(key, images), got a key as the "
                         "images")
    check_images(images)
    check_value(value)
    height, img_width = image_hw(tuple(images.shape))
    mask_NxHxW = occlusion_mask(key, images.shape[0], height=height, width=img_width,
                                bar_width=width, low=low, high=high,
                                orientation=orientation, num_bars=num_bars)
    mask = mask_NxHxW.reshape(images.shape)
    images = jnp.asarray(images)  # float64 NumPy images (x / 255) are float32 here without x64
    occluded = jnp.where(mask, jnp.asarray(value, images.dtype), images)
    return (occluded, mask) if return_mask else occluded
