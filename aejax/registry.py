"""Which registered dataset a set of IDX files is, by SHA-256: TFDS's sums of the .gz files,
and MNIST's of the decompressed ones; files of one dataset under another's names are named."""

from __future__ import annotations

import logging
from pathlib import Path

from aejax import idx
from aejax.download import UNCOMPRESSED, registered, sha256_file
from aejax.idx import DataError

log = logging.getLogger("aejax.data")  # its messages are the data loader's

DATASETS: tuple[str, ...] = ("mnist", "fashion_mnist", "kmnist")


def holds_idx_files(root: Path, name: str) -> bool:
    """Whether ``root`` itself holds four IDX files that are not another registered dataset's
    (those of ``name``, or custom ones): files meant for ``--data-dir``."""
    files = idx.find_files(root)
    if len(files) < len(idx.FILES):
        return False
    digests = {base: sha256_file(path) for base, path in files.items()}
    return not any(digest in sums(other)[base] for other in DATASETS if other != name
                   for base, digest in digests.items())


def sums(name: str) -> dict[str, tuple[str, ...]]:
    """The SHA-256 sums a registered dataset's files may have, by base name: the .gz file's, and
    the decompressed file's where known (MNIST's)."""
    raw = UNCOMPRESSED.get(name, {})
    return {base: (info.sha256, *filter(None, [raw.get(base)]))
            for base, info in registered(name).items()}


def check_identity(name: str, folder: Path, files: dict[str, Path], digests: dict[str, str],
                   *, explicit: bool) -> str:
    """``name``, or "custom" for unregistered files in an explicit folder; DataError on conflict."""
    found = registered_as(digests)
    if found is None and explicit:
        why = (" (uncompressed files are recognised only as MNIST's: the sums of the others' "
               "decompressed files are not known)"
               if not all(map(idx.is_gzipped, files.values())) else "")
        renamed = [f"{files[b].name} is {known}" for b, d in digests.items()
                   if (known := known_as(d, b, name))]
        log.warning("files in %s match no registered dataset%s; loading them as 'custom'%s",
                    folder, why, f" (but {', '.join(renamed)}: renamed?)" if renamed else "")
        return "custom"
    if found not in (None, name):
        raise DataError(f"files in {folder} are {found}, not {name}: put the {name} files "
                        f"there, or train a new run with --dataset {found}")
    for base, info in registered(name).items():
        if base not in files or digests[base] in sums(name)[base]:  # test_only: no train files
            continue
        path = files[base]
        expected = info.sha256 if idx.is_gzipped(path) else UNCOMPRESSED.get(name, {}).get(base)
        if expected is None:
            log.warning("%s is uncompressed: only its format is checked (the registered "
                        "checksums are those of the .gz files)", path)
            continue
        fix = ("replace it with the registered file (a cut-short copy, or another file of the "
               "same name?)" if explicit else "delete it and run again to re-download it, or "
               "pass --data-dir to load custom data")
        known = known_as(digests[base], base, name)
        raise DataError(f"{path} is not the registered {name} file ("
                        + (f"it is {known}; " if known else "") + f"expected SHA-256 "
                        f"{expected}, actual {digests[base]}): {fix}")
    return name


def registered_as(digests: dict[str, str]) -> str | None:
    """The registered dataset that most of the files (by SHA-256) are files of; None if none."""
    matches = {n: sum(d in sums(n)[b] for b, d in digests.items()) for n in DATASETS}
    return max(matches, key=matches.get) if max(matches.values()) else None


def known_as(digest: str, base: str, name: str) -> str:
    """Which other registered file (by SHA-256) a file that should be ``name``'s ``base`` is, as
    "mnist's t10k-labels-idx1-ubyte" (files under each other's names); "" if none."""
    for other_name in DATASETS:
        for other, digests in sums(other_name).items():
            if digest in digests and (other_name, other) != (name, base):
                return f"{other_name}'s {other}"
    return ""
