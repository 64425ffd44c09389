"""Evaluation of a trained autoencoder on the whole test set, occluded with a fixed key."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from aejax import occlusion
from aejax.config import Config
from aejax.model import Autoencoder

EVAL_KEY_PURPOSE = 0  # fold_in constant separating the evaluation key from other uses of eval_seed


def eval_key(cfg: Config) -> jax.Array:
    """The fixed evaluation key: a function of ``cfg.eval_seed`` only, not the training seed."""
    return jax.random.fold_in(jax.random.key(cfg.eval_seed), EVAL_KEY_PURPOSE)


@jax.jit
def _mse_per_image(a: jax.Array, b: jax.Array) -> jax.Array:
    return jnp.mean(jnp.square(a - b), axis=-1)


def reconstruct_all(model: Autoencoder, params: Any, clean: jax.Array, key: jax.Array,
                    occlusion_kwargs: dict[str, Any]) -> dict[str, jax.Array]:
    """Occlude ``clean`` (N, D) with ``key`` and reconstruct both versions."""
    occluded, mask = occlusion.occlude(key, clean, return_mask=True, **occlusion_kwargs)
    apply = jax.jit(model.apply)
    return {"clean": clean, "occluded_input": occluded, "mask": mask,
            "recon_clean": apply({"params": params}, clean),
            "recon_occluded": apply({"params": params}, occluded)}


def core_metrics(arrays: dict[str, jax.Array]) -> dict[str, dict[str, float]]:
    """Test-set MSE against the clean images for the three comparisons."""
    clean = arrays["clean"]
    pairs = {"clean": arrays["recon_clean"], "occluded_input": arrays["occluded_input"],
             "occluded": arrays["recon_occluded"]}
    return {name: {"mse": float(np.mean(_mse_per_image(x, clean)))} for name, x in pairs.items()}


def evaluate(cfg: Config, model: Autoencoder, params: Any, test_images_u8: np.ndarray
             ) -> tuple[dict[str, Any], dict[str, jax.Array]]:
    """Metrics (``{"clean": {"mse": ...}, ...}``) and the arrays they were computed from."""
    clean = jnp.asarray(test_images_u8, jnp.float32) / 255.0
    arrays = reconstruct_all(model, params, clean, eval_key(cfg), cfg.occlusion_kwargs())
    return core_metrics(arrays), arrays
