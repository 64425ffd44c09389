"""Side-by-side comparison of runs: seeds of one configuration grouped into mean ± std."""

from __future__ import annotations

import json
import math
import numbers
import os
import reprlib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np

from aejax import jsonio, runrow

KEYS: tuple[str, ...] = ("test.clean.mse", "test.occluded.mse", "test.occluded.on_bar_mse",
                         "test.occluded.off_bar_mse", "test.occluded.psnr", "test.occluded.ssim",
                         "test.occluded.corr_nonzero")
IGNORED = ("seed", "data_dir", "data_root")  # differences that do not make another configuration
MISSING = {"train_images": "unknown", "test_occlusion": "unknown"}  # digests older runs lack
Table = dict[str, dict[str, tuple[float, float, int]]]
ROW = "{key: (mean, std, n)}"  # a row of a Table, as the errors name it
SHAPE = f"{{label: {ROW}}}"


def check_counted_once(workdirs: list[str], keys: list[tuple[str, str] | None]) -> None:
    """ValueError if two folders hold the same scores (``runrow.scored``; a run and an evaluation
    folder that changed nothing, or two evaluations alike): averaged, they would count as two
    seeds."""
    seen: dict[tuple[str, str], str] = {}
    for workdir, key in zip(workdirs, keys):
        if key is None:
            continue
        if key in seen:
            raise ValueError(f"{seen[key]} and {workdir} hold the same scores (the same "
                             "parameters on the same occluded test images): give one of them")
        seen[key] = workdir


def check_seeds_once(workdirs: list[str], row_names: list[str], seeds: list[Any]) -> None:
    """ValueError if two runs of one row have the same seed (trained again, on other devices,
    with other data paths): averaged, they would count as two seeds."""
    seen: dict[tuple[str, str], str] = {}
    for workdir, row, seed in zip(workdirs, row_names, seeds):
        if seed is None:
            continue
        key = (row, json.dumps(seed))
        if key in seen:
            raise ValueError(f"{seen[key]} and {workdir} are both seed {seed} of one "
                             "configuration: a row is the mean ± std over seeds, each counted "
                             "once; give one of them (--by-run lists both)")
        seen[key] = workdir


def lookup(tree: dict[str, Any], dotted: str, where: str = "metrics.json") -> float:
    """``tree["a"]["b"]`` for ``"a.b"``; NaN where a run lacks the metric, or holds null for it
    (a NaN written by a strict JSON tool); ValueError naming ``where`` for any other value."""
    tree = jsonio.at(tree, dotted)
    if tree is None:
        return math.nan
    if isinstance(tree, dict):
        held = sorted(k for k, v in tree.items() if number_under(v) is not None)
        if not held:
            raise ValueError(f"{dotted} is not a number in metrics.json and holds none; name a "
                             f"number, such as {KEYS[1]}")
        raise ValueError(f"{dotted} is not a number in metrics.json but holds "
                         f"{', '.join(held)}; name one of them, e.g. {dotted}.{number_under(tree)}")
    if not is_number(tree):
        if isinstance(tree, (str, bool)):  # where every run writes a number: a damaged file
            raise ValueError(f"{where}: {dotted} holds {tree!r}, not a number; it is damaged: "
                             "restore or delete it")
        raise ValueError(f"{dotted} is not a number in metrics.json but a "
                         f"{type(tree).__name__}; name a number, such as {KEYS[1]}")
    return float(tree)


def check_numeric(metrics: list[dict[str, Any]], dotted: str) -> None:
    """ValueError for a key that no run holds a number at, but text or a boolean (a digest, a
    path, ``data.is_sample``): a field of another kind, not a damaged file (``lookup`` says that
    of text where other runs hold numbers)."""
    held = [v for v in (jsonio.at(m, dotted) for m in metrics) if v is not None]
    if held and all(isinstance(v, (str, bool)) for v in held):
        kind = type(held[0]).__name__
        raise ValueError(f"{dotted} is not a number in metrics.json but a {kind} ({held[0]!r}); "
                         f"name a number, such as {KEYS[1]}")


ABSENT = object()  # what jsonio.at gives ``holds`` for a path a tree does not hold


def holds(tree: dict[str, Any], dotted: str) -> bool:
    """Whether ``tree`` has ``"a.b"`` at all (whatever its value: NaN for an undefined metric)."""
    return jsonio.at(tree, dotted, ABSENT) is not ABSENT


def is_number(value: Any) -> bool:
    """Whether a metrics.json value is a number (booleans are not)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def number_under(tree: Any) -> str | None:
    """The dotted path of the first number in ``tree`` ("" for a number itself), keys sorted;
    None where it holds no number."""
    if is_number(tree):
        return ""
    for key in sorted(tree) if isinstance(tree, dict) else ():
        rest = number_under(tree[key])
        if rest is not None:
            return f"{key}.{rest}" if rest else str(key)
    return None


def labels(configs: list[dict[str, Any]], names: list[str], group: bool) -> list[str]:
    """Name each run by the config fields that differ between runs (or by its folder)."""
    ignored = IGNORED if group else ()
    fields = sorted(k for k in set().union(*configs)  # custom parts are in some configs only
                    if k not in ignored
                    and len({json.dumps(c.get(k)) for c in configs
                             if c.get(k) != runrow.UNUSED}) > 1)
    for digest in MISSING:  # named only where nothing else tells the data or corruptions apart
        if digest not in fields:
            continue
        rest = [k for k in fields if k != digest]
        known = [c for c in configs if digest in c]  # older runs did not record it
        if (len({c[digest] for c in known}) < 2
                or len(partition(known, rest)) == len(partition(known, fields))):
            fields = rest
    if not fields:
        return ["all runs"] * len(configs) if group else names
    out = [" ".join(f"{k}={c[k] if k in c else MISSING.get(k, 'default')}" for k in fields)
           for c in configs]
    return out if group or len(set(out)) == len(out) else names


def partition(configs: list[dict[str, Any]], fields: list[str]) -> set[str]:
    """The distinct values of ``fields`` among ``configs``."""
    return {json.dumps([c.get(k) for k in fields]) for c in configs}


def sequences(workdirs: Any, keys: Any) -> tuple[list[str], tuple[str, ...]]:
    """The runs as a list and the keys as a tuple (read more than once); ValueError for one
    string (or path) given as either, which would be read character by character, and for no
    run or no key (anything not iterable, such as None, counts as none)."""
    if isinstance(workdirs, (str, bytes, os.PathLike)):
        raise ValueError(f"workdirs must be a list of run folders, not one string: give "
                         f"[{os.fspath(workdirs)!r}]")
    if isinstance(keys, (str, bytes)):
        raise ValueError(f"keys must be a sequence of metric names, not one string: give "
                         f"({keys!r},)")
    workdirs = list(workdirs) if isinstance(workdirs, Iterable) else []
    keys = tuple(keys) if isinstance(keys, Iterable) else ()
    if not workdirs:  # checked as a list: an empty generator is true
        raise ValueError("no run folder given: give at least one")
    if not keys:  # rows without a column, which neither format_markdown nor the figure can show
        raise ValueError(f"no metric given: give at least one metrics.json key, such as {KEYS[1]}")
    return workdirs, keys


def table(workdirs: list[str], keys: tuple[str, ...] = KEYS, *, group: bool = True) -> Table:
    """``{label: {key: (mean, std, n)}}``; with ``group`` runs that differ only in seed are one row.

    The std is over seeds (ddof=1; 0 for a single run).
    """
    workdirs, keys = sequences(workdirs, keys)
    resolved = [Path(w).resolve() for w in workdirs]
    twice = next((w for w, r in zip(workdirs, resolved) if resolved.count(r) > 1), None)
    if twice is not None:
        raise ValueError(f"{twice} is given twice: each run counts once")
    runs = [runrow.load_run(w) for w in workdirs]
    if group:  # averaged as seeds
        check_counted_once(workdirs, [key for _, _, key in runs])
    names = [Path(w).name for w in workdirs]
    if len(set(names)) < len(names):  # folders of the same name: tell them apart by path
        names = [str(w) for w in workdirs]
    rows: dict[str, list[tuple[str, dict[str, Any]]]] = {}
    row_names = labels(runrow.with_tested([c for c, _, _ in runs]), names, group)
    if group:
        check_seeds_once(workdirs, row_names, [c.get("seed") for c, _, _ in runs])
    for label, workdir, (_, m, _) in zip(row_names, workdirs, runs):
        rows.setdefault(label, []).append((f"{workdir}/metrics.json", m))
    absent = [k for k in keys if not any(holds(m, k) for _, m, _ in runs)]  # NaN is held
    if absent:
        raise ValueError(f"no run has the metric(s) {', '.join(absent)}: --keys are dotted paths "
                         f"into metrics.json, such as {KEYS[1]}")
    for key in keys:
        check_numeric([m for _, m, _ in runs], key)
    out: Table = {}
    for label, group_metrics in rows.items():
        out[label] = {}
        for key in keys:
            values = np.array([lookup(m, key, where) for where, m in group_metrics])
            std = float(np.std(values, ddof=1)) if len(values) > 1 else 0.0
            out[label][key] = (float(np.mean(values)), std, len(values))
    return out


def cell(mean: float, std: float, n: int, whole: bool = False) -> str:
    """``mean ± std`` with 2 decimals for values >= 1 (PSNR), 5 otherwise (MSE, SSIM, r), none
    for a ``whole`` column (counts such as train.steps)."""
    digits = 0 if whole else 2 if abs(mean) >= 1 else 5
    return f"{mean:.{digits}f} ± {std:.{digits}f}" if n > 1 else f"{mean:.{digits}f}"


def whole_column(tab: Table, key: str) -> bool:
    """Whether every finite mean and std of a column is a whole number (and one is finite)."""
    values = [v for row in tab.values() for v in row[key][:2] if math.isfinite(v)]
    return bool(values) and all(v == int(v) for v in values)


def check_table(tab: Any) -> None:
    """TypeError for anything but a table as ``table`` returns it (ValueError for one with no
    row), which ``format_markdown`` would meet deep inside, with an error that says neither."""
    if not isinstance(tab, dict):
        raise TypeError(f"the table must be {SHAPE}, as compare.table returns it, not a "
                        f"{type(tab).__name__}")
    if not tab:
        raise ValueError(f"the table has no row: give {SHAPE} for at least one run, as "
                         "compare.table returns it")
    first = next(iter(tab.values()))
    keys = list(first) if isinstance(first, dict) else []
    for label, row in tab.items():
        fault = row_fault(row, keys)
        if fault:
            raise TypeError(f"row {label!r} of the table {fault}; give {SHAPE}, as compare.table "
                            "returns it")


def row_fault(row: Any, keys: list[str]) -> str | None:
    """What keeps ``row`` from being a table's row with ``keys`` (None where nothing does)."""
    if not isinstance(row, dict):
        return f"is a {type(row).__name__}, not {ROW}"
    if not row:
        return f"is empty, not {ROW}"
    if list(row) != keys:
        return (f"has the keys {', '.join(map(str, row))}, not those of the first row "
                f"({', '.join(map(str, keys))})")
    for key, value in row.items():
        if not (isinstance(value, (tuple, list)) and len(value) == 3
                and all(isinstance(v, numbers.Real) for v in value)):
            return f"holds {' '.join(reprlib.repr(value).split())} for {key}, not (mean, std, n)"
    return None


def escape(text: Any) -> str:
    """A label or key as one Markdown table cell: ``|`` escaped (a folder named ``a|b``), line
    breaks made spaces."""
    return " ".join(str(text).replace("|", "\\|").splitlines())


def format_markdown(tab: Table) -> str:
    """The table as Markdown: ``mean ± std`` cells, the number of runs in the last column."""
    check_table(tab)
    keys = list(next(iter(tab.values())))
    whole = {k: whole_column(tab, k) for k in keys}
    lines = ["| run | " + " | ".join(map(escape, keys)) + " | n |",
             "|---" * (len(keys) + 2) + "|"]
    for label, row in tab.items():
        cells = [cell(m, s, n, whole[k]) for k, (m, s, n) in row.items()]
        lines.append(f"| {escape(label)} | " + " | ".join(cells)
                     + f" | {next(iter(row.values()))[2]} |")
    return "\n".join(lines)
