"""Tests of aejax.registry: which registered dataset files are, by SHA-256 (the behaviour
through ``data.load`` is tested in test_data.py)."""

from __future__ import annotations

from aejax import download, registry


def test_another_datasets_file_of_the_same_name_is_named_as_such() -> None:
    base = "train-labels-idx1-ubyte"  # fashion_mnist's labels among mnist's files, say
    fashion = registry.sums("fashion_mnist")[base][0]
    assert registry.known_as(fashion, base, "mnist") == f"fashion_mnist's {base}"
    assert registry.known_as(fashion, base, "fashion_mnist") == ""  # its own: not another's


def test_mnist_files_are_known_compressed_and_decompressed() -> None:
    mnist = registry.sums("mnist")
    assert set(mnist) == set(download.registered("mnist"))
    assert all(len(digests) == 2 for digests in mnist.values())  # the .gz's and the raw file's
    assert all(len(digests) == 1 for digests in registry.sums("kmnist").values())
    digests = {base: d[1] for base, d in mnist.items()}  # decompressed files, as browsers save
    assert registry.registered_as(digests) == "mnist"
    assert registry.registered_as({base: "0" * 64 for base in mnist}) is None
