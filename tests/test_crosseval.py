"""Tests for aejax.crosseval: a trained run scored on another occlusion, in a folder of its own
(evaluate.py --out, report.evaluate_into), and how train.py and compare.py treat that folder."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shlex
import shutil
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import compare, crosseval, experiment, report, runlock
from aejax.config import Config
from aejax.parts import Parts
from aejax.parts import load as load_parts
from tests.conftest import write_idx_dataset
from tests.test_report import call


def corner(key: jax.Array, clean: jax.Array) -> tuple[jax.Array, jax.Array]:
    """A custom occlusion: the top-left 6 x 6 pixels white (the key is not needed)."""
    del key
    mask = jnp.zeros((28, 28), bool).at[:6, :6].set(True).reshape(1, -1)
    mask = jnp.broadcast_to(mask, clean.shape)
    return jnp.where(mask, 1.0, clean), mask


CORNER = Parts(occlude=corner)  # for --parts tests.test_crosseval:CORNER


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two one-epoch runs of the original protocol (seeds 0 and 1) on a small synthetic set."""
    root = tmp_path_factory.mktemp("runs")
    idx_dir = write_idx_dataset(root / "small")
    for seed in (0, 1):
        cfg = Config(data_dir=str(idx_dir), data_root=str(root / "data"), epochs=1, seed=seed)
        experiment.run(cfg, root / f"run{seed}", progress=False)
    return [root / "run0", root / "run1"]


def evaluate(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """scripts/evaluate.py without the compilation cache."""
    return call("evaluate", [*argv, "--no-compile-cache"], capsys)


def test_an_evaluation_folder_scores_the_run_on_other_bars(runs, tmp_path: Path,
                                                           capsys) -> None:
    run = runs[0]
    before = {name: (run / name).read_bytes() for name in ("metrics.json", "config.json")}
    out = tmp_path / "evals" / "wide"
    code, printed, err = evaluate(["--workdir", str(run), "--out", str(out), "--occlusion-width",
                                   "3", "--export", str(tmp_path / "a.npz")], capsys)
    assert code == 0, err
    assert printed.startswith(f"{out}: 64 test images")
    assert {name: (run / name).read_bytes() for name in before} == before  # only read
    own, new = (json.loads((f / "metrics.json").read_text()) for f in (run, out))
    assert new["train"] == own["train"] and new["data"] == own["data"]
    assert new["test"]["clean"]["mse"] == pytest.approx(own["test"]["clean"]["mse"], rel=1e-6)
    assert new["test_occlusion_sha256"] != own["test_occlusion_sha256"]
    mask = np.load(tmp_path / "a.npz")["mask"]
    assert mask.shape == (64, 28, 28) and np.all(mask.sum(axis=(1, 2)) == 3 * 28)  # 3 rows/cols
    info = json.loads((out / "config.json").read_text())
    digest = hashlib.sha256((run / "params.msgpack").read_bytes()).hexdigest()[:16]
    assert info[crosseval.KEY] == {"of": str(run.resolve()), "changes": {"occlusion_width": 3},
                                   "params_sha256": digest}
    assert info["config"] == json.loads(before["config.json"])["config"]  # the trained config
    for name in ("figure.png", "correlation.png", "per_class.png"):
        assert (out / name).stat().st_size > 0


def test_compare_names_rows_by_the_tested_occlusion(runs, tmp_path: Path) -> None:
    evals = [tmp_path / f"wide{i}" for i in (0, 1)]
    for run, out in zip(runs, evals):
        report.evaluate_into(run, out, changes={"occlusion_width": 3, "eval_seed": 0})
    key = "test.occluded.mse"
    values = {f: json.loads((f / "metrics.json").read_text())["test"]["occluded"]["mse"]
              for f in [*runs, *evals]}
    rows = compare.table([str(f) for f in [*runs, *evals]], (key,))
    assert rows == {  # eval_seed 0 is the runs' own: no change, no row name
        "tested_occlusion_width=1": {key: pytest.approx((np.mean([values[r] for r in runs]),
                                                         np.std([values[r] for r in runs],
                                                                ddof=1), 2))},
        "tested_occlusion_width=3": {key: pytest.approx((np.mean([values[e] for e in evals]),
                                                         np.std([values[e] for e in evals],
                                                                ddof=1), 2))}}
    by_run = compare.table([str(runs[0]), str(evals[1])], (key,), group=False)
    assert list(by_run) == ["seed=0 tested_occlusion_width=1", "seed=1 tested_occlusion_width=3"]
    twin = tmp_path / "twin"  # the same evaluation again, elsewhere: one seed, not two
    report.evaluate_into(runs[0], twin, changes={"occlusion_width": 3})
    with pytest.raises(ValueError, match=f"{evals[0]} and {twin} hold the same scores"):
        compare.table([str(evals[0]), str(runs[1]), str(twin)], (key,))
    assert len(compare.table([str(evals[0]), str(twin)], (key,), group=False)) == 2  # not averaged
    # a run trained (on clean images) with wider bars, scored on the 1-pixel bar: its config's
    # width played no part in its training, so it is the other runs' seed, not another row
    wider = tmp_path / "wider"
    cfg = Config(**{**json.loads((runs[0] / "config.json").read_text())["config"],
                    "hidden": (128, 50), "occlusion_width": 3, "seed": 2})
    experiment.run(cfg, wider, progress=False)
    report.evaluate_into(wider, tmp_path / "wider-1", changes={"occlusion_width": 1})
    rows = compare.table([*map(str, runs), str(tmp_path / "wider-1"), *map(str, evals)], (key,))
    assert {k: v[key][2] for k, v in rows.items()} == {"tested_occlusion_width=1": 3,
                                                        "tested_occlusion_width=3": 2}


def test_an_evaluation_folder_is_not_taken_for_a_run(runs, tmp_path: Path, capsys,
                                                     monkeypatch) -> None:
    run = tmp_path / "run"
    shutil.copytree(runs[0], run)
    out = tmp_path / "wide"
    other_set = write_idx_dataset(tmp_path / "other set", seed=7)
    report.evaluate_into(run, out, changes={"occlusion_width": 2, "occlusion_bars": 2},
                         data_dir=str(other_set))
    # evaluating the folder again: refused, with the command that does it, from anywhere
    code, _, err = evaluate(["--workdir", str(out)], capsys)
    command = (f"evaluate.py --workdir {run.resolve()} --out {out} --data-dir '{other_set}' "
               "--occlusion-bars 2 --occlusion-width 2")
    assert (code, err) == (2, f"evaluate.py: error: {out} is an evaluation of {run.resolve()} "
                              "(evaluate.py --out), not a trained run; evaluate it again with "
                              f"{command}\n")
    first = json.loads((out / "metrics.json").read_text())
    assert first["data"]["tested_sha256"]  # on the other set
    monkeypatch.chdir(tmp_path / "other set")
    code, _, err = evaluate(shlex.split(command)[1:], capsys)
    assert code == 0, err  # replaces the earlier evaluation of the same run, with the same result
    assert json.loads((out / "metrics.json").read_text()) == first
    report.evaluate_into(run, out, changes={"occlusion_width": 4})  # replaced: new scores
    again = json.loads((out / "metrics.json").read_text())
    assert again["test_occlusion_sha256"] != first["test_occlusion_sha256"]
    assert json.loads((out / "config.json").read_text())[crosseval.KEY]["changes"] == {
        "occlusion_width": 4}
    for argv, message in (([], f"{out} is an evaluation of {run.resolve()} (evaluate.py --out), "
                                "not a trained run; choose another --workdir (--overwrite "
                                "replaces the evaluation)"),
                          (["--resume"], f"{out} is an evaluation of {run.resolve()} "
                                         "(evaluate.py --out), not a trained run; resume "
                                         f"{run.resolve()} instead")):
        code, _, err = call("train", ["--workdir", str(out), *argv, "--no-progress"], capsys)
        assert (code, err) == (2, f"train.py: error: {message}\n")
    # the run trained further since: compare.py refuses the stale scores
    (run / "params.msgpack").write_bytes((run / "params.msgpack").read_bytes() + b"\0")
    with pytest.raises(ValueError, match=f"{out} evaluated {run.resolve()} before its parameters "
                                         r"changed \(resumed or trained again since\); evaluate it "
                                         "again: evaluate.py --workdir "):
        compare.table([str(run), str(out)])
    with contextlib.ExitStack() as held:  # the run training: neither scored nor compared
        runlock.lock(run, held)
        for work in (lambda: report.evaluate_into(run, tmp_path / "new", changes={"eval_seed": 2}),
                     lambda: compare.table([str(out)])):
            with pytest.raises(ValueError, match=f"workdir {run} is in use"):
                work()
    assert not (tmp_path / "new").exists()
    cfg = Config(data_dir=str(other_set), data_root=str(tmp_path / "data"), epochs=1)
    experiment.run(cfg, out, progress=False, overwrite=True)  # --overwrite replaces it
    assert crosseval.KEY not in json.loads((out / "config.json").read_text())


def test_what_an_evaluation_cannot_change_is_refused_before_any_work(runs, tmp_path: Path,
                                                                       capsys) -> None:
    run, other = runs
    code, _, err = evaluate(["--workdir", str(run), "--occlusion-width", "3"], capsys)
    assert (code, err) == (2, "evaluate.py: error: --occlusion-width changes the test occlusion, "
                              "and the run's metrics.json keeps the scores on its own: give --out "
                              "DIR, a new folder for these\n")
    for changes in ({}, {"occlusion_width": 1, "eval_seed": 0}):  # nothing, or nothing new
        with pytest.raises(ValueError, match=f"{run}'s metrics.json holds these scores already"):
            report.evaluate_into(run, tmp_path / "same", changes=changes)
    with pytest.raises(ValueError, match="an evaluation changes only the test occlusion "
                                         r"\(--occlusion-\*, --eval-seed\), not epochs, "
                                         "learning_rate: that needs training again"):
        report.evaluate_into(run, tmp_path / "a", changes={"epochs": 2, "learning_rate": 0.1})
    report.evaluate_into(other, tmp_path / "of-other", changes={"eval_seed": 1})
    (tmp_path / "stray").mkdir()
    (tmp_path / "stray" / "notes.txt").write_text("mine")
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    for out, message in ((run, r"is the run itself; give a new folder beside it \(without "
                               "--out, evaluate.py scores the run in place, on its own test "
                               r"occlusion\)$"),  # not 'leave --out out': changes need it
                         (run / "inner", "is inside the run; give a folder beside it"),
                         (run.parent, "is around the run; give a folder beside it"),
                         (tmp_path / "link", "is a link to nothing; give a folder"),
                         (other, "holds a trained run; give a new folder"),
                         (tmp_path / "stray", "holds other files; give a new folder"),
                         (tmp_path / "of-other", f"holds an evaluation of another run "
                                                 f"\\({other.resolve()}\\)")):
        with pytest.raises(ValueError, match=f"--out {out} {message}"):
            report.evaluate_into(run, out, changes={"occlusion_width": 3})
    assert not (run / "inner").exists() and (tmp_path / "stray" / "notes.txt").exists()
    code, _, err = evaluate(["--workdir", str(run), "--out", str(tmp_path / "b"),
                             "--occlusion-width", "0"], capsys)
    assert (code, err) == (2, "evaluate.py: error: occlusion width must be >= 1, got 0\n")
    deep = tmp_path / "new" / "deeper"  # bars that do not fit: found in the work, nothing left
    with pytest.raises(ValueError, match="start range 10..40 with width 1 must lie inside"):
        report.evaluate_into(run, deep, changes={"occlusion_high": 40})
    assert not (tmp_path / "new").exists() and not (tmp_path / "b").exists()


def test_a_stopped_evaluation_leaves_no_scores_under_a_wrong_record(runs, tmp_path: Path,
                                                                     monkeypatch) -> None:
    run = runs[0]
    out = tmp_path / "evals" / "wide"
    real_write = report.write
    records = []

    def stopped(folder: Path, saved, arrays) -> None:  # a Ctrl-C once metrics.json is written
        records.append((folder / "config.json").exists())
        real_write(folder, saved, arrays)
        raise KeyboardInterrupt

    monkeypatch.setattr(report, "write", stopped)
    with pytest.raises(KeyboardInterrupt):
        report.evaluate_into(run, out, changes={"occlusion_width": 3})
    assert not (tmp_path / "evals").exists()  # a new folder: gone, with the folders made for it
    monkeypatch.undo()
    report.evaluate_into(run, out, changes={"occlusion_width": 3})
    monkeypatch.setattr(report, "write", stopped)
    with pytest.raises(KeyboardInterrupt):  # replacing it with width 5
        report.evaluate_into(run, out, changes={"occlusion_width": 5})
    assert records == [False, False]  # the width-3 record was gone before width-5 scores came
    assert list(out.iterdir()) == []
    monkeypatch.undo()
    for name, text in (("metrics.json", "{}"), ("arrays.npz", ""),  # as a kill would leave them
                       (crosseval.MARK, str(run.resolve()))):
        (out / name).write_text(text)
    report.evaluate_into(run, out, changes={"occlusion_width": 3})  # an unfinished one: replaced
    assert json.loads((out / "config.json").read_text())[crosseval.KEY]["changes"] == {
        "occlusion_width": 3}
    assert not (out / crosseval.MARK).exists() and (out / "arrays.npz").exists()  # not ours
    monkeypatch.setattr(report, "write", stopped)
    with pytest.raises(KeyboardInterrupt):  # with a file of the user's left: still replaceable
        report.evaluate_into(run, out, changes={"occlusion_width": 5})
    assert sorted(p.name for p in out.iterdir()) == [crosseval.MARK, "arrays.npz"]
    monkeypatch.undo()
    report.evaluate_into(run, out, changes={"occlusion_width": 5})


def test_a_refused_evaluation_touches_no_folder(runs, tmp_path: Path, capsys) -> None:
    run = runs[0]
    out = tmp_path / "wide"
    report.evaluate_into(run, out, changes={"occlusion_width": 3})
    before = {p.name: p.read_bytes() for p in out.iterdir()}
    for changes, message in (({"occlusion_width": 0}, "occlusion width must be >= 1"),
                             ({"occlusion_high": 40}, "must lie inside the image"),
                             ({"eval_seed": 0}, "holds these scores already")):
        with pytest.raises(ValueError, match=message):
            report.evaluate_into(run, out, changes=changes)
        assert {p.name: p.read_bytes() for p in out.iterdir()} == before, changes
    mine = tmp_path / "mine"  # a folder of the user's, with files named as an evaluation's
    mine.mkdir()
    (mine / "metrics.json").write_text("my notes")
    with pytest.raises(ValueError, match=f"--out {mine} holds other files; give a new folder"):
        report.evaluate_into(run, mine, changes={"occlusion_width": 3})
    assert (mine / "metrics.json").read_text() == "my notes"
    code, _, err = evaluate(["--workdir", str(run), "--out", "", "--data-dir", "x"], capsys)
    assert (code, err) == (2, "evaluate.py: error: --out is empty; give a folder\n")
    with contextlib.ExitStack() as held:  # read by compare.py meanwhile: fine, both only read
        runlock.lock(run, held, shared=True)
        code, _, err = evaluate(["--workdir", str(run), "--out", str(tmp_path / "new"),
                                 "--occlusion-bars", "2", "--export",
                                 str(tmp_path / "new" / "arrays")], capsys)
    assert code == 0, err  # the export goes into the --out folder it makes
    assert (tmp_path / "new" / "arrays.npz").is_file()


def test_an_evaluation_records_where_its_data_came_from(runs, tmp_path: Path, monkeypatch
                                                        ) -> None:
    run = tmp_path / "run"
    shutil.copytree(runs[0], run)
    other_set = write_idx_dataset(tmp_path / "other", seed=9)
    report.evaluate_run(run, data_dir=str(other_set))  # in place: its own set now scored nowhere
    monkeypatch.chdir(run.parent)
    own = json.loads((run / "config.json").read_text())["config"]["data_dir"]
    report.evaluate_into(run, tmp_path / "own", data_dir=os.path.relpath(own))  # not refused
    record = json.loads((tmp_path / "own" / "config.json").read_text())[crosseval.KEY]
    assert record["data_dir"] == str(Path(own).resolve())  # absolute: usable from anywhere
    assert "tested_sha256" not in json.loads((tmp_path / "own" / "metrics.json").read_text())[
        "data"]  # the run's own test set


def test_a_custom_occlusion_is_scored_in_a_folder_of_its_own(runs, tmp_path: Path) -> None:
    run = runs[0]
    parts = Parts(occlude=corner)
    with pytest.raises(ValueError, match=r"was trained with occlude=the default \(given "
                                         r"tests.test_crosseval.corner\); pass the parts it was "
                                         r"trained with; to score it on another occlusion, write "
                                         r"the scores to a new folder \(evaluate.py --out DIR\)"):
        report.evaluate_run(run, parts=parts)
    with pytest.raises(ValueError, match=r"the custom occlusion \(tests.test_crosseval.corner\) "
                                         "ignores --occlusion-width; change the occlusion's own "
                                         "arguments instead"):
        report.evaluate_into(run, tmp_path / "corner", parts=parts, changes={"occlusion_width": 2})
    loaded = load_parts("tests.test_crosseval:CORNER")  # as evaluate.py --parts loads it
    saved, arrays = report.evaluate_into(run, tmp_path / "corner", parts=loaded)
    info = json.loads((tmp_path / "corner" / "config.json").read_text())
    assert crosseval.again(tmp_path / "corner", info) == (
        f"evaluate.py --workdir {run.resolve()} --out {tmp_path / 'corner'} --parts "
        "tests.test_crosseval:CORNER")
    assert np.asarray(arrays["mask"]).sum() == 64 * 36
    record = json.loads((tmp_path / "corner" / "config.json").read_text())[crosseval.KEY]
    assert (record["changes"], record["occlude"]) == ({}, "tests.test_crosseval.corner")
    rows = compare.table([str(run), str(tmp_path / "corner")], ("test.occluded.mse",))
    assert list(rows) == ["tested_occlude=default", "tested_occlude=tests.test_crosseval.corner"]
    assert saved["test"]["occluded"]["mse"] == rows[list(rows)[1]]["test.occluded.mse"][0]
    # the other way round: a run trained on the corner, scored on the config's bars
    cfg = Config(**{**report.load_info(run)["config"], "hidden": (128, 50),
                    "train_occlusion": "all"})
    experiment.run(cfg, tmp_path / "cornered", progress=False, parts=parts)
    report.evaluate_into(tmp_path / "cornered", tmp_path / "bars1")  # the occlusion changes
    report.evaluate_into(tmp_path / "cornered", tmp_path / "bars3", changes={"occlusion_width": 3})
    rows = compare.table([str(tmp_path / f) for f in ("cornered", "bars1", "bars3")],
                         ("test.occluded.mse",))
    assert list(rows) == [  # the run's bar settings were never used; the evaluations' were
        "tested_occlude=tests.test_crosseval.corner tested_occlusion_width=unused",
        "tested_occlude=default tested_occlusion_width=1",
        "tested_occlude=default tested_occlusion_width=3"]
    info = json.loads((tmp_path / "bars3" / "config.json").read_text())
    assert "--parts" not in crosseval.again(tmp_path / "bars3", info)  # the bars need no parts


def test_an_evaluation_of_a_custom_model_needs_that_model() -> None:
    info = {"config": {}, "parts": {"model": "myparts.Wide(features=784)"}}
    with pytest.raises(ValueError, match=r"^r was trained with a custom model \(myparts.Wide\("
                                         r"features=784\)\); give --parts naming a Parts with "
                                         r"that model \(and the occlusion to test, if it is one "):
        report.check_parts(info, CORNER, Path("r"), occlusion=False)


def test_changes_keeps_only_what_differs_from_the_run() -> None:
    cfg = Config()
    assert crosseval.changes(cfg, {"occlusion_width": 1, "eval_seed": 3}, Parts()) == {
        "eval_seed": 3}
    got = crosseval.changes(cfg, {"occlusion_width": np.int64(3)}, Parts())  # JSON-ready
    assert got == {"occlusion_width": 3} and type(got["occlusion_width"]) is int
    with pytest.raises(ValueError, match="occlusion width must be an integer, got 3.5"):
        crosseval.changes(cfg, {"occlusion_width": 3.5}, Parts())
    with pytest.raises(ValueError, match="occlusion bars must be in 1..1000, got 0"):
        crosseval.changes(cfg, {"occlusion_bars": 0}, Parts())
    assert crosseval.changes(cfg, {}, Parts(occlude=corner)) == {}
    assert crosseval.changes(cfg, {"eval_seed": 3}, Parts(occlude=corner)) == {"eval_seed": 3}


def test_a_misspelled_field_is_unknown_not_one_that_needs_training() -> None:
    with pytest.raises(ValueError, match="unknown config field.s. occlusion_widht; did you mean "
                                         "occlusion_width"):
        crosseval.changes(Config(), {"occlusion_widht": 2}, Parts())


def test_an_out_folder_that_cannot_be_written_is_refused_before_the_scoring(
        runs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def scored(*args, **kwargs):
        raise AssertionError("scored before --out was found unwritable")

    locked = tmp_path / "locked"  # read-only for a user (root writes anywhere: os.access says so)
    locked.mkdir()
    monkeypatch.setattr(report.os, "access", lambda path, mode: Path(path) != locked)
    monkeypatch.setattr(report, "score", scored)
    for out in (locked, locked / "new"):  # an empty folder of its own, or one inside it to make
        with pytest.raises(ValueError, match=f"^{locked} is not writable \\(permission denied\\): "
                                             "give another --out$"):
            report.evaluate_into(runs[0], out, changes={"occlusion_width": 3})
    assert list(locked.iterdir()) == []
    (tmp_path / "file").write_text("")
    with pytest.raises(ValueError, match=f"^--out {tmp_path / 'file' / 'new'}: cannot create it "
                                         f"\\({tmp_path / 'file'} is a file\\)$"):
        report.evaluate_into(runs[0], tmp_path / "file" / "new", changes={"occlusion_width": 3})


def test_an_evaluation_changing_nothing_of_a_run_without_scores_says_so(
        runs, tmp_path: Path) -> None:
    copy = tmp_path / "run"
    shutil.copytree(runs[0], copy)
    (copy / "metrics.json").unlink()  # its evaluation did not finish: no scores to hold
    with pytest.raises(ValueError, match=f"^{copy} has no metrics.json \\(its evaluation did not "
                                         f"finish\\): evaluate.py --workdir {copy} scores it in "
                                         "place, on its own test occlusion$"):
        report.evaluate_into(copy, tmp_path / "same")
    assert not (tmp_path / "same").exists()


def test_an_evaluation_of_a_run_scored_on_another_test_set_is_new(tmp_path: Path) -> None:
    own = {"data": {"tested_sha256": "ab" * 8}}  # evaluate.py --workdir RUN --data-dir OTHER
    crosseval.check_news(tmp_path, own, {}, False, False)  # --out DIR: its own test set again
    with pytest.raises(ValueError, match="holds these scores already"):
        crosseval.check_news(tmp_path, {"data": {}}, {}, False, False)


def test_what_a_custom_occlusion_ignores_is_not_said_to_be_tested() -> None:
    config = json.loads(Config(occlusion_width=2).to_json())
    custom = {"config": config, crosseval.KEY: {"of": "/r", "changes": {"eval_seed": 3},
                                                "occlude": "mine.patch"}}
    assert crosseval.tested(custom) == {"occlude": "mine.patch", "eval_seed": 3,
                                        **{k: None for k in crosseval.TESTED[:-1]}}
    bars = {"config": config, crosseval.KEY: {"of": "/r", "changes": {"occlusion_width": 3}}}
    assert crosseval.tested(bars) == {"occlude": None, **{k: config[k] for k in crosseval.TESTED},
                                      "occlusion_width": 3}


def test_an_evaluation_of_a_run_deleted_since_is_not_stale(tmp_path: Path) -> None:
    info = {crosseval.KEY: {"of": str(tmp_path / "run"), "params_sha256": "ab" * 8}}
    assert crosseval.stale(info) is False  # compare.py still shows its scores
    (tmp_path / "run").mkdir()
    assert crosseval.stale(info) is False  # a run holding no parameters
    (tmp_path / "run" / crosseval.PARAMS).write_bytes(b"trained again")
    assert crosseval.stale(info) is True
