"""Tests for aejax.resumable: what a checkpoint may be resumed with, and the warning for a custom
part that changed under its name."""

from __future__ import annotations

import dataclasses
import json
import logging

import jax
import numpy as np
import pytest

from aejax import resumable
from aejax.config import Config
from aejax.partdigest import DIGEST_VERSION
from aejax.parts import Parts
from tests.test_parts import bce, patch

CFG = Config(batch_size=8, epochs=1)
DATA = {"shape": [64, 784], "sha256": "x"}


def meta(**extra) -> dict:
    return {"config": json.loads(CFG.to_json()), "data": DATA, **extra}


def test_resume_needs_the_same_parts() -> None:
    saved = meta()
    resumable.check_resumable(8, saved, CFG, DATA, 8, "ck")  # no parts saved: the defaults
    saved["parts"] = Parts(loss=bce).describe()
    resumable.check_resumable(8, saved, CFG, DATA, 8, "ck", Parts(loss=bce).describe())
    with pytest.raises(ValueError, match=r"cannot resume from ck: it was trained with "
                                         r"loss=\S*test_parts\.bce \(now the default\)"):
        resumable.check_resumable(8, saved, CFG, DATA, 8, "ck")
    saved["parts"] = Parts().describe()
    with pytest.raises(ValueError, match=r"occlude=the default \(now \S*test_parts\.patch\); "
                                         "leave --parts out: it was trained with the original's "
                                         "parts$"):
        resumable.check_resumable(8, saved, CFG, DATA, 8, "ck", Parts(occlude=patch).describe())


def test_only_the_data_paths_and_the_epochs_may_change() -> None:
    moved = dataclasses.replace(CFG, data_dir="/elsewhere", data_root="/root", epochs=4)
    resumable.check_config(json.loads(CFG.to_json()), moved, "ck")
    with pytest.raises(ValueError, match=r"cannot resume from ck: it was trained with "
                                         r"batch_size=8 \(now 16\), seed=0 \(now 3\); leave those"):
        resumable.check_config(json.loads(CFG.to_json()),
                               dataclasses.replace(CFG, batch_size=16, seed=3), "ck")
    extra = {**json.loads(CFG.to_json()), "dropout": 0.5}  # saved by a version with that field
    with pytest.raises(ValueError, match=r"trained with dropout=0\.5 \(now None\); leave those"):
        resumable.check_config(extra, CFG, "ck")
    older = json.loads(CFG.to_json())
    del older["seed"]  # saved by a version without that field: not taken for the same config
    with pytest.raises(ValueError, match=r"trained with seed=None \(now 0\); leave those"):
        resumable.check_config(older, CFG, "ck")


def test_other_images_and_steps_past_the_epochs_are_refused() -> None:
    images = np.zeros((64, 784), np.uint8)
    data = resumable.fingerprint(images)
    assert data == resumable.fingerprint(images.copy()) != resumable.fingerprint(images + 1)
    with pytest.raises(ValueError, match=r"trained on other training images \(64 images"):
        resumable.check_data(data, resumable.fingerprint(images + 1), "ck")
    for step, trained in ((16, "2 epochs"), (17, "2 epochs and 1 step"),
                          (19, "2 epochs and 3 steps"), (9, "1 epoch and 1 step")):
        with pytest.raises(ValueError, match=rf"at step {step} \({trained} trained\), past the "
                                             r"--epochs 1 asked for"):
            resumable.check_resumable(step, meta(), CFG, DATA, 8, "ck")


def test_a_part_changed_under_its_name_is_warned_about(caplog: pytest.LogCaptureFixture) -> None:
    names = Parts(loss=bce).describe()
    now = {"parts_digests_version": DIGEST_VERSION, "jax_version": jax.__version__}
    cases = [({}, False),  # a checkpoint from before digests: nothing to compare
             ({"parts_digests": {"loss": "bbbb"}}, False),  # digests computed another way
             ({"parts_digests": {"loss": "aaaa"}, **now}, False),
             ({"parts_digests": {"loss": "bbbb"}, **now}, True),
             ({"parts_digests": {"loss": "bbbb"}, **now, "jax_version": "0.0.1"}, True)]
    for extra, warned in cases:
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="aejax.resumable"):
            resumable.warn_changed_parts(meta(parts=names, **extra), {"loss": "aaaa"}, "ck")
        assert bool(caplog.records) == warned, extra
        if warned:
            text = caplog.records[0].getMessage()
            assert f"a loss named {names['loss']} as before, whose computation has changed" in text
            assert ("(or JAX, 0.0.1 then" in text) == (extra["jax_version"] == "0.0.1")


def test_a_changed_occlusion_is_warned_about_as_an_occlusion(
        caplog: pytest.LogCaptureFixture) -> None:
    names = {"occlude": "myparts.patch"}
    saved = {"parts_digests": {"occlude": "bbbb"}, "parts_digests_version": DIGEST_VERSION,
             "jax_version": jax.__version__}
    with caplog.at_level(logging.WARNING, logger="aejax.resumable"):
        resumable.warn_changed_parts(meta(parts=names, **saved), {"occlude": "aaaa"}, "ck")
    assert "with an occlusion named myparts.patch as before" in caplog.records[0].getMessage()


def test_every_part_changed_under_its_name_is_warned_about(
        caplog: pytest.LogCaptureFixture) -> None:
    names = {"loss": "myparts.bce", "occlude": "myparts.patch"}
    saved = {"parts_digests": {"loss": "bbbb", "occlude": "dddd"},
             "parts_digests_version": DIGEST_VERSION, "jax_version": jax.__version__}
    with caplog.at_level(logging.WARNING, logger="aejax.resumable"):
        resumable.warn_changed_parts(meta(parts=names, **saved),
                                     {"loss": "aaaa", "occlude": "cccc"}, "ck")
    texts = [r.getMessage() for r in caplog.records]
    assert len(texts) == 2  # not only the first changed part
    assert "a loss named myparts.bce" in texts[0]
    assert "an occlusion named myparts.patch" in texts[1]
