"""Evaluation of a trained autoencoder on the whole test set, occluded with a fixed key."""

from __future__ import annotations

import functools
import hashlib
import logging
from typing import Any

import flax.linen as nn
import jax
import numpy as np

from aejax import metrics, occlusion, paramsfile, partcheck, parts, summaries, train
from aejax.config import Config, check_image_size
from aejax.model import features_of

log = logging.getLogger(__name__)
EVAL_KEY_PURPOSE = 0x6576616C  # "eval": a fold_in constant that no other key derivation uses
COMPARISONS: tuple[str, ...] = ("clean", "occluded_input", "occluded")
ARRAYS: tuple[str, ...] = ("clean", "occluded_input", "mask", "recon_clean", "recon_occluded")


def eval_key(cfg: Config) -> jax.Array:
    """The fixed evaluation key: a function of ``cfg.eval_seed`` only, not the training seed.

    ``train.root_keys`` splits ``key(seed)`` in three, and with JAX's partitionable threefry
    ``fold_in(key(s), i)`` equals the i-th split for small i; hence the large constant, so that
    with ``eval_seed == seed`` (both 0 by default) the test bars do not reuse the init key.
    """
    return jax.random.fold_in(jax.random.key(cfg.eval_seed), EVAL_KEY_PURPOSE)


@jax.jit
def to_float(images_u8: jax.Array) -> jax.Array:
    """``train.to_float`` compiled, as in the training step: the test images become the same
    floats as training images, bit for bit. Run op by op, JAX 0.6 divides by 255 exactly, and
    compiled code multiplies by float32(1 / 255): 126 of the 256 values are 1 ulp apart."""
    return train.to_float(images_u8)


@functools.partial(jax.jit, static_argnums=0)
def reconstruct(model: nn.Module, params: Any, images: jax.Array) -> jax.Array:
    """The model's reconstruction of flat images (N, D), compiled once per model."""
    return model.apply({"params": params}, images)


def reconstruct_all(model: nn.Module, params: Any, clean: jax.Array, key: jax.Array,
                    occlude: parts.OccludeFn) -> dict[str, jax.Array]:
    """Occlude ``clean`` (N, D) with ``occlude(key, clean)`` and reconstruct both versions."""
    occluded, mask = partcheck.occlude_checked(occlude, key, clean)
    recon_clean = reconstruct(model, params, clean)
    partcheck.check_reconstruction(model, clean, recon_clean)
    return {"clean": clean, "occluded_input": occluded, "mask": mask,
            "recon_clean": recon_clean, "recon_occluded": reconstruct(model, params, occluded)}


def compared(arrays: dict[str, jax.Array]) -> dict[str, jax.Array]:
    """What each comparison holds against the clean images."""
    return {"clean": arrays["recon_clean"], "occluded_input": arrays["occluded_input"],
            "occluded": arrays["recon_occluded"]}


@functools.partial(jax.jit, static_argnames=("model", "occlude"))
def evaluate_arrays(model: nn.Module, params: Any, clean: jax.Array, key: jax.Array,
                    occlude: parts.OccludeFn
                    ) -> tuple[dict[str, jax.Array], dict[str, dict[str, jax.Array]]]:
    """``reconstruct_all`` (the bars from ``key``) and every per-image metric: one program.

    Unchecked. ``clean`` comes in already converted to floats: converted in here, XLA may fuse
    the conversion's multiply into a later subtraction (an FMA, unrounded), and the occluded
    input's off-bar error would no longer be exactly 0.
    """
    arrays = reconstruct_all(model, params, clean, key, occlude)
    return arrays, metrics.per_image_all(clean, compared(arrays), arrays["mask"])


def check_predictions(arrays: dict[str, jax.Array], values: dict[str, dict[str, jax.Array]],
                      model: Any = None, occlude: parts.OccludeFn | None = None) -> None:
    """Raise ``metrics.check_inputs``'s ValueError for the first comparison it would refuse.

    A prediction is invalid if it holds NaN (e.g. NaN parameters) or leaves [0, 1] (a custom
    model without a sigmoid, or a custom occlusion, see ``aejax.parts``).
    """
    for name, pred in compared(arrays).items():
        problem = partcheck.outside_pixels(pred)
        if problem is None:
            continue
        if name != "occluded_input" and not np.all(np.isfinite(values[name]["mse"])):
            metrics.check_inputs(arrays["clean"], pred, arrays["mask"])  # its NaN message
        who = (f"the occlusion {parts.name(occlude)}" if name == "occluded_input"
               else f"the model {parts.name(model)} ({name} reconstructions)")
        raise ValueError(f"{who} returned {problem} on the test images; images and "
                         "reconstructions must lie in [0, 1] (see aejax.parts)")


def left_out(count: int, total: int) -> str:
    """What becomes of ``count`` NaN values of ``total`` in metrics.json, for the warnings."""
    return "so its test means are NaN" if count == total else "left out of its means"


def warn_undefined_masks(per_image: dict[str, np.ndarray]) -> None:
    """Log how many test images the occlusion left untouched (an all-False mask: ``on_bar_mse``
    undefined) or covered entirely (``off_bar_mse`` undefined): NaN per image, left out of the
    means, and NaN in metrics.json when every image has it. ``per_image`` is one comparison's
    values: its predictions are finite (``check_predictions``), so only the mask makes a NaN."""
    for metric, what in (("on_bar_mse", "no occluded pixel"),
                         ("off_bar_mse", "every pixel occluded")):
        count, total = int(np.sum(np.isnan(per_image[metric]))), len(per_image[metric])
        if count:
            log.warning("%d of %d test images have %s (the occlusion's mask): their %s is "
                        "undefined, NaN, %s", count, total, what, metric, left_out(count, total))


def warn_undefined_corr(per_image: dict[str, dict[str, np.ndarray]]) -> None:
    """Log, per comparison, how many test images have no correlation (``corr`` NaN: the image or
    what it is compared with is constant, e.g. a collapsed model's output), left out of the
    means. Not for ``corr_nonzero``: it is NaN for MNIST test image 9051 whatever the model
    (every pixel it counts, the digit's ink, is 255), which is no news."""
    for name in COMPARISONS:
        values = per_image[name]["corr"]
        if count := int(np.sum(np.isnan(values))):
            log.warning("test.%s: %d of %d test images are constant or compared with a constant "
                        "image: their corr is undefined, NaN, %s", name, count, len(values),
                        left_out(count, len(values)))


def summary(values: dict[str, dict[str, np.ndarray]], labels: np.ndarray
                 ) -> dict[str, Any]:
    """The ``test`` section of metrics.json: test-set means plus ``per_class``."""
    out: dict[str, Any] = {name: summaries.summarize(v) for name, v in values.items()}
    out["per_class"] = summaries.per_class(values, labels)
    return out


def check_inputs(cfg: Config, model: nn.Module, images: np.ndarray, labels: np.ndarray, *,
                 bars: bool = True) -> None:
    """Raise ValueError, before any work, for test data that ``evaluate`` cannot use (with
    ``bars``, also for images the config's bars do not fit)."""
    shape, dtype = tuple(np.shape(images)), np.asarray(images).dtype
    if dtype != np.uint8:
        raise ValueError(f"test images must be uint8 pixels 0..255 as data.load returns them, "
                         f"got dtype {dtype}")
    height, width = occlusion.image_hw(shape)
    if not shape[0]:
        raise ValueError(f"there are no test images (shape {shape})")
    if len(shape) == 3 and height != width:
        raise ValueError(f"test images are {height}x{width}; only square images are supported")
    if height * width != (features := features_of(model, height * width)):
        raise ValueError(f"the model takes {features} pixels per image, but the test "
                         f"images are {height}x{width} = {height * width}")
    if np.shape(labels) != shape[:1]:
        raise ValueError(f"{shape[0]} test images need {shape[0]} labels shaped ({shape[0]},), "
                         f"got shape {np.shape(labels)}")
    summaries.check_labels(labels)
    if bars:
        check_image_size(cfg, height, width)


def check_params(model: nn.Module, params: Any) -> None:
    """Raise ValueError, before any work, for parameters that are not ``model``'s (another
    model's, a whole TrainState, ``{"params": ...}``), naming how they differ."""
    if diff := paramsfile.difference(params, model, words=("given", "built", "")):
        raise ValueError(f"the parameters given do not fit the model {parts.name(model)} "
                         f"({diff}): give the params it was trained with (state.params)")


def occlusion_digest(arrays: dict[str, Any]) -> str:
    """A digest of the occluded test images ``evaluate`` scored (its ``arrays``), so that runs
    scored on different corruptions are never averaged together (compare.py), even when their
    occlusion kept its name but changed."""
    occluded = np.ascontiguousarray(np.asarray(arrays["occluded_input"], np.float32))
    return hashlib.sha256(occluded.data).hexdigest()[:16]


def evaluate(cfg: Config, model: nn.Module, params: Any, test_images_u8: np.ndarray,
             test_labels: np.ndarray, *, occlude: parts.OccludeFn | None = None
             ) -> tuple[dict[str, Any], dict[str, Any]]:
    """The ``test`` metrics and the arrays (plus ``labels`` and ``per_image``) behind them.

    Args:
      cfg: the run's configuration (occlusion geometry and ``eval_seed``).
      model: the autoencoder (or any model of ``aejax.parts``).
      params: its trained parameters.
      test_images_u8: uint8 test images, (N, H, W) or (N, H*W).
      test_labels: the digit class of each test image, (N,).
      occlude: the occlusion of the test images, drawn from ``eval_key(cfg)``; None: the
        config's bars (``parts.bars``).
    """
    metrics.refuse_traced("evaluate.evaluate", "evaluate.evaluate_arrays (unchecked)", params,
                          test_images_u8, test_labels)
    parts.require_occlusion(occlude)
    partcheck.check_signatures(model, None)
    check_inputs(cfg, model, test_images_u8, test_labels, bars=occlude is None)
    check_params(model, params)
    images = np.asarray(test_images_u8).reshape(len(test_images_u8), -1)
    clean = to_float(images)
    try:
        out, values = evaluate_arrays(model, params, clean, eval_key(cfg),
                                      parts.bars(cfg) if occlude is None else occlude)
    except ValueError:
        raise
    except Exception:  # a custom occlusion that cannot run compiled? then one line naming it
        if occlude is not None:
            partcheck.occlude_compiled(occlude, eval_key(cfg), clean[:8], "test images")
        raise
    arrays: dict[str, Any] = {name: out[name] for name in ARRAYS}
    check_predictions(arrays, values, model,
                      parts.bars(cfg) if occlude is None else occlude)
    arrays["labels"] = np.asarray(test_labels)
    arrays["per_image"] = {name: metrics.to_numpy(values[name]) for name in COMPARISONS}
    warn_undefined_masks(arrays["per_image"]["occluded_input"])
    warn_undefined_corr(arrays["per_image"])
    return summary(arrays["per_image"], arrays["labels"]), arrays
