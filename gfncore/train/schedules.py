"""Learning-rate schedules of a training run."""
from __future__ import annotations

import math

import torch


def cosine_schedule(optimizer: torch.optim.Optimizer, steps: int, final: float):
    """Every group's learning rate decays from its own value to final x it along a half cosine."""
    def f(i: int) -> float:
        return final + (1 - final) * 0.5 * (1 + math.cos(math.pi * min(i, steps) / max(steps, 1)))

    return torch.optim.lr_scheduler.LambdaLR(optimizer, f)
