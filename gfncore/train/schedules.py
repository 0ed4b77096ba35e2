"""Learning-rate schedules of a training run: one cosine decay, as a factor of the step (what the
LRSchedule hook of Trainer.fit applies) and as a torch scheduler for a hand-driven optimizer."""
from __future__ import annotations

import math

import torch


def cosine_factor(step: int, steps: int, final: float) -> float:
    """The half-cosine decay from 1 at step 0 to `final` at `steps` and after (the noise of the
    last iterates is what limits the accuracy a constant learning rate reaches)."""
    return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * min(step, steps) / max(steps, 1)))


def cosine_schedule(optimizer: torch.optim.Optimizer, steps: int, final: float):
    """Every group's learning rate decays from its own value to final x it along a half cosine
    (cosine_factor), as a torch LambdaLR stepped after each optimizer step."""
    return torch.optim.lr_scheduler.LambdaLR(optimizer, lambda i: cosine_factor(i, steps, final))
