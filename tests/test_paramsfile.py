"""Tests for aejax.paramsfile: parameters written and read back, damaged or foreign files
refused."""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
import pytest

from aejax import paramsfile
from aejax.model import Autoencoder, init_params
from tests.test_jsonio import full_disk


def test_parameters_come_back_bit_for_bit_and_fit_their_model(tmp_path: Path) -> None:
    model = Autoencoder(hidden=(32, 8))
    params = init_params(jax.random.key(0), model)
    paramsfile.save(params, tmp_path / "params.msgpack")
    loaded = paramsfile.load(tmp_path / "params.msgpack", model)
    assert jax.tree.structure(loaded) == jax.tree.structure(params)
    for a, b in zip(jax.tree.leaves(loaded), jax.tree.leaves(params), strict=True):
        assert isinstance(a, np.ndarray) and a.dtype == np.float32
        np.testing.assert_array_equal(a, np.asarray(b))
    with pytest.raises(ValueError, match=r"does not fit the model of this run's config.json "
                                         r"\(hidden=\[64, 16\]; dense_0/bias: \(32,\) saved, "
                                         r"\(64,\) now; .* and 5 more\): the two files do not "):
        paramsfile.load(tmp_path / "params.msgpack", Autoencoder(hidden=(64, 16)))
    # a custom model (aejax.parts) changed under its name: its code, not config.json, is to blame
    with pytest.raises(ValueError, match=r"does not fit the custom model Autoencoder \(dense_2/"
                                         r"bias: \(32,\) saved, \(8,\) now; .* and 6 more\): "
                                         r"its code has changed"):
        paramsfile.load(tmp_path / "params.msgpack", Autoencoder(hidden=(32, 8, 8)), custom=True)


def test_a_file_holding_no_parameter_tree_does_not_fit_and_has_no_input_width(
        tmp_path: Path) -> None:
    path = tmp_path / "params.msgpack"
    paramsfile.save(np.zeros((784, 128), np.float32), path)  # a lone array, not a params dict
    with pytest.raises(ValueError, match=r"does not fit the model of this run's config.json "
                                         r"\(hidden=\[128, 50\]; not a parameter tree\)"):
        paramsfile.load(path, Autoencoder())
    assert paramsfile.input_width(paramsfile.load(path)) is None
    params = init_params(jax.random.key(0), Autoencoder(hidden=(32, 8), features=100))
    assert paramsfile.input_width(params) == 100  # the inputs, not the first layer's outputs


def test_a_damaged_file_is_named(tmp_path: Path) -> None:
    path = tmp_path / "params.msgpack"
    paramsfile.save(init_params(jax.random.key(0), Autoencoder(hidden=(8, 4))), path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(ValueError, match=rf"^{path} is damaged \(.*\); restore it or train again"):
        paramsfile.load(path)


def test_a_failed_save_leaves_no_half_written_file(tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "params.msgpack"
    params = init_params(jax.random.key(0), Autoencoder(hidden=(8, 4)))
    full_disk(monkeypatch)
    with pytest.raises(OSError, match="No space left on device"):
        paramsfile.save(params, path)
    assert list(tmp_path.iterdir()) == []  # not a damaged params.msgpack that evaluate.py reads
