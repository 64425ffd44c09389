"""Tests for aejax.config: defaults are the original experiment; bad values are refused."""

from __future__ import annotations

import json

import pytest

from aejax.config import Config


def test_defaults_are_the_original_experiment() -> None:
    cfg = Config()
    assert (cfg.dataset, cfg.hidden, cfg.epochs, cfg.batch_size, cfg.learning_rate) == (
        "mnist", (128, 50), 5, 32, 1e-3)
    assert cfg.train_occlusion == "none"
    assert cfg.occlusion_kwargs() == {"width": 1, "value": 1.0, "low": 10, "high": 20,
                                      "orientation": "alternate", "num_bars": 1}


def test_json_round_trip() -> None:
    cfg = Config(hidden=(64, 8), epochs=2, train_occlusion="mixed")
    assert Config.from_dict(json.loads(cfg.to_json())) == cfg


@pytest.mark.parametrize("kwargs,message", [
    (dict(epochs=0), "epochs must be >= 1"),
    (dict(batch_size=0), "batch size must be >= 1"),
    (dict(learning_rate=0.0), "learning rate must be > 0"),
    (dict(hidden=(128, 0)), "hidden sizes"),
    (dict(train_occlusion="some"), "train occlusion must be one of"),
    (dict(occlusion_low=21, occlusion_high=20), "occlusion start range"),
    (dict(init_scheme="xavier"), "init scheme"),
])
def test_bad_values_are_refused(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        Config(**kwargs)


def test_unknown_fields_are_refused() -> None:
    with pytest.raises(ValueError, match="unknown config field"):
        Config.from_dict({"epochz": 3})
