"""The loss log of a training run: every step's loss, checked to be finite as it arrives, the
progress bar it drives, and the training time (earlier sessions of a resumed run included)."""

from __future__ import annotations

import dataclasses
import time
from typing import Any

import jax
import numpy as np

from aejax import parallel


class NonFiniteLoss(ValueError):
    """A step's loss was NaN or infinite (``step``: the first such step)."""

    def __init__(self, message: str, step: int | None = None):
        super().__init__(message)
        self.step = step


@dataclasses.dataclass
class LossLog:
    """Every step's loss so far (checked to be finite), a progress bar, and the training time."""

    losses: list[np.ndarray]
    bar: Any = None  # a tqdm bar, set by fit
    seconds_before: float = 0.0
    started: float = dataclasses.field(default_factory=time.perf_counter)

    def add(self, loss: jax.Array, first_step: int, epoch: int) -> None:
        """Record a chunk's losses, whose first step is ``first_step``; stop on NaN or inf."""
        # block_until_ready waits where Python's signal handlers still run (np.asarray does not):
        # a Ctrl-C is seen when it is pressed, and a second one is not merged with the first
        loss = np.asarray(parallel.fetch(jax.block_until_ready(loss)))
        bad = np.flatnonzero(~np.isfinite(loss))
        if bad.size:
            step = first_step + int(bad[0])
            raise NonFiniteLoss(f"the loss is {loss[bad[0]]} at step {step} (epoch {epoch + 1}); "
                                "training stopped", step)
        self.losses.append(loss)
        self.bar.update(len(loss))
        self.bar.set_postfix(epoch=epoch + 1, loss=f"{loss.mean():.4f}")

    def seconds(self) -> float:
        """Training time so far, earlier sessions of a resumed run included."""
        return self.seconds_before + time.perf_counter() - self.started
