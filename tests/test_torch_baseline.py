"""Tests for aejax.torch_baseline: the PyTorch model and runner the JAX steps are compared with."""

from __future__ import annotations

import importlib.util

import jax
import numpy as np
import pytest

from aejax import torch_baseline, train
from aejax.config import Config
from aejax.model import count_params, init_params
from tests.test_bench import IMAGES

needs_torch = pytest.mark.skipif(not torch_baseline.available(), reason="PyTorch not installed")


@needs_torch
def test_torch_model_matches_the_flax_model_given_the_same_weights() -> None:
    import torch

    params = init_params(jax.random.key(0), train.make_model(Config()))
    model = torch_baseline.make_model()
    linears = [m for m in model if isinstance(m, torch.nn.Linear)]
    assert sum(p.numel() for p in model.parameters()) == count_params(params) == 214_594
    with torch.no_grad():
        for i, layer in enumerate(linears):
            layer.weight.copy_(torch.tensor(np.asarray(params[f"dense_{i}"]["kernel"]).T))
            layer.bias.copy_(torch.tensor(np.asarray(params[f"dense_{i}"]["bias"])))
        x = IMAGES[:5].astype(np.float32) / 255
        expected = train.make_model(Config()).apply({"params": params}, x)
        np.testing.assert_allclose(model(torch.as_tensor(x)).numpy(), expected, atol=1e-5)


@needs_torch
def test_torch_runner_trains_on_batches_of_its_size_against_the_input(monkeypatch) -> None:
    import torch

    seen, targets = [], []

    class RecordingMSE(torch.nn.MSELoss):
        def forward(self, pred: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
            targets.append(target)
            seen.append((tuple(pred.shape), tuple(target.shape)))
            return super().forward(pred, target)

    inputs = []
    make_model = torch_baseline.make_model

    def recording_model(*args):
        model = make_model(*args)
        model.register_forward_pre_hook(lambda _, x: inputs.append(x[0]))
        return model

    monkeypatch.setattr(torch.nn, "MSELoss", RecordingMSE)
    monkeypatch.setattr(torch_baseline, "make_model", recording_model)
    r = torch_baseline.runner(IMAGES, 8, 30, warmup=1)
    r.run()
    assert r.info["num_params"] == 214_594 and r.info["threads"] >= 1
    assert r.steps == 30 and len(seen) == len(inputs) == 31
    assert set(seen) == {((8, 784), (8, 784))}  # batches of 8
    assert len({x.numpy().tobytes() for x in inputs}) == 64 // 8  # every batch in turn
    assert all(torch.equal(t, x) for t, x in zip(targets, inputs))  # the target is the input
    pixels = {tuple(row) for row in IMAGES.astype(np.float32) / 255}
    assert all(tuple(row) in pixels for x in inputs for row in x.numpy())  # real images in [0, 1]


@needs_torch
def test_torch_runner_steps_adam_once_per_batch_and_waits_for_the_device(monkeypatch) -> None:
    import torch

    calls, synced = [], []

    class RecordingAdam(torch.optim.Adam):
        def zero_grad(self, *args, **kwargs):
            calls.append("zero_grad")
            return super().zero_grad(*args, **kwargs)

        def step(self, *args, **kwargs):
            calls.append(("step", self.defaults["lr"]))
            return super().step(*args, **kwargs)

    monkeypatch.setattr(torch.optim, "Adam", RecordingAdam)
    monkeypatch.setattr(torch_baseline, "synchronize", synced.append)
    r = torch_baseline.runner(IMAGES, 8, 3, warmup=2)
    assert calls == ["zero_grad", ("step", 1e-3)] * 2 and synced == ["cpu"]
    r.run()
    assert calls == ["zero_grad", ("step", 1e-3)] * 5 and synced == ["cpu", "cpu"]
    # the same seed, the same start: the loss after the warm-up repeats
    again = torch_baseline.runner(IMAGES, 8, 3, warmup=2).info["warmup_last_loss"]
    assert r.info["warmup_last_loss"] == again


@needs_torch
def test_torch_waits_for_any_cuda_device_and_needs_one_for_cuda(monkeypatch) -> None:
    import torch

    synced = []
    monkeypatch.setattr(torch.cuda, "synchronize", synced.append)
    for device in ("cpu", "cuda", "cuda:1"):
        torch_baseline.synchronize(device)
    assert synced == ["cuda", "cuda:1"]
    for seen in (False, True):
        monkeypatch.setattr(torch.cuda, "is_available", lambda seen=seen: seen)
        assert torch_baseline.problem() is None
        no_gpu = None if seen else "this PyTorch build sees no GPU"
        assert torch_baseline.problem(cuda=True) == no_gpu


def test_pytorch_counts_as_available_wherever_it_imports() -> None:
    # not marked needs_torch: an available() that wrongly said no would skip every torch test
    assert torch_baseline.available() is (importlib.util.find_spec("torch") is not None)


@needs_torch
def test_torch_runner_without_a_warm_up_has_no_warm_up_loss() -> None:
    r = torch_baseline.runner(IMAGES, 8, 2, warmup=0)  # no steps yet: no loss to read
    assert r.info["warmup_last_loss"] is None
    r.run()
