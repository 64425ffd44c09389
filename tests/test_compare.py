"""Tests for aejax.compare: grouping and labelling runs from their config and metrics files."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from aejax import compare
from aejax.config import Config
from tests.test_experiment import load_script


def fake_run(folder: Path, mse: float, clean: float | None = None, train_size: int = 60000,
             occluded: str | None = None, trained: str | None = None, **config) -> str:
    """A run folder holding only config.json and metrics.json (with a clean MSE, the digest
    of its occluded test images and that of its training images if given)."""
    folder.mkdir(parents=True)
    cfg = json.loads(Config(**config).to_json())
    (folder / "config.json").write_text(json.dumps({"config": cfg}))
    test = {"occluded": {"mse": mse}, **({"clean": {"mse": clean}} if clean else {})}
    data = {"train_size": train_size, "test_size": 10000, "is_sample": train_size < 60000,
            **({"train_sha256": trained} if trained else {})}
    digest = {"test_occlusion_sha256": occluded} if occluded else {}
    (folder / "metrics.json").write_text(json.dumps({"test": test, "data": data, **digest,
                                                     "train": {"epoch_loss": [0.1, 0.05]}}))
    return str(folder)


def test_runs_differing_only_in_seed_form_one_row(tmp_path: Path) -> None:
    mses = {("none", 0): 0.017, ("none", 1): 0.016, ("none", 2): 0.019,
            ("mixed", 0): 0.009, ("mixed", 1): 0.0087}
    folders = [fake_run(tmp_path / f"{m}{s}", v, 0.008 if m == "none" else None,
                        train_occlusion=m, seed=s, data_dir=f"/data{s}")
               for (m, s), v in mses.items()]
    tab = compare.table(folders, ("test.occluded.mse", "test.clean.mse"))
    assert list(tab) == ["train_occlusion=none", "train_occlusion=mixed"]
    mean, std, n = tab["train_occlusion=none"]["test.occluded.mse"]
    assert (n, mean) == (3, np.mean([0.017, 0.016, 0.019]))
    assert std == np.std([0.017, 0.016, 0.019], ddof=1)
    assert tab["train_occlusion=none"]["test.clean.mse"] == (0.008, 0.0, 3)
    assert math.isnan(tab["train_occlusion=mixed"]["test.clean.mse"][0])  # absent: NaN
    text = compare.format_markdown(tab)
    assert "| train_occlusion=mixed | 0.00885 ± 0.00021 | nan ± nan | 2 |" in text


def test_two_runs_of_one_seed_never_count_as_two_seeds(tmp_path: Path) -> None:
    seeds = [fake_run(tmp_path / f"s{s}", 0.017 + s / 1000, seed=s) for s in range(2)]
    again = fake_run(tmp_path / "again", 0.0171, data_dir="/elsewhere")  # seed 0, other params
    with pytest.raises(ValueError, match=f"^{seeds[0]} and {again} are both seed 0 of one "
                                         "configuration: a row is the mean ± std over seeds, "
                                         "each counted once; give one of them .--by-run lists"):
        compare.table([*seeds, again], ("test.occluded.mse",))
    assert len(compare.table([*seeds, again], ("test.occluded.mse",), group=False)) == 3
    wider = fake_run(tmp_path / "wider", 0.03, occlusion_width=3)  # seed 0 of another row
    assert {k: v["test.occluded.mse"][2] for k, v in compare.table(
        [*seeds, wider], ("test.occluded.mse",)).items()} == {"occlusion_width=1": 2,
                                                               "occlusion_width=3": 1}


def test_runs_scored_on_other_corruptions_never_form_one_row(tmp_path: Path) -> None:
    same = [fake_run(tmp_path / f"s{s}", 0.017 + s / 1000, occluded="aa" * 8, seed=s)
            for s in range(2)]
    assert list(compare.table(same, ("test.occluded.mse",))) == ["all runs"]
    changed = fake_run(tmp_path / "changed", 0.026, occluded="bb" * 8, seed=2)  # same names
    tab = compare.table([*same, changed], ("test.occluded.mse",))
    assert {k: v["test.occluded.mse"][2] for k, v in tab.items()} == {
        "test_occlusion=aaaaaaaa": 2, "test_occlusion=bbbbbbbb": 1}
    wider = fake_run(tmp_path / "wider", 0.03, occluded="cc" * 8, occlusion_width=3)
    assert list(compare.table([same[0], wider], ("test.occluded.mse",))) == [
        "occlusion_width=1", "occlusion_width=3"]  # the config tells them apart already
    older = fake_run(tmp_path / "older", 0.018, seed=3)  # recorded no digest: unknown, not other
    assert list(compare.table([*same, older], ("test.occluded.mse",))) == ["all runs"]
    tab = compare.table([*same, changed, older], ("test.occluded.mse",))  # still kept apart
    assert {k: v["test.occluded.mse"][2] for k, v in tab.items()} == {
        "test_occlusion=aaaaaaaa": 2, "test_occlusion=bbbbbbbb": 1, "test_occlusion=unknown": 1}


def test_runs_trained_on_other_images_of_one_size_never_form_one_row(tmp_path: Path) -> None:
    same = [fake_run(tmp_path / f"s{s}", 0.017, occluded="aa" * 8, trained="11" * 8, seed=s,
                     data_dir=f"/mnist{s}") for s in range(2)]  # one data, in two folders
    assert list(compare.table(same, ("test.occluded.mse",))) == ["all runs"]
    other = fake_run(tmp_path / "other", 0.02, occluded="aa" * 8, trained="22" * 8, seed=2,
                     data_dir="/augmented")  # the same test set: only the digest tells
    tab = compare.table([*same, other], ("test.occluded.mse",))
    assert {k: v["test.occluded.mse"][2] for k, v in tab.items()} == {
        "train_images=11111111": 2, "train_images=22222222": 1}
    older = fake_run(tmp_path / "older", 0.018, occluded="aa" * 8, seed=3)  # recorded none
    assert list(compare.table([*same, older], ("test.occluded.mse",))) == ["all runs"]
    tab = compare.table([*same, other, older], ("test.occluded.mse",))
    assert list(tab) == ["train_images=11111111", "train_images=22222222",
                         "train_images=unknown"]
    wider = fake_run(tmp_path / "wider", 0.03, occluded="cc" * 8, trained="22" * 8,
                     occlusion_width=3)  # told apart by the config already
    assert list(compare.table([same[0], wider], ("test.occluded.mse",))) == [
        "occlusion_width=1", "occlusion_width=3"]
    older_wider = fake_run(tmp_path / "older_wider", 0.03, occluded="aa" * 8, seed=4,
                           occlusion_width=3)  # the config tells it apart, not the two others
    assert list(compare.table([same[0], other, older_wider], ("test.occluded.mse",))) == [
        "occlusion_width=1 train_images=11111111", "occlusion_width=1 train_images=22222222",
        "occlusion_width=3 train_images=unknown"]


def test_settings_replaced_by_custom_parts_make_no_row_of_their_own(tmp_path: Path) -> None:
    folders = [fake_run(tmp_path / f"h{h}", 0.01, hidden=(h, 50), seed=h) for h in (64, 128)]
    for folder in folders:  # a custom model: hidden was never used
        info = json.loads((Path(folder) / "config.json").read_text())
        info.update(parts={"model": "myparts.Wide(features=784)"},
                    unused_config=["hidden", "init_scheme"])
        (Path(folder) / "config.json").write_text(json.dumps(info))
    assert list(compare.table(folders, ("test.occluded.mse",))) == ["all runs"]
    assert list(compare.table(folders, ("test.occluded.mse",), group=False)) == [
        "seed=64", "seed=128"]


def test_labels_name_the_fields_that_differ() -> None:
    a, b = (json.loads(Config(seed=s, init_scheme=i).to_json())
            for s, i in ((0, "torch"), (1, "flax")))
    assert compare.labels([a, b], ["r0", "r1"], group=True) == ["init_scheme=torch",
                                                               "init_scheme=flax"]
    assert compare.labels([a, b], ["r0", "r1"], group=False) == [
        "init_scheme=torch seed=0", "init_scheme=flax seed=1"]
    assert compare.labels([a, a], ["r0", "r1"], group=False) == ["r0", "r1"]
    # two of three alike: by run, each keeps a row of its own (one label would average them)
    assert compare.labels([a, a, b], ["r0", "r1", "r2"], group=False) == ["r0", "r1", "r2"]
    assert compare.lookup({"a": {"b": 2}}, "a.b") == 2.0
    assert math.isnan(compare.lookup({"a": {"b": 2}}, "a.c"))


def test_a_seed_lacking_a_metric_makes_its_rows_mean_nan_and_one_run_shows_no_std(
        tmp_path: Path) -> None:
    folders = [fake_run(tmp_path / "a", 0.017, clean=0.008),
               fake_run(tmp_path / "b", 0.016, seed=1)]  # no clean MSE: not a mean of one seed
    tab = compare.table(folders, ("test.occluded.mse", "test.clean.mse"))
    assert math.isnan(tab["all runs"]["test.clean.mse"][0])
    assert tab["all runs"]["test.clean.mse"][2] == 2
    one = compare.format_markdown(compare.table(folders[:1], ("test.occluded.mse",)))
    assert one.splitlines()[-1] == "| all runs | 0.01700 | 1 |"  # no "± 0.00000" for one run


def test_a_metric_no_run_has_or_a_group_of_metrics_is_refused(tmp_path: Path) -> None:
    folders = [fake_run(tmp_path / "a", 0.017), fake_run(tmp_path / "b", 0.016, seed=1)]
    with pytest.raises(ValueError, match="no run has the metric.s. test.ocluded.mse: --keys"):
        compare.table(folders, ("test.occluded.mse", "test.ocluded.mse"))
    with pytest.raises(ValueError, match="test.occluded is not a number in metrics.json but "
                                         "holds mse; name one of them, e.g. test.occluded.mse"):
        compare.table(folders, ("test.occluded",))
    with pytest.raises(ValueError, match="^data is not a number in metrics.json but holds "
                                         "test_size, train_size; name one of them, e.g. "
                                         "data.test_size$"):  # not is_sample, a bool
        compare.table(folders, ("data",))
    with pytest.raises(ValueError, match="^test is not a number in metrics.json but holds "
                                         "occluded; name one of them, e.g. test.occluded.mse$"):
        compare.table(folders, ("test",))  # a number further down
    with pytest.raises(ValueError, match="^a is not a number in metrics.json and holds none; "
                                         "name a number, such as test.occluded.mse$"):
        compare.lookup({"a": {"folder": None, "sample": True, "b": {"loss": [0.1]}}}, "a")
    with pytest.raises(ValueError, match="train.epoch_loss is not a number in metrics.json but a "
                                         "list"):
        compare.table(folders, ("train.epoch_loss",))
    metrics = json.loads((tmp_path / "b" / "metrics.json").read_text())
    metrics["test"]["occluded"]["mse"] = "0.016"  # hand-edited
    (tmp_path / "b" / "metrics.json").write_text(json.dumps(metrics))
    with pytest.raises(ValueError, match=f"^{tmp_path / 'b'}/metrics.json: test.occluded.mse "
                                         "holds '0.016', not a number; it is damaged"):
        compare.table(folders, ("test.occluded.mse",))
    metrics["test"]["occluded"]["mse"] = None  # a NaN, as a strict JSON tool writes it
    (tmp_path / "b" / "metrics.json").write_text(json.dumps(metrics))
    by_run = compare.table(folders, ("test.occluded.mse",), group=False)
    assert by_run["seed=0"]["test.occluded.mse"][0] == 0.017
    assert math.isnan(by_run["seed=1"]["test.occluded.mse"][0])


def test_a_key_that_holds_text_by_design_is_not_called_damaged(tmp_path: Path) -> None:
    folders = [fake_run(tmp_path / f"s{s}", 0.017, occluded=f"{s}a" * 8, seed=s) for s in (0, 1)]
    for key, value in (("test_occlusion_sha256", "'0a0a0a0a0a0a0a0a'"),
                       ("data.is_sample", "False")):
        with pytest.raises(ValueError, match=f"^{key} is not a number in metrics.json but a "
                                             f"(str|bool) .{value}.; name a number, such as "
                                             "test.occluded.mse$"):
            compare.table(folders, ("test.occluded.mse", key))
    older = fake_run(tmp_path / "older", 0.017, seed=2)  # recorded no digest: still not damage
    with pytest.raises(ValueError, match="^test_occlusion_sha256 is not a number in metrics.json "
                                         "but a str"):
        compare.table([*folders, older], ("test.occluded.mse", "test_occlusion_sha256"))


def test_markdown_cells_keep_a_pipe_in_a_label_or_key() -> None:
    tab = {"runs/a|b": {"test.x|y": (0.5, 0.0, 1)}, "c\nd": {"test.x|y": (0.25, 0.0, 1)}}
    lines = compare.format_markdown(tab).splitlines()
    assert lines == [r"| run | test.x\|y | n |", "|---|---|---|", r"| runs/a\|b | 0.50000 | 1 |",
                     "| c d | 0.25000 | 1 |"]


def test_a_metric_that_every_run_holds_as_nan_is_shown_not_refused(tmp_path: Path) -> None:
    folders = [fake_run(tmp_path / f"s{s}", 0.017, seed=s) for s in range(2)]
    for folder in folders:  # an occlusion that covers every pixel: off_bar_mse is undefined
        saved = json.loads((Path(folder) / "metrics.json").read_text())
        saved["test"]["occluded"]["off_bar_mse"] = math.nan
        (Path(folder) / "metrics.json").write_text(json.dumps(saved))  # as NaN, valid for Python
    tab = compare.table(folders, ("test.occluded.mse", "test.occluded.off_bar_mse"))
    assert math.isnan(tab["all runs"]["test.occluded.off_bar_mse"][0])
    assert "| all runs | 0.01700 ± 0.00000 | nan ± nan | 2 |" in compare.format_markdown(tab)


def test_whole_number_columns_are_shown_without_decimals() -> None:
    tab = {"a": {"train.steps": (62.0, 0.0, 2), "data.train_size": (60000.0, 0.0, 2),
                 "test.occluded.mse": (0.017, 0.001, 2), "test.occluded.psnr": (62.0, 1.5, 2)},
           "b": {"train.steps": (124.0, 0.0, 1), "data.train_size": (math.nan, math.nan, 1),
                 "test.occluded.mse": (0.016, 0.0, 1), "test.occluded.psnr": (30.0, 0.0, 1)}}
    lines = compare.format_markdown(tab).splitlines()
    assert lines[2:] == ["| a | 62 ± 0 | 60000 ± 0 | 0.01700 ± 0.00100 | 62.00 ± 1.50 | 2 |",
                         "| b | 124 | nan | 0.01600 | 30.00 | 1 |"]


def test_negative_means_of_magnitude_one_or_more_get_two_decimals() -> None:
    tab = {"a": {"test.x": (-12.345678, 0.5, 2), "test.y": (-0.0123456, 0.001, 2)}}
    assert compare.format_markdown(tab).splitlines()[-1] == (
        "| a | -12.35 ± 0.50 | -0.01235 ± 0.00100 | 2 |")  # the digits go by size, not sign


def test_runs_by_run_are_named_by_folder_and_by_path_only_where_names_clash(
        tmp_path: Path) -> None:
    keys = ("test.occluded.mse",)
    apart = [fake_run(tmp_path / "x" / "a", 0.017), fake_run(tmp_path / "y" / "b", 0.016)]
    assert list(compare.table(apart, keys, group=False)) == ["a", "b"]
    clash = [fake_run(tmp_path / "x" / "r", 0.017), fake_run(tmp_path / "y" / "r", 0.016)]
    assert list(compare.table(clash, keys, group=False)) == clash


def test_runs_on_other_data_never_form_one_row_and_no_run_counts_twice(tmp_path: Path) -> None:
    full = fake_run(tmp_path / "full", 0.017)
    sample = fake_run(tmp_path / "sample", 0.020, train_size=4000, seed=1)
    tab = compare.table([full, sample], ("test.occluded.mse",))
    assert list(tab) == ["data=60000+10000 images", "data=4000+10000 images (sample)"]
    with pytest.raises(ValueError, match="is given twice: each run counts once"):
        compare.table([full, str(tmp_path / "." / "full")], ("test.occluded.mse",))
    same_name = fake_run(tmp_path / "b" / "full", 0.016)  # the same config: named by folder
    by_run = compare.table([full, same_name], ("test.occluded.mse",), group=False)
    assert list(by_run) == [full, same_name]  # folders of the same name, told apart by path


@pytest.mark.parametrize("name, field, value, says", [
    ("metrics.json", "data", [1], "data holds a JSON list, not the object"),
    ("metrics.json", "test_occlusion_sha256", 5, "test_occlusion_sha256 holds a JSON number, not "
                                                 "the string"),
    ("config.json", "parts", "myparts:PARTS", "parts holds a JSON string, not the object"),
    ("config.json", "unused_config", 5, "unused_config holds a JSON number, not the list"),
    ("config.json", "evaluation", {"of": 5}, "evaluation.of holds a JSON number, not the string"),
    ("config.json", "evaluation", {"of": "/x", "changes": []}, "evaluation.changes holds a JSON "
                                                               "list, not the object")])
def test_run_files_of_another_layout_are_refused_as_damaged(tmp_path: Path, name: str,
                                                            field: str, value, says: str) -> None:
    run = Path(fake_run(tmp_path / "run", 0.017, occluded="aa" * 8))
    tree = json.loads((run / name).read_text())
    (run / name).write_text(json.dumps({**tree, field: value}))  # valid JSON, edited by hand
    with pytest.raises(ValueError, match=f"^{run / name}: {says} a run writes; it is damaged: "
                                         "restore or delete it$"):
        compare.table([str(run)], ("test.occluded.mse",))


def compare_script(argv: list[str], capsys: pytest.CaptureFixture) -> tuple[int, list[str]]:
    """Run scripts/compare.py in-process: its exit code and stderr lines."""
    try:
        code = load_script("compare").main(argv)
    except SystemExit as exit_:  # argparse errors
        code = exit_.code
    return code, capsys.readouterr().err.strip().splitlines()


def test_a_folder_as_out_holds_compare_png(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    runs = [fake_run(tmp_path / "a", 0.017), fake_run(tmp_path / "b", 0.016, seed=1)]
    argv = [*runs, "--keys", "test.occluded.mse", "--out"]
    (tmp_path / "figs.v2").mkdir()  # a folder: its name's dot is no extension
    for out in (f"{tmp_path / 'figs.v2'}", f"{tmp_path / 'figs.v2'}/", f"{tmp_path}/"):
        assert compare_script([*argv, out], capsys) == (0, [])
    assert {p.name for p in tmp_path.rglob("*.png")} == {"compare.png"}
    assert {p.parent for p in tmp_path.rglob("*.png")} == {tmp_path, tmp_path / "figs.v2"}
    assert compare_script([*argv, f"{tmp_path / 'no'}/"], capsys) == (
        2, [f"compare.py: error: --out {tmp_path / 'no' / 'compare.png'}: its folder does not "
            "exist"])
    assert compare_script([*argv, ""], capsys) == (
        2, ["compare.py: error: --out is empty; give a file name such as compare.png, or a "
            "folder"])


def test_out_without_an_extension_gets_png_once(tmp_path: Path,
                                                capsys: pytest.CaptureFixture) -> None:
    runs = [fake_run(tmp_path / "a", 0.017), fake_run(tmp_path / "b", 0.016, seed=1)]
    for out in ("plain", "dot.", "c.svg"):
        argv = [*runs, "--keys", "test.occluded.mse", "--out", str(tmp_path / out)]
        assert compare_script(argv, capsys) == (0, [])
    assert {p.name for p in tmp_path.glob("*.*")} == {"plain.png", "dot.png", "c.svg"}


@pytest.mark.parametrize("keys", ["", " ", ",", " , ,"])
def test_keys_without_a_name_are_refused_up_front(keys: str, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture) -> None:
    code, err = compare_script([str(tmp_path / "not-read"), "--keys", keys], capsys)
    assert (code, err) == (2, ["compare.py: error: --keys needs at least one metric name, e.g. "
                               "test.occluded.mse"])


def test_an_empty_run_name_is_refused_not_read_as_the_current_folder(
        tmp_path: Path, capsys: pytest.CaptureFixture, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(fake_run(tmp_path / "a", 0.017))  # '' would compare this run with itself
    code, err = compare_script([str(tmp_path / "a"), ""], capsys)
    assert (code, err) == (2, ["compare.py: error: a RUN is empty; give the run folders that "
                               "train.py wrote"])


def test_keys_are_stripped_of_spaces_and_empty_names(tmp_path: Path,
                                                     capsys: pytest.CaptureFixture) -> None:
    runs = [fake_run(tmp_path / "a", 0.017, 0.008), fake_run(tmp_path / "b", 0.016, 0.009, seed=1)]
    argv = [*runs, "--keys", " test.occluded.mse, test.clean.mse,", "--out", str(tmp_path)]
    assert load_script("compare").main(argv) == 0
    assert "| run | test.occluded.mse | test.clean.mse | n |" in capsys.readouterr().out


def test_by_run_gives_each_run_a_row(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    runs = [fake_run(tmp_path / "a", 0.017), fake_run(tmp_path / "b", 0.016, seed=1)]
    argv = [*runs, "--keys", "test.occluded.mse", "--out", str(tmp_path)]
    assert load_script("compare").main(argv) == 0
    assert "| all runs | 0.01650 ± 0.00071 | 2 |" in capsys.readouterr().out
    assert load_script("compare").main([*argv, "--by-run"]) == 0
    rows = capsys.readouterr().out
    assert "| seed=0 | 0.01700 | 1 |" in rows and "| seed=1 | 0.01600 | 1 |" in rows


def test_one_string_for_the_runs_or_the_keys_or_no_run_is_refused(tmp_path: Path) -> None:
    run = fake_run(tmp_path / "a", 0.017)  # from Python: a str is iterable, char by char
    with pytest.raises(ValueError, match=r"workdirs must be a list of run folders, not one "
                                         r"string: give \[.*a'\]"):
        compare.table(run)
    with pytest.raises(ValueError, match=r"workdirs must be a list of run folders, not one "):
        compare.table(Path(run))
    with pytest.raises(ValueError, match=r"keys must be a sequence of metric names, not one "
                                         r"string: give \('test.clean.mse',\)"):
        compare.table([run], "test.clean.mse")
    with pytest.raises(ValueError, match="no run folder given: give at least one"):
        compare.table([])


@pytest.mark.parametrize("empty", [[], (), iter([]), (d for d in []), None, 0],
                         ids=["list", "tuple", "iterator", "generator", "None", "zero"])
def test_an_empty_iterable_of_runs_is_refused_as_no_run(empty) -> None:
    with pytest.raises(ValueError, match="^no run folder given: give at least one$"):
        compare.table(empty)  # a generator is true even when empty


@pytest.mark.parametrize("empty", [(), [], (k for k in []), None],
                         ids=["tuple", "list", "generator", "None"])
def test_no_metric_is_refused_not_a_table_without_columns(tmp_path: Path, empty) -> None:
    run = fake_run(tmp_path / "a", 0.017)  # rows without a metric: format_markdown refuses them
    with pytest.raises(ValueError, match=r"^no metric given: give at least one metrics.json key, "
                                         r"such as test.occluded.mse$"):
        compare.table([run], empty)


@pytest.mark.parametrize("tab, error, says", [
    ({}, ValueError, r"the table has no row: give \{label: \{key: \(mean, std, n\)\}\} for at "
                     r"least one run, as compare.table returns it"),
    ([], TypeError, r"the table must be \{label: \{key: \(mean, std, n\)\}\}, as compare.table "
                    r"returns it, not a list"),
    (None, TypeError, r"the table must be .*, not a NoneType"),
    ({"a": np.zeros(3)}, TypeError, r"row 'a' of the table is a ndarray, not \{key: "),
    ({"a": 1}, TypeError, r"row 'a' of the table is a int, not \{key: \(mean, std, n\)\}; give "
                          r"\{label: \{key: \(mean, std, n\)\}\}, as compare.table returns it"),
    ({"a": {}}, TypeError, r"row 'a' of the table is empty, not \{key: \(mean, std, n\)\}; give"),
    ({"a": {"k": (1.0, 0.0, 1)}, "b": {"j": (1.0, 0.0, 1)}}, TypeError,
     r"row 'b' of the table has the keys j, not those of the first row \(k\); give"),
    ({"a": {"k": 1}}, TypeError, r"row 'a' of the table holds 1 for k, not \(mean, std, n\); "),
    ({"a": {"k": ("x", 0.0, 1)}}, TypeError, r"row 'a' of the table holds \('x', 0.0, 1\) for k, "
                                             r"not \(mean, std, n\); give"),
    ({"a": {"k": (np.zeros((40, 40)), 0.0, 1)}}, TypeError, r"row 'a' of the table holds \(.*\) "
                                                            r"for k, not \(mean, std, n\); give")],
    ids=["empty", "list", "None", "array row", "int row", "empty row", "other keys", "int cell",
         "str in cell", "array in cell"])
def test_format_markdown_of_anything_but_a_table_says_what_it_was_given(
        tab, error, says: str) -> None:
    with pytest.raises(error, match=f"^{says}") as raised:
        compare.format_markdown(tab)
    assert "\n" not in str(raised.value)  # one line, as the other errors of compare
