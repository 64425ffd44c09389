"""Tests for aejax.shapes: two pytrees' array shapes compared by path."""

from __future__ import annotations

import numpy as np

from aejax import shapes
from aejax.train import TrainState


def test_paths_match_across_containers_and_differences_are_named() -> None:
    state = TrainState(step=np.int32(0), params={"dense_0": {"kernel": np.zeros((4, 3))}},
                       opt_state=({"mu": np.zeros(3)}, None))
    saved = {"step": np.int32(0), "params": {"dense_0": {"kernel": np.zeros((4, 3))}},
             "opt_state": [{"mu": np.zeros(3)}, None]}  # a checkpoint's plain dicts and lists
    assert shapes.leaf_shapes(state) == {"step": (), "params/dense_0/kernel": (4, 3),
                                         "opt_state/0/mu": (3,)}
    assert shapes.mismatch(saved, state) is None
    saved["params"]["dense_0"]["kernel"] = np.zeros((4, 5))
    assert shapes.mismatch(saved, state) == "params/dense_0/kernel: (4, 5) saved, (4, 3) now"
    saved["params"]["dense_1"] = {"bias": np.zeros(2)}
    assert shapes.mismatch(saved, state) == (  # two: both named, no "and 0 more"
        "params/dense_0/kernel: (4, 5) saved, (4, 3) now; "
        "params/dense_1/bias is saved but not built now")
    del saved["opt_state"][0]["mu"]
    saved["opt_state"][0]["nu"] = np.zeros(3)
    assert shapes.mismatch(saved, state) == (
        "params/dense_0/kernel: (4, 5) saved, (4, 3) now; opt_state/0/mu is not saved and 2 more")
    del saved["opt_state"][0]["nu"]  # three: the third counted, not dropped
    assert shapes.mismatch(saved, state) == (
        "params/dense_0/kernel: (4, 5) saved, (4, 3) now; opt_state/0/mu is not saved and 1 more")
    assert shapes.mismatch({"a": np.zeros(1)}, {}) == "a is saved but not built now"
    words = ("given", "built", "")  # evaluate.check_params's, for parameters given in Python
    assert shapes.mismatch({"a": np.zeros(1)}, {}, words=words) == "a is given but not built"
    assert shapes.mismatch({"a": np.zeros(1)}, {"a": np.zeros(2), "b": np.zeros(1)},
                           words=words) == "a: (1,) given, (2,) built; b is not given"
