"""Evaluate a saved run again: reload it, recompute every test metric and figure, export arrays."""

from __future__ import annotations

import contextlib
import dataclasses
import io
import math
import os
from pathlib import Path
from typing import Any

import numpy as np

from aejax import (crosseval, data, evaluate, jsonio, metrics, paramsfile, plots, rundir,
                   runfiles, runlock, testset, train, writable)
from aejax.config import Config
from aejax.parts import Parts, require, spec_in

TABLE_METRICS: tuple[str, ...] = metrics.METRICS + metrics.MASKED


def load_info(workdir: str | os.PathLike) -> dict[str, Any]:
    """A run folder's config.json (ValueError if it is not a run folder)."""
    path = Path(workdir) / "config.json"
    if not path.is_file():
        raise ValueError(f"{workdir} is not a run folder: no config.json "
                         "(train one with scripts/train.py --workdir)")
    info = jsonio.read_run_config(path)
    jsonio.check_layout(path, info)
    return info


def config_of(info: dict[str, Any], workdir: str | os.PathLike) -> Config:
    """The Config in a run's config.json (ValueError naming the file if it is not valid)."""
    try:
        return Config.from_dict(info["config"])
    except (TypeError, ValueError) as err:  # a hand-edited value of the wrong type or range
        raise ValueError(f"{Path(workdir) / 'config.json'}: {err}") from None


def load_config(workdir: str | os.PathLike) -> Config:
    """The Config a run folder was trained with (ValueError if it is not a run folder)."""
    return config_of(load_info(workdir), workdir)


def evaluate_run(workdir: str | os.PathLike, *, data_dir: str | None = None,
                 data_root: str | None = None, parts: Parts = Parts()
                 ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Evaluate a trained run, rewrite its figures and its metrics.json (keeping ``train``).

    Args:
      workdir: a folder written by ``experiment.run``.
      data_dir: read the data from here instead of the run's ``--data-dir``.
      data_root: the data folder to use instead of the run's ``--data-root``.
      parts: the custom model and occlusion the run was trained with (``aejax.parts``; checked
        by name against its config.json); the loss plays no part in the evaluation.
    Returns:
      The whole metrics.json content and the evaluated arrays.
    """
    path = Path(workdir)
    info = load_info(path)
    if crosseval.source(info) is not None:
        crosseval.refuse(path, info, f"evaluate it again with {crosseval.again(path, info)}")
    with contextlib.ExitStack() as held:  # no train.py may write metrics.json meanwhile
        runlock.lock(path, held, advice="wait for it to finish")
        writable.check_writable(path, "evaluating a run rewrites its metrics.json and figures; "
                                "copy the run folder somewhere writable")
        check_parts(info, parts, path)
        saved, arrays = score(path, info, data_dir, data_root, parts)
        write(path, saved, arrays)
        return saved, arrays


def evaluate_into(workdir: str | os.PathLike, out: str | os.PathLike, *,
                  changes: dict[str, Any] | None = None, data_dir: str | None = None,
                  data_root: str | None = None, parts: Parts = Parts()
                  ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Evaluate a trained run on another test occlusion (or test set), writing a folder of its
    own (``crosseval``); everything is checked and scored before that folder is touched.

    Args:
      workdir: a folder written by ``experiment.run``; it is only read.
      out: the evaluation folder: new, empty, or an earlier evaluation of the same run (then
        replaced).
      changes: config fields of the test occlusion to change (``crosseval.TESTED``), e.g.
        ``{"occlusion_width": 3}``.
      data_dir, data_root: as for ``evaluate_run``.
      parts: the run's custom model, if any, and the occlusion to evaluate with (any; None:
        the config's bars, with ``changes``).
    Returns:
      The evaluation's metrics.json content and the evaluated arrays.
    """
    path, target = Path(workdir), Path(out)
    info = load_info(path)
    crosseval.refuse(path, info, f"evaluate {crosseval.source(info)} instead")
    check_parts(info, parts, path, occlusion=False)
    crosseval.check_out(target, path)
    writable.check_makeable(target)
    changed = crosseval.changes(config_of(info, path), changes or {}, parts)
    own = read_metrics(path)
    crosseval.check_news(path, own, changed, crosseval.other_occlusion(info, parts),
                         bool(data_dir or data_root))
    with contextlib.ExitStack() as held:  # the run is read: train.py may not write it meanwhile
        runlock.lock(path, held, shared=True, advice="its parameters are not final; wait for "
                                                     "it to finish")
        saved, arrays = score(path, info, data_dir, data_root, parts, changed)
        if own.get("test_occlusion_sha256") == saved["test_occlusion_sha256"]:
            raise ValueError(f"{crosseval.SAME.format(path)} (the same parameters on the same "
                             "occluded test images)")
        done = crosseval.claim(target, path, held)
        writable.check_writable(target, "give another --out")
        write(target, saved, arrays)
        evaluation = crosseval.record(path, changed, info, parts,
                                      {"data_dir": data_dir, "data_root": data_root})
        jsonio.write_json({**info, crosseval.KEY: evaluation}, target / "config.json")
        done()
        return saved, arrays


def read_metrics(path: Path) -> dict[str, Any]:
    """The run's metrics.json ({} if it has none: its first evaluation failed)."""
    if not (path / "metrics.json").is_file():
        return {}
    saved = jsonio.read_json(path / "metrics.json")
    jsonio.check_layout(path / "metrics.json", saved)
    return saved


def score(path: Path, info: dict[str, Any], data_dir: str | None, data_root: str | None,
          parts: Parts, changed: dict[str, Any] | None = None
          ) -> tuple[dict[str, Any], dict[str, Any]]:
    """Evaluate the run in ``path`` with its test occlusion ``changed`` (``crosseval.changes``):
    its metrics.json updated with the new ``test`` (not written), and the arrays."""
    cfg = config_of(info, path)
    params_file = path / runfiles.PARAMS_FILE
    if not params_file.is_file():
        finish = (f": its training stopped before the end; train.py --workdir {path} --resume "
                  "finishes it and evaluates it" if runfiles.has_checkpoint(path)
                  else ": train it with train.py")
        raise ValueError(f"{path} holds no trained parameters ({runfiles.PARAMS_FILE}){finish}")
    saved = read_metrics(path)
    if data_root and not data_dir and cfg.data_dir:  # data.load reads a data_dir first
        raise ValueError(f"--data-root {data_root} changes nothing: the run was trained with "
                         f"--data-dir {cfg.data_dir}, which is read instead; pass --data-dir to "
                         "read other files")
    overrides = {k: v for k, v in (("data_dir", data_dir), ("data_root", data_root)) if v}
    if not data_dir:
        rundir.check_data_dir_here(cfg.data_dir)
    test_cfg = dataclasses.replace(cfg, **overrides, **(changed or {}))
    ds = data.load(cfg.dataset, data_dir=test_cfg.data_dir, data_root=test_cfg.data_root,
                   test_only=True)  # a --data-dir with only the test files will do
    if ds.is_sample and not info.get("dataset_is_sample", False):
        raise ValueError(f"{path} was trained on {info.get('dataset_source', 'the full data')}, "
                         f"but only the small sample is available here ({ds.source}); pass "
                         "--data-dir (or --data-root) to evaluate it on the full test set")
    params = paramsfile.load(params_file)
    if parts.model is None:  # the size it was trained on: test images of another size are
        width = paramsfile.input_width(params)  # refused as such by evaluate, not as a mismatch
        model = train.make_model(cfg, width or int(np.prod(ds.test_images.shape[1:])))
    else:
        model = parts.model
    paramsfile.check(params, model, params_file, custom=parts.model is not None)
    test, arrays = evaluate.evaluate(test_cfg, model, params, ds.test_images, ds.test_labels,
                                     occlude=parts.occlude)
    saved.update(test=test, test_occlusion_sha256=evaluate.occlusion_digest(arrays),
                 data=testset.evaluated_data(info, saved.get("data"), ds, path))
    return saved, arrays


def write(folder: Path, saved: dict[str, Any], arrays: dict[str, Any]) -> None:
    """The evaluation's figures, then its metrics.json, into ``folder`` (a file that cannot be
    written, on a full disk: a ValueError naming it)."""
    with writable.writing(folder, "evaluate the run again"):
        plots.evaluation_figures(arrays, saved["test"], folder)
        jsonio.write_json(saved, folder / "metrics.json")


def check_parts(info: dict[str, Any], parts: Parts, workdir: Path, *,
                occlusion: bool = True) -> None:
    """Refuse to evaluate a run with another model, or (with ``occlusion``) another occlusion
    (``aejax.parts``) than it was trained with, by name: only the code that defined custom ones
    can rebuild them."""
    saved, given = info.get("parts") or {}, require(parts).describe()
    checked = ("model", "occlude") if occlusion else ("model",)
    changed = [k for k in checked if saved.get(k) != given[k]]
    if not changed:
        return
    if not occlusion and not given["model"]:  # an evaluation folder: the model, any occlusion
        raise ValueError(f"{workdir} was trained with a custom model ({saved['model']}); give "
                         "--parts naming a Parts with that model (and the occlusion to test, if "
                         "it is one of your own), or from Python "
                         "report.evaluate_into(workdir, out, parts=Parts(...))")
    if not any(given[k] for k in changed):  # evaluate.py, or Python without the parts
        names = ", ".join(f"{k}={saved[k]}" for k in changed)
        raise ValueError(f"{workdir} was trained with custom parts ({names}); evaluate it with "
                         f"those parts: evaluate.py --parts {spec_in(info)}, or from Python "
                         "report.evaluate_run(workdir, parts=Parts(...))")
    diffs = ", ".join(f"{k}={saved.get(k) or 'the default'} (given {given[k] or 'the default'})"
                      for k in changed)
    advice = ("; to score it on another occlusion, write the scores to a new folder "
              "(evaluate.py --out DIR)" if changed == ["occlude"] else "")
    raise ValueError(f"{workdir} was trained with {diffs}; pass the parts it was trained "
                     f"with{advice}")


def export_path(path: str | os.PathLike) -> Path:
    """The file ``export_arrays`` writes for ``path``: ``.npz`` added to a name without it (as
    NumPy does), unless ``path`` is a folder (``writable.check_output_folder`` refuses it)."""
    text = str(path)
    return Path(text if text.endswith(".npz") or Path(text).is_dir() else f"{text}.npz")


def export_arrays(arrays: dict[str, Any], path: str | os.PathLike) -> Path:
    """Save original, occluded, reconstructed (and clean reconstruction, mask, labels) as .npz,
    atomically (a full disk: a ValueError naming the file); return its path (``export_path``)."""
    n = len(arrays["labels"])
    side = math.isqrt(int(np.prod(np.shape(arrays["clean"])[1:])))
    images = {"original": "clean", "occluded": "occluded_input",
              "reconstructed": "recon_occluded", "reconstructed_clean": "recon_clean",
              "mask": "mask"}
    out = {name: np.asarray(arrays[key]).reshape(n, side, side) for name, key in images.items()}
    path, packed = export_path(path), io.BytesIO()
    np.savez_compressed(packed, labels=np.asarray(arrays["labels"]), **out)
    with writable.writing(path, "evaluate the run again"):
        jsonio.write_atomic(packed.getvalue(), path)
    return path


def format_table(test: dict[str, Any]) -> str:
    """A compact text table: one row per comparison, then the clean and occluded
    reconstructions' MSE per digit."""
    width = max(len(c) for c in evaluate.COMPARISONS)
    head = f"{'':{width}}" + "".join(f"{m:>13}" for m in TABLE_METRICS)
    lines = [head]
    for c in evaluate.COMPARISONS:
        lines.append(f"{c:{width}}" + "".join(f"{test[c][m]:13.5f}" for m in TABLE_METRICS))
    digits = sorted(test["per_class"], key=int)
    lines.append("per digit    " + "".join(f"{d:>8}" for d in digits))
    for c in ("clean", "occluded"):
        row = "".join(f"{test['per_class'][d][c]['mse']:8.4f}" for d in digits)
        lines.append(f"{c + ' mse':13}" + row)
    return "\n".join(lines)
