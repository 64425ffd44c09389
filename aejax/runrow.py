"""A finished run folder as compare.py reads it: its config as the fields that tell runs apart
(with the data, the test corruption and, for an evaluation folder, what it was tested with), its
metrics, and what its scores are of."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path
from typing import Any

from aejax import crosseval, jsonio, runlock

TESTED = "tested_"  # the test occlusion of an evaluation folder (crosseval): tested_<field>
UNUSED = "unused"  # a config field a run's custom parts replaced (config.json's unused_config)


def load_run(workdir: str | os.PathLike
             ) -> tuple[dict[str, Any], dict[str, Any], tuple[str, str] | None]:
    """A run folder's config dict, metrics and what its scores are of (``scored``; ValueError if
    either file is missing).

    The config gets one more field, ``data``: how many training and test images the run had,
    whether they were the small sample, and which test set it was evaluated on when not its own
    (its digest; its source in records without one), so that runs on other data never form one
    row; ``train_images``, the digest of its training images (where recorded), so that neither
    do runs trained on other images of the same number; and ``test_occlusion``, the digest of
    the occluded test images it was scored on (where recorded), so that neither do runs scored
    on other corruptions.
    """
    path = Path(workdir)
    if not path.is_dir():
        raise ValueError(f"{workdir} {'is not a folder' if path.exists() else 'does not exist'}: "
                         "give the run folders that train.py wrote")
    files = [path / "config.json", path / "metrics.json"]
    missing = [f.name for f in files if not f.is_file()]
    with contextlib.ExitStack() as held:  # a run training again (--resume) has stale metrics
        runlock.lock(path, held, shared=True,
                     advice="its metrics.json is not final; wait for it to finish")
        if missing:
            from aejax.rundir import finish_hint  # only here: it brings in the checkpoint code

            raise ValueError(f"{workdir} is not a finished run: no {' or '.join(missing)}"
                             f"{finish_hint(path) if missing == ['metrics.json'] else ''}")
        info, metrics = jsonio.read_run_config(files[0]), jsonio.read_json(files[1])
    for file, tree in zip(files, (info, metrics)):
        jsonio.check_layout(file, tree)
    data = metrics.get("data", {})
    size = f"{data.get('train_size')}+{data.get('test_size')} images"
    custom = {k: v for k, v in (info.get("parts") or {}).items() if v}  # aejax.parts
    tested = data.get("tested_sha256")  # evaluated on another test set than its own: which
    test = (f", tested on another test set ({tested[:8]})" if tested  # by content
            else f", tested on {data['test_source']}" if data.get("test_source") else "")
    occluded = metrics.get("test_occlusion_sha256")  # not in runs from before 2026-11-28
    unused = info.get("unused_config") or []  # replaced by custom parts: no difference
    config = {k: UNUSED if k in unused else v for k, v in info["config"].items()}
    trained = data.get("train_sha256")  # not in runs from before 2026-11-30
    row = {**config, **custom, **tested_occlusion(path, info),
           "data": size + (" (sample)" if data.get("is_sample") else "") + test,
           **({"train_images": trained[:8]} if trained else {}),
           **({"test_occlusion": occluded[:8]} if occluded else {})}
    return row, metrics, scored(path, info, metrics)


def tested_occlusion(path: Path, info: dict[str, Any]) -> dict[str, Any]:
    """What an evaluation folder was tested with (``tested_<field>``, ``tested_occlude``; the
    fields a custom occlusion ignores as ``unused``); nothing for a run. ValueError if its run
    is training, or has other parameters now."""
    if (of := crosseval.source(info)) is None:
        return {}
    run = Path(of)
    with contextlib.ExitStack() as held:  # its parameters are final, or absent for a while
        if run.is_dir():
            runlock.lock(run, held, shared=True, advice=f"{path} evaluated it; wait for it to "
                                                        "finish, then evaluate that again")
        if crosseval.stale(info):
            raise ValueError(f"{path} evaluated {run} before its parameters changed (resumed or "
                             "trained again since); evaluate it again: "
                             f"{crosseval.again(path, info)}")
    return {TESTED + k: (v or "default") if k == "occlude" else UNUSED if v is None else v
            for k, v in crosseval.tested(info).items()}


def with_tested(configs: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The configs, each ``tested_<field>`` that one of them has given to the others, as the
    value they were tested with: their own (``default`` for the default occlusion). The fields
    themselves then say only how a run was trained: ``unused`` where they did not act on it (a
    run trained on clean images, and the evaluation seed)."""
    names = {k for c in configs for k in c if k.startswith(TESTED)}
    out = []
    for c in configs:
        c = {**{k: c.get(k.removeprefix(TESTED), "default") for k in names}, **c}
        for k in (*crosseval.TESTED, "occlude") if names else ():
            if k in c and (k == "eval_seed" or c.get("train_occlusion") == "none"):
                c[k] = UNUSED
        out.append(c)
    return out


def scored(path: Path, info: dict[str, Any], metrics: dict[str, Any]
           ) -> tuple[str, str] | None:
    """What a folder's scores are of: the digest of the parameters scored and of the occluded
    test images (None where either is unknown)."""
    try:
        params = (info[crosseval.KEY].get("params_sha256") if crosseval.source(info)
                  else crosseval.params_digest(path))
    except OSError:
        return None
    images = metrics.get("test_occlusion_sha256")
    return (params, images) if params and images else None
