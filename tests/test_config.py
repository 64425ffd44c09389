"""Tests for aejax.config: defaults are the original experiment; bad values are refused."""

from __future__ import annotations

import json
from pathlib import Path

import jax.numpy as jnp
import numpy as np
import pytest

from aejax.config import Config, check_image_size

LR_RANGE = r"learning rate must be a positive normal float32 \(1\.2e-38 to 3\.4e38\), got "


def test_defaults_are_the_original_experiment() -> None:
    cfg = Config()
    assert (cfg.dataset, cfg.hidden, cfg.epochs, cfg.batch_size, cfg.learning_rate) == (
        "mnist", (128, 50), 5, 32, 1e-3)
    assert cfg.train_occlusion == "none"
    assert (cfg.init_scheme, cfg.seed, cfg.eval_seed) == ("torch", 0, 0)
    assert (cfg.data_dir, cfg.data_root) == (None, "data")
    assert cfg.occlusion_kwargs() == {"width": 1, "value": 1.0, "low": 10, "high": 20,
                                      "orientation": "alternate", "num_bars": 1}


def test_occlusion_kwargs_pass_each_field_to_its_own_argument() -> None:
    cfg = Config(occlusion_width=3, occlusion_value=0.0, occlusion_low=2, occlusion_high=7,
                 occlusion_orientation="vertical", occlusion_bars=4)
    assert cfg.occlusion_kwargs() == {"width": 3, "value": 0.0, "low": 2, "high": 7,
                                      "orientation": "vertical", "num_bars": 4}


def test_json_round_trip() -> None:
    cfg = Config(hidden=(64, 8), epochs=2, train_occlusion="mixed")
    assert Config.from_dict(json.loads(cfg.to_json())) == cfg


@pytest.mark.parametrize("kwargs,message", [
    (dict(epochs=0), "epochs must be >= 1, got 0"),
    (dict(batch_size=0), "batch size must be >= 1, got 0"),
    (dict(learning_rate=0.0), LR_RANGE + "0.0"),
    (dict(learning_rate=float("nan")), LR_RANGE + "nan"),
    (dict(learning_rate=float("inf")), LR_RANGE + "inf"),
    (dict(learning_rate=1e39), LR_RANGE + "1e\\+39"),  # finite in Python, inf in float32
    (dict(learning_rate=1e-46), LR_RANGE + "1e-46"),  # positive in Python, 0 in float32
    (dict(learning_rate=1e-40), LR_RANGE + "1e-40"),  # subnormal: XLA flushes it to 0
    (dict(hidden=(128, 0)), r"hidden sizes must be in 1..2147483647, got \[128, 0\]"),
    (dict(hidden=(2**70,)),
     r"hidden sizes must be in 1..2147483647, got \[1180591620717411303424\]"),
    (dict(occlusion_bars=3_000_000_000), "occlusion bars must be in 1..1000, got 3000000000"),
    (dict(train_occlusion="some"), "train occlusion must be one of"),
    (dict(seed=-1), "seed must be in 0..4294967295, got -1"),
    (dict(seed=2**32), "seed must be in 0..4294967295, got 4294967296"),
    (dict(eval_seed=2**70), "eval seed must be in 0..4294967295"),
    (dict(occlusion_value=float("nan")), r"occlusion value must be a pixel value in \[0, 1\]"),
    (dict(occlusion_value=1.5), r"occlusion value .* got 1.5"),
    (dict(occlusion_value=-0.5), r"occlusion value .* got -0.5"),
    (dict(occlusion_low=21, occlusion_high=20),
     r"occlusion start range must satisfy 0 <= low <= high .* got 21\.\.20$"),
    (dict(occlusion_high=30), "range 10..30 with width 1 must lie inside the image"),
    (dict(occlusion_width=30), r"occlusion width 30 is wider than the image \(28 pixels\)"),
    (dict(init_scheme="xavier"), "init scheme must be torch or flax, got 'xavier'"),
    (dict(occlusion_width=2.5), "occlusion width must be an integer, got 2.5"),
    (dict(occlusion_low=10.5), "occlusion low must be an integer, got 10.5"),
    (dict(eval_seed=1.5), "eval seed must be an integer, got 1.5"),
    (dict(occlusion_bars=2.0), "occlusion bars must be an integer, got 2.0"),
    (dict(epochs=True), "epochs must be an integer, got True"),
    (dict(batch_size="32"), "batch size must be an integer, got '32'"),
    (dict(hidden=(64.7,)), r"hidden sizes must be integers, got \(64\.7,\)"),
    (dict(hidden=5), "hidden sizes must be a sequence of integers, got 5"),
    (dict(hidden="12"), "hidden sizes must be a sequence of integers, got '12'"),
    (dict(learning_rate="1e-3"), "learning rate must be a number, got '1e-3'"),
    (dict(learning_rate=True), "learning rate must be a number, got True"),
    (dict(learning_rate=None), "learning rate must be a number, got None"),
    (dict(learning_rate=np.array([1e-3])), "learning rate must be a number, got array"),
    (dict(occlusion_value="1"), "occlusion value must be a number, got '1'"),
    (dict(dataset=None), "dataset must be a string, got None"),
    (dict(init_scheme=1), "init scheme must be a string, got 1"),
    (dict(data_root=None), "data root must be a string, got None"),
])
def test_bad_values_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Config(**kwargs)


def test_learning_rates_at_float32s_ends_are_taken() -> None:
    for rate in (1.1754943508222875e-38, 3.4028235e38):  # the smallest normal; the max, printed
        assert np.isfinite(np.float32(Config(learning_rate=rate).learning_rate))


def test_bars_are_checked_against_the_image_size() -> None:
    custom = Config(data_dir="mine", occlusion_high=30)  # its image size is not known yet
    check_image_size(custom, 32, 32)
    with pytest.raises(ValueError, match="reaches pixel 32, but 32-pixel images allow starts "
                                         "up to 30"):
        check_image_size(Config(data_dir="mine", occlusion_high=31, occlusion_width=2), 32, 32)
    with pytest.raises(ValueError, match="16-pixel images allow starts up to 15"):
        check_image_size(Config(), 28, 16)


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown config field"):
        Config.from_dict({"epochz": 3})


def test_numpy_integers_are_taken_as_ints() -> None:
    cfg = Config(epochs=np.int64(2), hidden=[np.int32(64), 16], occlusion_low=np.int8(3))
    assert type(cfg.epochs) is int and cfg.hidden == (64, 16) and cfg.occlusion_low == 3
    assert Config.from_dict(json.loads(cfg.to_json())) == cfg
    assert Config(hidden=np.array([64, 16])).hidden == (64, 16)
    assert Config(hidden=(h for h in (32, 8))).hidden == (32, 8)


def test_numpy_and_jax_floats_and_paths_become_json_values() -> None:
    cfg = Config(learning_rate=np.float32(1e-3), occlusion_value=jnp.float32(0.5),
                 data_dir=Path("mine"), data_root=Path("cache"))
    assert type(cfg.learning_rate) is float and cfg.learning_rate == float(np.float32(1e-3))
    assert type(cfg.occlusion_value) is float and (cfg.data_dir, cfg.data_root) == ("mine", "cache")
    assert Config.from_dict(json.loads(cfg.to_json())) == cfg
    assert Config(learning_rate=1).learning_rate == 1.0


def test_each_range_is_checked_at_both_ends() -> None:
    from aejax.config import FLOAT32_OVERFLOW, MAX_BARS, MAX_SEED, check_batch_size

    assert (Config(seed=MAX_SEED).seed, Config(eval_seed=MAX_SEED).eval_seed) == (MAX_SEED,) * 2
    assert Config(occlusion_bars=MAX_BARS).occlusion_bars == MAX_BARS
    with pytest.raises(ValueError, match=LR_RANGE):  # rounds to inf in float32
        Config(learning_rate=FLOAT32_OVERFLOW)
    with pytest.raises(ValueError, match=r"hidden sizes must be in 1..2147483647, got \[\]"):
        Config(hidden=())  # no layer at all
    check_batch_size(Config(batch_size=64), 64)  # one batch of the whole training set
    with pytest.raises(ValueError, match=r"training set size \(64\), got 65"):
        check_batch_size(Config(batch_size=65), 64)


@pytest.mark.parametrize("kwargs,message", [
    (dict(occlusion_width=0), "occlusion width must be >= 1, got 0"),
    (dict(occlusion_low=-1), r"occlusion start range must satisfy 0 <= low <= high "
                             r"\(--occlusion-low, --occlusion-high\), got -1..20"),
])
def test_bars_impossible_at_any_image_size_are_refused_before_the_size_is_known(
        kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):  # not only once the data is read
        Config(data_dir="mine", **kwargs)
