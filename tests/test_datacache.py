"""Tests for aejax.datacache: the decoded arrays that `data.load` caches under
`<data_root>/cache/`: a second load reads them, a changed file misses them, an unreadable or
unwritable cache only logs, and the file is shared (0o644) and written atomically.

Offline. Tests on the real MNIST files use the `mnist_dir` fixture of conftest.py
($AEJAX_MNIST_DIR) and are skipped without it.
"""

import logging
import os
import stat
import time

import numpy as np
import pytest

from aejax import data, datacache, idx
from tests.test_idx import write_folder, write_idx


def test_second_load_comes_from_cache(mnist_dir, tmp_path, monkeypatch, caplog):
    manual = tmp_path / "downloads" / "manual"
    manual.mkdir(parents=True)
    for base in idx.FILES:
        (manual / f"{base}.gz").symlink_to(mnist_dir.resolve() / f"{base}.gz")
    first = data.load("mnist", data_root=tmp_path, download=False)
    assert len(list((tmp_path / "cache").glob("mnist-*.npz"))) == 1

    def no_decoding(*args):
        raise AssertionError("the IDX files were decoded again")

    monkeypatch.setattr(idx, "read_folder", no_decoding)
    caplog.set_level(logging.INFO, logger="aejax.datacache")
    start = time.perf_counter()
    second = data.load("mnist", data_root=tmp_path, download=False)
    assert time.perf_counter() - start < 2.0  # typically ~0.2 s; generous for busy CI machines
    assert "from cache" in caplog.text
    for key in ("train_images", "train_labels", "test_images", "test_labels"):
        np.testing.assert_array_equal(getattr(first, key), getattr(second, key))


def test_the_cache_is_readable_by_others_who_share_it(small_idx_dir, tmp_path):
    data.load("mnist", data_dir=small_idx_dir, data_root=tmp_path / "root")
    (cache,) = (tmp_path / "root" / "cache").glob("*.npz")
    assert stat.S_IMODE(cache.stat().st_mode) == 0o644  # not the temporary file's private 0o600


def test_unwritable_cache_only_logs(small_idx_dir, tmp_path, caplog):
    (tmp_path / "root").write_text("a file, so <root>/cache cannot be created")
    ds = data.load("mnist", data_dir=small_idx_dir, data_root=tmp_path / "root")
    assert ds.train_labels.shape == (256,)
    assert "could not write the cache" in caplog.text


def test_a_failed_cache_write_leaves_no_temporary_file(small_idx_dir, tmp_path, monkeypatch,
                                                       caplog):
    def disk_full(file, **arrays):
        file.write(b"half an npz")
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(np, "savez", disk_full)
    ds = data.load("mnist", data_dir=small_idx_dir, data_root=tmp_path)
    assert ds.train_labels.shape == (256,) and "No space left on device" in caplog.text
    assert list((tmp_path / "cache").iterdir()) == []


def test_corrupt_cache_is_rebuilt(small_idx_dir, tmp_path, caplog):
    first = data.load("mnist", data_dir=small_idx_dir, data_root=tmp_path)
    assert "unreadable cache" not in caplog.text  # none yet: nothing to warn about
    (cache,) = (tmp_path / "cache").glob("custom-*.npz")
    cache.write_bytes(b"not a zip file")
    ds = data.load("mnist", data_dir=small_idx_dir, data_root=tmp_path)
    np.testing.assert_array_equal(ds.test_images, first.test_images)
    assert "ignoring unreadable cache" in caplog.text
    with np.load(cache) as npz:
        np.testing.assert_array_equal(npz["train_labels"], first.train_labels)


def test_a_cache_of_other_shapes_is_rebuilt(small_idx_dir, tmp_path, caplog):
    first = data.load("mnist", data_dir=small_idx_dir, data_root=tmp_path)
    (cache,) = (tmp_path / "cache").glob("custom-*.npz")
    flat = {k: getattr(first, k).reshape(len(getattr(first, k)), -1) for k in datacache.KEYS}
    with open(cache, "wb") as f:  # readable, but images (N, 784) and labels (N, 1)
        np.savez(f, **flat)
    ds = data.load("mnist", data_dir=small_idx_dir, data_root=tmp_path)
    assert "ignoring unreadable cache" in caplog.text and ds.train_images.shape == (256, 28, 28)


def _damage(raw: bytes, case: str) -> bytes:
    """The cache file with one byte changed, as a disk or a copy may damage it."""
    if case == "shape":  # the training images' count: np.load read 156 images, and no more
        return raw.replace(b"'shape': (256, 28, 28)", b"'shape': (156, 28, 28)", 1)
    if case == "header padding":  # a space turned "(": NumPy's header tokenizer's TokenError
        return raw.replace(b"), } ", b"), }(", 1)
    assert case == "compression method"  # zipfile: NotImplementedError
    method = raw.index(b"PK\x01\x02") + 10  # the first member's, in the central directory
    return raw[:method] + b"\x63" + raw[method + 1:]


@pytest.mark.parametrize("case", ["shape", "header padding", "compression method"])
def test_a_cache_damaged_inside_is_rebuilt_not_trusted(small_idx_dir, tmp_path, caplog, case):
    first = data.load("mnist", data_dir=small_idx_dir, data_root=tmp_path)
    (cache,) = (tmp_path / "cache").glob("custom-*.npz")
    cache.write_bytes(_damage(cache.read_bytes(), case))
    ds = data.load("mnist", data_dir=small_idx_dir, data_root=tmp_path)
    assert "ignoring unreadable cache" in caplog.text
    for key in datacache.KEYS:
        np.testing.assert_array_equal(getattr(ds, key), getattr(first, key), err_msg=key)


def test_any_changed_file_misses_the_cache(tmp_path):
    written = write_folder(tmp_path / "mine", hw=(4, 4))
    first = data.load("mnist", data_dir=tmp_path / "mine", data_root=tmp_path / "root")
    np.testing.assert_array_equal(first.test_labels, written["t10k-labels-idx1-ubyte"])
    for base in idx.FILES:  # each file in turn, the test ones included
        old = written[base]
        written[base] = (old + 1) % 10 if "labels" in base else 255 - old
        write_idx(tmp_path / "mine" / f"{base}.gz", written[base])
        ds = data.load("mnist", data_dir=tmp_path / "mine", data_root=tmp_path / "root")
        for key, name in zip(datacache.KEYS, idx.FILES):
            np.testing.assert_array_equal(getattr(ds, key), written[name], err_msg=base)


def small_arrays() -> dict[str, np.ndarray]:
    """A tiny dataset's arrays, as `data.load` caches them."""
    images, labels = np.zeros((3, 4, 4), np.uint8), np.arange(3, dtype=np.uint8)
    return dict(zip(datacache.KEYS, (images, labels, images[:2], labels[:2])))


@pytest.mark.parametrize("damage", ["empty", "truncated", "missing test_labels", "float images"])
def test_a_damaged_cache_file_reads_as_none(damage, tmp_path, caplog) -> None:
    path = tmp_path / "cache" / "mnist-0123.npz"
    datacache.write_cache(path, small_arrays())
    assert datacache.read_cache(path).keys() == set(datacache.KEYS)  # undamaged: read
    whole = path.read_bytes()
    if damage == "empty":  # a disk that filled up, or a copy cut short
        path.write_bytes(b"")
    elif damage == "truncated":
        path.write_bytes(whole[:len(whole) // 2])
    else:  # a valid .npz, but not the arrays a Dataset needs
        arrays = small_arrays()
        if damage == "float images":
            arrays["train_images"] = arrays["train_images"].astype(np.float32)
        else:
            del arrays["test_labels"]
        with open(path, "wb") as f:
            np.savez(f, **arrays)
    assert datacache.read_cache(path) is None
    assert "ignoring unreadable cache" in caplog.text


def test_a_killed_writes_temporary_file_is_deleted_by_the_next_write(tmp_path):
    folder = tmp_path / "cache"
    folder.mkdir()
    old, recent = folder / "tmpkilled.tmp", folder / "tmpwriting.tmp"  # NamedTemporaryFile's names
    for path in (old, recent):
        path.write_bytes(b"half an npz")
    os.utime(old, (time.time() - 2 * datacache.STALE_WRITE_S,) * 2)
    arrays = dict(zip(datacache.KEYS, (np.zeros((2, 4, 4), np.uint8), np.zeros(2, np.uint8),
                                       np.ones((1, 4, 4), np.uint8), np.ones(1, np.uint8))))
    datacache.write_cache(folder / "x.npz", arrays)
    assert not old.exists() and recent.exists()  # another process may still be writing that one
    assert datacache.read_cache(folder / "x.npz")["test_images"].sum() == 16
