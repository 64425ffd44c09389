"""Tests for aejax.idx: round trips and every failure mode, on small files written here."""

import gzip
import os
from pathlib import Path

import numpy as np
import pytest

from aejax import data, idx
from aejax.idx import DataError


def write_idx(path: Path, array: np.ndarray, magic: int | None = None) -> Path:
    """Writes `array` as an IDX file (gzipped when the name ends in .gz), independently of idx."""
    magic = magic if magic is not None else 0x0800 | array.ndim
    header = magic.to_bytes(4, "big") + b"".join(d.to_bytes(4, "big") for d in array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    path.write_bytes(gzip.compress(payload) if path.suffix == ".gz" else payload)
    return path


def write_folder(folder: Path, *, gz: bool = True, n_train: int = 6, n_test: int = 4,
                 seed: int = 0, hw: tuple[int, int] = (5, 4)) -> dict[str, np.ndarray]:
    """Writes four small MNIST-format files into `folder`; returns the arrays written."""
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, *hw), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, *hw), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    folder.mkdir(parents=True, exist_ok=True)
    for base, array in arrays.items():
        write_idx(folder / (base + (".gz" if gz else "")), array)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_round_trip(tmp_path, gz):
    written = write_folder(tmp_path, gz=gz)
    (train_x, train_y), (test_x, test_y) = idx.read_folder(idx.locate(tmp_path))
    for got, base in zip((train_x, train_y, test_x, test_y), idx.FILES):
        np.testing.assert_array_equal(got, written[base])
        assert got.dtype == np.uint8
    assert train_x.shape == (6, 5, 4) and test_y.shape == (4,)


def test_gz_preferred_and_mixed_compression(tmp_path):
    written = write_folder(tmp_path, gz=False)
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", written["t10k-labels-idx1-ubyte"])
    files = idx.locate(tmp_path)
    assert files["t10k-labels-idx1-ubyte"].name.endswith(".gz")
    assert files["train-images-idx3-ubyte"].suffix == ""
    (train_x, train_y), (test_x, test_y) = idx.read_folder(files)
    for got, name in ((train_x, "train-images-idx3-ubyte"), (train_y, "train-labels-idx1-ubyte"),
                      (test_x, "t10k-images-idx3-ubyte"), (test_y, "t10k-labels-idx1-ubyte")):
        np.testing.assert_array_equal(got, written[name])  # the .gz and the plain files alike


def test_files_spelled_with_a_dot_as_kaggle_unpacks_them(tmp_path):
    written = write_folder(tmp_path, gz=False)
    for base in idx.FILES:  # Kaggle's zip: train-images.idx3-ubyte, and a folder of the name
        (tmp_path / base).rename(tmp_path / base.replace("-idx", ".idx"))
        (tmp_path / base).mkdir()
        write_idx(tmp_path / base / base, written[base])
    files = idx.locate(tmp_path)
    assert [p.name for p in files.values()] == [
        "train-images.idx3-ubyte", "train-labels.idx1-ubyte", "t10k-images.idx3-ubyte",
        "t10k-labels.idx1-ubyte"]
    (train_x, train_y), (test_x, test_y) = idx.read_folder(files)
    for got, base in zip((train_x, train_y, test_x, test_y), idx.FILES):
        np.testing.assert_array_equal(got, written[base])
    write_idx(tmp_path / "t10k-labels-idx1-ubyte.gz", written["t10k-labels-idx1-ubyte"])
    assert idx.find_files(tmp_path)["t10k-labels-idx1-ubyte"].name == "t10k-labels-idx1-ubyte.gz"


def test_wrong_magic(tmp_path):
    path = write_idx(tmp_path / "x.gz", np.zeros((2, 3, 3)), magic=2049)
    with pytest.raises(DataError, match=r"x\.gz: magic number 2049, expected 2051: this is not "
                                         r"an MNIST-format images \(IDX3\) file; replace it"):
        idx.read_images(path)


def test_wrong_dtype_byte(tmp_path):
    path = write_idx(tmp_path / "x", np.zeros((2, 3, 3)), magic=0x0D03)  # float32 IDX
    with pytest.raises(DataError, match=r"dtype byte 0x0D, expected 0x08"):
        idx.read_images(path)


def test_truncated_file(tmp_path):
    path = write_idx(tmp_path / "x", np.zeros((2, 3, 3)))
    path.write_bytes(path.read_bytes()[:-5])
    with pytest.raises(DataError, match=r"x: 29 bytes but its header \(2, 3, 3\) implies 34"):
        idx.read_images(path)
    path.write_bytes(b"\x00\x00\x08")
    with pytest.raises(DataError, match="too short for an IDX header"):
        idx.read_images(path)
    path.write_bytes(b"\x00\x00\x08\x03" + np.array([2, 3], ">u4").tobytes())  # cut in the shape
    with pytest.raises(DataError, match="x: only 12 bytes, too short for an IDX header"):
        idx.read_images(path)
    huge = 2**32 - 1  # the header's product overflows int64: the size is said right anyway
    path.write_bytes(b"\x00\x00\x08\x03" + np.array([huge] * 3, ">u4").tobytes())
    with pytest.raises(DataError, match=rf"implies {16 + huge ** 3}"):
        idx.read_images(path)
    path.write_bytes(b"")
    with pytest.raises(DataError, match="x: only 0 bytes, too short for an IDX header; the file "
                                        "is truncated, replace it"):
        idx.read_labels(path)


def test_trailing_bytes_are_refused(tmp_path):
    path = write_idx(tmp_path / "x", np.zeros((2, 3, 3)))
    path.write_bytes(path.read_bytes() + b"extra")  # a concatenated or mislabelled file
    with pytest.raises(DataError, match=r"x: 39 bytes but its header \(2, 3, 3\) implies 34"):
        idx.read_images(path)


def test_a_gzipped_file_without_the_gz_suffix_is_still_gunzipped(tmp_path):
    images = np.arange(18).reshape(2, 3, 3)
    plain = write_idx(tmp_path / "x.gz", images).rename(tmp_path / "t10k-images-idx3-ubyte")
    np.testing.assert_array_equal(idx.read_images(plain), images)


def test_a_plain_idx_file_named_gz_is_read_as_it_is(tmp_path):
    images = np.arange(18).reshape(2, 3, 3)
    plain = write_idx(tmp_path / "x", images).rename(tmp_path / "t10k-images-idx3-ubyte.gz")
    np.testing.assert_array_equal(idx.read_images(plain), images)  # as browsers save downloads
    assert not idx.is_gzipped(plain)  # so data.py checks it as an uncompressed file
    plain.write_bytes(b"<html>" + plain.read_bytes())  # neither gzip nor IDX: called a bad gzip
    assert idx.is_gzipped(plain)
    with pytest.raises(DataError, match=r"ubyte\.gz is not a valid gzip file"):
        idx.read_images(plain)
    (tmp_path / "folder.gz").mkdir()  # unreadable as a file: said as read_bytes says it
    with pytest.raises(DataError, match=r"^cannot read \S*folder.gz \(.*\): check that it is a "
                                         "readable file$"):
        idx.is_gzipped(tmp_path / "folder.gz")


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_corrupt_gzip(tmp_path, damage):
    path = write_idx(tmp_path / "train-labels-idx1-ubyte.gz", np.arange(1000) % 10)
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    else:
        raw[-6] ^= 0xFF  # inside the CRC32 / size trailer
    path.write_bytes(bytes(raw))
    with pytest.raises(DataError, match=r"train-labels-idx1-ubyte\.gz is not a valid gzip file"):
        idx.read_labels(path)


def test_count_mismatch(tmp_path):
    images = write_idx(tmp_path / "i.gz", np.zeros((5, 2, 2)))
    labels = write_idx(tmp_path / "l.gz", np.zeros(4))
    with pytest.raises(DataError, match="holds 5 images but .* holds 4 labels"):
        idx.read_split(images, labels)


def test_label_out_of_range(tmp_path):
    images = write_idx(tmp_path / "i", np.zeros((3, 2, 2)))
    labels = write_idx(tmp_path / "l", np.array([0, 9, 10]))
    with pytest.raises(DataError, match=r"label 10 out of range 0\.\.9"):
        idx.read_split(images, labels)


def test_wrong_dims(tmp_path):
    write_folder(tmp_path)
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((4, 5, 5)))
    with pytest.raises(DataError, match=r"train images are \(5, 4\) but test images are \(5, 5\)"):
        idx.read_folder(idx.locate(tmp_path))
    write_idx(tmp_path / "t10k-images-idx3-ubyte.gz", np.zeros((4, 6, 4)))  # taller, as wide
    with pytest.raises(DataError, match=r"train images are \(5, 4\) but test images are \(6, 4\)"):
        idx.read_folder(idx.locate(tmp_path))
    path = write_idx(tmp_path / "zero.gz", np.zeros((3, 0, 4)))
    with pytest.raises(DataError, match=r"empty dimension in shape \(3, 0, 4\)"):
        idx.read_images(path)


def test_labels_file_given_as_images(tmp_path):
    path = write_idx(tmp_path / "l.gz", np.zeros(4))
    with pytest.raises(DataError, match="magic number 2049, expected 2051"):
        idx.read_images(path)


def test_empty_and_missing_folder(tmp_path):
    with pytest.raises(DataError, match="does not exist: create it and put the four"):
        idx.locate(tmp_path / "nope")
    (tmp_path / "file").write_text("")
    with pytest.raises(DataError, match="data folder .*file is a file, not a folder"):
        idx.locate(tmp_path / "file")
    with pytest.raises(DataError) as info:
        idx.locate(tmp_path)
    assert all(f"{base}[.gz]" in str(info.value) for base in idx.FILES)


def test_missing_one_file(tmp_path):
    write_folder(tmp_path)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"is missing t10k-labels-idx1-ubyte\[\.gz\]:") as info:
        idx.locate(tmp_path)
    assert "train-labels-idx1-ubyte[.gz]," not in str(info.value)
    assert len(idx.find_files(tmp_path)) == 3


def deny(monkeypatch, folder: Path) -> None:
    """Makes ``os.stat`` of anything inside ``folder`` fail as in a folder without access (chmod
    000 cannot show it when the tests run as root)."""
    real = os.stat

    def stat(path, *args, **kwargs):
        if Path(path).parent == folder:
            raise PermissionError(13, "Permission denied", str(path))
        return real(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)


def test_the_folder_named_is_the_one_that_cannot_be_entered(tmp_path, monkeypatch):
    write_folder(tmp_path / "private" / "data" / "mnist")
    locked, real_stat, real_access = tmp_path / "private", os.stat, os.access

    def stat(path, *args, **kwargs):  # as the kernel does below a folder without x permission
        if locked in Path(path).parents:
            raise PermissionError(13, "Permission denied", str(path))
        return real_stat(path, *args, **kwargs)

    monkeypatch.setattr(os, "stat", stat)
    monkeypatch.setattr(os, "access", lambda p, mode, *a, **k: (
        not (Path(p) == locked or locked in Path(p).parents)) and real_access(p, mode, *a, **k))
    with pytest.raises(DataError, match=rf"^cannot read the folder {locked} \(Permission "
                                        r"denied\): check its permissions$"):
        idx.locate(tmp_path / "private" / "data" / "mnist")


def test_a_folder_that_denies_access_is_named_not_called_empty(tmp_path, monkeypatch):
    write_folder(tmp_path / "mnist")
    deny(monkeypatch, tmp_path / "mnist")
    with pytest.raises(DataError, match=r"cannot read the folder .*mnist \(Permission denied\): "
                                        "check its permissions"):
        idx.locate(tmp_path / "mnist")
    with pytest.raises(DataError, match="is missing") as info:  # a hint skips that folder
        idx.locate(tmp_path)
    assert "holds all four" not in str(info.value)


def test_a_data_folder_behind_one_that_denies_access_is_a_data_error(tmp_path, monkeypatch):
    deny(monkeypatch, tmp_path / "private")
    message = rf"cannot read the folder {tmp_path / 'private'} \(Permission denied\): check its"
    with pytest.raises(DataError, match=message):  # not a bare PermissionError
        idx.locate(tmp_path / "private" / "mnist")
    with pytest.raises(DataError, match=message):
        data.load("mnist", data_root=tmp_path / "private" / "data", download=False)


def test_a_parent_folder_points_to_the_one_below_with_the_files(tmp_path):
    write_folder(tmp_path / "mnist")
    (tmp_path / "other").mkdir()
    with pytest.raises(DataError, match=(
            rf"{tmp_path} is missing .*: put all four MNIST-format IDX files \(gzipped or not\) "
            rf"in that folder; {tmp_path / 'mnist'} holds all four: pass --data-dir "
            rf"{tmp_path / 'mnist'}$")):
        idx.locate(tmp_path)
    write_folder(tmp_path / "fashion_mnist")
    with pytest.raises(DataError, match=(
            rf"in that folder; {tmp_path / 'fashion_mnist'}, {tmp_path / 'mnist'} hold all four "
            rf"each: pass one as --data-dir$")):
        idx.locate(tmp_path)
    for name in ("mnist", "fashion_mnist"):
        (tmp_path / name / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=r"in that folder$"):  # three files: no hint
        idx.locate(tmp_path)


def test_test_only_needs_the_two_test_files(tmp_path):
    write_folder(tmp_path / "test")
    for base in idx.FILES[:2]:
        (tmp_path / "test" / f"{base}.gz").unlink()
    assert list(idx.locate(tmp_path / "test", test_only=True)) == list(idx.TEST_FILES)
    with pytest.raises(DataError, match=r"is missing train-images-idx3-ubyte\[\.gz\], "
                                        r"train-labels-idx1-ubyte\[\.gz\]: put all four"):
        idx.locate(tmp_path / "test")  # as train.py reads it
    (tmp_path / "test" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=(
            rf"^{tmp_path / 'test'} is missing t10k-labels-idx1-ubyte\[\.gz\]: put the two test "
            r"\(or all four\) MNIST-format IDX files \(gzipped or not\) in that folder$")):
        idx.locate(tmp_path / "test", test_only=True)
    write_folder(tmp_path / "train")
    for base in idx.TEST_FILES:
        (tmp_path / "train" / f"{base}.gz").unlink()
    with pytest.raises(DataError, match=r"is missing t10k-images-idx3-ubyte\[\.gz\], "
                                        r"t10k-labels-idx1-ubyte\[\.gz\]: put the two test"):
        idx.locate(tmp_path / "train", test_only=True)


def test_unreadable_file(tmp_path):
    (tmp_path / "x.gz").mkdir()  # a folder where a file should be: reading it fails with OSError
    with pytest.raises(DataError, match=r"cannot read .*x\.gz \(Is a directory\): check that it"):
        idx.read_images(tmp_path / "x.gz")
