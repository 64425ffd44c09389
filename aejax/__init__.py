"""aejax: a functional JAX/Flax/Optax denoising autoencoder for occluded MNIST digits."""

__version__ = "0.1.0"
