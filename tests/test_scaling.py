"""Tests for aejax.scaling: device counts checked before any work, throughput rows, the table."""

from __future__ import annotations

import subprocess
import types

import jax
import pytest

from aejax import scaling


def test_scaling_counts_beyond_a_gpus_devices_are_refused_before_any_work(monkeypatch) -> None:
    from aejax import scaling

    scaling.check_counts((1, 2, 4))  # the CPU platform makes as many as asked
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(jax, "device_count", lambda: 1)
    with pytest.raises(ValueError, match=r"^--scaling 1,2: the gpu backend has 1 device\(s\), "
                                         r"and only the CPU can be split into more \(--device "
                                         r"cpu\); use counts up to 1$"):
        scaling.check_counts((1, 2))
    scaling.check_counts((1,))


def test_scaling_counts_must_divide_every_batch_size_before_any_work(monkeypatch) -> None:
    from aejax import scaling

    scaling.check_counts((1, 2, 4), (32, 256))
    with pytest.raises(ValueError, match=r"^--scaling 1,3: batch size 32 is not divisible by 3 "
                                         r"devices \(each device takes an equal share of every "
                                         r"global batch\); use --batch-sizes that are multiples "
                                         r"of 3, such as 33,48$"):
        scaling.check_counts((1, 3), (32, 48))
    measured = []
    monkeypatch.setattr(scaling, "measure", lambda *args: measured.append(args))
    with pytest.raises(ValueError, match=r"^--scaling 2,3,5: batch sizes 32,50 are not divisible "
                                         r"by 3 or 5 devices .*multiples of 30, such as 30,60$"):
        scaling.sweep((2, 3, 5), (32, 50), 4)  # no pair left out in silence
    assert measured == []
    with pytest.raises(ValueError, match=r"multiples of 64, such as 64$"):
        scaling.check_batches((1, 64), (8,))  # never a batch of 0


def test_scaling_throughput_trains_what_it_reports(monkeypatch) -> None:
    from aejax import scaling

    fitted = []

    def fit(cfg, images, *, progress, mesh):
        fitted.append((cfg.epochs, cfg.batch_size, images.shape, mesh.size))
        return None, {"train_seconds": 2.0}

    monkeypatch.setattr(scaling.loop, "fit", fit)
    monkeypatch.setattr(scaling.parallel, "make_mesh", lambda n: types.SimpleNamespace(size=n))
    row = scaling.throughput(2, 16, 4, epochs=3)
    assert fitted == [(3, 16, (64, 784), 2)]  # 3 epochs of 4 steps of 16 on 2 devices
    assert (row["devices"], row["steps"], row["seconds"]) == (2, 12, 2.0)
    assert row["images_per_second"] == 12 * 16 / 2.0


def test_a_failing_scaling_child_raises_with_its_stderr(monkeypatch) -> None:
    from aejax import scaling

    seen = []

    def run(args, **kwargs):
        seen.append(kwargs["env"]["XLA_FLAGS"])
        return subprocess.CompletedProcess(args, 1, "", "Traceback\nValueError: no devices\n")

    monkeypatch.setattr(scaling.subprocess, "run", run)
    with pytest.raises(RuntimeError, match=r"^2 device\(s\), batch 16 failed:\nTraceback\n"
                                           r"ValueError: no devices\n$"):
        scaling.measure(2, 16, 4)
    assert seen[0].endswith("--xla_force_host_platform_device_count=2")


def test_the_scaling_table_orders_sizes_and_counts_and_compares_with_the_fewest() -> None:
    from aejax import scaling

    rows = [{"devices": n, "batch_size": b, "images_per_second": ips}
            for b, n, ips in ((64, 4, 300.0), (64, 2, 200.0), (32, 2, 50.0), (32, 4, 75.0))]
    assert scaling.table(rows).splitlines()[1:] == ["|---|---|---|",
                                                    "| 32 | 50 (1.00x) | 75 (1.50x) |",
                                                    "| 64 | 200 (1.00x) | 300 (1.50x) |"]
    assert scaling.table(rows).splitlines()[0] == "| global batch | 2 device(s) | 4 device(s) |"


def test_scaling_measures_images_per_second_in_a_subprocess() -> None:
    row = scaling.measure(2, 16, 4)
    assert row["devices"] == 2 and row["steps"] == 8 and row["images_per_second"] > 0
    row = scaling.throughput(1, 16, 4, epochs=3)  # in this process: 3 epochs of 4 steps of 16
    assert row["steps"] == 12
    assert row["images_per_second"] == pytest.approx(12 * 16 / row["seconds"])
    rows = [{"devices": 1, "batch_size": 32, "images_per_second": 100.0},
            {"devices": 2, "batch_size": 32, "images_per_second": 150.0}]
    assert scaling.table(rows).splitlines()[-1] == "| 32 | 100 (1.00x) | 150 (1.50x) |"
