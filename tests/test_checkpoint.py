"""Tests for aejax.checkpoint: a restored state equals the saved one byte for byte, only the last
K are kept, a half-written checkpoint is ignored, and every refusal to resume says why."""

from __future__ import annotations

import contextlib
import dataclasses
import errno
import logging
import os
import signal
import threading
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from etils import epath

from aejax import checkpoint, resumable, train
from aejax.config import Config
from tests.conftest import synthetic_digits

CFG = Config(epochs=2, batch_size=16)
STEPS = 10  # steps per epoch of the fake runs below


def fresh_state(seed: int = 0) -> train.TrainState:
    """A train state at step 0 for CFG."""
    return train.create_state(jax.random.key(seed), train.make_model(CFG),
                              train.make_optimizer(CFG))


def trained_state(step: int) -> train.TrainState:
    """A state whose leaves all differ from a fresh one's (so a restore cannot pass by luck)."""
    state = fresh_state(seed=1)

    def changed(x: jax.Array) -> jax.Array:  # Adam's zero moments and count become non-zero too
        return (x * 1.5 + 0.25 + step).astype(x.dtype)

    return state.replace(step=state.step + step, params=jax.tree.map(changed, state.params),
                         opt_state=jax.tree.map(changed, state.opt_state))


def save(ckpt: checkpoint.Checkpointer, state: train.TrainState, data: dict) -> np.ndarray:
    """Save ``state`` with one fake loss per step; return those losses."""
    losses = np.linspace(0.5, 0.1, int(state.step), dtype=np.float32)
    ckpt.save(state, cfg=CFG, data=data, steps=STEPS, losses=losses, seconds=1.5)
    return losses


def assert_same_tree(a: object, b: object) -> None:
    """Every leaf equal, bit for bit, with the same dtype."""
    for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b), strict=True):
        assert np.asarray(x).dtype == np.asarray(y).dtype
        np.testing.assert_array_equal(np.asarray(x), np.asarray(y))


def test_restore_is_bit_identical_and_only_the_last_k_are_kept(tmp_path: Path) -> None:
    data = resumable.fingerprint(synthetic_digits(40, 0)[0])
    with contextlib.closing(checkpoint.Checkpointer(tmp_path / "ck", keep=2)) as ckpt:
        for step in (3, 7, 12):
            losses = save(ckpt, trained_state(step), data)
    with contextlib.closing(checkpoint.Checkpointer(tmp_path / "ck", resume=True)) as ckpt:
        assert ckpt.manager.all_steps() == [7, 12]
        state, got_losses, seconds = ckpt.load_latest(fresh_state(), CFG, data, STEPS)
        step, meta = ckpt.latest()
    assert_same_tree(state, trained_state(12))
    assert int(state.step) == 12 and isinstance(state, train.TrainState)
    np.testing.assert_array_equal(got_losses, losses)
    assert got_losses.dtype == np.float32  # as the losses a resumed run appends to them
    assert seconds == 1.5
    assert (step, meta["epoch"], meta["offset"]) == (12, 1, 2)
    assert Config.from_dict(meta["config"]) == CFG


def test_a_save_at_an_epochs_end_records_the_next_epoch_at_offset_0(tmp_path: Path) -> None:
    data = resumable.fingerprint(synthetic_digits(40, 0)[0])
    with contextlib.closing(checkpoint.Checkpointer(tmp_path / "ck")) as ckpt:
        save(ckpt, trained_state(STEPS), data)
    meta = checkpoint.latest_meta(tmp_path / "ck")
    assert (meta["step"], meta["epoch"], meta["offset"]) == (STEPS, 1, 0)


def test_finished_steps_are_in_numeric_order_without_unfinished_ones(tmp_path: Path) -> None:
    unfinished = "11" + checkpoint.TMP_SUFFIX + "-1234"
    for name in ("100", "9", "10", unfinished, "notes", "²"):  # "²".isdigit(), not int()'s
        (tmp_path / name).mkdir()
    (tmp_path / "12").write_text("a file, not a checkpoint")
    assert checkpoint.finished_steps(tmp_path) == [9, 10, 100]  # the last is the newest
    assert checkpoint.finished_steps(tmp_path / "absent") == []


def test_a_state_of_other_shapes_is_refused_by_name_not_called_damaged(tmp_path: Path) -> None:
    data = resumable.fingerprint(synthetic_digits(40, 0)[0])
    with contextlib.closing(checkpoint.Checkpointer(tmp_path / "ck")) as ckpt:
        save(ckpt, trained_state(3), data)
    wider = train.create_state(jax.random.key(0),  # a custom model's code changed
                               train.make_model(dataclasses.replace(CFG, hidden=(256, 50))),
                               train.make_optimizer(CFG))
    with contextlib.closing(checkpoint.Checkpointer(tmp_path / "ck", resume=True)) as ckpt:
        with pytest.raises(ValueError, match=r"^checkpoint .*ck/3 holds other arrays than the "
                                             r"model builds \(params/dense_0/bias: \(128,\) "
                                             r"saved, \(256,\) now; .* and \d+ more\): the "
                                             r"model's code has changed"):
            ckpt.restore(3, wider)
        assert_same_tree(ckpt.restore(3, fresh_state()), trained_state(3))  # nothing deleted


def test_a_half_written_checkpoint_is_ignored(tmp_path: Path) -> None:
    data = resumable.fingerprint(synthetic_digits(40, 0)[0])
    with contextlib.closing(checkpoint.Checkpointer(tmp_path / "ck")) as ckpt:
        save(ckpt, trained_state(5), data)
    partial = tmp_path / "ck" / "9.orbax-checkpoint-tmp-1234567"  # what a kill mid-write leaves
    (partial / "state").mkdir(parents=True)
    (partial / "state" / "garbage").write_bytes(b"\x00" * 10)
    assert checkpoint.latest_meta(tmp_path / "ck")["step"] == 5
    assert partial.exists()  # a reader leaves it: it may be a live run's save in progress
    with contextlib.closing(checkpoint.Checkpointer(tmp_path / "ck", resume=True)) as ckpt:
        assert not partial.exists()  # the Checkpointer that trains removes it first
        state, _, _ = ckpt.load_latest(fresh_state(), CFG, data, STEPS)
    assert_same_tree(state, trained_state(5))
    partial.mkdir()
    checkpoint.Checkpointer(tmp_path / "ck").close()  # a new run's (no --resume) removes it too
    assert not partial.exists()


def test_resume_is_refused_with_another_model_or_other_data(tmp_path: Path) -> None:
    data = resumable.fingerprint(synthetic_digits(40, 0)[0])
    with contextlib.closing(checkpoint.Checkpointer(tmp_path / "ck")) as ckpt:
        save(ckpt, trained_state(5), data)
        wider = dataclasses.replace(CFG, hidden=(64,), learning_rate=0.1)
        with pytest.raises(ValueError, match=r"cannot resume from .*ck: it was trained with "
                           r"hidden=\[128, 50\] \(now \[64\]\), learning_rate=0\.001 \(now 0\.1\); "
                           r"leave those flags out"):
            ckpt.load_latest(fresh_state(), wider, data, STEPS)
        other = resumable.fingerprint(synthetic_digits(40, 1)[0])
        with pytest.raises(ValueError, match=r"trained on other training images \(40 images, "
                           r"sha256 [0-9a-f]{12}\) than these \(40 images"):
            ckpt.load_latest(fresh_state(), CFG, other, STEPS)
        with pytest.raises(ValueError, match=r"checkpoint is at step 5 \(2 epochs and 1 step "
                           r"trained\), past the --epochs 2 asked for; raise --epochs"):
            ckpt.load_latest(fresh_state(), CFG, data, steps=2)
    moved = dataclasses.replace(CFG, data_dir="/elsewhere", data_root="/x", epochs=9)
    resumable.check_config(checkpoint.latest_meta(tmp_path / "ck")["config"], moved, "ck")


def test_a_checkpoint_whose_meta_is_not_trains_is_called_damaged(tmp_path: Path) -> None:
    with contextlib.closing(checkpoint.Checkpointer(tmp_path / "ck")) as ckpt:
        ckpt.manager.save(4, args=ocp.args.Composite(state=ocp.args.StandardSave(fresh_state()),
                                                     meta=ocp.args.JsonSave({"step": 4})))
    with pytest.raises(ValueError, match=r"checkpoint .*ck/4 is damaged \(ValueError: its meta "
                                         r"item is not the one train\.py writes\); no checkpoint "
                                         r"before it is left"):
        checkpoint.latest_meta(tmp_path / "ck")


def test_a_damaged_checkpoint_names_the_newest_one_before_it_and_cuts_the_detail(
        tmp_path: Path) -> None:
    data = resumable.fingerprint(synthetic_digits(40, 0)[0])
    with contextlib.closing(checkpoint.Checkpointer(tmp_path / "ck")) as ckpt:
        for step in (3, 7, 12):
            save(ckpt, trained_state(step), data)
        detail = "word " * 60 + "See full TensorStore details: {...}"
        with pytest.raises(ValueError, match=(
                rf"^checkpoint {tmp_path / 'ck' / '12'} is damaged \(ValueError: (word ){{39}}"
                r"word \.\.\.\); delete that folder to resume from the checkpoint before it "
                r"\(step 7\), or start again$")):
            with ckpt.damaged(12):
                raise ValueError(detail)


def test_a_checkpoint_whose_array_metadata_is_damaged_is_called_damaged(tmp_path: Path) -> None:
    with contextlib.closing(checkpoint.Checkpointer(tmp_path / "ck")) as ckpt:
        save(ckpt, trained_state(3), {})
    (tmp_path / "ck" / "3" / "state" / "_METADATA").write_text("{damaged")
    with contextlib.closing(checkpoint.Checkpointer(tmp_path / "ck", resume=True)) as ckpt:
        with pytest.raises(ValueError, match=r"^checkpoint .*ck/3 is damaged \(JSONDecodeError: "
                                             r".*\); no checkpoint before it is left"):
            ckpt.restore(3, fresh_state())


def test_no_checkpoint_is_an_error_that_says_so(tmp_path: Path) -> None:
    message = (r"--resume: no checkpoint in .*empty \(the run stopped before its first one\); "
               r"start it again without --resume: a run that saved nothing starts over in place")
    with pytest.raises(ValueError, match=message):
        checkpoint.latest_meta(tmp_path / "empty")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match=message):
        checkpoint.latest_meta(tmp_path / "empty")
    with contextlib.closing(checkpoint.Checkpointer(tmp_path / "empty", resume=True)) as ckpt:
        with pytest.raises(ValueError, match=message):
            ckpt.load_latest(fresh_state(), CFG, {}, STEPS)
        assert ckpt.kept() == "no checkpoint was saved before it"


@pytest.mark.parametrize("every,keep,message", [
    (-1, 3, r"--checkpoint-every must be >= 0 \(0: at epoch ends only\), got -1"),
    (0, 0, "--keep must be >= 1, got 0"),
    (4.0, 3, r"--checkpoint-every must be an integer, got 4.0"),  # from Python: 1e3 is a float
    (True, 3, r"--checkpoint-every must be an integer, got True"),
    (0, 1.5, r"--keep must be an integer, got 1.5"),
    (0, "2", r"--keep must be an integer, got '2'")])
def test_bad_interval_or_keep_is_refused(tmp_path: Path, every: int, keep: int,
                                         message: str) -> None:
    with pytest.raises(ValueError, match=message):
        checkpoint.Checkpointer(tmp_path / "ck", every=every, keep=keep)


def test_due_when_a_chunk_crosses_a_multiple_of_the_interval(tmp_path: Path) -> None:
    with contextlib.closing(checkpoint.Checkpointer(tmp_path / "ck", every=5)) as ckpt:
        assert [ckpt.due(a, a + 2) for a in range(0, 10, 2)] == [False, False, True, False, True]
        assert ckpt.due(3, 5) and not ckpt.due(5, 9)
    with contextlib.closing(checkpoint.Checkpointer(tmp_path / "ck2")) as ckpt:
        assert not any(ckpt.due(a, a + 3) for a in range(20))


def test_all_finite() -> None:
    assert checkpoint.all_finite({"a": np.ones(3), "b": [np.zeros((2, 2))]})
    assert not checkpoint.all_finite({"a": np.ones(3), "b": [np.array([0.0, np.nan])]})
    assert not checkpoint.all_finite([np.array([np.inf])])


def full_disk_at(step: int, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Make the meta item of checkpoint ``step`` fail to write, as on a full disk."""
    real = type(epath.Path(tmp_path)).write_text

    def write_text(self, *args, **kwargs):
        if self.parent.name.startswith("meta") and self.parent.parent.name.startswith(f"{step}."):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(self))
        return real(self, *args, **kwargs)

    monkeypatch.setattr(type(epath.Path(tmp_path)), "write_text", write_text)


def test_a_save_that_fails_in_the_background_is_one_error_naming_the_checkpoint_kept(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture) -> None:
    data = resumable.fingerprint(synthetic_digits(40, 0)[0])
    full_disk_at(7, tmp_path, monkeypatch)  # step 7's meta item, in Orbax's thread
    caplog.set_level(logging.INFO)
    ckpt = checkpoint.Checkpointer(tmp_path / "run" / "checkpoints")
    save(ckpt, trained_state(2), data)
    save(ckpt, trained_state(3), data)
    assert ckpt.kept() == (f"the last good checkpoint (step 3) is kept in "
                           f"{tmp_path / 'run' / 'checkpoints'}")
    save(ckpt, trained_state(7), data)  # returns at once: the error comes at the next wait
    with pytest.raises(ValueError, match=(
            rf"^could not save a checkpoint in {tmp_path / 'run' / 'checkpoints'} \(No space left "
            rf"on device: .*/7\.orbax-checkpoint-tmp/meta.*\); the last good checkpoint \(step 3\) "
            rf"is kept: free some space \(or fix the folder's permissions\), then --workdir "
            rf"{tmp_path / 'run'} --resume continues from it$")):
        ckpt.wait()
    assert not [t for t in threading.enumerate()  # its threads ended: none outlives the process's
                if type(t).__module__.startswith("orbax.")]  # end and reports the shutdown
    ckpt.close()
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]  # no Orbax tracebacks
    monkeypatch.undo()
    step, meta = checkpoint.Checkpointer(tmp_path / "run" / "checkpoints").latest()
    assert step == 3 and len(meta["loss"]) == 3  # what was saved before stays usable


@pytest.mark.parametrize("during", ["save", "close", "wait"])
def test_a_ctrl_c_during_a_save_or_its_wait_lets_the_save_finish(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, during: str) -> None:
    # cut short by a KeyboardInterrupt, Orbax's save threads printed tracebacks at exit or hung it
    patched = "save" if during == "save" else "wait_until_finished"
    original, returned = getattr(ocp.CheckpointManager, patched), []

    def interrupted(self, *args, **kwargs):
        os.kill(os.getpid(), signal.SIGINT)  # a Ctrl-C in the middle of Orbax's call
        result = original(self, *args, **kwargs)
        returned.append(True)
        return result

    data = resumable.fingerprint(synthetic_digits(40, 0)[0])
    ckpt = checkpoint.Checkpointer(tmp_path / "ck")
    if during != "save":
        save(ckpt, trained_state(3), data)
    closed, close = [], ocp.CheckpointManager.close
    monkeypatch.setattr(ocp.CheckpointManager, patched, interrupted)
    monkeypatch.setattr(ocp.CheckpointManager, "close",
                        lambda self: (closed.append(True), close(self))[1])
    with pytest.raises(KeyboardInterrupt):  # wait: as loop.run_epochs calls it, without close
        save(ckpt, trained_state(3), data) if during == "save" else getattr(ckpt, during)()
    assert returned  # Orbax's call ran to its end before the Ctrl-C acted
    if during == "close":  # the manager closed (its threads joined) before the Ctrl-C acted
        assert closed == [True]
    monkeypatch.undo()
    ckpt.close()
    assert checkpoint.finished_steps(tmp_path / "ck") == [3]  # written whole


@pytest.mark.parametrize("then", ["save", "wait", "kept", "close"])
def test_a_failed_save_is_one_error_at_whichever_call_meets_it_next(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, then: str) -> None:
    # the next save, wait, kept() and close each meet it: each says it in our one line, and
    # kept() does not name the failed checkpoint as kept
    full_disk_at(3, tmp_path, monkeypatch)
    ckpt = checkpoint.Checkpointer(tmp_path / "run" / "checkpoints")
    custom = {"model": "mymodels:wide", "loss": None, "occlude": None}
    for step in (2, 3):  # a run with a custom model: its resume names --parts too
        ckpt.save(trained_state(step), cfg=CFG, data={}, steps=STEPS, parts=custom,
                  losses=np.zeros(step, np.float32), seconds=0.0)
    with pytest.raises(ValueError, match=(
            rf"^could not save a checkpoint in {tmp_path / 'run' / 'checkpoints'} \(No space left "
            r"on device: .*\); the last good checkpoint \(step 2\) is kept: free some space \(or "
            rf"fix the folder's permissions\), then --workdir {tmp_path / 'run'} --resume --parts "
            r".* with the same parts \(or resume=True .*\) continues from it$")):
        if then == "save":
            ckpt.save(trained_state(4), cfg=CFG, data={}, steps=STEPS, parts=custom,
                      losses=np.zeros(4, np.float32), seconds=0.0)
        else:
            getattr(ckpt, then)()
    if then != "close":
        ckpt.close()


def test_a_first_save_that_fails_says_nothing_is_kept(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    full_disk_at(2, tmp_path, monkeypatch)
    ckpt = checkpoint.Checkpointer(tmp_path / "run" / "checkpoints")
    save(ckpt, trained_state(2), {})
    with pytest.raises(ValueError, match=r"\(No space left on device: .*\); no checkpoint was "
                                         r"saved before it: free some space \(or fix the "
                                         r"folder's permissions\), then start the run again$"):
        ckpt.wait()
    ckpt.close()
    assert checkpoint.finished_steps(tmp_path / "run" / "checkpoints") == []


def test_failed_save_takes_tensorstores_write_errors_and_passes_on_others(tmp_path: Path) -> None:
    full = ('RESOURCE_EXHAUSTED: Error writing local file "/r/checkpoints/4.orbax-checkpoint-tmp/'
            'state/_sharding": Failed to write 83 bytes: No space left on device '
            "[os_error_code='28']")  # a full disk, as TensorStore raises it
    with contextlib.closing(checkpoint.Checkpointer(tmp_path / "ck")) as ckpt:
        with pytest.raises(ValueError, match=rf"^could not save a checkpoint in {tmp_path / 'ck'} "
                                             r"\(No space left on device\); no checkpoint was"):
            with ckpt.failed_save():
                raise ValueError(full)
        with pytest.raises(ValueError, match="^a bug of ours$"):  # not 'could not save'
            with ckpt.failed_save():
                raise ValueError("a bug of ours")
