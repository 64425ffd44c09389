"""Tests of aejax.summaries: test-set and per-class means of per-image metrics."""

from __future__ import annotations

import numpy as np
import pytest

from aejax import summaries


def test_per_class_means_and_stds_add_up_to_the_overall_ones() -> None:
    rng = np.random.default_rng(1)
    labels = rng.integers(0, 10, 200)
    values = {"occluded": {"mse": rng.gamma(2.0, 0.01, 200), "psnr": rng.normal(18, 2, 200)}}
    table = summaries.per_class(values, labels)
    assert sorted(table, key=int) == [str(d) for d in range(10)]
    counts = np.array([table[str(d)]["count"] for d in range(10)])
    assert counts.sum() == 200
    for name, v in values["occluded"].items():
        means = np.array([table[str(d)]["occluded"][name] for d in range(10)])
        stds = np.array([table[str(d)]["occluded"][f"{name}_std"] for d in range(10)])
        in_class = [v[labels == d] for d in range(10)]  # each class's own images, not all 200
        np.testing.assert_allclose(means, [x.mean() for x in in_class], rtol=1e-12)
        np.testing.assert_allclose(stds, [x.std() for x in in_class], rtol=1e-12)
        overall = summaries.summarize(values["occluded"])[name]
        np.testing.assert_allclose(np.sum(counts * means) / 200, overall, rtol=1e-10)
        pooled_var = np.sum(counts * (stds**2 + (means - overall) ** 2)) / 200
        np.testing.assert_allclose(pooled_var, np.var(v), rtol=1e-10)


def test_labels_that_are_not_whole_numbers_are_refused_not_merged() -> None:
    values = {"occluded": {"mse": np.array([0.1, 0.3, 0.5])}}
    # whole floats are classes as ints are: 3.0 is the class "3"
    assert summaries.per_class(values, np.array([3.0, 3.0, 1.0]))["3"]["count"] == 2
    assert summaries.per_class(values, np.uint8([3, 3, 1]))["3"]["count"] == 2  # MNIST's dtype
    assert summaries.per_class(values, np.array([True, True, False]))["1"]["count"] == 2
    for labels, got in (([3.2, 3.7, 1.0], r"3\.2 \(float64\)"),
                        ([1.0, np.nan, 2.0], r"nan \(float64\)"),
                        ([1.0, np.inf, 2.0], r"inf \(float64\)"),  # not int(inf)'s OverflowError
                        (["a", "b", "c"], r"'a' \(<U1\)")):
        with pytest.raises(ValueError, match=r"^labels must be whole numbers \(the class of each "
                                             rf"image\), got {got}"):
            summaries.per_class(values, np.array(labels))


def test_nan_values_are_left_out_of_the_means() -> None:
    assert summaries.mean_std(np.array([0.5, np.nan, 0.7])) == pytest.approx((0.6, 0.1))
    assert np.isnan(summaries.mean_std(np.array([np.nan, np.nan]))).all()
    summary = summaries.summarize({"corr": np.array([0.5, np.nan, 0.7]), "mse": np.ones(3)})
    assert summary == pytest.approx({"corr": 0.6, "mse": 1.0})  # the test set's means
