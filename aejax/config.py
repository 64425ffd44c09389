"""The experiment's configuration: one frozen dataclass, its defaults the original experiment."""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Iterable
from typing import Any, Literal

import numpy as np

from aejax.data import IMAGE_SIDE
from aejax.occlusion import (MAX_BARS, ORIENTATIONS, Orientation, bar_sides, check_bars,
                             is_integer)

TrainOcclusion = Literal["none", "all", "mixed"]
TRAIN_OCCLUSIONS: tuple[str, ...] = ("none", "all", "mixed")
MAX_SEED = 2**32 - 1  # jax.random.key keeps only the low 32 bits of a seed
MAX_WIDTH = 2**31 - 1  # a layer's width is an int32 array dimension
# Learning rates that stay positive, finite and normal in float32 (XLA flushes subnormals to 0):
FLOAT32_NORMAL_MIN = 1.1754943508222875e-38
FLOAT32_OVERFLOW = 3.4028235677973366e38  # this and above round to inf (float32's max is below)


@dataclasses.dataclass(frozen=True)
class Config:
    """Every hyper-parameter of a run; defaults reproduce the original experiment."""

    # Data
    dataset: str = "mnist"
    data_dir: str | None = None  # an explicit folder of the four IDX files
    data_root: str = "data"  # downloads and decoded cache
    # Model
    hidden: tuple[int, ...] = (128, 50)  # encoder widths; the decoder mirrors them
    init_scheme: str = "torch"  # "torch" (the original's nn.Linear init) or "flax"
    # Optimisation
    epochs: int = 5
    batch_size: int = 32
    learning_rate: float = 1e-3
    seed: int = 0
    train_occlusion: TrainOcclusion = "none"
    # Occlusion (the original: one 1-pixel bar, start in 10..20, alternating row/column)
    occlusion_width: int = 1
    occlusion_value: float = 1.0
    occlusion_low: int = 10
    occlusion_high: int = 20
    occlusion_orientation: Orientation = "alternate"
    occlusion_bars: int = 1
    # Evaluation uses its own fixed key so that runs with different seeds are compared on the
    # same occluded test set.
    eval_seed: int = 0

    def __post_init__(self) -> None:
        check_integers(self)
        check_numbers_and_text(self)
        for name in INT_FIELDS:  # NumPy integers become ints (JSON cannot hold them)
            object.__setattr__(self, name, int(getattr(self, name)))
        for name in FLOAT_FIELDS:  # and NumPy or JAX float scalars floats
            object.__setattr__(self, name, float(getattr(self, name)))
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        validate(self)

    def to_json(self) -> str:
        """Serialise to JSON (tuples become lists)."""
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)

    def occlusion_kwargs(self) -> dict[str, Any]:
        """Keyword arguments for ``occlusion.occlude`` (everything but key and images)."""
        return {"width": self.occlusion_width, "value": self.occlusion_value,
                "low": self.occlusion_low, "high": self.occlusion_high,
                "orientation": self.occlusion_orientation, "num_bars": self.occlusion_bars}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> Config:
        """Build a config from a (possibly partial) dict, rejecting unknown keys."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise ValueError(f"unknown config field(s): {', '.join(unknown)}")
        return cls(**values)


INT_FIELDS: tuple[str, ...] = ("epochs", "batch_size", "seed", "eval_seed", "occlusion_width",
                               "occlusion_low", "occlusion_high", "occlusion_bars")


def check_integers(cfg: Config) -> None:
    """Raise ValueError for a count, seed or bar position that is not an integer (2.5, "3")."""
    for name in INT_FIELDS:
        if not is_integer(value := getattr(cfg, name)):
            raise ValueError(f"{name.replace('_', ' ')} must be an integer, got {value!r}")
    hidden = cfg.hidden
    if isinstance(hidden, (str, bytes)) or not isinstance(hidden, Iterable):
        raise ValueError(f"hidden sizes must be a sequence of integers, got {hidden!r}")
    hidden = tuple(hidden)  # a list, an array or a generator
    if not all(map(is_integer, hidden)):
        raise ValueError(f"hidden sizes must be integers, got {hidden!r}")
    object.__setattr__(cfg, "hidden", hidden)


FLOAT_FIELDS: tuple[str, ...] = ("learning_rate", "occlusion_value")
TEXT_FIELDS: tuple[str, ...] = ("dataset", "data_dir", "data_root", "init_scheme",
                                "train_occlusion", "occlusion_orientation")
PATH_FIELDS: tuple[str, ...] = ("data_dir", "data_root")


def is_real(value: object) -> bool:
    """True for a Python, NumPy or JAX scalar int or float (not a bool, a string or an array)."""
    if value is None or isinstance(value, (bool, np.bool_, str, bytes)):
        return False
    try:
        array = np.asarray(value)
    except Exception:  # a traced value, or something NumPy cannot read
        return False
    return array.ndim == 0 and array.dtype.kind in "iuf"


def check_numbers_and_text(cfg: Config) -> None:
    """Raise ValueError for a rate or pixel value that is not a number ("1e-3", True, None) or a
    name that is not a string; folders given as paths become strings (JSON cannot hold paths)."""
    for name in FLOAT_FIELDS:
        if not is_real(value := getattr(cfg, name)):
            raise ValueError(f"{name.replace('_', ' ')} must be a number, got {value!r}")
    for name in TEXT_FIELDS:
        value = getattr(cfg, name)
        if name in PATH_FIELDS and isinstance(value, os.PathLike):
            object.__setattr__(cfg, name, value := os.fspath(value))
        if not (isinstance(value, str) or (name == "data_dir" and value is None)):
            raise ValueError(f"{name.replace('_', ' ')} must be a string, got {value!r}")


def validate(cfg: Config) -> None:
    """Raise ValueError with a one-line message for an impossible configuration."""
    checks = [
        (cfg.epochs >= 1, f"epochs must be >= 1, got {cfg.epochs}"),
        (cfg.batch_size >= 1, f"batch size must be >= 1, got {cfg.batch_size}"),
        (FLOAT32_NORMAL_MIN <= cfg.learning_rate < FLOAT32_OVERFLOW,  # else 0 or inf in the step
         f"learning rate must be a positive normal float32 (1.2e-38 to 3.4e38), got "
         f"{cfg.learning_rate}"),
        (len(cfg.hidden) >= 1 and all(1 <= h <= MAX_WIDTH for h in cfg.hidden),
         f"hidden sizes must be in 1..{MAX_WIDTH}, got {list(cfg.hidden)}"),
        (cfg.init_scheme in ("torch", "flax"),
         f"init scheme must be torch or flax, got {cfg.init_scheme!r}"),
        (cfg.train_occlusion in TRAIN_OCCLUSIONS,
         f"train occlusion must be one of {TRAIN_OCCLUSIONS}, got {cfg.train_occlusion!r}"),
        (0 <= cfg.seed <= MAX_SEED, f"seed must be in 0..{MAX_SEED}, got {cfg.seed}"),
        (0 <= cfg.eval_seed <= MAX_SEED,
         f"eval seed must be in 0..{MAX_SEED}, got {cfg.eval_seed}"),
        (0.0 <= cfg.occlusion_value <= 1.0,  # False for NaN too
         f"occlusion value must be a pixel value in [0, 1], got {cfg.occlusion_value}"),
        (cfg.occlusion_orientation in ORIENTATIONS,
         f"orientation must be one of {ORIENTATIONS}, got {cfg.occlusion_orientation!r}"),
        (cfg.occlusion_width >= 1, f"occlusion width must be >= 1, got {cfg.occlusion_width}"),
        (1 <= cfg.occlusion_bars <= MAX_BARS,
         f"occlusion bars must be in 1..{MAX_BARS}, got {cfg.occlusion_bars}"),
        (0 <= cfg.occlusion_low <= cfg.occlusion_high,
         f"occlusion start range must satisfy 0 <= low <= high (--occlusion-low, "
         f"--occlusion-high), got {cfg.occlusion_low}..{cfg.occlusion_high}"),
    ]
    for ok, message in checks:
        if not ok:
            raise ValueError(message)
    if cfg.data_dir is None:  # the registered datasets: 28 x 28, known before any file is read
        check_image_size(cfg, IMAGE_SIDE, IMAGE_SIDE)


def check_data(cfg: Config, num_train: int, height: int, width: int) -> None:
    """Raise ValueError if the config does not fit the loaded data (batch size, bar positions)."""
    check_batch_size(cfg, num_train)
    check_image_size(cfg, height, width)


def check_batch_size(cfg: Config, num_train: int) -> None:
    """Raise ValueError unless 1 <= batch size <= the training set size."""
    if not 1 <= cfg.batch_size <= num_train:
        raise ValueError(f"batch size must be between 1 and the training set size ({num_train}), "
                         f"got {cfg.batch_size}")


def check_image_size(cfg: Config, height: int, width: int) -> None:
    """Raise ValueError if the config's bars do not fit in ``height`` x ``width`` images."""
    for size in bar_sides(cfg.occlusion_orientation, height, width):
        check_bars(size, width=cfg.occlusion_width, low=cfg.occlusion_low,
                   high=cfg.occlusion_high, num_bars=cfg.occlusion_bars,
                   orientation=cfg.occlusion_orientation)
