"""Where the scripts write: checks before the work, and write failures as one-line errors."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from pathlib import Path


def unwritable(path: str | os.PathLike) -> str:
    """Why ``path``, found not writable, is not: on a read-only file system, or for lack of
    permission."""
    try:
        read_only = bool(os.statvfs(path).f_flag & os.ST_RDONLY)
    except (AttributeError, OSError):  # no statvfs (Windows), or the path went away
        read_only = False
    return "read-only file system" if read_only else "permission denied"


def check_output_folder(path: str, flag: str, made: str | None = None) -> None:
    """Raise ValueError now, not after the work, if ``path``'s folder does not exist or is not
    writable, or if ``path`` is itself a folder or a file that cannot be overwritten (a folder
    ``made`` by the work before it writes ``path`` is not checked)."""
    if Path(path).is_dir():
        raise ValueError(f"{flag} {path} is a folder: give a file name")
    if made is not None and Path(path).resolve().parent == Path(made).resolve():
        return
    folder = Path(path).resolve().parent
    if not folder.is_dir():
        raise ValueError(f"{flag} {path}: its folder does not exist")
    if not os.access(folder, os.W_OK | os.X_OK) or (Path(path).exists()
                                                    and not os.access(path, os.W_OK)):
        raise ValueError(f"{flag} {path}: not writable ({unwritable(folder)})")


def check_writable(folder: Path, advice: str) -> None:
    """ValueError now, not after an evaluation, if its results (metrics.json, figure.png) cannot be
    written to ``folder``."""
    written = [folder, *(p for p in (folder / "metrics.json", folder / "figure.png")
                         if p.exists())]
    if blocked := [p for p in written if not os.access(p, os.W_OK)]:
        raise ValueError(f"{folder} is not writable ({unwritable(blocked[0])}): {advice}")


def check_makeable(out: Path) -> None:
    """ValueError now, not after the scoring, if the folder ``out`` cannot be written or made."""
    there = next(p for p in (out, *out.parents) if p.exists())  # the folder to make it in
    if not there.is_dir():
        raise ValueError(f"--out {out}: cannot create it ({there} is a file)")
    check_writable(there, "give another --out")


@contextlib.contextmanager
def writing(path: Path, advice: str) -> Iterator[None]:
    """Turn a run file in ``path`` that cannot be written (a full disk, a read-only folder: an
    OSError) into a ValueError naming it, ending in ``advice`` (after "free some space (or fix
    the folder's permissions), then")."""
    try:
        yield
    except OSError as err:
        name = str(err.filename or path).removesuffix(".tmp")  # atomic writes name their .tmp
        raise ValueError(f"could not write {name} ({err.strerror or err}): free some space (or "
                         f"fix the folder's permissions), then {advice}") from None
