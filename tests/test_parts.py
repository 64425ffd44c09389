"""Custom parts (aejax.parts): a new occlusion, loss and model in training and evaluation."""

from __future__ import annotations

import dataclasses
import functools
import json
import sys
import types
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from aejax import checkpoint, compare, evaluate, experiment, loop, occlusion, parts, report, train
from aejax.config import Config
from aejax.parts import Parts

CFG = Config(batch_size=8, epochs=1)


def patch(key: jax.Array, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """A 3x3 square of 1.0 at a random position in each (flat, 28x28) image."""
    n = images.shape[0]
    corner = jax.random.randint(key, (n, 2), 0, 26)
    rows, cols = jnp.arange(28)[None, :, None], jnp.arange(28)[None, None, :]
    top, left = corner[:, 0, None, None], corner[:, 1, None, None]
    mask = (rows >= top) & (rows < top + 3) & (cols >= left) & (cols < left + 3)
    mask = mask.reshape(images.shape)
    return jnp.where(mask, 1.0, images), mask


def bce(pred: jax.Array, target: jax.Array) -> jax.Array:
    """Binary cross-entropy, clipped away from log(0)."""
    p = jnp.clip(pred, 1e-6, 1 - 1e-6)
    return -jnp.mean(target * jnp.log(p) + (1 - target) * jnp.log(1 - p))


class Tiny(nn.Module):
    """One hidden layer of 16: a model that is not the Autoencoder."""

    features: int = 784

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.sigmoid(nn.Dense(self.features)(nn.relu(nn.Dense(16)(x))))


def images_u8(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, 784), dtype=np.uint8)


def test_bars_are_the_configs_occlude_and_equal_configs_share_them() -> None:
    cfg = Config(occlusion_width=2, occlusion_orientation="random")
    clean = jnp.asarray(images_u8(6), jnp.float32) / 255
    got = parts.bars(cfg)(jax.random.key(3), clean)
    want = occlusion.occlude(jax.random.key(3), clean, return_mask=True, **cfg.occlusion_kwargs())
    for a, b in zip(got, want):
        np.testing.assert_array_equal(a, b)
    assert parts.bars(cfg) == parts.bars(Config(occlusion_width=2, occlusion_orientation="random"))
    assert hash(parts.bars(cfg)) == hash(parts.bars(Config(occlusion_width=2,
                                                           occlusion_orientation="random")))
    assert parts.bars(cfg) != parts.bars(Config())


def test_a_custom_occlusion_makes_the_training_inputs() -> None:
    clean = jnp.asarray(images_u8(8), jnp.float32) / 255
    key = jax.random.key(0)
    inputs, targets = train.make_pair(key, clean, "all", patch)
    occ_key, _ = jax.random.split(key)
    np.testing.assert_array_equal(inputs, patch(occ_key, clean)[0])
    np.testing.assert_array_equal(targets, clean)
    assert np.all((np.asarray(inputs) != np.asarray(clean)).sum(1) <= 9)


def test_mixed_picks_whole_images_for_unflattened_batches() -> None:
    clean = jnp.zeros((28, 28, 28))  # batch size equal to the image side
    inputs, _ = train.make_pair(jax.random.key(1), clean, "mixed", parts.bars(Config()))
    counts = np.asarray((inputs == 1).sum((1, 2)))
    assert set(counts.tolist()) <= {0, 28}  # a whole bar or none, never part of one
    assert 0 < np.count_nonzero(counts) < 28
    inputs, _ = train.make_pair(jax.random.key(1), jnp.zeros((8, 28, 28)), "mixed",
                                parts.bars(Config()))
    assert inputs.shape == (8, 28, 28)


def test_the_custom_loss_is_the_one_differentiated() -> None:
    model, tx = train.make_model(CFG), train.make_optimizer(CFG)
    state = train.create_state(jax.random.key(0), model, tx)
    batch = jnp.asarray(images_u8(8))
    step = train.make_train_step(CFG, model, tx, loss=bce)
    new, metrics = jax.jit(step)(state, batch, jax.random.key(1))
    x = batch.astype(jnp.float32) / 255
    assert float(metrics["loss"]) == pytest.approx(float(bce(model.apply({"params": state.params},
                                                                         x), x)), rel=1e-6)
    zero = train.make_train_step(CFG, model, tx, loss=lambda p, t: 0.0 * train.mse(p, t))
    unchanged, _ = zero(state, batch, jax.random.key(1))
    for a, b in zip(jax.tree.leaves(unchanged.params), jax.tree.leaves(state.params)):
        np.testing.assert_array_equal(a, b)  # zero gradients: Adam moves nothing


def test_fit_and_evaluate_take_a_custom_model_loss_and_occlusion() -> None:
    cfg = Config(batch_size=16, epochs=2, train_occlusion="all")
    x = images_u8(64)
    custom = Parts(model=Tiny(), loss=bce, occlude=patch)
    state, history = loop.fit(cfg, x, progress=False, parts=custom)
    assert set(state.params) == {"Dense_0", "Dense_1"}
    assert state.params["Dense_1"]["kernel"].shape == (784, 16)  # the inner layer, made second
    assert len(history["loss"]) == 8 and np.all(np.isfinite(history["loss"]))
    test, arrays = evaluate.evaluate(cfg, Tiny(), state.params, x[:20], np.arange(20) % 10,
                                     occlude=patch)
    expected = patch(evaluate.eval_key(cfg), evaluate.to_float(x[:20]))
    np.testing.assert_array_equal(arrays["mask"], expected[1])
    np.testing.assert_array_equal(arrays["occluded_input"], expected[0])
    assert test["occluded"]["mse"] > 0


def test_wrong_parts_are_refused_with_a_clear_error() -> None:
    clean = jnp.zeros((4, 784))
    with pytest.raises(ValueError, match=r"must return a tuple \(occluded, mask\); .* returned "
                                         r"one array shaped \(4, 784\) .*return_mask=True"):
        train.make_pair(jax.random.key(0), clean, "all", lambda k, x: x)
    with pytest.raises(ValueError, match=r"must return \(occluded, mask\) shaped like its images "
                                         r"\(4, 784\); .* returned \(\(4, 784\), \(4, 1\)\)"):
        train.make_pair(jax.random.key(0), clean, "all", lambda k, x: (x, x[:, :1] > 0))
    with pytest.raises(ValueError, match="mask must be boolean"):
        train.make_pair(jax.random.key(0), clean, "all", lambda k, x: (x, x))
    model, tx = train.make_model(CFG), train.make_optimizer(CFG)
    state = train.create_state(jax.random.key(0), model, tx)
    step = train.make_train_step(CFG, model, tx, loss=lambda p, t: jnp.square(p - t))
    with pytest.raises(ValueError,
                       match=r"a loss must return a scalar; .* returned shape \(8, 784\)"):
        step(state, jnp.asarray(images_u8(8)), jax.random.key(1))

    class NoFeatures(nn.Module):
        @nn.compact
        def __call__(self, x: jax.Array) -> jax.Array:
            return x

    with pytest.raises(ValueError, match="a model needs a positive integer 'features' attribute"):
        train.create_state(jax.random.key(0), NoFeatures(), tx)
    with pytest.raises(ValueError, match=r"^the model NoFeatures has no 'features' attribute "
                                         r"\(the pixels per image it takes\): give it a field "
                                         "features: int = 784$"):
        loop.fit(CFG, images_u8(16), progress=False, parts=Parts(model=NoFeatures()))
    with pytest.raises(ValueError, match=r"the model takes 100 pixels per image \(its 'features'\)"
                                         ", but the training images have 784"):
        loop.fit(CFG, images_u8(16), progress=False, parts=Parts(model=Tiny(features=100)))


class ListField(nn.Module):
    features: int = 784
    widths: list = dataclasses.field(default_factory=lambda: [64])

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.sigmoid(nn.Dense(self.features)(x))


def test_an_unhashable_part_is_refused_when_the_parts_are_made() -> None:
    with pytest.raises(parts.PartError, match=r"^the model tests.test_parts.ListField\(features="
                                              r"784, widths=\[64\]\) is not hashable: "
                                              r"parts are static arguments .* tuple fields"):
        Parts(model=ListField())
    assert Parts(model=ListField(widths=(64,))).model.widths == (64,)


def test_a_list_of_hidden_sizes_is_kept_as_a_hashable_tuple() -> None:
    model = train.Autoencoder(hidden=[64, 16])
    assert model.hidden == (64, 16) and hash(model) == hash(train.Autoencoder(hidden=(64, 16)))
    state = train.create_state(jax.random.key(0), model, train.make_optimizer(CFG))  # jit static
    assert state.params["dense_1"]["kernel"].shape == (64, 16)


def test_parts_are_named_by_module_qualname_and_fields() -> None:
    names = Parts(model=Tiny(features=100), loss=bce, occlude=patch).describe()
    assert names["model"] == f"{__name__}.Tiny(features=100)"
    assert names == {"model": names["model"], "loss": f"{__name__}.bce",
                     "occlude": f"{__name__}.patch"}
    assert Parts().describe() == {"model": None, "loss": None, "occlude": None}
    assert Parts(model=train.Autoencoder(hidden=[8])).describe()["model"] == (
        "aejax.model.Autoencoder(features=784, hidden=(8,), init_scheme='torch')")


class Scaled:
    """A callable object (not a dataclass) with a setting."""

    def __init__(self, value: float) -> None:
        self.value = value

    def __call__(self, key: jax.Array, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        return patch(key, images * self.value)

    def half(self, key: jax.Array, images: jax.Array) -> tuple[jax.Array, jax.Array]:
        return patch(key, images * 0.5)


class Activated(nn.Module):
    """A model with a function field."""

    act: Any = nn.sigmoid
    features: int = 784

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return self.act(nn.Dense(self.features)(x))


def test_names_hold_no_memory_address_and_tell_settings_apart() -> None:
    here = __name__
    assert parts.name(functools.partial(bce)) == f"functools.partial({here}.bce)"
    assert parts.name(functools.partial(patch, images=1)) == (
        f"functools.partial({here}.patch, images=1)")
    assert parts.name(Scaled(0.5)) == f"{here}.Scaled(value=0.5)"
    assert parts.name(Scaled(0.5).half) == f"{here}.Scaled(value=0.5).half"
    assert parts.name(Scaled(0.5)) != parts.name(Scaled(0.9))
    assert parts.name(Activated(act=functools.partial(nn.leaky_relu, negative_slope=0.1))) == (
        f"{here}.Activated(act=functools.partial({parts.name(nn.leaky_relu)}, "
        "negative_slope=0.1), features=784)")
    assert parts.name(nn.leaky_relu).endswith(".leaky_relu")
    for part in (functools.partial(patch), Scaled(1.0), Scaled(1.0).half, Activated()):
        assert " at 0x" not in parts.name(part)
    assert Parts(occlude=lambda k, x: patch(k, x), loss=bce).ambiguous() == ["occlude"]
    script_bce = types.FunctionType(bce.__code__, {"jnp": jnp}, "bce")
    script_bce.__module__ = "__main__"  # defined in the script that runs: every script's bce
    assert Parts(loss=script_bce, occlude=patch).ambiguous() == ["loss"]
    assert Parts(loss=functools.partial(script_bce)).ambiguous() == ["loss"]


@pytest.mark.parametrize("custom, where", [
    (Parts(loss=lambda p, t: bce(p, t)), "(define it with def at module level"),
    (Parts(model=Activated(act=nn.initializers.he_normal())),  # a closure: as kernel_init=
     "(define each function among its fields or arguments, flax's initializers too, with def"),
    (Parts(loss=functools.partial(lambda p, t: bce(p, t))), "(define each function among")])
def test_a_shared_name_warns_what_to_define_at_module_level(
        custom: Parts, where: str, tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "file").write_text("")  # a workdir refused just after the warning
    with caplog.at_level("WARNING", logger="aejax.experiment"), pytest.raises(ValueError):
        experiment.run(CFG, tmp_path / "file", progress=False, parts=custom)
    assert "a name that other parts share" in caplog.text and where in caplog.text


def untrained() -> tuple[nn.Module, dict]:
    """The config's model and its initial parameters."""
    model = train.make_model(CFG)
    return model, train.create_state(jax.random.key(0), model, train.make_optimizer(CFG)).params


def numpy_bars(key: jax.Array, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Runs eagerly (it reads the key's bits with numpy), but not under jit."""
    row = int(np.asarray(jax.random.key_data(key))[-1]) % 28
    mask = jnp.zeros((28, 28), bool).at[row].set(True).reshape(1, -1)
    mask = jnp.broadcast_to(mask, images.shape)
    return jnp.where(mask, 1.0, images), mask


def test_features_may_be_a_numpy_integer() -> None:
    state = train.create_state(jax.random.key(0), Tiny(features=np.int64(784)),
                               train.make_optimizer(CFG))
    assert state.params["Dense_0"]["kernel"].shape == (16, 784)


def test_a_run_records_its_parts_and_only_they_reevaluate_it(small_idx_dir: Path,
                                                                tmp_path: Path) -> None:
    cfg = Config(data_dir=str(small_idx_dir), data_root=str(tmp_path / "root"), epochs=1,
                 train_occlusion="all")
    experiment.run(cfg, tmp_path / "patch", progress=False, parts=Parts(occlude=patch))
    experiment.run(cfg, tmp_path / "bars", progress=False)
    info = json.loads((tmp_path / "patch" / "config.json").read_text())
    assert info["parts"] == {"model": None, "loss": None, "occlude": parts.name(patch)}
    assert info["unused_config"] == ["occlusion_width", "occlusion_value", "occlusion_low",
                                     "occlusion_high", "occlusion_orientation", "occlusion_bars"]
    assert Parts(model=Tiny(), loss=bce).unused() == ["hidden", "init_scheme"]
    assert Parts(loss=bce).unused() == []
    assert parts.name(patch).endswith("test_parts.patch")
    meta = checkpoint.latest_meta(tmp_path / "patch" / checkpoint.DIRNAME)
    assert meta["parts"] == info["parts"]
    with pytest.raises(ValueError, match=r"was trained with custom parts \(occlude=\S*test_parts"
                                         r"\.patch\); evaluate it with those parts: evaluate.py "
                                         r"--parts MODULE:NAME, or from Python report.evaluate_run"
                                         r"\(workdir, parts=Parts\(...\)\)$"):
        report.evaluate_run(tmp_path / "patch")
    with pytest.raises(ValueError, match=r"was trained with model=the default \(given \S*Tiny\("
                                         r"features=784\)\), occlude=\S*test_parts\.patch \(given "
                                         r"\S*test_parts\.numpy_bars\); pass the parts"):
        report.evaluate_run(tmp_path / "patch", parts=Parts(model=Tiny(), occlude=numpy_bars))
    before = json.loads((tmp_path / "patch" / "metrics.json").read_text())
    (tmp_path / "patch" / "metrics.json").unlink()  # as if its first evaluation had failed
    again, _ = report.evaluate_run(tmp_path / "patch", parts=Parts(occlude=patch, loss=bce))
    for c in ("occluded_input", "occluded"):  # the patches again, not the config's bars
        assert again["test"][c]["mse"] == pytest.approx(before["test"][c]["mse"], rel=1e-6)
    report.evaluate_run(tmp_path / "bars")  # the original's parts: evaluate.py can redo it
    tab = compare.table([str(tmp_path / "bars"), str(tmp_path / "patch")])
    assert set(tab) == {"occlude=default", f"occlude={parts.name(patch)}"}
    with pytest.raises(ValueError, match=r"it was trained with occlude=\S*test_parts.patch "
                                         r"\(now the default\)"):
        experiment.run(cfg, tmp_path / "patch", progress=False, resume=True)


PARTS_MODULE = '''
import jax.numpy as jnp
from aejax.parts import Parts

def l1(pred, target):
    return jnp.mean(jnp.abs(pred - target))

PARTS = Parts(loss=l1)
NOT_PARTS = 3

def brighter(key, images):  # leaves [0, 1]: refused before training, after config.json
    return images * 2 + 0.5, images > 0

BAD = Parts(occlude=brighter)
'''


@pytest.fixture
def parts_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """The current folder, holding the modules ``--parts`` imports below; sys.path and
    sys.modules are restored afterwards."""
    (tmp_path / "myparts_t.py").write_text(PARTS_MODULE)
    (tmp_path / "broken_t.py").write_text("1 / 0\n")
    (tmp_path / "needs_t.py").write_text("import nodep_x_t\n")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", [p for p in sys.path if p not in ("", str(tmp_path))])
    for name in ("myparts_t", "broken_t", "needs_t"):
        monkeypatch.delitem(sys.modules, name, raising=False)
    yield tmp_path
    for name in ("myparts_t", "broken_t", "needs_t"):
        sys.modules.pop(name, None)


@pytest.mark.parametrize("spec, message", [
    ("myparts_t", r"^--parts takes MODULE:NAME, a Parts object in a module you can import \(e.g. "
                  r"myparts:PARTS for PARTS = Parts\(...\) in ./myparts.py\), got 'myparts_t'$"),
    ("myparts_t:", "--parts takes MODULE:NAME"),
    ("nosuchmod_t:PARTS", r"^--parts nosuchmod_t:PARTS: no module named nosuchmod_t in the "
                          "current folder or on the module path$"),
    ("myparts_t:MISSING", r"^--parts myparts_t:MISSING: myparts_t \(.*myparts_t.py\) has no "
                          r"MISSING, not an "
                          r"aejax.parts.Parts \(define MISSING = Parts\(model=..., loss=..., "
                          r"occlude=...\) there\)$"),
    ("myparts_t:NOT_PARTS", r"myparts_t \(.*\) has NOT_PARTS of type int, not an aejax"),
    ("myparts_t.py:PARTS", r"^--parts myparts_t.py:PARTS: MODULE is a module name, not a file or "
                           r"path: --parts myparts_t:PARTS, run from the folder that holds "
                           r"myparts_t.py$"),
    ("/abs/sub/sp.py:PARTS", r"not a file or path: --parts sp:PARTS, run from the folder that "
                             r"holds sp.py$"),
    ("my-parts:PARTS", r"^--parts my-parts:PARTS: my-parts is not a module name Python can "
                       r"import \(.*\): rename the file$"),
    ("broken_t:PARTS", r"^--parts broken_t:PARTS: importing broken_t failed \(ZeroDivisionError: "
                       r"division by zero\)$"),
    ("needs_t:PARTS", r"importing needs_t failed \(No module named 'nodep_x_t'\)$"),
])
def test_load_refuses_what_is_not_a_parts_object_in_one_line(parts_folder: Path, spec: str,
                                                             message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parts.load(spec)


def test_train_resume_and_evaluate_scripts_take_parts_by_module_name(
        parts_folder: Path, small_idx_dir: Path, capsys: pytest.CaptureFixture) -> None:
    from tests.test_experiment import load_script

    run = parts_folder / "run"
    flags = ["--workdir", str(run), "--no-progress", "--no-compile-cache"]
    train_script, evaluate_script = load_script("train"), load_script("evaluate")
    assert train_script.main([*flags, "--data-dir", str(small_idx_dir), "--epochs", "1",
                              "--parts", "myparts_t:PARTS"]) == 0
    custom = parts.load("myparts_t:PARTS")
    info = json.loads((run / "config.json").read_text())
    assert info["parts"]["loss"] == "myparts_t.l1" == parts.name(custom.loss)
    assert info["parts_spec"] == custom.spec == "myparts_t:PARTS"  # as given: hints repeat it
    assert custom == dataclasses.replace(custom, spec=None)  # the spec is not compared
    capsys.readouterr()
    assert train_script.main([*flags, "--resume", "--epochs", "2"]) == 2  # without the parts
    assert ("it was trained with loss=myparts_t.l1 (now the default); resume it with the same "
            "parts (train.py's --parts myparts_t:PARTS,") in capsys.readouterr().err
    assert train_script.main([*flags, "--resume", "--epochs", "2",
                              "--parts", "myparts_t:PARTS"]) == 0
    assert json.loads((run / "metrics.json").read_text())["train"]["steps"] == 2 * 256 // 32
    cfg = Config.from_dict({**info["config"], "epochs": 3})  # from Python: no spec given
    experiment.run(cfg, run, progress=False, resume=True,
                   parts=dataclasses.replace(custom, spec=None))
    assert json.loads((run / "config.json").read_text())["parts_spec"] == "myparts_t:PARTS"  # kept
    assert evaluate_script.main(["--workdir", str(run), "--no-compile-cache",
                                 "--parts", "myparts_t:PARTS"]) == 0
    assert "occluded" in capsys.readouterr().out


def test_train_script_warns_about_flags_the_custom_parts_replace(
        parts_folder: Path, capsys: pytest.CaptureFixture, caplog) -> None:
    from tests.test_experiment import load_script

    flags = ["--data-dir", str(parts_folder / "nowhere"), "--no-progress", "--no-compile-cache",
             "--workdir", str(parts_folder / "run"), "--parts", "myparts_t:BAD"]
    assert load_script("train").main([*flags, "--occlusion-width", "3"]) == 2  # then no data
    assert "--occlusion-width changes nothing here: the custom parts replace" in caplog.text


def test_a_run_refused_before_it_saved_anything_leaves_no_folder(
        parts_folder: Path, small_idx_dir: Path, capsys: pytest.CaptureFixture) -> None:
    from tests.test_experiment import load_script

    flags = ["--data-dir", str(small_idx_dir), "--epochs", "1", "--no-progress",
             "--no-compile-cache", "--train-occlusion", "all", "--parts", "myparts_t:BAD"]
    assert load_script("train").main(flags) == 2  # the default runs/<...> folder
    assert "brighter returned values in [0.5, " in capsys.readouterr().err
    assert not (parts_folder / "runs").exists()
    bad = parts.load("myparts_t:BAD")
    cfg = Config(data_dir=str(small_idx_dir), epochs=1, train_occlusion="all")
    (parts_folder / "empty").mkdir()
    for workdir, left in (("new", False), ("empty", True)):
        with pytest.raises(parts.PartError, match=r"brighter returned values in \[0\.5, "):
            experiment.run(cfg, parts_folder / workdir, progress=False, parts=bad)
        assert (parts_folder / workdir).exists() == left  # as it was
    assert not any((parts_folder / "empty").iterdir())


class Dropping(nn.Module):
    features: int = 784

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.sigmoid(nn.Dropout(0.5, deterministic=False)(nn.Dense(self.features)(x)))


class Normed(nn.Module):
    features: int = 784

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return nn.sigmoid(nn.BatchNorm(use_running_average=False)(nn.Dense(self.features)(x)))


def int_bars(key: jax.Array, images: jax.Array) -> tuple[jax.Array, jax.Array]:
    occluded, mask = occlusion.occlude(key, images, return_mask=True)
    return (occluded * 255).astype(jnp.int32), mask


@pytest.mark.parametrize("custom,message", [
    (dict(loss="mse"), "the loss 'mse' is not a function: give the function itself"),
    (dict(occlude=3), "the occlude 3 is not a function"),
    (dict(loss=Parts(loss=bce)), r"the loss aejax\.parts\.Parts\(model=None, loss=\S*\.bce, "
                                  r"occlude=None, spec=None\) is not a function but parts: "
                                  r"give its \.loss$"),
    (dict(model=Tiny), r"the model \S*Tiny is a class: give an instance, Tiny\(\)"),
    (dict(model=bce), r"the model \S*bce is not a Flax Linen module"),
])
def test_parts_of_the_wrong_kind_are_refused_when_made(custom: dict, message: str) -> None:
    with pytest.raises(parts.PartError, match=message):
        Parts(**custom)


@pytest.mark.parametrize("custom,message", [
    (Parts(occlude=int_bars), r"an occlusion must return float images in \[0, 1\]; \S*int_bars "
                              "returned int32"),
    (Parts(loss=lambda p, t: jnp.sum(p > t)), r"a loss must return a float scalar .* returned "
                                              "int32"),
    (Parts(loss=lambda p, t: (jnp.mean(p - t), 0.0)), "a loss must return a scalar array; .* "
                                                      "returned a tuple"),
    (Parts(model=Dropping()), r"the model \S*Dropping\(features=784\) cannot run on its params "
                              r"alone \(.*\): models here are deterministic"),
    (Parts(model=Normed()), "the model Normed keeps batch_stats besides its params"),
])
def test_broken_contracts_are_one_error_before_training(custom: Parts, message: str) -> None:
    cfg = dataclasses.replace(CFG, epochs=1, train_occlusion="all")
    with pytest.raises(ValueError, match=message):
        loop.fit(cfg, images_u8(64), progress=False, parts=custom)


def test_entry_points_name_what_to_pass_for_parts() -> None:
    x = images_u8(16)
    with pytest.raises(parts.PartError, match=r"parts must be an aejax.parts.Parts, got \S*patch: "
                                              r"wrap them, e.g. Parts\(occlude=fn\)"):
        loop.fit(CFG, x, progress=False, parts=patch)
    with pytest.raises(parts.PartError, match="parts must be an aejax.parts.Parts, got"):
        report.check_parts({}, {"occlude": patch}, Path("run"))
    model, params = untrained()
    with pytest.raises(parts.PartError, match=r"occlude must be a function .* got \S*Parts\(.*\): "
                                              r"pass its .occlude"):
        evaluate.evaluate(CFG, model, params, x[:4], np.arange(4), occlude=Parts(occlude=patch))


def test_names_of_inner_functions_and_numpy_scalars() -> None:
    def inner_bce(pred: jax.Array, target: jax.Array) -> jax.Array:  # every call's is another
        return bce(pred, target)

    assert Parts(loss=inner_bce, occlude=patch).ambiguous() == ["loss"]
    here = __name__  # a NumPy scalar is named as the number, as a Python one is
    assert parts.name(Scaled(np.float32(0.5))) == parts.name(Scaled(0.5)) == (
        f"{here}.Scaled(value=0.5)")
    assert parts.name(functools.partial(patch, images=np.int64(1))) == (
        f"functools.partial({here}.patch, images=1)")


def test_array_arguments_are_named_by_their_values() -> None:
    here = __name__  # else partial(fn, p=jnp.float32(0.1)) and p=0.5 share one name
    assert parts.name(functools.partial(patch, images=jnp.float32(0.5))) == (
        f"functools.partial({here}.patch, images=0.5)")
    assert parts.name(functools.partial(patch, images=np.array([1, 2]))) == (
        f"functools.partial({here}.patch, images=array([1, 2], int64))")
    big = parts.name(functools.partial(patch, images=jnp.arange(20.0)))
    assert big.startswith(f"functools.partial({here}.patch, images=array(shape=(20,), float32, "
                          "sha256=")
    assert big != parts.name(functools.partial(patch, images=jnp.arange(1.0, 21.0)))
    assert parts.name(functools.partial(patch, images=jnp.float32(0.1))) != parts.name(
        functools.partial(patch, images=jnp.float32(0.2)))
    assert parts.name(functools.partial(patch, key=jax.random.key(3))) == (
        f"functools.partial({here}.patch, key=key(array([0, 3], uint32)))")
    assert " at 0x" not in parts.name(functools.partial(patch, images=np.array([object()])))
    traced: list[str] = []  # a partial made inside the user's jit: named, never made concrete
    jax.jit(lambda p: traced.append(parts.name(functools.partial(patch, images=p))) or p)(
        jnp.float32(0.5))
    assert traced[0].startswith(f"functools.partial({here}.patch, images=")
    assert "Tracer" in traced[0]


@pytest.mark.parametrize("spec", ["myparts_t:PARTS.occlude", "myparts_t:1PARTS"])
def test_load_refuses_a_name_that_is_not_an_identifier(parts_folder: Path, spec: str) -> None:
    with pytest.raises(ValueError, match=rf"^--parts takes MODULE:NAME, .* got '{spec}'$"):
        parts.load(spec)


def test_the_recorded_spec_of_a_damaged_config_json_is_none(tmp_path: Path) -> None:
    (tmp_path / "config.json").write_text('{"parts_spec": "mine:PARTS"}')
    assert parts.recorded_spec(tmp_path) == "mine:PARTS"
    (tmp_path / "config.json").write_text('{"parts_spec": ')  # a damaged file: no spec, no error
    assert parts.recorded_spec(tmp_path) is None and parts.spec_of(tmp_path) == "MODULE:NAME"
