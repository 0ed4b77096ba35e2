"""HyperGrid: points of {0..H-1}^ndim built by incrementing one coordinate at a time."""
from __future__ import annotations

import itertools
from functools import lru_cache

import torch

from ..ops.reference import HyperGridReference
from .base import Env, register


@register
class HyperGrid(Env):
    """HyperGrid environment (Bengio et al. 2021) with the standard reward

    R(x) = R0 + R1 * prod_d 1[0.25 < |x_d/(H-1) - 0.5|] + R2 * prod_d 1[0.3 < |x_d/(H-1) - 0.5| < 0.4].

    Actions 0..ndim-1 increment a coordinate, action ndim stops. Every state may stop, so the
    terminal objects are all H^ndim grid points; a state's parents are its non-zero coordinates.
    """

    kind = 1
    name = "hypergrid"

    def __init__(self, ndim: int = 2, height: int = 8, R0: float = 0.1, R1: float = 0.5, R2: float = 2.0):
        if int(ndim) < 1:
            raise ValueError(f"HyperGrid: ndim must be >= 1, got {ndim}")
        if int(height) < 2:
            raise ValueError(f"HyperGrid: height must be >= 2, got {height}")
        self.ndim, self.height = int(ndim), int(height)
        self.R0, self.R1, self.R2 = float(R0), float(R1), float(R2)
        super().__init__((self.kind, (self.ndim, self.height), (self.R0, self.R1, self.R2)))

    @classmethod
    def from_spec(cls, ints, floats):
        return _cached(tuple(ints), tuple(floats))

    def reference(self) -> HyperGridReference:
        return HyperGridReference(self.ndim, self.height, self.R0, self.R1, self.R2)

    def all_states(self) -> torch.Tensor:
        if self.height ** self.ndim > 5_000_000:
            raise ValueError(f"{self!r} has {self.height ** self.ndim} states: too many to enumerate")
        grid = itertools.product(range(self.height), repeat=self.ndim)
        return torch.tensor(list(grid), dtype=torch.int32).reshape(-1, self.ndim)

    def all_terminal_states(self) -> torch.Tensor:
        return self.all_states()

    def mode_mask(self, states: torch.Tensor) -> torch.Tensor:
        """Which states are modes: the highest-reward objects (R = R0 + R1 + R2)."""
        lr = self.log_reward(states)
        return lr >= torch.log(torch.tensor(self.R0 + self.R1 + self.R2, dtype=torch.float64)) - 1e-9

    def __repr__(self) -> str:
        return f"HyperGrid(ndim={self.ndim}, height={self.height}, R0={self.R0}, R1={self.R1}, R2={self.R2})"


@lru_cache(maxsize=64)
def _cached(ints, floats) -> HyperGrid:
    return HyperGrid(*ints, *floats)
