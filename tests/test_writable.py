"""Tests for aejax.writable: output checks before the work, write failures as one line."""

from __future__ import annotations

from pathlib import Path

import pytest

from aejax import writable


def test_unwritable_tells_a_read_only_file_system_from_a_lack_of_permission(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    assert writable.unwritable(tmp_path) == "permission denied"  # this one is writable
    statvfs = writable.os.statvfs
    monkeypatch.setattr(writable.os, "statvfs", lambda path: type(
        "ReadOnly", (), {"f_flag": statvfs(path).f_flag | writable.os.ST_RDONLY})())
    assert writable.unwritable(tmp_path) == "read-only file system"
    assert writable.unwritable(tmp_path / "gone") == "permission denied"  # statvfs fails first


def test_only_a_file_in_the_folder_the_work_makes_skips_the_folder_checks(tmp_path: Path) -> None:
    out = tmp_path / "out"  # evaluate.py --out, made by the evaluation before --export is written
    writable.check_output_folder(str(out / "arrays.npz"), "--export", made=str(out))
    with pytest.raises(ValueError, match=r"^--export .*arrays.npz: its folder does not exist$"):
        writable.check_output_folder(str(tmp_path / "no" / "arrays.npz"), "--export", made=str(out))


def test_a_write_that_fails_names_the_file_without_its_tmp_suffix(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"^could not write .*metrics\.json \(No space left on "
                                         r"device\): free some space \(or fix the folder's "
                                         r"permissions\), then start the run again$"):
        with writable.writing(tmp_path, "start the run again"):
            raise OSError(28, "No space left on device", str(tmp_path / "metrics.json.tmp"))
    with pytest.raises(ValueError, match=f"^could not write {tmp_path} .disk quota"):
        with writable.writing(tmp_path, "x"):  # no file named: the folder is
            raise OSError(122, "disk quota exceeded")
    with pytest.raises(KeyError):  # only OSErrors are the disk's
        with writable.writing(tmp_path, "x"):
            raise KeyError("other")


def test_an_output_on_a_read_only_file_system_says_so(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setattr(writable.os, "access", lambda path, mode: False)
    monkeypatch.setattr(writable.os, "statvfs", lambda path: type(
        "ReadOnly", (), {"f_flag": writable.os.ST_RDONLY})())  # as a read-only mount says
    with pytest.raises(ValueError, match=r"^--out .*x\.png: not writable \(read-only file "
                                         r"system\)$"):
        writable.check_output_folder(str(tmp_path / "x.png"), "--out")
    with pytest.raises(ValueError, match=f"^{tmp_path} is not writable .read-only file system.: "
                                         "copy it$"):
        writable.check_writable(tmp_path, "copy it")


def test_a_read_only_file_system_is_named_for_a_file_not_yet_written(tmp_path: Path,
                                                                      monkeypatch) -> None:
    statvfs = writable.os.statvfs  # a real statvfs: a path that does not exist yet fails
    monkeypatch.setattr(writable.os, "statvfs", lambda path: type(
        "ReadOnly", (), {"f_flag": statvfs(path).f_flag | writable.os.ST_RDONLY})())
    monkeypatch.setattr(writable.os, "access", lambda path, mode: False)
    with pytest.raises(ValueError, match=r"^--out .*new\.png: not writable \(read-only file "
                                         r"system\)$"):
        writable.check_output_folder(str(tmp_path / "new.png"), "--out")


def test_a_folder_that_cannot_be_searched_is_not_writable(tmp_path: Path, monkeypatch) -> None:
    # mode 0o600: writable, but no file in it can be created or opened without search (x)
    monkeypatch.setattr(writable.os, "access", lambda path, mode: not mode & writable.os.X_OK)
    with pytest.raises(ValueError, match=r"^--out .*x\.png: not writable \(permission denied\)$"):
        writable.check_output_folder(str(tmp_path / "x.png"), "--out")


def test_a_read_only_result_file_in_a_writable_folder_is_refused(tmp_path: Path,
                                                                  monkeypatch) -> None:
    for name in ("metrics.json", "figure.png"):  # evaluating rewrites both
        (tmp_path / name).write_text("")
        monkeypatch.setattr(writable.os, "access", lambda path, mode: Path(path).name != name)
        with pytest.raises(ValueError, match=f"^{tmp_path} is not writable .permission denied.: "
                                             "copy it$"):
            writable.check_writable(tmp_path, "copy it")
        (tmp_path / name).unlink()
    writable.check_writable(tmp_path, "copy it")  # absent files: only the folder counts


def test_an_out_that_is_a_file_cannot_be_made(tmp_path: Path) -> None:
    (tmp_path / "taken").write_text("")
    with pytest.raises(ValueError, match=f"^--out {tmp_path / 'taken'}: cannot create it "
                                         f"\\({tmp_path / 'taken'} is a file\\)$"):
        writable.check_makeable(tmp_path / "taken")
    writable.check_makeable(tmp_path / "new" / "deeper")  # made inside tmp_path: fine
