"""Tests for aejax.jsonio: atomic writes that leave nothing half-written behind."""

from __future__ import annotations

import errno
import json
import os
from pathlib import Path

import pytest

from aejax import jsonio


def full_disk(monkeypatch: pytest.MonkeyPatch, name: str = "") -> None:
    """Every Path.write_bytes or write_text of a file whose name starts with ``name`` writes its
    first 3 bytes or characters, then fails as a full disk does."""
    def failing(real):
        def write(self: Path, data, *args, **kwargs) -> int:
            if not self.name.startswith(name):
                return real(self, data, *args, **kwargs)
            real(self, data[:3], *args, **kwargs)
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return write

    monkeypatch.setattr(Path, "write_bytes", failing(Path.write_bytes))
    monkeypatch.setattr(Path, "write_text", failing(Path.write_text))


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = tmp_path / "metrics.json"
    jsonio.write_json({"old": 1}, path)
    full_disk(monkeypatch)
    with pytest.raises(OSError, match="No space left on device"):
        jsonio.write_json({"new": 2}, path)
    with pytest.raises(OSError, match="No space left on device"):
        jsonio.write_json({"new": 2}, tmp_path / "config.json")
    monkeypatch.undo()
    assert json.loads(path.read_text()) == {"old": 1}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["metrics.json"]


def test_a_write_that_fails_at_close_names_the_file_not_its_temporary_one(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def write_bytes(self: Path, data: bytes) -> int:  # a full disk met when the file is closed
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    with pytest.raises(OSError) as err:
        jsonio.write_json({}, tmp_path / "config.json")
    assert err.value.errno == errno.ENOSPC and err.value.filename == str(tmp_path / "config.json")


def test_at_gives_the_default_where_a_level_is_not_an_object() -> None:
    tree = {"test": {"occluded": {"mse": 0.5}}, "text": "occluded", "list": ["occluded"]}
    assert jsonio.at(tree, "test.occluded.mse") == 0.5
    for dotted in ("text.occluded", "list.occluded", "test.occluded.mse.x", "gone.mse"):
        assert jsonio.at(tree, dotted, "none") == "none", dotted  # a hand-edited file: no error


@pytest.mark.parametrize("field", ["of", "params_sha256"])
def test_every_evaluation_field_read_back_is_checked_for_its_type(tmp_path: Path,
                                                                  field: str) -> None:
    record = {"of": "/runs/a", "changes": {}, "params_sha256": "ab" * 8}
    jsonio.check_layout(tmp_path / "config.json", {"evaluation": record})
    with pytest.raises(ValueError, match=f"evaluation.{field} holds a JSON number, not the "
                                         "string a run writes; it is damaged"):
        jsonio.check_layout(tmp_path / "config.json", {"evaluation": {**record, field: 5}})
