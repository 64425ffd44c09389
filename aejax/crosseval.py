"""Evaluation folders: a trained run scored on another occlusion, into a folder of its own.

A run's metrics.json holds its scores on its own occluded test set. ``evaluate.py --workdir RUN
--out DIR --occlusion-width 3`` (``report.evaluate_into``) scores the same parameters on other
bars, or on another ``Parts.occlude``, and writes DIR: the run's config.json plus an
``evaluation`` record (this module), a metrics.json with the run's ``train`` and the new
``test``, and the figures. compare.py names such rows by ``tested_<field>``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import difflib
import hashlib
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

from aejax import runlock
from aejax.config import Config
from aejax.jsonio import read_run_config
from aejax.parts import Parts, spec_in

# The config fields an evaluation may change: they act on the test set only.
TESTED: tuple[str, ...] = ("occlusion_width", "occlusion_value", "occlusion_low",
                           "occlusion_high", "occlusion_orientation", "occlusion_bars",
                           "eval_seed")
KEY = "evaluation"  # config.json's record of what an evaluation folder evaluated
WRITTEN = ("metrics.json", "figure.png", "correlation.png", "per_class.png", "config.json")
PARAMS = "params.msgpack"  # the run's parameters (runfiles.PARAMS_FILE), digested in the record
SAME = "{}'s metrics.json holds these scores already"  # an evaluation that changes nothing
MARK = ".evaluating"  # the run an evaluation folder is being written for, until it is done


def source(info: dict[str, Any]) -> str | None:
    """The run folder that an evaluation folder's config.json evaluated; None for a run."""
    record = info.get(KEY)
    return record.get("of") if isinstance(record, dict) else None


def refuse(path: Path, info: dict[str, Any], advice: str) -> None:
    """ValueError if ``path`` (config.json ``info``) is an evaluation folder, not a run."""
    if (of := source(info)) is not None:
        raise ValueError(f"{path} is an evaluation of {of} (evaluate.py --out), not a trained "
                         f"run; {advice}")


def check_workdir(path: Path, *, resume: bool) -> None:
    """ValueError if ``path``, given to train.py as ``--workdir``, holds an evaluation folder."""
    try:
        info = read_run_config(path / "config.json")
    except (OSError, ValueError):
        return
    refuse(path, info, f"resume {source(info)} instead" if resume else
           "choose another --workdir (--overwrite replaces the evaluation)")


def again(path: Path, info: dict[str, Any]) -> str:
    """The evaluate.py command that evaluates again what evaluation folder ``path`` holds
    (``--parts MODULE:NAME`` stands for custom parts given from Python: named, not loaded)."""
    record = info[KEY]
    given = {**record["changes"], **{k: record[k] for k in ("data_dir", "data_root")
                                     if record.get(k)}}
    flags = [token for k, v in sorted(given.items()) for token in (f"--{k.replace('_', '-')}",
                                                                   str(v))]
    custom = (info.get("parts") or {}).get("model") or tested(info)["occlude"]  # to rebuild
    return shlex.join(["evaluate.py", "--workdir", record["of"], "--out", str(path), *flags]
                      + (["--parts", spec_in(record)] if custom else []))


def changes(cfg: Config, given: dict[str, Any], parts: Parts) -> dict[str, Any]:
    """The ``given`` test-occlusion fields that differ from the run's ``cfg`` (ValueError for a
    field that is not a test-occlusion field, an impossible value, or a field that a custom
    occlusion ignores)."""
    other = sorted(set(given) - set(TESTED))
    fields = {f.name for f in dataclasses.fields(Config)}
    if unknown := [k for k in other if k not in fields]:
        near = difflib.get_close_matches(unknown[0], TESTED, n=1)
        raise ValueError(f"unknown config field(s) {', '.join(unknown)}"
                         + (f"; did you mean {near[0]}?" if near else
                            f"; the test occlusion's are {', '.join(TESTED)}"))
    if other:
        raise ValueError(f"an evaluation changes only the test occlusion (--occlusion-*, "
                         f"--eval-seed), not {', '.join(other)}: that needs training again")
    tested = dataclasses.replace(cfg, **given)  # checked, and NumPy integers made ints
    out = {k: getattr(tested, k) for k in given if getattr(tested, k) != getattr(cfg, k)}
    ignored = sorted(set(out) & set(parts.unused()))
    if ignored:
        raise ValueError(f"the custom occlusion ({parts.describe()['occlude']}) ignores "
                         f"{', '.join('--' + k.replace('_', '-') for k in ignored)}; change the "
                         "occlusion's own arguments instead")
    return out


def check_news(run: Path, own: dict[str, Any], changed: dict[str, Any], other_occlusion: bool,
               other_data: bool) -> None:
    """ValueError for an evaluation that would score what the run's metrics.json (``own``)
    holds (or, without one, should hold): no field ``changed``, neither the occlusion nor the
    data, and the run's scores are on its own test set."""
    if changed or other_occlusion or other_data or own.get("data", {}).get("tested_sha256"):
        return
    if not own:  # not "holds these scores already": it holds none
        raise ValueError(f"{run} has no metrics.json (its evaluation did not finish): evaluate.py "
                         f"--workdir {run} scores it in place, on its own test occlusion")
    raise ValueError(f"{SAME.format(run)}: give the test occlusion to change (--occlusion-*, "
                     "--eval-seed, --parts) or another test set (--data-dir)")


def record(run: Path, changed: dict[str, Any], info: dict[str, Any], parts: Parts,
           where: dict[str, str | None]) -> dict[str, Any]:
    """config.json's ``evaluation`` of the run in ``run`` (config.json ``info``): its absolute
    path, the changed fields, the occlusion when it is not the run's (``other_occlusion``), the
    data folders given (``where``, absolute), the ``--parts`` given, and a digest of the
    parameters."""
    out: dict[str, Any] = {"of": str(run.resolve()), "changes": changed,
                           "params_sha256": params_digest(run)}
    out.update({k: str(Path(v).resolve()) for k, v in where.items() if v})
    if parts.spec:
        out["parts_spec"] = parts.spec
    if other_occlusion(info, parts):
        out["occlude"] = parts.describe()["occlude"]  # None: the config's bars
    return out


def other_occlusion(info: dict[str, Any], parts: Parts) -> bool:
    """Whether ``parts`` test with another occlusion than the run (config.json ``info``) had."""
    return (info.get("parts") or {}).get("occlude") != parts.describe()["occlude"]


def tested(info: dict[str, Any]) -> dict[str, Any]:
    """What an evaluation folder tested with: every ``TESTED`` field (None for those a custom
    occlusion ignores) and ``occlude`` (None: the config's bars)."""
    record = info[KEY]
    occlude = record["occlude"] if "occlude" in record else (info.get("parts") or {}).get("occlude")
    cfg = {**info["config"], **record.get("changes", {})}
    return {"occlude": occlude,
            **{k: None if occlude and k.startswith("occlusion_") else cfg.get(k) for k in TESTED}}


def params_digest(run: Path) -> str:
    """The SHA-256 of the run's params.msgpack (first 16 hex digits)."""
    return hashlib.sha256((run / PARAMS).read_bytes()).hexdigest()[:16]


def stale(info: dict[str, Any]) -> bool:
    """Whether the run an evaluation folder evaluated has other parameters now (resumed or
    trained again since); False where that run is gone or holds none."""
    record = info[KEY]
    try:
        return params_digest(Path(record["of"])) != record.get("params_sha256")
    except OSError:
        return False


def claim(out: Path, run: Path, held: contextlib.ExitStack) -> Callable[[], None]:
    """Create and lock ``out`` for an evaluation of ``run`` until ``held`` closes.

    Refuses a folder that holds anything but an earlier (or unfinished) evaluation of the same
    run, whose config.json is deleted at once (``MARK`` says whose folder it is meanwhile), so
    that scores never sit under another evaluation's record. Returns ``done``, to call once
    everything is written; if the evaluation ends before, what it wrote is deleted, and the
    folders it made if nothing else is left in them.
    """
    check_path(out, run)
    made = [p for p in [out, *out.parents] if not p.exists()]  # the outermost last
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        raise ValueError(f"--out {out}: cannot create it ({err.strerror})") from None
    runlock.lock(out, held, advice="wait for it to finish, or choose another --out")
    check_replaceable(out, run)
    (out / WRITTEN[-1]).unlink(missing_ok=True)
    (out / MARK).write_text(str(run.resolve()))
    finished = False

    def undo() -> None:  # closed before the lock: runs first
        if finished:
            return
        for name in WRITTEN:
            for item in (out / name, out / f"{name}.tmp"):
                with contextlib.suppress(OSError):
                    item.unlink()
        if [p.name for p in out.iterdir()] == [MARK]:  # else MARK keeps the folder replaceable
            (out / MARK).unlink()
            from aejax import rundir  # loaded by evaluate.py already; not in compare.py's start

            rundir.remove_empty(made)

    def done() -> None:
        nonlocal finished
        finished = True
        (out / MARK).unlink(missing_ok=True)

    held.callback(undo)
    return done


def check_out(out: Path, run: Path) -> None:
    """ValueError for an ``--out`` that ``claim`` would refuse (checked again there, with the
    lock), before any work."""
    check_path(out, run)
    if out.is_dir():
        check_replaceable(out, run)


def check_path(out: Path, run: Path) -> None:
    """ValueError for an ``--out`` that is a file, a broken link, the run, or inside or around
    it."""
    if out.is_symlink() and not out.exists():
        raise ValueError(f"--out {out} is a link to nothing; give a folder")
    if out.exists() and not out.is_dir():
        raise ValueError(f"--out {out} is a file; give a folder")
    there, home = out.resolve(), run.resolve()
    if there == home:
        raise ValueError(f"--out {out} is the run itself; give a new folder beside it (without "
                         "--out, evaluate.py scores the run in place, on its own test occlusion)")
    if home in there.parents or there in home.parents:
        raise ValueError(f"--out {out} is {'inside' if home in there.parents else 'around'} the "
                         "run; give a folder beside it")


def check_replaceable(out: Path, run: Path) -> None:
    """ValueError unless the folder ``out`` is empty, or holds an evaluation of ``run``, or one
    that stopped before it finished (its ``MARK``)."""
    if not any(out.iterdir()):
        return
    try:
        info: dict[str, Any] | None = read_run_config(out / "config.json")
    except (OSError, ValueError):
        info = None
    try:
        of = source(info) if info is not None else (out / MARK).read_text()
    except OSError:
        of = None
    if of is None:
        held = "a trained run" if info is not None else "other files"
        raise ValueError(f"--out {out} holds {held}; give a new folder (or an earlier "
                         "evaluation of the same run, to replace it)")
    if Path(of).resolve() != run.resolve():
        raise ValueError(f"--out {out} holds {'an' if info else 'an unfinished'} evaluation of "
                         f"another run ({of}); give a new folder")
