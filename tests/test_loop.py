"""Tests for aejax.loop: fit's checks, exact resume, Ctrl-C and non-finite losses."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import re
import shutil
import signal
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest

from aejax import checkpoint, loop, losslog, parts, resumable, schedule, sigint, train
from aejax.config import Config
from tests.conftest import cpu, x64
from tests.test_train import CFG, flat_images


def test_batch_larger_than_training_set_is_refused() -> None:
    with pytest.raises(ValueError, match="between 1 and the training set size"):
        loop.fit(dataclasses.replace(CFG, batch_size=500), flat_images(100), progress=False)


@pytest.mark.parametrize("mesh", [1, "all", jax.devices()])
def test_a_device_count_or_list_as_the_mesh_is_one_error(mesh: object) -> None:
    with pytest.raises(ValueError, match=r"^mesh must be a jax.sharding.Mesh, e.g. "
                                         r"parallel.make_mesh\("):
        loop.fit(CFG, flat_images(64), progress=False, mesh=mesh)


@pytest.mark.parametrize("images,message", [
    (flat_images(64).astype(np.float32) / 255, "training images must be uint8 pixels 0..255 .* "
                                               "got dtype float32"),
    (flat_images(64).astype(np.int64), "must be uint8 .* got dtype int64"),
    (flat_images(64).reshape(64, 1, 28, 28), r"must be \(N, D\) or \(N, H, W\), got shape "
                                             r"\(64, 1, 28, 28\)"),
    (flat_images(64).reshape(64, 16, 49), "training images are 16x49; only square images"),
    (flat_images(64)[:0], r"there are no training images \(shape \(0, 784\)\)"),
])
def test_fit_refuses_images_that_are_not_uint8_pixels(images: np.ndarray, message: str) -> None:
    with pytest.raises(ValueError, match=message):  # [0, 1] floats would be divided by 255 again
        loop.fit(CFG, images, progress=False)


def test_fit_takes_square_images_as_their_flattened_rows() -> None:
    x = flat_images(64)
    cfg = dataclasses.replace(CFG, epochs=1)
    _, flat = loop.fit(cfg, x, progress=False)
    _, square = loop.fit(cfg, x.reshape(64, 28, 28), progress=False)
    np.testing.assert_array_equal(flat["loss"], square["loss"])


def test_fit_trains_with_x64_enabled() -> None:
    cfg = dataclasses.replace(CFG, epochs=2, train_occlusion="mixed")
    _, ref = loop.fit(cfg, flat_images(64), progress=False)
    with x64():  # int32 orders and bars, float32 draws and Adam scalars: the same
        _, wide = loop.fit(cfg, flat_images(64), progress=False)
    np.testing.assert_array_equal(wide["loss"], ref["loss"])


def test_the_custom_parts_range_check_draws_its_own_key(monkeypatch) -> None:
    seen = []
    monkeypatch.setattr(loop, "check_ranges", lambda *args: seen.append(args[-1]))
    cfg = dataclasses.replace(CFG, epochs=1)
    loop.fit(cfg, flat_images(64), progress=False, parts=parts.Parts(occlude=parts.bars(cfg)))
    want = train.root_keys(cfg.seed)["check"]
    assert len(seen) == 1
    np.testing.assert_array_equal(jax.random.key_data(seen[0]), jax.random.key_data(want))


def test_training_draws_its_noise_and_its_batch_order_from_keys_of_their_own(monkeypatch) -> None:
    seen, run_epochs = [], loop.run_epochs  # the Loop that trains: its keys
    monkeypatch.setattr(loop, "run_epochs",
                        lambda lp, *args: seen.append(lp) or run_epochs(lp, *args))
    cfg = dataclasses.replace(CFG, epochs=1)
    loop.fit(cfg, flat_images(64), progress=False)
    keys = {k: jax.random.key_data(v) for k, v in train.root_keys(cfg.seed).items()}
    np.testing.assert_array_equal(jax.random.key_data(seen[0].noise_key), keys["noise"])
    np.testing.assert_array_equal(jax.random.key_data(seen[0].orders.data_key), keys["data"])
    assert not np.array_equal(keys["noise"], keys["data"])  # one key per purpose


class Bar:
    """A stand-in for fit's tqdm bar that keeps its count (a disabled tqdm counts nothing)."""

    made: list[Bar] = []

    def __init__(self, total: int, initial: int, **kwargs: object) -> None:
        self.total, self.initial, self.n = total, initial, initial
        Bar.made.append(self)

    def update(self, n: int) -> None:
        self.n += n

    def set_postfix(self, **kwargs: object) -> None:
        pass

    def close(self) -> None:
        pass


RESUMED = dataclasses.replace(CFG, epochs=3, train_occlusion="mixed")  # on flat_images(640)


@pytest.fixture(scope="module")
def killed_mid_epoch(tmp_path_factory: pytest.TempPathFactory
                     ) -> tuple[Path, train.TrainState, dict]:
    """An uninterrupted run of RESUMED (no checkpoints) and a folder whose checkpoints stop at
    step 28, seven tenths into the first epoch: trained once for the module, resumed from
    copies."""
    x, folder = flat_images(640), tmp_path_factory.mktemp("killed") / "checkpoints"
    ref, ref_history = loop.fit(RESUMED, x, progress=False)
    one_epoch = dataclasses.replace(RESUMED, epochs=1)
    with contextlib.closing(checkpoint.Checkpointer(folder, every=5, keep=100)) as ckpt:
        loop.fit(one_epoch, x, progress=False, checkpoints=ckpt)
        ckpt.manager.wait_until_finished()
        # 4-step chunks (the uninterrupted run's are 10 steps long): the results do not depend on it
        assert ckpt.manager.all_steps() == [8, 12, 16, 20, 28, 32, 36, 40]
        for step in (32, 36, 40):  # as if killed after step 28
            ckpt.manager.delete(step)
    return folder, ref, ref_history


@pytest.mark.parametrize("every", [5, 0], ids=["same-chunks", "other-chunks"])
def test_resuming_from_a_mid_epoch_checkpoint_is_bit_identical(
        killed_mid_epoch: tuple[Path, train.TrainState, dict], tmp_path: Path, every: int,
        monkeypatch: pytest.MonkeyPatch) -> None:
    saved, ref, ref_history = killed_mid_epoch
    folder = shutil.copytree(saved, tmp_path / "checkpoints")
    # resumed with another interval (every=0: 10-step chunks), step 28 starts no chunk: the
    # epoch's rest begins with a 2-step chunk of its own
    with contextlib.closing(checkpoint.Checkpointer(folder, every=every, resume=True)) as ckpt:
        assert ckpt.latest()[1]["offset"] == 28
        monkeypatch.setattr(loop, "tqdm", Bar)
        state, history = loop.fit(RESUMED, flat_images(640), progress=False, checkpoints=ckpt)
    assert (Bar.made[-1].initial, Bar.made[-1].n, Bar.made[-1].total) == (28, 120, 120)
    for a, b in zip(jax.tree.leaves(state), jax.tree.leaves(ref), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
    np.testing.assert_array_equal(history["loss"], ref_history["loss"])


def test_a_resumed_runs_training_time_counts_its_earlier_sessions(
        killed_mid_epoch: tuple[Path, train.TrainState, dict], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    folder = shutil.copytree(killed_mid_epoch[0], tmp_path / "checkpoints")
    load_latest = checkpoint.Checkpointer.load_latest

    def earlier_hour(self, *args):  # the checkpoint says an hour was spent training before
        state, losses, _ = load_latest(self, *args)
        return state, losses, 3600.0

    monkeypatch.setattr(checkpoint.Checkpointer, "load_latest", earlier_hour)
    with contextlib.closing(checkpoint.Checkpointer(folder, resume=True)) as ckpt:
        _, history = loop.fit(dataclasses.replace(RESUMED, epochs=1), flat_images(640),
                              progress=False, checkpoints=ckpt)
    assert 3600.0 < history["train_seconds"] < 3600.0 + 600


@pytest.mark.parametrize("every,images,steps", [
    # 40-step epochs in 4-step chunks: the ends of those that cross 5, 10, ... and each epoch
    (5, 640, [8, 12, 16, 20, 28, 32, 36, 40, 48, 52, 56, 60, 68, 72, 76, 80]),
    # 10-step epochs in 2-step chunks: multiples of 4 of the run (12 and 16 in the second
    # epoch, not its own 4th and 8th steps, 14 and 18) and both epoch ends
    (4, 160, [4, 8, 10, 12, 16, 20])])
def test_checkpoint_intervals_count_steps_of_the_whole_run_not_of_the_epoch(
        tmp_path: Path, every: int, images: int, steps: list[int]) -> None:
    cfg = dataclasses.replace(CFG, epochs=2)
    with contextlib.closing(checkpoint.Checkpointer(tmp_path, every=every, keep=100)) as ckpt:
        loop.fit(cfg, flat_images(images), progress=False, checkpoints=ckpt)
        ckpt.manager.wait_until_finished()
        assert ckpt.manager.all_steps() == steps


def nan_gradient(pred: jax.Array, target: jax.Array) -> jax.Array:
    """The MSE, plus sqrt(0): its value is finite, its gradient (inf x 0) is NaN."""
    return jnp.mean(jnp.square(pred - target)) + jnp.sqrt(jnp.sum(pred) * 0.0)


def test_a_state_whose_parameters_are_not_finite_is_never_saved(tmp_path: Path) -> None:
    cfg = dataclasses.replace(CFG, epochs=1)
    with contextlib.closing(checkpoint.Checkpointer(tmp_path, keep=100)) as ckpt:
        with pytest.raises(losslog.NonFiniteLoss, match="^the parameters are not finite after "
                                                         "step 1; training stopped"):
            loop.fit(cfg, flat_images(CFG.batch_size), progress=False, checkpoints=ckpt,
                     parts=parts.Parts(loss=nan_gradient))  # a finite loss at step 0
        ckpt.manager.wait_until_finished()
        assert ckpt.manager.all_steps() == []


def test_a_ctrl_c_during_the_last_chunk_still_stops_with_the_saved_step(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class LateFlag(sigint.StopFlag):  # SIGINT after the last chunk's check, or in its save
        calls = 0

        def requested(self) -> bool:
            self.calls += 1
            return self.calls > len(schedule.chunk_plan(320 // CFG.batch_size)) * CFG.epochs

    monkeypatch.setattr(sigint, "stop_on_sigint", lambda: contextlib.nullcontext(LateFlag()))
    with contextlib.closing(checkpoint.Checkpointer(tmp_path / "ck")) as ckpt:
        with pytest.raises(sigint.Interrupted, match=r"interrupted after the last step: saved "
                           r"step 40 in .*ck; --workdir .* --resume evaluates it"):
            loop.fit(CFG, flat_images(), progress=False, checkpoints=ckpt)
        ckpt.manager.wait_until_finished()
        assert ckpt.manager.latest_step() == 40


def test_a_ctrl_c_mid_epoch_saves_and_stops_at_the_chunk_it_ends(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Pressed(sigint.StopFlag):  # SIGINT during the first chunk; saves only at epoch ends
        def requested(self) -> bool:
            return True

    monkeypatch.setattr(sigint, "stop_on_sigint", lambda: contextlib.nullcontext(Pressed()))
    first = schedule.chunk_plan(320 // CFG.batch_size)[0][1]  # not an epoch end (two chunks)
    with contextlib.closing(checkpoint.Checkpointer(tmp_path / "ck")) as ckpt:
        with pytest.raises(sigint.Interrupted, match=rf"^interrupted: saved step {first} in "):
            loop.fit(CFG, flat_images(), progress=False, checkpoints=ckpt)
        assert ckpt.manager.all_steps() == [first]


def test_a_ctrl_c_while_the_last_save_finishes_still_stops_with_the_saved_step(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    total, seen = (320 // CFG.batch_size) * CFG.epochs, {"last save": False, "sent": False}
    save, wait = checkpoint.Checkpointer.save, ocp.CheckpointManager.wait_until_finished

    def saving(self, state, **kwargs) -> None:
        save(self, state, **kwargs)
        seen["last save"] = len(kwargs["losses"]) == total

    def waiting(self) -> None:  # a real SIGINT while Orbax finishes the last save
        if seen["last save"] and not seen["sent"]:
            seen["sent"] = True
            os.kill(os.getpid(), signal.SIGINT)
        wait(self)

    def too_late(signum: int, frame: object) -> None:  # not KeyboardInterrupt: it ends pytest
        raise RuntimeError("the Ctrl-C came after the SIGINT guard")

    monkeypatch.setattr(checkpoint.Checkpointer, "save", saving)
    monkeypatch.setattr(ocp.CheckpointManager, "wait_until_finished", waiting)
    previous = signal.signal(signal.SIGINT, too_late)
    try:
        with contextlib.closing(checkpoint.Checkpointer(tmp_path / "ck")) as ckpt:
            with pytest.raises(sigint.Interrupted, match=r"interrupted after the last step: "
                               rf"saved step {total} in .*ck; --workdir .* --resume evaluates"):
                loop.fit(CFG, flat_images(), progress=False, checkpoints=ckpt)
                ckpt.manager.wait_until_finished()  # where experiment.run's close() waits
            assert ckpt.manager.latest_step() == total
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_ctrl_c_with_custom_parts_says_to_resume_with_the_same_parts(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    class Flag(sigint.StopFlag):  # SIGINT during the first chunk
        def requested(self) -> bool:
            return True

    monkeypatch.setattr(sigint, "stop_on_sigint", lambda: contextlib.nullcontext(Flag()))
    with contextlib.closing(checkpoint.Checkpointer(tmp_path / "ck")) as ckpt:
        with pytest.raises(sigint.Interrupted, match=(  # known here by name only
                rf"interrupted: saved step \d+ in .*ck; continue with --workdir {tmp_path} "
                r"--resume --parts MODULE:NAME with the same parts \(or resume=True and the same "
                r"Parts\(...\) from Python\)$")):
            loop.fit(CFG, flat_images(), progress=False, checkpoints=ckpt,
                     parts=parts.Parts(loss=l1))
    (tmp_path / "config.json").write_text('{"parts_spec": "mine:PARTS"}')  # as train.py records it
    assert resumable.resume_hint(tmp_path, {"loss": "tests.test_loop.l1"}) == (
        f"--workdir {tmp_path} --resume --parts mine:PARTS with the same parts (or resume=True "
        "and the same Parts(...) from Python)")


def l1(pred: jax.Array, target: jax.Array) -> jax.Array:
    return jnp.mean(jnp.abs(pred - target))


def log_gap(pred: jax.Array, target: jax.Array) -> jax.Array:
    """NaN from the first step on: the log of negative differences."""
    return jnp.mean(jnp.log(pred - target))


def test_a_non_finite_loss_at_step_0_does_not_blame_the_learning_rate() -> None:
    with pytest.raises(losslog.NonFiniteLoss, match=(
            r"the loss is nan at step 0 \(epoch 1\); training stopped; that loss comes before "
            r"any update, so the learning rate is not the cause: check the loss and the model on "
            r"these images$")):
        loop.fit(CFG, flat_images(), progress=False, parts=parts.Parts(loss=log_gap))


def first_non_finite_step(cfg: Config, x: np.ndarray) -> int | None:
    """The first step whose loss is NaN or inf, found with a plain Python loop of jitted steps."""
    keys = train.root_keys(cfg.seed)
    model, tx = train.make_model(cfg), train.make_optimizer(cfg)
    state = train.create_state(keys["init"], model, tx)
    step = jax.jit(train.make_train_step(cfg, model, tx))
    order = train.epoch_order(jax.random.fold_in(keys["data"], 0), len(x), cfg.batch_size)
    for i, idx in enumerate(np.asarray(order)):
        state, m = step(state, jnp.asarray(x[idx]), jax.random.fold_in(keys["noise"], state.step))
        if not np.isfinite(float(m["loss"])):
            return i
    return None


def test_a_non_finite_loss_stops_naming_the_step_and_keeps_the_last_good_checkpoint(
        tmp_path: Path) -> None:
    x = flat_images(320)
    with jax.default_device(cpu()):  # on an H100 all 20 steps stayed finite
        # Adam diverges within a few steps, from a learning rate that depends on XLA's version:
        # newer JAX's reaches NaN at step 5 with 1e8 (at step 1 from 4e8), JAX 0.6's (Python
        # 3.10's newest) stays finite up to 2e10 and reaches it at step 4 with 1e11
        for lr in (1e8, 1e11):
            cfg = dataclasses.replace(CFG, learning_rate=lr)
            bad = first_non_finite_step(cfg, x)
            if bad is not None:
                break
        assert bad is not None and bad >= 2
        fit_until_nan(cfg, x, bad, tmp_path)


def fit_until_nan(cfg: Config, x: np.ndarray, bad: int, tmp_path: Path) -> None:
    """``fit`` stops at step ``bad``, naming it, and keeps every checkpoint before it."""
    with contextlib.closing(checkpoint.Checkpointer(tmp_path, every=2, keep=100)) as ckpt:
        with pytest.raises(ValueError, match=(
                rf"the loss is nan at step {bad} \(epoch 1\); training stopped; the last good "
                rf"checkpoint \(step {bad // 2 * 2}\) is kept in .*; try a lower "
                rf"--learning-rate than {re.escape(str(cfg.learning_rate))}")):
            loop.fit(cfg, x, progress=False, checkpoints=ckpt)
        assert ckpt.manager.all_steps() == list(range(2, bad + 1, 2))
        state = ckpt.restore(bad // 2 * 2, train.create_state(
            jax.random.key(0), train.make_model(cfg), train.make_optimizer(cfg)))
    assert checkpoint.all_finite(state)


def untouched(key: jax.Array, clean: jax.Array) -> tuple[jax.Array, jax.Array]:
    """An occlusion that changes nothing."""
    return clean, jnp.zeros(clean.shape, bool)


def test_fit_trains_on_the_custom_occlusion_not_the_config_bars() -> None:
    cfg, x = dataclasses.replace(CFG, epochs=1, train_occlusion="none"), flat_images(64)
    _, clean = loop.fit(cfg, x, progress=False)
    _, custom = loop.fit(dataclasses.replace(cfg, train_occlusion="all"), x, progress=False,
                         parts=parts.Parts(occlude=untouched))  # every input "occluded"
    np.testing.assert_allclose(custom["loss"], clean["loss"], rtol=1e-6)


def test_a_sigterm_sent_again_while_the_stopping_save_is_written_leaves_it_be(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # the save of a SIGTERM was awaited in close(), after the guard: a second SIGTERM there,
    # of the default action, killed the run with that checkpoint half written and no line
    saves, seen = [], {"killed": False}
    save, wait = checkpoint.Checkpointer.save, ocp.CheckpointManager.wait_until_finished

    def saving(self, state, **kwargs) -> None:
        save(self, state, **kwargs)
        saves.append(len(kwargs["losses"]))
        if len(saves) == 1:  # the first epoch's save: SIGTERM, read at the next chunk end
            os.kill(os.getpid(), signal.SIGTERM)

    def waiting(self) -> None:  # SIGTERM again while Orbax writes the stopping save
        if len(saves) == 2 and not seen.get("sent"):
            seen["sent"] = True
            if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                seen["killed"] = True  # sent now, it would end pytest as well
            else:
                os.kill(os.getpid(), signal.SIGTERM)
        wait(self)

    monkeypatch.setattr(checkpoint.Checkpointer, "save", saving)
    monkeypatch.setattr(ocp.CheckpointManager, "wait_until_finished", waiting)
    assert signal.getsignal(signal.SIGTERM) is signal.SIG_DFL  # what training takes over
    with contextlib.closing(checkpoint.Checkpointer(tmp_path / "ck")) as ckpt:
        with pytest.raises(sigint.Interrupted, match=r"^terminated: saved step \d+ in .*ck; "):
            loop.fit(CFG, flat_images(), progress=False, checkpoints=ckpt)
    assert seen == {"sent": True, "killed": False}
    assert checkpoint.finished_steps(tmp_path / "ck")[-1] == saves[-1]
