"""Built-in conditional tasks with exact answers: environments whose reward takes a context c,
R(c, x), so that a conditional GFlowNet learns pi(x | c) and log Z(c) for every c at once (the
seed's amortized intractable sums, pi(x|c) S(c) = R(c, x))."""
from __future__ import annotations

import math

import torch

from .hypergrid import HyperGrid
from .ising import Ising


class IsingBeta(Ising):
    """The Ising model with the inverse temperature as the context: c = [beta],
    log R(x | beta) = beta * (J sum_<ij> x_i x_j + h sum_i x_i). log Z(beta) is exact by
    enumeration up to 4x4."""

    context_dim = 1

    def __init__(self, n: int = 3, J: float = 1.0, h: float = 0.0):
        super().__init__(n=n, J=J, h=h, beta=1.0)

    def config(self) -> dict:
        return {"n": self.n, "J": self.J, "h": self.h}

    def log_reward(self, x, context=None):
        s = self._states(x, "x")
        c = self._context(context, s.shape[0])
        return c[:, 0].to(torch.float64) * self.builtin_log_reward(s)


class HyperGridR0(HyperGrid):
    """HyperGrid with the base reward R0 as the context: c = [R0] (R0 > 0),
    R(x | R0) = R0 + R1 1[outer] + R2 1[ring]. Small R0 makes the modes sharp and far apart."""

    context_dim = 1

    def __init__(self, ndim: int = 2, height: int = 8, R1: float = 0.5, R2: float = 2.0):
        super().__init__(ndim=ndim, height=height, R0=1.0, R1=R1, R2=R2)

    def config(self) -> dict:
        return {"ndim": self.ndim, "height": self.height, "R1": self.R1, "R2": self.R2}

    def log_reward(self, x, context=None):
        s = self._states(x, "x")
        c = self._context(context, s.shape[0]).to(torch.float64)[:, 0]
        if bool((c <= 0).any()):
            raise ValueError(f"HyperGridR0: the context R0 must be > 0, got {float(c.min())}")
        bonus = self.builtin_log_reward(s).exp() - 1.0  # R1 1[outer] + R2 1[ring] (built with R0 = 1)
        return torch.log(c + bonus)

    def mode_mask(self, states: torch.Tensor) -> torch.Tensor:
        return self.builtin_log_reward(states) >= math.log(1.0 + self.R1 + self.R2) - 1e-9


def uniform_contexts(low: float, high: float):
    """A context sampler (n, generator) -> [n, 1] drawing c uniformly from [low, high]."""
    if not (math.isfinite(low) and math.isfinite(high) and low < high):
        raise ValueError(f"need finite low < high, got {low}, {high}")

    def sample(n: int, generator: torch.Generator | None = None) -> torch.Tensor:
        return low + (high - low) * torch.rand(n, 1, generator=generator, dtype=torch.float64)

    return sample
