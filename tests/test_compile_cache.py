"""Tests for aejax.compile_cache: the persistent cache is switched on, or skipped with a warning."""

from __future__ import annotations

import logging
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest
from jax.experimental.compilation_cache import compilation_cache as cc

from aejax import compile_cache

OPTIONS = ("jax_compilation_cache_dir", "jax_persistent_cache_min_compile_time_secs",
           "jax_persistent_cache_min_entry_size_bytes")


@pytest.fixture
def jax_options():
    """Restore JAX's cache options after the test (they are process-wide)."""
    before = {name: getattr(jax.config, name) for name in OPTIONS}
    yield
    for name, value in before.items():
        jax.config.update(name, value)
    cc.reset_cache()  # the folder JAX opened in the test is not the suite's


def test_enable_points_jax_at_the_folder_and_caches_everything(tmp_path: Path,
                                                               jax_options) -> None:
    assert compile_cache.enable(tmp_path / "a" / "cache") == tmp_path / "a" / "cache"
    assert (tmp_path / "a" / "cache").is_dir()
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "a" / "cache")
    assert jax.config.jax_persistent_cache_min_compile_time_secs == 0.0
    assert jax.config.jax_persistent_cache_min_entry_size_bytes == 0


def test_a_folder_that_cannot_be_made_is_a_warning_not_an_error(tmp_path: Path, jax_options,
                                                                caplog) -> None:
    (tmp_path / "file").write_text("")
    before = jax.config.jax_compilation_cache_dir
    with caplog.at_level(logging.WARNING, logger="aejax.compile_cache"):
        assert compile_cache.enable(tmp_path / "file" / "cache") is None
    assert jax.config.jax_compilation_cache_dir == before
    assert "no compilation cache: cannot create" in caplog.text
    assert "--no-compile-cache" in caplog.text


def test_the_warning_names_no_flag_the_script_lacks(tmp_path: Path, jax_options, caplog) -> None:
    (tmp_path / "file").write_text("")
    with caplog.at_level(logging.WARNING, logger="aejax.compile_cache"):
        assert compile_cache.enable(tmp_path / "file" / "cache", off_flag=None) is None
    assert caplog.text.rstrip().endswith("set AEJAX_JAX_CACHE to a writable folder")


def test_the_folder_may_come_from_aejax_jax_cache_with_a_tilde_and_exist_already(
        tmp_path: Path, jax_options, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("AEJAX_JAX_CACHE", "~/cache")
    assert compile_cache.enable() == tmp_path / "cache"
    assert compile_cache.enable() == tmp_path / "cache"  # the next run finds it there
    assert jax.config.jax_compilation_cache_dir == str(tmp_path / "cache")


def test_enabling_another_folder_later_in_the_process_caches_there(tmp_path: Path,
                                                                   jax_options) -> None:
    for i, folder in enumerate([tmp_path / "a", tmp_path / "b"]):  # JAX opens its folder once
        assert compile_cache.enable(folder) == folder
        jax.jit(lambda x, i=i: x * (i + 3.5))(jnp.arange(7.0 + i)).block_until_ready()
        assert any(folder.iterdir()), f"nothing cached in {folder}"


@pytest.mark.parametrize("script", ["train", "evaluate"])
def test_the_scripts_use_the_cache_unless_told_not_to(script: str, tmp_path: Path, monkeypatch,
                                                      capsys) -> None:
    from tests.test_experiment import load_script

    enabled = []
    monkeypatch.setattr(compile_cache, "enable", lambda *a, **k: enabled.append(script))
    argv = (["--data-dir", str(tmp_path / "nowhere"), "--workdir", str(tmp_path / "run"),
             "--no-progress"] if script == "train" else ["--workdir", str(tmp_path)])
    for flags, expected in (([], [script]), (["--no-compile-cache"], [])):  # fails after that
        enabled.clear()
        assert load_script(script).main([*argv, *flags]) == 2, capsys.readouterr().err
        assert enabled == expected, flags
