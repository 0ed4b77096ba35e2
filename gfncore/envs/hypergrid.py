"""HyperGrid: points of {0..H-1}^ndim built by incrementing one coordinate at a time."""
from __future__ import annotations

import itertools
import math

import torch

from .compiled import CompiledEnv


class HyperGrid(CompiledEnv, kind="hypergrid"):
    """HyperGrid environment (Bengio et al. 2021) with the standard reward

    R(x) = R0 + R1 * prod_d 1[0.25 < |x_d/(H-1) - 0.5|] + R2 * prod_d 1[0.3 < |x_d/(H-1) - 0.5| < 0.4]

    (the region tests are done in exact integer arithmetic). Actions 0..ndim-1 increment a
    coordinate, action ndim stops. Every state may stop, so the terminal objects are all H^ndim
    grid points; a state's parents are its non-zero coordinates.
    """

    def reference(self):
        """The same environment written as a PythonEnv (batched torch): the tests' oracle."""
        from .twins import PyHyperGrid

        return PyHyperGrid(self.ndim, self.height, self.R0, self.R1, self.R2)

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
        return lr >= math.log(self.R0 + self.R1 + self.R2) - 1e-9
